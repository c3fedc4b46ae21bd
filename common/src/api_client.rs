//! A client of faafo's REST API, for the producer, the `faafo` command line
//! and tests.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fractal::{ErrorBody, Fractal, FractalPage, FractalStatus, FractalUpdate, NewFractal};

/// Header carrying the API token.
pub const AUTH_HEADER: &str = "X-Auth-Token";

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Status {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The API's explanation.
        message: String,
    },
    /// The API could not be reached (refused, timed out, reset).
    #[error(
        "cannot reach the faafo API at {}: {reason}",
        crate::messaging::redact_url(endpoint)
    )]
    Unreachable {
        /// The API's base URL.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The endpoint is not a URL this client can use: nothing was sent.
    #[error(
        "invalid faafo API endpoint {}: {reason}",
        crate::messaging::redact_url(endpoint)
    )]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// What was given as a fractal's uuid is not one: nothing was sent
    /// (it would have been part of the request's path).
    #[error("{0:?} is not a UUID (expected 8-4-4-4-12 hex digits)")]
    InvalidUuid(String),
    /// The API answered something that is not what it should.
    #[error("unexpected answer from the faafo API ({path}): {reason}")]
    Protocol {
        /// Request path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// Whether the API refused a body field it does not know (422): an
    /// API older than the client.
    pub fn is_unknown_field(&self, field: &str) -> bool {
        matches!(self, ApiError::Status { status: 422, message, .. }
            if message.contains(&format!("unknown field `{field}`")))
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may work (unreachable, 5xx, 429, 408).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            ApiError::Protocol { .. }
            | ApiError::InvalidUuid(_)
            | ApiError::InvalidEndpoint { .. } => false,
        }
    }
}

/// Filters and paging of `GET /v1/fractal`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListQuery {
    /// 1-based page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// Page size (the API caps it at its maximum, 100 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_per_page: Option<u64>,
    /// Only fractals in this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<FractalStatus>,
    /// Only fractals last updated before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_before: Option<String>,
    /// Sort key: `created_at`, `updated_at` or `uuid`, `-` prefix for descending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
}

/// Header carrying the request id that follows one fractal through faafo.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// A client of one faafo API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    endpoint: String,
    token: Option<String>,
    request_id: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the API at `endpoint` (e.g. `http://127.0.0.1:5000`),
    /// sending `token` as `X-Auth-Token` when given.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, ApiError> {
        let invalid = |reason: &str| ApiError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: reason.into(),
        };
        if !endpoint.starts_with("http://") {
            return Err(invalid(
                "expected http://host:port (only http:// is supported: put TLS in front of the API)",
            ));
        }
        match reqwest::Url::parse(endpoint) {
            Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(invalid("it names no host")),
            Err(e) => return Err(invalid(&e.to_string())),
        }
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ApiError::Unreachable {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            endpoint,
            token: token.filter(|t| !t.is_empty()),
            request_id: None,
            http,
        })
    }

    /// The same client, sending `request_id` as `X-Request-Id` so the API's
    /// log lines carry it (it shares the connection pool).
    pub fn with_request_id(&self, request_id: &str) -> Self {
        Self {
            request_id: Some(request_id.to_string()),
            ..self.clone()
        }
    }

    /// The API's base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.endpoint));
        if let Some(token) = &self.token {
            request = request.header(AUTH_HEADER, token);
        }
        if let Some(id) = &self.request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        request
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let response = request.send().await.map_err(|e| ApiError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: without_url(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or_else(|_| {
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    text.chars().take(300).collect()
                }
            });
        Err(ApiError::Status {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            // An error page's line breaks must not become log lines.
            message: crate::configuration::one_line(&message),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = self.send(method, path, request).await?;
        let bytes = response.bytes().await.map_err(|e| ApiError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: without_url(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Protocol {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// `POST /v1/fractal`.
    pub async fn create(&self, fractal: &NewFractal) -> Result<Fractal, ApiError> {
        let path = "/v1/fractal";
        self.json(
            Method::POST,
            path,
            self.request(Method::POST, path).json(fractal),
        )
        .await
    }

    /// `GET /v1/fractal/<uuid>`.
    pub async fn get(&self, uuid: &str) -> Result<Fractal, ApiError> {
        let path = format!("/v1/fractal/{}", checked(uuid)?);
        self.json(Method::GET, &path, self.request(Method::GET, &path))
            .await
    }

    /// `GET /v1/fractal` with filters.
    pub async fn list(&self, query: &ListQuery) -> Result<FractalPage, ApiError> {
        let path = "/v1/fractal";
        self.json(
            Method::GET,
            path,
            self.request(Method::GET, path).query(query),
        )
        .await
    }

    /// Every fractal matching `query`, over all pages.
    pub async fn list_all(&self, query: &ListQuery) -> Result<Vec<Fractal>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let q = ListQuery {
                page: Some(page),
                results_per_page: Some(query.results_per_page.unwrap_or(100)),
                ..query.clone()
            };
            let result = self.list(&q).await?;
            let got = result.objects.len();
            out.extend(result.objects);
            if page >= result.total_pages || got == 0 {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// `PUT /v1/fractal/<uuid>`.
    pub async fn update(&self, uuid: &str, update: &FractalUpdate) -> Result<Fractal, ApiError> {
        let path = format!("/v1/fractal/{}", checked(uuid)?);
        self.json(
            Method::PUT,
            &path,
            self.request(Method::PUT, &path).json(update),
        )
        .await
    }

    /// `DELETE /v1/fractal/<uuid>`.
    pub async fn delete(&self, uuid: &str) -> Result<(), ApiError> {
        let path = format!("/v1/fractal/{}", checked(uuid)?);
        self.send(Method::DELETE, &path, self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// `PUT /v1/fractal/<uuid>/image`: stores the PNG of a fractal.
    pub async fn upload_image(&self, uuid: &str, png: Vec<u8>) -> Result<(), ApiError> {
        let path = format!("/v1/fractal/{}/image", checked(uuid)?);
        let request = self
            .request(Method::PUT, &path)
            .header(reqwest::header::CONTENT_TYPE, "image/png")
            .body(png);
        self.send(Method::PUT, &path, request).await.map(drop)
    }

    /// `PUT /v1/fractal/<uuid>/image?<update>`: stores the PNG of a
    /// fractal and applies `update` (its result, `status=done`...) in the
    /// same write: one request where `upload_image` and `update` take two.
    /// An API older than this feature stores the image and ignores the
    /// query string; the fractal returned then shows the update missing.
    pub async fn store_result(
        &self,
        uuid: &str,
        png: Vec<u8>,
        update: &FractalUpdate,
    ) -> Result<Fractal, ApiError> {
        let path = format!("/v1/fractal/{}/image", checked(uuid)?);
        let request = self
            .request(Method::PUT, &path)
            .query(update)
            .header(reqwest::header::CONTENT_TYPE, "image/png")
            .body(png);
        self.json(Method::PUT, &path, request).await
    }

    /// `GET /fractal/<uuid>`: the PNG, checked against the sha256 the API
    /// sends as its ETag.
    pub async fn image(&self, uuid: &str) -> Result<Vec<u8>, ApiError> {
        let path = format!("/fractal/{}", checked(uuid)?);
        let response = self
            .send(Method::GET, &path, self.request(Method::GET, &path))
            .await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("image/png") {
            return Err(ApiError::Protocol {
                path,
                reason: format!("expected a PNG (image/png), got {content_type:?}"),
            });
        }
        // The API's ETag is the image's sha256 (its checksum): a download
        // cut short or damaged on the way is an error, not a file.
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_ascii_lowercase());
        let png =
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| ApiError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    reason: without_url(&e),
                })?;
        if let Some(checksum) = etag.filter(|t| t.len() == 64) {
            let actual = crate::fractal::sha256_hex(&png);
            if actual != checksum {
                return Err(ApiError::Protocol {
                    path,
                    reason: format!(
                        "the image received ({} bytes) has sha256 {actual}, not its checksum {checksum}",
                        png.len()
                    ),
                });
            }
        }
        Ok(png)
    }

    /// `GET /healthz`: whether the API answers.
    pub async fn alive(&self) -> bool {
        self.send(
            Method::GET,
            "/healthz",
            self.request(Method::GET, "/healthz"),
        )
        .await
        .is_ok()
    }
}

/// `uuid` if it is a fractal's uuid in the API's form (hyphenated): only
/// then does it go into a request's path (`../healthz` would not stay in
/// `/v1/fractal/`).
fn checked(uuid: &str) -> Result<&str, ApiError> {
    let hyphenated = uuid.len() == 36 && uuid::Uuid::try_parse(uuid).is_ok();
    if hyphenated {
        Ok(uuid)
    } else {
        // Shortened, as the API does: it may be anything a user typed.
        Err(ApiError::InvalidUuid(crate::fractal::shorten(uuid)))
    }
}

/// reqwest's message without the URL it repeats (the endpoint is shown
/// once by the error that wraps it).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl From<StatusCode> for ErrorBody {
    fn from(status: StatusCode) -> Self {
        ErrorBody {
            code: status.as_u16(),
            message: status.canonical_reason().unwrap_or("error").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiClient, ApiError, checked};
    use crate::fractal::FractalUpdate;

    /// Only a hyphenated uuid goes into a path: nothing that could leave
    /// `/v1/fractal/` or add a query.
    #[test]
    fn only_uuids_go_into_paths() {
        let uuid = "01a20784-fe99-72fe-a554-9a9b678b0fe0";
        assert_eq!(checked(uuid).ok(), Some(uuid));
        for bad in [
            "",
            "../healthz",
            "../v1/fractal",
            "x/../../fractal/01a20784-fe99-72fe-a554-9a9b678b0fe0",
            "01a20784-fe99-72fe-a554-9a9b678b0fe0?x=1",
            "01a20784fe9972fea5549a9b678b0fe0",
            "{01a20784-fe99-72fe-a554-9a9b678b0fe0}",
            "01a20784-fe99-72fe-a554-9a9b678b0fe",
        ] {
            let e = checked(bad).expect_err(bad);
            assert!(
                matches!(&e, ApiError::InvalidUuid(given) if given == bad),
                "{e}"
            );
            assert!(e.to_string().contains("is not a UUID"), "{e}");
        }
    }

    fn refused(status: u16, message: &str) -> ApiError {
        ApiError::Status {
            method: "POST".into(),
            path: "/v1/fractal".into(),
            status,
            message: message.into(),
        }
    }

    /// Every method that names a fractal refuses what is not a uuid
    /// before sending anything (nothing listens at the endpoint: a request
    /// would fail as unreachable instead).
    #[tokio::test]
    async fn no_method_sends_a_path_for_a_uuid() {
        let api = ApiClient::new("http://127.0.0.1:9", None).expect("client");
        let bad = "../healthz";
        let update = FractalUpdate::default();
        let errors = [
            api.get(bad).await.map(drop),
            api.update(bad, &update).await.map(drop),
            api.delete(bad).await,
            api.upload_image(bad, vec![1]).await,
            api.store_result(bad, vec![1], &update).await.map(drop),
            api.image(bad).await.map(drop),
        ];
        for (i, result) in errors.into_iter().enumerate() {
            assert!(
                matches!(&result, Err(ApiError::InvalidUuid(given)) if given == bad),
                "method {i}: {result:?}"
            );
        }
    }

    /// Only an `image/png` answer is taken for a PNG: anything else (an
    /// error page, JSON from a wrong URL) is an error, not a file.
    #[tokio::test]
    async fn an_image_must_be_a_png() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            for content_type in ["application/json", "image/png; charset=binary"] {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: 4\r\n\
                     connection: close\r\n\r\nabcd"
                );
                socket.write_all(answer.as_bytes()).await.expect("answer");
            }
        });
        let api = ApiClient::new(&endpoint, None).expect("client");
        let uuid = "01a20784-fe99-72fe-a554-9a9b678b0fe0";
        let json = api.image(uuid).await.expect_err("JSON is no PNG");
        assert!(
            matches!(&json, ApiError::Protocol { reason, .. } if reason.contains("image/png")),
            "{json}"
        );
        assert_eq!(api.image(uuid).await.expect("a PNG"), b"abcd");
        server.await.expect("server");
    }

    /// A user name and password in the endpoint (reqwest sends them as
    /// basic auth) are not shown in errors; an error page's line breaks
    /// are escaped, so it stays one log line.
    #[tokio::test]
    async fn errors_hide_credentials_and_stay_on_one_line() {
        let api = ApiClient::new("http://user:s3cret@127.0.0.1:9", None).expect("client");
        let error = api
            .get("01a20784-fe99-72fe-a554-9a9b678b0fe0")
            .await
            .expect_err("nothing listens");
        let shown = error.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("user:***@127.0.0.1:9"), "{shown}");

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let page = "<html>\r\n<h1>502 Bad Gateway</h1>\r\nFAKE LOG LINE\n</html>";
            let answer = format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{page}",
                page.len()
            );
            socket.write_all(answer.as_bytes()).await.expect("answer");
        });
        let api = ApiClient::new(&endpoint, None).expect("client");
        let error = api
            .get("01a20784-fe99-72fe-a554-9a9b678b0fe0")
            .await
            .expect_err("a 502");
        let shown = error.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert!(shown.contains("502 Bad Gateway"), "{shown}");
        server.await.expect("server");
    }

    /// How an older API refuses a field it does not know (its message is
    /// pinned by the API's hostile-input tests).
    #[test]
    fn unknown_fields_are_recognised() {
        let old_api = refused(
            422,
            "invalid body: unknown field `status`, expected one of `uuid`, `width` at line 1 column 9",
        );
        assert!(old_api.is_unknown_field("status"));
        assert!(!old_api.is_unknown_field("attempts"));
        assert!(!refused(400, "unknown field `status`").is_unknown_field("status"));
        assert!(!refused(422, "a new fractal is pending or running").is_unknown_field("status"));
    }
}
