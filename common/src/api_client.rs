//! A client of faafo's REST API, for the producer, the `faafo` command line
//! and tests.
//!
//! The endpoint may name several API hosts (`http://a:5000,http://b:5000`,
//! sharing one database): the client uses one at a time and moves to the
//! next when the one in use cannot be reached or answers 502-504, so that
//! no single API host is a point of failure for the producer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        /// The request went to another host first, which may have applied
        /// it (it timed out or answered 502-504): a 412 here can be that
        /// first try's doing ([`ApiError::may_have_applied`]).
        sent_elsewhere: bool,
        /// The answer is the API's own error document (`{"code": ...,
        /// "message": ...}`), not a proxy's page: a 404 then says the
        /// fractal is not there ([`ApiError::is_not_found`]); a proxy's 404
        /// (the API being deployed behind it) says nothing of it.
        from_api: bool,
    },
    /// The API could not be reached (refused, timed out, reset).
    #[error(
        "cannot reach the faafo API at {}: {reason}{}",
        crate::messaging::redact_url(endpoint),
        also_tried(tried_before)
    )]
    Unreachable {
        /// The API's base URL (the last one tried).
        endpoint: String,
        /// What failed.
        reason: String,
        /// The other hosts this request was sent to first, in vain (several
        /// endpoints): an error that names one host must not read as if the
        /// others were not tried.
        tried_before: Vec<String>,
        /// Whether a host may have received (and applied) the request: it
        /// timed out or broke off after sending, rather than refusing the
        /// connection.
        maybe_received: bool,
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
    /// The token cannot be sent as an HTTP header (a line break or another
    /// control character, often a stray newline from a file): nothing was
    /// sent. The token itself is not shown.
    #[error(
        "the API token cannot be sent: it holds a control character (a line break, copied from a file?) or a character outside ASCII"
    )]
    InvalidToken,
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
    /// The API says there is no such fractal: a 404 in its own words. A
    /// proxy's 404 page is not that ([`ApiError::is_transient`]).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ApiError::Status {
                status: 404,
                from_api: true,
                ..
            }
        )
    }

    /// Whether the API refused a body field it does not know (422): an
    /// API older than the client.
    pub fn is_unknown_field(&self, field: &str) -> bool {
        matches!(self, ApiError::Status { status: 422, message, .. }
            if message.contains(&format!("unknown field `{field}`")))
    }

    /// Whether the API refused a conditional update because the fractal
    /// changed since the revision it named (412): somebody else acted on
    /// it meanwhile.
    pub fn is_stale(&self) -> bool {
        self.status() == Some(412)
    }

    /// Whether the API (or a proxy in front of it) did not let this client
    /// in (401, 403): a matter of its token, not of the request, and one
    /// an operator can fix while the request waits.
    pub fn is_access_refused(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the request this error answers may have been applied all
    /// the same: an API that timed out, broke off or answered 5xx (a
    /// proxy's 502-504, a database that went silent mid-write) after
    /// receiving it, or another host tried first that did. (A 408 or a
    /// 429 refused it before it was read.) A conditional write retried
    /// after such an error can find its own change made.
    pub fn may_have_applied(&self) -> bool {
        match self {
            ApiError::Unreachable { maybe_received, .. } => *maybe_received,
            ApiError::Status {
                status,
                sent_elsewhere,
                ..
            } => *sent_elsewhere || *status >= 500,
            ApiError::Protocol { .. } => true,
            ApiError::InvalidUuid(_)
            | ApiError::InvalidEndpoint { .. }
            | ApiError::InvalidToken => false,
        }
    }

    /// Whether a client with several API hosts moved to the next one on
    /// this error (unreachable, 502, 503, 504).
    pub fn moves_to_another_host(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Status { status, .. } => another_host_may_answer(*status),
            _ => false,
        }
    }

    /// Whether trying again later may work (unreachable, 5xx, 429, 408).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            // A 404 that is not the API's own (a proxy's, while the API
            // behind it is deployed) is the API being away.
            ApiError::Status {
                status, from_api, ..
            } => {
                *status >= 500 || *status == 429 || *status == 408 || (*status == 404 && !from_api)
            }
            ApiError::Protocol { .. }
            | ApiError::InvalidUuid(_)
            | ApiError::InvalidEndpoint { .. }
            | ApiError::InvalidToken => false,
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
    /// Only fractals whose uuid sorts after this one (paging by uuid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid_after: Option<String>,
}

/// Header carrying the request id that follows one fractal through faafo.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// The header of a change that applies only to the fractal created at
/// the time it names (its `created_at`): a uuid deleted and created again
/// is another fractal, which a render of the deleted one must not finish
/// (the API answers 412). An API older than the header ignores it.
pub const IF_CREATED_AT_HEADER: &str = "Faafo-If-Created-At";

/// The API hosts a client may use: at least one `http://` URL, parsed
/// from one endpoint or several separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoints(Vec<String>);

impl ApiEndpoints {
    /// Parses `http://host:port`, or several such separated by commas
    /// (spaces around them are ignored).
    pub fn parse(endpoints: &str) -> Result<Self, ApiError> {
        let parsed = endpoints
            .split(',')
            .map(|endpoint| parse_endpoint(endpoint.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(parsed))
    }

    /// The endpoints in the order they are tried, without trailing slashes.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

fn parse_endpoint(endpoint: &str) -> Result<String, ApiError> {
    let invalid = |reason: &str| ApiError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.into(),
    };
    if endpoint.is_empty() {
        return Err(invalid(
            "it is empty (several endpoints are separated by single commas)",
        ));
    }
    if !endpoint.starts_with("http://") {
        return Err(invalid(
            "expected http://host:port (only http:// is supported: put TLS in front of the API)",
        ));
    }
    match reqwest::Url::parse(endpoint) {
        // The client adds /v1 itself: /v1/v1/fractal would be a 404. A
        // prefix of a proxy (http://host/faafo) is fine.
        Ok(url) if url.path().trim_end_matches('/').ends_with("/v1") => {
            return Err(invalid("give the API's base URL, without /v1"));
        }
        Ok(url)
            if ["/v1/fractal", "/api/fractal"]
                .iter()
                .any(|route| url.path().trim_end_matches('/').ends_with(route)) =>
        {
            return Err(invalid(
                "give the API's base URL, without the route (/v1/fractal)",
            ));
        }
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => return Err(invalid("it names no host")),
        Err(e) => return Err(invalid(&e.to_string())),
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

/// " (tried before: a, b)" for an error's end; nothing when none was.
fn also_tried(before: &[String]) -> String {
    if before.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = before
        .iter()
        .map(|e| crate::messaging::redact_url(e).to_string())
        .collect();
    format!(" (tried before: {})", shown.join(", "))
}

/// A client of one faafo API, reached through one of its endpoints.
#[derive(Debug, Clone)]
pub struct ApiClient {
    endpoints: Arc<[String]>,
    /// Index of the endpoint in use, shared by the clones (a failover seen
    /// by one request is followed by all).
    current: Arc<AtomicUsize>,
    /// Index of the endpoint that last answered, shared by the clones: a
    /// move is announced once the new host answers, not at every step of a
    /// round over hosts that are all down.
    answered: Arc<AtomicUsize>,
    token: Option<String>,
    request_id: Option<String>,
    /// How long one request to one host may take, answer included.
    timeout: Duration,
    http: reqwest::Client,
}

/// How long a request may take by default: long enough for the largest
/// image over a slow link, short enough that a host that hangs is passed
/// over within a minute.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A request built for one endpoint, remembered to fail over from it.
struct Call {
    endpoint: usize,
    request: reqwest::RequestBuilder,
}

impl ApiClient {
    /// A client of the API at `endpoint` (e.g. `http://127.0.0.1:5000`, or
    /// several API hosts separated by commas, tried in turn), sending
    /// `token` as `X-Auth-Token` when given.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, ApiError> {
        let endpoints = ApiEndpoints::parse(endpoint)?;
        let token = token.filter(|t| !t.is_empty());
        // Refused here, not as "an unexpected answer" of each request later.
        if token
            .as_deref()
            .is_some_and(|t| !t.is_ascii() || reqwest::header::HeaderValue::from_str(t).is_err())
        {
            return Err(ApiError::InvalidToken);
        }
        let first = endpoints.0[0].clone();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            // A redirect is reported, not followed: reqwest would carry the
            // X-Auth-Token to whatever host it names.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Unreachable {
                endpoint: first,
                reason: e.to_string(),
                tried_before: Vec::new(),
                maybe_received: false,
            })?;
        Ok(Self {
            endpoints: endpoints.0.into(),
            current: Arc::new(AtomicUsize::new(0)),
            answered: Arc::new(AtomicUsize::new(0)),
            token,
            request_id: None,
            timeout: REQUEST_TIMEOUT,
            http,
        })
    }

    /// The same client, giving up on a request to one host after `timeout`
    /// instead of [`REQUEST_TIMEOUT`] (a caller that must answer sooner).
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// The same client, sending `request_id` as `X-Request-Id` so the API's
    /// log lines carry it (it shares the connection pool).
    pub fn with_request_id(&self, request_id: &str) -> Self {
        Self {
            request_id: Some(request_id.to_string()),
            ..self.clone()
        }
    }

    /// The base URL of the API host in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// The base URLs of the API hosts this client may use.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// How many API hosts this client may use.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    fn request(&self, method: Method, path: &str) -> Call {
        let endpoint = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.endpoints[endpoint]))
            .timeout(self.timeout);
        if let Some(token) = &self.token {
            request = request.header(AUTH_HEADER, token);
        }
        if let Some(id) = &self.request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        Call { endpoint, request }
    }

    /// Moves the client from endpoint `failed` to the next one, unless
    /// another request has moved it already (concurrent failures of one
    /// host move it once).
    fn fail_over(&self, failed: usize) {
        let count = self.endpoints.len();
        if count < 2 {
            return;
        }
        let next = (failed + 1) % count;
        if self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::debug!(
                "the faafo API at {} failed; trying {}",
                crate::messaging::redact_url(&self.endpoints[failed]),
                crate::messaging::redact_url(&self.endpoints[next])
            );
        }
    }

    /// Notes that `endpoint` answered; says so once when it is another host
    /// than the one that answered before (the client moved). An answer from
    /// a host the client has left (a request sent before the move, late) is
    /// not news.
    fn answered_by(&self, endpoint: usize) {
        if endpoint != self.current.load(Ordering::Relaxed) % self.endpoints.len() {
            return;
        }
        let before = self.answered.swap(endpoint, Ordering::Relaxed);
        if before != endpoint {
            tracing::warn!(
                "the faafo API at {} failed; using {} from now on",
                crate::messaging::redact_url(&self.endpoints[before]),
                crate::messaging::redact_url(&self.endpoints[endpoint])
            );
        }
    }

    /// The error for a request to `endpoint` that got no (whole) answer,
    /// after `tried_before` (indices) did not either; the next request goes
    /// to the next endpoint.
    /// `sent_elsewhere`: a host tried before may have received it.
    fn unreachable(
        &self,
        endpoint: usize,
        tried_before: &[usize],
        sent_elsewhere: bool,
        e: &reqwest::Error,
    ) -> ApiError {
        self.fail_over(endpoint);
        ApiError::Unreachable {
            endpoint: self.endpoints[endpoint].clone(),
            reason: without_url(e),
            tried_before: tried_before
                .iter()
                .map(|&i| self.endpoints[i].clone())
                .collect(),
            maybe_received: sent_elsewhere || !e.is_connect(),
        }
    }

    /// `request`, made for another host, for `endpoint`: its URL, and its
    /// credentials (an endpoint's `user:password@`, which the request
    /// carries as an `Authorization` header: the other host's must not
    /// go to this one), the rest as it was.
    fn moved(
        &self,
        mut request: reqwest::Request,
        endpoint: usize,
        path: &str,
    ) -> Result<reqwest::Request, ApiError> {
        let query = request.url().query().map(str::to_string);
        let invalid = |reason: String| ApiError::InvalidEndpoint {
            endpoint: self.endpoints[endpoint].clone(),
            reason,
        };
        let mut fresh = self
            .http
            .request(
                request.method().clone(),
                format!("{}{path}", self.endpoints[endpoint]),
            )
            .build()
            .map_err(|e| invalid(without_url(&e)))?;
        fresh.url_mut().set_query(query.as_deref());
        for (name, value) in request.headers() {
            if name != reqwest::header::AUTHORIZATION {
                fresh.headers_mut().append(name.clone(), value.clone());
            }
        }
        *fresh.timeout_mut() = request.timeout().copied();
        *fresh.body_mut() = request.body_mut().take();
        Ok(fresh)
    }

    /// Sends `call`; a host that refuses the connection (nothing was sent
    /// to it), or that answers 502-504 or not at all within the timeout to
    /// a request that can be repeated, is left for the next at once, each
    /// host tried once. Returns the successful answer and the endpoint that
    /// gave it.
    async fn send(
        &self,
        method: Method,
        path: &str,
        call: Call,
    ) -> Result<(reqwest::Response, usize), ApiError> {
        let mut endpoint = call.endpoint;
        let mut request = call.request.build().map_err(|e| ApiError::Protocol {
            path: path.to_string(),
            reason: format!("cannot build the request: {}", without_url(&e)),
        })?;
        let mut left = self.endpoints.len() - 1;
        let mut tried = Vec::new();
        // Whether a host left for the next may have received the request.
        let mut sent_elsewhere = false;
        // A request that can be repeated (not a POST) is also sent to the
        // next host when this one answers 502-504 (a proxy in front of a
        // host that is down, an API draining for a stop) or does not answer
        // in time (a host that hangs: its database stuck, its machine
        // swapping).
        let repeatable = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        let response = loop {
            let spare = if left > 0 { request.try_clone() } else { None };
            let sent = self.http.execute(request).await;
            // A host that got the request (not a refused connection) may
            // have applied it, whatever it answered or failed to.
            let received = !matches!(&sent, Err(e) if e.is_connect());
            let elsewhere = match &sent {
                Err(e) => e.is_connect() || (repeatable && e.is_timeout()),
                Ok(response) => repeatable && another_host_may_answer(response.status().as_u16()),
            };
            match (sent, spare) {
                (_, Some(spare)) if elsewhere => {
                    sent_elsewhere |= received;
                    self.fail_over(endpoint);
                    tried.push(endpoint);
                    endpoint = (endpoint + 1) % self.endpoints.len();
                    request = self.moved(spare, endpoint, path)?;
                    left -= 1;
                }
                (Ok(response), _) => break response,
                (Err(e), _) => {
                    return Err(self.unreachable(endpoint, &tried, sent_elsewhere, &e));
                }
            }
        };
        let status = response.status();
        if !another_host_may_answer(status.as_u16()) {
            self.answered_by(endpoint);
        }
        if status.is_success() {
            return Ok((response, endpoint));
        }
        if another_host_may_answer(status.as_u16()) {
            self.fail_over(endpoint);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| crate::fractal::shorten(&String::from_utf8_lossy(l.as_bytes())));
        let text = response.text().await.unwrap_or_default();
        let mut from_api = false;
        let message = if let (true, Some(location)) = (status.is_redirection(), location) {
            format!(
                "the API redirected to {location}, which faafo does not follow (the token \
                 would go with it): give that address as the endpoint if it is the API's"
            )
        } else {
            serde_json::from_str::<ErrorBody>(&text)
                .map(|b| {
                    from_api = true;
                    b.message
                })
                .unwrap_or_else(|_| {
                    if text.is_empty() {
                        status.canonical_reason().unwrap_or("error").to_string()
                    } else {
                        text.chars().take(300).collect()
                    }
                })
        };
        Err(ApiError::Status {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            // An error page's line breaks must not become log lines.
            message: crate::configuration::one_line(&message),
            sent_elsewhere,
            from_api,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        call: Call,
    ) -> Result<T, ApiError> {
        let (response, endpoint) = self.send(method, path, call).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(endpoint, &[], false, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Protocol {
            path: path.to_string(),
            // serde quotes the value it did not expect, as the API sent it
            // (terminal escapes included): shown as text, and not whole.
            reason: crate::fractal::truncate(&crate::configuration::one_line(&e.to_string()), 300),
        })
    }

    /// `POST /v1/fractal`.
    pub async fn create(&self, fractal: &NewFractal) -> Result<Fractal, ApiError> {
        let path = "/v1/fractal";
        self.json(
            Method::POST,
            path,
            self.request(Method::POST, path).map(|r| r.json(fractal)),
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
            self.request(Method::GET, path).map(|r| r.query(query)),
        )
        .await
    }

    /// Every fractal matching `query`, over all pages, in its order.
    ///
    /// The pages follow each other by uuid (`uuid_after` the last one
    /// seen), not by number: while fractals change status, are created or
    /// deleted between two pages, numbered pages of a filtered list shift
    /// under the reader, who then misses some and sees others twice. Each
    /// fractal is seen once, as it was when its page was read; the order
    /// asked for is applied to the whole. An API older than `uuid_after`
    /// (a 400 for it, which comes with the second page, or a page that
    /// does not follow the last uuid) is paged by number instead.
    pub async fn list_all(&self, query: &ListQuery) -> Result<Vec<Fractal>, ApiError> {
        let per_page = query.results_per_page.unwrap_or(100);
        let mut out: Vec<Fractal> = Vec::new();
        // A full page: the size asked for, or the API's cap on it once a
        // page has shown it (an earlier page smaller than asked for, with
        // more left).
        let mut full_page = per_page;
        loop {
            let after = out.last().map(|f| f.uuid.clone());
            let q = ListQuery {
                page: None,
                results_per_page: Some(per_page),
                order_by: Some("uuid".into()),
                uuid_after: after.clone(),
                ..query.clone()
            };
            let result = match self.list(&q).await {
                Ok(result) => result,
                Err(e) if after.is_some() && e.status() == Some(400) => {
                    return self.list_all_by_page_number(query, per_page).await;
                }
                Err(e) => return Err(e),
            };
            if let Some(after) = &after
                && result.objects.iter().any(|f| f.uuid <= *after)
            {
                return self.list_all_by_page_number(query, per_page).await;
            }
            let (got, left) = (result.objects.len() as u64, result.num_results);
            out.extend(result.objects);
            // `num_results` counts what is left from this page on: this
            // page held it all (a page may be smaller than asked for: the
            // API caps its size). Counted apart from the page, it can be a
            // row short (one that changed between the two): a full page is
            // followed by another, empty if that was all.
            if got == 0 || (got >= left && got != full_page) {
                break;
            }
            if got < left {
                full_page = full_page.min(got);
            }
        }
        sort_as_asked(&mut out, query.order_by.as_deref());
        Ok(out)
    }

    /// [`Self::list_all`] by page numbers, for an API without `uuid_after`.
    async fn list_all_by_page_number(
        &self,
        query: &ListQuery,
        per_page: u64,
    ) -> Result<Vec<Fractal>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let q = ListQuery {
                page: Some(page),
                results_per_page: Some(per_page),
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
        self.update_at_revision(uuid, update, None).await
    }

    /// `PUT /v1/fractal/<uuid>` applied only while the fractal is still at
    /// `revision` (sent as `If-Match`): a 412 [`ApiError::Status`] if it
    /// changed since (see [`ApiError::is_stale`]), even by this very
    /// request, repeated after its answer was lost (`faafo_producer`'s
    /// `ResilientApi::update` tells that case apart). `None` (an API older
    /// than revisions gave none) sends it unconditionally.
    pub async fn update_at_revision(
        &self,
        uuid: &str,
        update: &FractalUpdate,
        revision: Option<u64>,
    ) -> Result<Fractal, ApiError> {
        let path = format!("/v1/fractal/{}", checked(uuid)?);
        let call = self.request(Method::PUT, &path).map(|r| {
            let r = r.json(update);
            match revision {
                Some(revision) => r.header(reqwest::header::IF_MATCH, format!("\"{revision}\"")),
                None => r,
            }
        });
        self.json(Method::PUT, &path, call).await
    }

    /// `PUT /v1/fractal/<uuid>` applied only to the fractal created at
    /// `created_at` (its `created_at` as the API gave it, sent as
    /// [`IF_CREATED_AT_HEADER`]): a 412 [`ApiError::Status`] if the uuid
    /// was deleted and created again since (see [`ApiError::is_stale`]).
    pub async fn update_if_created_at(
        &self,
        uuid: &str,
        created_at: &str,
        update: &FractalUpdate,
    ) -> Result<Fractal, ApiError> {
        let path = format!("/v1/fractal/{}", checked(uuid)?);
        let call = self.request(Method::PUT, &path).map(|r| {
            r.json(update)
                .header(IF_CREATED_AT_HEADER, created_at.trim())
        });
        self.json(Method::PUT, &path, call).await
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
        let call = self.request(Method::PUT, &path).map(|r| {
            r.header(reqwest::header::CONTENT_TYPE, "image/png")
                .body(png)
        });
        self.send(Method::PUT, &path, call).await.map(drop)
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
        self.store_result_of(uuid, None, png, update).await
    }

    /// [`Self::store_result`] applied only to the fractal created at
    /// `created_at` (sent as [`IF_CREATED_AT_HEADER`]): the render of a
    /// fractal deleted meanwhile never finishes another fractal created
    /// under its uuid (a 412 [`ApiError::Status`] instead, see
    /// [`ApiError::is_stale`]). An API older than the header ignores it.
    pub async fn store_result_if_created_at(
        &self,
        uuid: &str,
        created_at: &str,
        png: Vec<u8>,
        update: &FractalUpdate,
    ) -> Result<Fractal, ApiError> {
        self.store_result_of(uuid, Some(created_at), png, update)
            .await
    }

    async fn store_result_of(
        &self,
        uuid: &str,
        created_at: Option<&str>,
        png: Vec<u8>,
        update: &FractalUpdate,
    ) -> Result<Fractal, ApiError> {
        let path = format!("/v1/fractal/{}/image", checked(uuid)?);
        let call = self.request(Method::PUT, &path).map(|r| {
            let r = r
                .query(update)
                .header(reqwest::header::CONTENT_TYPE, "image/png")
                .body(png);
            match created_at {
                Some(created_at) => r.header(IF_CREATED_AT_HEADER, created_at.trim()),
                None => r,
            }
        });
        self.json(Method::PUT, &path, call).await
    }

    /// `GET /fractal/<uuid>`: the PNG, checked against the sha256 the API
    /// sends as its ETag.
    pub async fn image(&self, uuid: &str) -> Result<Vec<u8>, ApiError> {
        let path = format!("/fractal/{}", checked(uuid)?);
        let call = self.request(Method::GET, &path);
        let (response, endpoint) = self.send(Method::GET, &path, call).await?;
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
            // A proxy that compresses may weaken it (`W/"..."`): still the
            // checksum.
            .map(|v| {
                let v = v.trim();
                v.strip_prefix("W/")
                    .unwrap_or(v)
                    .trim_matches('"')
                    .to_ascii_lowercase()
            });
        let png = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.unreachable(endpoint, &[], false, &e))?;
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

/// Whether an answer with `status` (502, 503, 504) says this host cannot
/// serve now and another may: a proxy or load balancer in front of a host
/// that is down, or an API draining for a stop.
fn another_host_may_answer(status: u16) -> bool {
    (502..=504).contains(&status)
}

impl Call {
    fn map(self, build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        Call {
            endpoint: self.endpoint,
            request: build(self.request),
        }
    }
}

/// Whether `text` is a fractal's uuid in the API's form (8-4-4-4-12 hex
/// digits, hyphenated): the only form that goes into a request's path.
pub fn is_fractal_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::try_parse(text).is_ok()
}

/// `uuid` if it [is a fractal's uuid](is_fractal_uuid): only then does it
/// go into a request's path (`../healthz` would not stay in
/// `/v1/fractal/`).
fn checked(uuid: &str) -> Result<&str, ApiError> {
    if is_fractal_uuid(uuid) {
        Ok(uuid)
    } else {
        // Shortened, as the API does: it may be anything a user typed.
        Err(ApiError::InvalidUuid(crate::fractal::shorten(uuid)))
    }
}

/// reqwest's message without the URL it repeats (the endpoint is shown
/// once by the error that wraps it); a failed connection in the system's
/// words only ("Connection refused (os error 111)"), not with hyper's
/// layers around them ("client error (Connect): tcp connect error: ...").
fn without_url(e: &reqwest::Error) -> String {
    if e.is_connect() && !e.is_timeout() {
        let mut deepest = std::error::Error::source(e);
        while let Some(next) = deepest.and_then(std::error::Error::source) {
            deepest = Some(next);
        }
        if let Some(cause) = deepest {
            return format!("connection failed: {cause}");
        }
    }
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

/// Sorts `fractals` by `order_by` as the API would (`created_at` by
/// default; ties broken by uuid). Timestamps compare as text: the API
/// writes them all in one fixed-width form.
fn sort_as_asked(fractals: &mut [Fractal], order_by: Option<&str>) {
    let order_by = order_by.unwrap_or("created_at");
    let (descending, key) = match order_by.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, order_by),
    };
    fractals.sort_by(|a, b| {
        let by_key = match key {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "uuid" => std::cmp::Ordering::Equal,
            _ => a.created_at.cmp(&b.created_at),
        };
        let ordering = by_key.then_with(|| a.uuid.cmp(&b.uuid));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{ApiClient, ApiEndpoints, ApiError, ListQuery, checked};
    use crate::fractal::{Fractal, FractalPage, FractalStatus, FractalUpdate, NewFractal};

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
            sent_elsewhere: false,
            from_api: true,
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

    /// A redirect is an error that names where it points, not a request
    /// sent there (with the token).
    #[tokio::test]
    async fn a_redirect_is_reported_not_followed() {
        let (endpoint, server) =
            answering(&["301 Moved Permanently\r\nlocation: http://127.0.0.1:9/v1/fractal"]).await;
        let api = ApiClient::new(&endpoint, Some("secret".into())).expect("client");
        let e = api
            .list(&super::ListQuery::default())
            .await
            .expect_err("a redirect");
        let shown = e.to_string();
        assert_eq!(e.status(), Some(301), "{shown}");
        assert!(
            shown.contains("redirected to http://127.0.0.1:9/v1/fractal"),
            "{shown}"
        );
        server.await.expect("server");
    }

    /// A server on a port of its own answering each request in turn with
    /// the given status lines, then gone; and its endpoint.
    async fn answering(statuses: &'static [&'static str]) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            for status in statuses {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                socket.write_all(answer.as_bytes()).await.expect("answer");
            }
        });
        (endpoint, server)
    }

    /// A token that cannot be a header (a stray newline from a file) is
    /// refused when the client is made, without showing it.
    #[test]
    fn a_token_that_cannot_be_sent_is_refused_at_once() {
        let error =
            ApiClient::new("http://127.0.0.1:5000", Some("s3cret\n".into())).expect_err("refused");
        assert!(matches!(error, ApiError::InvalidToken), "{error:?}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        assert!(!error.is_transient() && !error.may_have_applied());
        let error =
            ApiClient::new("http://127.0.0.1:5000", Some("sécret".into())).expect_err("refused");
        assert!(matches!(error, ApiError::InvalidToken), "{error:?}");
        ApiClient::new("http://127.0.0.1:5000", Some("s3cret".into())).expect("a good token");
    }

    /// Each host gets its own credentials (`user:password@` in its
    /// endpoint), also when a request moves to it from a host that failed:
    /// the first host's password is not sent to the second.
    #[tokio::test]
    async fn a_request_moved_to_another_host_carries_that_hosts_credentials() {
        use base64::Engine;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let b = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.expect("read");
            socket
                .write_all(
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .expect("answer");
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        // Nothing listens on port 9 (discard) here.
        let api = ApiClient::new(
            &format!("http://alice:secret-a@127.0.0.1:9,http://alice:secret-b@{b}"),
            Some("token-1".into()),
        )
        .expect("client");
        api.delete("01a20784-fe99-72fe-a554-9a9b678b0fe0")
            .await
            .expect("a refuses, b answers");
        let received = server.await.expect("b").to_ascii_lowercase();
        let basic = |password: &str| {
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"))
        };
        assert!(
            received.contains(
                &format!("authorization: basic {}", basic("secret-b")).to_ascii_lowercase()
            ),
            "b's own credentials: {received}"
        );
        assert!(
            !received.contains(&basic("secret-a").to_ascii_lowercase()),
            "a's password went to b: {received}"
        );
        assert!(received.contains("x-auth-token: token-1"), "{received}");
        assert!(received.starts_with("delete /v1/fractal/"), "{received}");
    }

    /// A listing whose count was taken a row short (a fractal came into
    /// the filter between the count and the page) still lists that row: a
    /// full page is followed by another.
    #[tokio::test]
    async fn a_count_a_row_short_does_not_end_the_listing() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fractal = |n: u32| Fractal {
            uuid: format!("01a20784-fe99-72fe-a554-00000000000{n}"),
            width: 8,
            height: 8,
            iterations: 16,
            xa: -1.0,
            xb: 1.0,
            ya: -1.0,
            yb: 1.0,
            seed: None,
            c_re: None,
            c_im: None,
            status: FractalStatus::Pending,
            error: None,
            attempts: 0,
            duration: None,
            checksum: None,
            size: None,
            generated_by: None,
            created_at: "2026-11-24T00:00:00Z".into(),
            updated_at: "2026-11-24T00:00:00Z".into(),
            revision: Some(1),
        };
        let page = |num_results: u64, objects: Vec<Fractal>| FractalPage {
            num_results,
            objects,
            page: 1,
            total_pages: 1,
        };
        // Pages of 2 asked for. Counted 2, then 3 had come: the first
        // page is full (2 of 2). Then 4 asked for where the API gives 2 at
        // most: counted 2 left, 3 had come, the second page full at the
        // API's size.
        for (per_page, pages) in [
            (
                2,
                vec![
                    page(2, vec![fractal(1), fractal(2)]),
                    page(1, vec![fractal(3)]),
                ],
            ),
            (
                4,
                vec![
                    page(4, vec![fractal(1), fractal(2)]),
                    page(2, vec![fractal(3), fractal(4)]),
                    page(1, vec![fractal(5)]),
                ],
            ),
        ] {
            let rows = pages.iter().map(|p| p.objects.len()).sum::<usize>() as u32;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("listen");
            let endpoint = format!("http://{}", listener.local_addr().expect("address"));
            let server = tokio::spawn(async move {
                for page in pages {
                    let (mut socket, _) = listener.accept().await.expect("accept");
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let body = serde_json::to_string(&page).expect("json");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    socket.write_all(answer.as_bytes()).await.expect("answer");
                }
            });
            let api = ApiClient::new(&endpoint, None).expect("client");
            let query = ListQuery {
                results_per_page: Some(per_page),
                ..ListQuery::default()
            };
            let all = api.list_all(&query).await.expect("list");
            assert_eq!(
                all.iter().map(|f| f.uuid.clone()).collect::<Vec<_>>(),
                (1..=rows).map(|n| fractal(n).uuid).collect::<Vec<_>>(),
                "{per_page} a page"
            );
            server.await.expect("server");
        }
    }

    /// Several endpoints: a host that refuses connections, or answers 503
    /// to a request that can be repeated, is left for the next within the
    /// same request, and the client (and its clones) stays there; a 503 to
    /// a POST is the caller's to retry, the client moved for the next
    /// request; when none can be reached, each is tried once.
    #[tokio::test]
    async fn a_failing_host_moves_the_client_to_the_next() {
        let uuid = "01a20784-fe99-72fe-a554-9a9b678b0fe0";
        let (b, b_server) = answering(&[
            "204 No Content",
            "204 No Content",
            "503 Service Unavailable",
        ])
        .await;
        let (c, c_server) = answering(&["204 No Content", "503 Service Unavailable"]).await;
        // Nothing listens on port 9 (discard) here.
        let a = "http://127.0.0.1:9";
        let api = ApiClient::new(&format!("{a}/, {b},{c}"), None).expect("client");
        assert_eq!(api.endpoint_count(), 3);
        assert_eq!(
            api.endpoint(),
            a,
            "the first is used first, without its slash"
        );
        let clone = api.with_request_id("req-1");
        api.delete(uuid).await.expect("a refuses, b answers");
        assert_eq!(clone.endpoint(), b, "the clones follow");
        clone.delete(uuid).await.expect("b answers again");
        assert_eq!(api.endpoint(), b, "an answer keeps the host");
        api.delete(uuid)
            .await
            .expect("b is draining (503), c answers the same DELETE");
        assert_eq!(api.endpoint(), c);
        // Any body: c answers 503 whatever it is.
        let new: NewFractal = serde_json::from_str(
            r#"{"width": 2, "height": 2, "iterations": 16, "xa": -1, "xb": 1, "ya": -1, "yb": 1}"#,
        )
        .expect("a new fractal");
        let error = api.create(&new).await.expect_err("c is draining");
        assert_eq!(error.status(), Some(503), "a POST is not sent twice");
        assert!(error.moves_to_another_host());
        assert_eq!(api.endpoint(), a);
        b_server.await.expect("b");
        c_server.await.expect("c");
        // Nobody left: a, b and c are each tried once, and the error names
        // them all.
        let error = api.delete(uuid).await.expect_err("all gone");
        assert!(
            matches!(&error, ApiError::Unreachable { endpoint, tried_before, .. }
                if *endpoint == c && *tried_before == [a.to_string(), b.clone()]),
            "the last tried is named, the others too: {error:?}"
        );
        assert!(
            error
                .to_string()
                .ends_with(&format!("(tried before: {a}, {b})")),
            "{error}"
        );
        assert!(error.moves_to_another_host());
        assert_eq!(api.endpoint(), a);
    }

    /// Moving to another host is said once, when that host answers: not
    /// at every step of rounds over hosts that are all down (a log line
    /// each, contradicting the one before).
    #[tokio::test]
    async fn a_move_is_logged_once_when_the_new_host_answers() {
        use std::sync::{Arc, Mutex};
        /// Collects the formatted log lines.
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let uuid = "01a20784-fe99-72fe-a554-9a9b678b0fe0";
        // Nothing listens on ports 9 (discard) and 13 (daytime) here.
        let api = ApiClient::new("http://127.0.0.1:9,http://127.0.0.1:13", None).expect("client");
        for _ in 0..10 {
            api.delete(uuid).await.expect_err("both down");
        }
        let (b, b_server) = answering(&["204 No Content"]).await;
        let api = ApiClient::new(&format!("http://127.0.0.1:9,{b}"), None).expect("client");
        api.delete(uuid).await.expect("a refuses, b answers");
        b_server.await.expect("b");
        // An answer from a host the client has left (sent before the move,
        // late) is not news; the move is said when the new host answers.
        let late = ApiClient::new("http://x:1,http://y:1", None).expect("client");
        late.fail_over(0);
        late.answered_by(0);
        late.answered_by(1);
        late.answered_by(0);
        late.answered_by(1);
        let logged = String::from_utf8_lossy(&lines.0.lock().expect("lines")).to_string();
        let moves: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains("from now on"))
            .collect();
        assert_eq!(moves.len(), 2, "{logged}");
        assert!(
            moves[1].contains("http://x:1 failed; using http://y:1 from now on"),
            "{logged}"
        );
        assert!(
            moves[0].contains(&format!("using {b} from now on")),
            "{logged}"
        );
    }

    /// A host that takes the request and never answers: a request that
    /// can be repeated goes to the next host once the timeout is over; a
    /// POST is not sent twice (the first host may still create it).
    #[tokio::test]
    async fn a_host_that_does_not_answer_is_passed_over() {
        use std::time::Duration;
        use tokio::io::AsyncReadExt;
        let uuid = "01a20784-fe99-72fe-a554-9a9b678b0fe0";
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let a = format!("http://{}", silent.local_addr().expect("address"));
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut socket, _)) = silent.accept().await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                held.push(socket);
            }
        });
        let (b, b_server) = answering(&["204 No Content"]).await;
        // Long enough for b to answer on a loaded machine.
        let api = ApiClient::new(&format!("{a},{b}"), None)
            .expect("client")
            .with_timeout(Duration::from_secs(2));
        api.delete(uuid).await.expect("a is silent, b answers");
        assert_eq!(api.endpoint(), b, "the client stays on b");
        b_server.await.expect("b");
        let new: NewFractal = serde_json::from_str(
            r#"{"width": 2, "height": 2, "iterations": 16, "xa": -1, "xb": 1, "ya": -1, "yb": 1}"#,
        )
        .expect("a new fractal");
        // Nothing listens on port 9 (discard) here.
        let two = ApiClient::new(&format!("{a},http://127.0.0.1:9"), None)
            .expect("client")
            .with_timeout(Duration::from_millis(300));
        let error = two.create(&new).await.expect_err("a is silent");
        assert!(
            matches!(&error, ApiError::Unreachable { endpoint, .. } if *endpoint == a),
            "the POST went to a only: {error}"
        );
        let single = ApiClient::new(&a, None)
            .expect("client")
            .with_timeout(Duration::from_millis(300));
        let error = single.get(uuid).await.expect_err("nobody answers");
        assert!(error.to_string().contains("timed out"), "{error}");
        hold.abort();
    }

    /// Requests that fail together on one host move the client once, not
    /// once each (which would skip the next host).
    #[test]
    fn concurrent_failures_of_one_host_move_once() {
        let api = ApiClient::new("http://a:1,http://b:1,http://c:1", None).expect("client");
        api.fail_over(0);
        api.fail_over(0);
        assert_eq!(api.endpoint(), "http://b:1");
        let single = ApiClient::new("http://a:1", None).expect("client");
        single.fail_over(0);
        assert_eq!(single.endpoint(), "http://a:1");
    }

    /// Several endpoints parse into a list; a list with an empty or a
    /// non-HTTP member is refused, naming it.
    #[test]
    fn endpoint_lists_parse() {
        let parsed = ApiEndpoints::parse(" http://a:5000/ ,http://b").expect("two");
        assert_eq!(parsed.as_slice(), ["http://a:5000", "http://b"]);
        // Behind a proxy, under a path of its own.
        let parsed = ApiEndpoints::parse("http://h/faafo/,http://h/v1x").expect("prefixes");
        assert_eq!(parsed.as_slice(), ["http://h/faafo", "http://h/v1x"]);
        for (bad, named) in [
            ("http://a:5000,", ""),
            ("http://a,https://b", "https://b"),
            ("http://a,http://", "http://"),
            ("http://a,http://h:5801/v1", "http://h:5801/v1"),
            ("http://h/faafo/v1/", "http://h/faafo/v1/"),
        ] {
            let error = ApiEndpoints::parse(bad).expect_err(bad);
            assert!(
                matches!(&error, ApiError::InvalidEndpoint { endpoint, .. } if endpoint == named),
                "{bad}: {error}"
            );
        }
        let error = ApiEndpoints::parse("http://h:5801/v1").expect_err("/v1");
        assert!(
            error
                .to_string()
                .ends_with("give the API's base URL, without /v1"),
            "{error}"
        );
        for route in ["http://h:5801/v1/fractal", "http://h:5801/api/fractal/"] {
            let error = ApiEndpoints::parse(route).expect_err(route);
            assert!(
                error
                    .to_string()
                    .ends_with("give the API's base URL, without the route (/v1/fractal)"),
                "{error}"
            );
        }
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
