//! Every error the API answers, as `{"code": <status>, "message": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use faafo_common::fractal::ErrorBody;

use crate::db::DbError;
use crate::domain::{Conflict, Invalid};
use crate::images::ImageStoreError;

/// An error answer. Client errors carry a message for the client; server
/// errors are logged in full and answered with a generic message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad JSON, bad query string, bad id).
    #[error("{0}")]
    BadRequest(String),
    /// 401: a write (or, with protect_reads, a read) without a valid token.
    #[error("this request needs a valid X-Auth-Token header")]
    Unauthorized,
    /// 404: no such fractal or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the body stopped arriving (the connection is closed).
    #[error("{0}")]
    RequestTimeout(String),
    /// 409: contradicts the current state (duplicate uuid, final result).
    #[error("{0}")]
    Conflict(String),
    /// 412: an `If-Match` naming a revision the fractal has left.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: body larger than max_body_size.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: wrong Content-Type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid (unknown fields, wrong types, out of range).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the database is unreachable, or a write lost too many races;
    /// worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or a broken store; the details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::Internal(_) => "internal error; the API's log has the details".to_string(),
            other => other.to_string(),
        };
        ErrorBody {
            code: self.status().as_u16(),
            message,
        }
    }

    /// 404 for the fractal `id`.
    pub fn no_fractal(id: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("no fractal {id}"))
    }

    /// Logs a server-side error (a 500 in full, a 503 as a warning): the
    /// operator's record of what a client was only told in short.
    pub fn log(&self) {
        match self {
            ApiError::Internal(detail) => tracing::error!("{detail}"),
            ApiError::Unavailable(detail) => tracing::warn!("{detail}"),
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::RequestTimeout(_)) {
            // The rest of the body may still come: the connection cannot
            // carry another request.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

impl From<Conflict> for ApiError {
    fn from(e: Conflict) -> Self {
        ApiError::Conflict(e.0)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            DbError::Duplicate => {
                ApiError::Conflict("a fractal with this uuid exists already".into())
            }
            DbError::TooLarge => ApiError::PayloadTooLarge(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ImageStoreError> for ApiError {
    fn from(e: ImageStoreError) -> Self {
        match e {
            ImageStoreError::Db(db) => db.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
