//! One span and one log line per request, in the spirit of the original's
//! werkzeug line (`127.0.0.1 "POST /api/fractal HTTP/1.1" 201 0.8ms`), and
//! the request metrics.
//!
//! The span's `request_id` is the caller's `X-Request-Id` when it looks
//! sane, else a new `req-<uuid>`; every log line of the request carries it
//! and the answer returns it in `X-Request-Id`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use faafo_common::messaging::new_request_id;
use tracing::Instrument;

use crate::state::AppState;

/// The request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Middleware: span, log line, metrics, `X-Request-Id`.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane(id))
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "-".into());
    let method = request.method().clone();
    // A method is any token, of any length (up to the header buffer):
    // cut like the target, or one request writes a line of 400 KB.
    let shown_method = crate::domain::fractal_id::shorten(method.as_str());
    let version = request.version();
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| crate::domain::fractal_id::shorten(pq.as_str()))
        .unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    // Reads that succeed are the bulk (pages, images, a producer's polls
    // every poll_interval): debug lines. Writes and errors stay info.
    let quiet = matches!(method, Method::GET | Method::HEAD) && status < 400;
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if quiet {
            tracing::debug!("{peer} \"{shown_method} {target} {version:?}\" {status} {ms:.2}ms");
        } else {
            tracing::info!("{peer} \"{shown_method} {target} {version:?}\" {status} {ms:.2}ms");
        }
    });
    state.metrics.observe(
        &method,
        route.as_deref().unwrap_or(UNMATCHED),
        status,
        elapsed,
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// 1 to 128 characters among letters, digits, `-`, `_`, `.` and `:`.
fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn request_ids() {
        assert!(is_sane("req-6f1c2a1e-0000-4000-8000-000000000000"));
        assert!(!is_sane(""));
        assert!(!is_sane("a b"));
        assert!(!is_sane("x\"]; DROP"));
        assert!(!is_sane(&"x".repeat(129)));
    }
}
