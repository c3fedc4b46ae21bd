//! The routes, and the router that puts them together with the
//! middleware: request span and log line (outermost), body limit, and
//! token auth on the fractal routes and pages.

pub mod fractals;
pub mod health;
pub mod images;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::Response;
use axum::routing::{get, put};

use crate::state::AppState;
use crate::{auth, request_log, web};

/// The whole application.
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/v1/fractal", get(fractals::list).post(fractals::create))
        .route(
            "/v1/fractal/{uuid}",
            get(fractals::show)
                .put(fractals::update)
                .delete(fractals::delete),
        )
        .route("/v1/fractal/{uuid}/image", put(images::upload))
        .route("/api/fractal", get(fractals::list).post(fractals::create))
        .route(
            "/api/fractal/{uuid}",
            get(fractals::show)
                .put(fractals::update)
                .delete(fractals::delete),
        )
        .route("/api/fractal/{uuid}/image", put(images::upload))
        .route("/fractal/{uuid}", get(images::image))
        .route(web::PAGE_ROUTES[0], get(web::index))
        .route(web::PAGE_ROUTES[1], get(web::index_page))
        .route(web::PAGE_ROUTES[2], get(web::show))
        .route(web::PAGE_ROUTES[3], get(web::status_page))
        // Inside the token check, which makes the policy private.
        .route_layer(map_response(no_cache_by_default))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        // The page's script holds no data: public even with protect_reads.
        .route(web::LIVE_JS_PATH, get(web::live_script))
        .route_layer(map_response(no_cache_by_default));
    guarded
        .merge(open)
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_size))
        .layer(map_response(no_sniffing))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(from_fn_with_state(state.clone(), request_log::track))
        .with_state(state)
}

/// A handler that panicked (a bug) is a 500 like any other, logged with
/// the panic's message and counted in the request log and the metrics;
/// without this, its connection was dropped without an answer or a trace.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    axum::response::IntoResponse::into_response(crate::error::ApiError::Internal(format!(
        "a request's handler panicked: {what}"
    )))
}

/// An answer without a cache policy of its own (the JSON of fractals and
/// lists, errors, `/readyz`, `/metrics`) is revalidated each time, never
/// served from a cache as it was: a shared cache in front of the API
/// (which stores such answers for minutes by default) would show stale
/// statuses to `faafo create --wait` and an old "ready" to a health check.
async fn no_cache_by_default(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    response
}

/// Every answer is what its Content-Type says: a browser must not guess
/// HTML in an error that echoes a client's input.
async fn no_sniffing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::panicked;

    #[test]
    fn a_panic_is_a_500_with_the_generic_message() {
        for panic in [
            Box::new("boom") as Box<dyn std::any::Any + Send>,
            Box::new(String::from("boom")),
            Box::new(7u8),
        ] {
            let response = panicked(panic);
            assert_eq!(
                response.status(),
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            );
        }
    }
}
