//! `auth_strategy = token`: writes need an `X-Auth-Token` from the
//! configured list (reads too with `protect_reads`). Tokens are compared in
//! constant time and never logged.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::settings::AuthPolicy;
use crate::state::AppState;

/// The header carrying the token.
pub const AUTH_HEADER: &str = faafo_common::api_client::AUTH_HEADER;

/// Middleware: answers 401 to a request the policy does not let through.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // The web pages, which a browser opens.
    let page = crate::web::is_page(request.uri().path());
    if allowed(
        &state.settings.auth,
        request.method(),
        request.headers().get(AUTH_HEADER).map(|v| v.as_bytes()),
    ) {
        let mut response = next.run(request).await;
        if let AuthPolicy::Token {
            protect_reads: true,
            ..
        } = state.settings.auth
        {
            keep_out_of_shared_caches(&mut response);
        }
        response
    } else {
        let mut response = if page {
            crate::web::unauthorized()
        } else {
            ApiError::Unauthorized.into_response()
        };
        // A 401 names its scheme (RFC 9110): here, a token in a header.
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static(CHALLENGE),
        );
        response
    }
}

/// The `WWW-Authenticate` of a 401: the scheme (a token) and its header.
pub const CHALLENGE: &str = r#"Token realm="faafo-api", header="X-Auth-Token""#;

/// With `protect_reads`, what a token opened must not be served by a
/// shared cache (a proxy in front of the API) to a request without one:
/// `X-Auth-Token` is not `Authorization`, which such caches know to keep
/// private. `Cache-Control: private`, before the route's own policy if it
/// set one (an image's says private itself), and `Vary: X-Auth-Token`.
fn keep_out_of_shared_caches(response: &mut Response) {
    use axum::http::header::{CACHE_CONTROL, HeaderValue, VARY};
    let headers = response.headers_mut();
    let policy = headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok());
    match policy {
        None => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
        // A route's own policy (a page's `no-cache`), kept private too.
        Some(policy) if !policy.contains("private") && !policy.contains("no-store") => {
            if let Ok(private) = HeaderValue::from_str(&format!("private, {policy}")) {
                headers.insert(CACHE_CONTROL, private);
            }
        }
        Some(_) => {}
    }
    headers.append(VARY, HeaderValue::from_static(AUTH_HEADER));
}

/// Whether `policy` lets a request with this method and token through.
pub fn allowed(policy: &AuthPolicy, method: &Method, token: Option<&[u8]>) -> bool {
    match policy {
        AuthPolicy::NoAuth => true,
        AuthPolicy::Token {
            tokens,
            protect_reads,
        } => {
            let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
            if read && !protect_reads {
                return true;
            }
            // Digests compared, each of them: the time taken tells
            // neither a token's length nor which one matched.
            token.is_some_and(|given| {
                let given = faafo_common::fractal::sha256(given);
                tokens.iter().fold(false, |found, t| {
                    found | constant_time_eq(&faafo_common::fractal::sha256(t.as_bytes()), &given)
                })
            })
        }
    }
}

/// Compares two digests without an early exit on the first differing
/// byte.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(protect_reads: bool) -> AuthPolicy {
        AuthPolicy::Token {
            tokens: vec!["s3cret".into(), "other".into()],
            protect_reads,
        }
    }

    #[test]
    fn writes_need_a_known_token() {
        let p = token(false);
        assert!(allowed(&p, &Method::GET, None));
        assert!(!allowed(&p, &Method::POST, None));
        assert!(!allowed(&p, &Method::PUT, Some(b"s3cre")));
        assert!(!allowed(&p, &Method::DELETE, Some(b"s3cret ")));
        assert!(allowed(&p, &Method::DELETE, Some(b"other")));
        assert!(allowed(&AuthPolicy::NoAuth, &Method::POST, None));
    }

    #[test]
    fn protected_reads() {
        let p = token(true);
        assert!(!allowed(&p, &Method::GET, None));
        assert!(allowed(&p, &Method::GET, Some(b"s3cret")));
    }
}
