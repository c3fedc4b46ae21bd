//! Extractors whose rejections are [`ApiError`]s, so malformed input gets
//! the same JSON errors as everything else.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::FractalId;
use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json` (else 415), within the
/// body limit (else 413), syntactically JSON (else 400) and of the
/// expected shape (else 422: unknown fields, wrong types, missing fields).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)").to_string());
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {}",
                content_type.map_or("none".to_string(), |c| crate::domain::fractal_id::shorten(
                    &c
                ))
            )));
        }
        let bytes = body_bytes(req, state).await?;
        let malformed = |e: serde_json::Error| ApiError::BadRequest(format!("malformed JSON: {e}"));
        // serde would take an array for a struct (fields by position): only
        // an object is a body.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(malformed)?;
            return Err(ApiError::Unprocessable(
                "invalid body: expected a JSON object".into(),
            ));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::Unprocessable(format!("invalid body: {e}"))
            }
            _ => malformed(e),
        })?;
        Ok(JsonBody(value))
    }
}

/// Whether a Content-Type is JSON (`application/json`, `application/x+json`,
/// with or without parameters).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The whole body, 413 past the limit, 408 when it stops arriving.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(e) if is_length_limit(&e) => {
                ApiError::PayloadTooLarge(
                    "the request body is larger than the API accepts (max_body_size)".into(),
                )
            }
            BytesRejection::FailedToBufferBody(e) if is_timeout(&e) => {
                ApiError::RequestTimeout(format!(
                    "the request body stopped arriving for {} s",
                    crate::startup::BODY_READ_TIMEOUT.as_secs()
                ))
            }
            other => ApiError::BadRequest(format!(
                "cannot read the request body: {}",
                other.body_text()
            )),
        })
}

fn is_length_limit(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(
        e,
        axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)
    )
}

/// Whether the body was given up on by the connection's
/// [`BODY_READ_TIMEOUT`](crate::startup::BODY_READ_TIMEOUT).
fn is_timeout(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The `{uuid}` of a path, parsed (400 when it is not a UUID).
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub FractalId);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        FractalId::parse(&text)
            .map(PathId)
            .map_err(|e| ApiError::BadRequest(e.0))
    }
}

/// A query string of the expected shape: the collection's filters
/// ([`crate::domain::list::ListParams`]), or the update sent with an
/// image ([`faafo_common::fractal::FractalUpdate`]). Unknown or repeated keys and bad values: 400.
#[derive(Debug, Clone)]
pub struct QueryString<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryString<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryString(value))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
    }
}
