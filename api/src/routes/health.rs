//! Liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `alive` or `ready`.
    pub status: &'static str,
}

/// `GET /healthz`: the process answers (it checks nothing else).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "alive" })
}

/// `GET /readyz`: the database answers `SELECT 1`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer", body = crate::openapi::schema::ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.db.ping().await.map_err(|e| {
        // Anyone may ask: the answer names the kind of database (the
        // start-up log line names its URL, without the password).
        ApiError::Unavailable(format!(
            "the {} database does not answer: {e}",
            state.db.backend().name()
        ))
    })?;
    Ok(Json(Health { status: "ready" }))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counts = match state.db.count_by_status().await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!("metrics: cannot count fractals: {e}");
            None
        }
    };
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(counts.as_deref()),
    )
}

/// `GET /openapi.json`: the OpenAPI 3 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        crate::openapi::document(&state.settings),
    )
}

/// Fallback: 404 for a path no route serves: JSON, or a page for a
/// browser that asked for one outside `/v1` (`/index`, `/show/<uuid>/`).
pub async fn not_found(headers: axum::http::HeaderMap, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = format!(
        "no such page: {}",
        crate::domain::fractal_id::shorten(uri.path())
    );
    let browser = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser && !uri.path().starts_with("/v1/") {
        crate::web::not_found(&message)
    } else {
        ApiError::NotFound(message).into_response()
    }
}

/// Fallback: 405 JSON for a method a route does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        crate::domain::fractal_id::shorten(method.as_str()),
        crate::domain::fractal_id::shorten(uri.path())
    ))
}
