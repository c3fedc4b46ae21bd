//! Bad input: a clear 4xx, never a 500, and nothing changes.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use std::time::Duration;

use crate::helpers::{Backend, TestApp, error_of, new_fractal, spawn_app, spawn_app_with};

const MAX_BODY: u64 = 256 * 1024;

/// A bad request: name, path, content type, body, expected status, a word of the message.
type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16, &'a str);

async fn app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |c| {
        c.api.max_body_size = MAX_BODY;
        c.default.pixel_limit = 1 << 20;
        c.default.iteration_limit = 1000;
    })
    .await
}

fn valid() -> Value {
    serde_json::to_value(new_fractal(64, 48, None)).expect("json")
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

/// Sends a raw request; returns status and body text.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = app.http.request(method, app.at(path)).body(body);
    if let Some(ct) = content_type {
        request = request.header(CONTENT_TYPE, ct);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn bad_bodies_get_clear_4xx_and_change_nothing() {
    let app = app().await;
    let existing = app
        .api
        .create(&new_fractal(16, 16, None))
        .await
        .expect("create");
    let before = app.snapshot().await;
    let post = "/v1/fractal";
    let put = format!("/v1/fractal/{}", existing.uuid);
    let json_ct = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            "no content type",
            post.into(),
            None,
            valid().to_string().into_bytes(),
            415,
            "Content-Type",
        ),
        (
            "text/plain",
            post.into(),
            Some("text/plain"),
            valid().to_string().into_bytes(),
            415,
            "application/json",
        ),
        (
            "form",
            post.into(),
            Some("application/x-www-form-urlencoded"),
            b"width=2".to_vec(),
            415,
            "application/json",
        ),
        (
            "empty",
            post.into(),
            json_ct,
            Vec::new(),
            400,
            "malformed JSON",
        ),
        (
            "truncated",
            post.into(),
            json_ct,
            b"{\"width\": 2".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "invalid UTF-8",
            post.into(),
            json_ct,
            b"{\"uuid\": \"\xff\xfe\"}".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "NaN",
            post.into(),
            json_ct,
            br#"{"width":64,"height":48,"iterations":9,"xa":NaN,"xb":1,"ya":0,"yb":1}"#.to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "1e400",
            post.into(),
            json_ct,
            br#"{"width":64,"height":48,"iterations":9,"xa":1e400,"xb":1,"ya":0,"yb":1}"#.to_vec(),
            400,
            "out of range",
        ),
        (
            "deep nesting",
            post.into(),
            json_ct,
            ("[".repeat(10_000) + &"]".repeat(10_000)).into_bytes(),
            422,
            "expected a JSON object",
        ),
        (
            "deep and unclosed",
            post.into(),
            json_ct,
            "[".repeat(100_000).into_bytes(),
            400,
            "malformed JSON",
        ),
        (
            "deep in a field",
            post.into(),
            json_ct,
            (String::from("{\"uuid\":") + &"[".repeat(10_000)).into_bytes(),
            422,
            "invalid type",
        ),
        (
            "an array",
            post.into(),
            json_ct,
            b"[]".to_vec(),
            422,
            "expected a JSON object",
        ),
        (
            "fields by position",
            post.into(),
            json_ct,
            b"[null, 64, 48, 9, 0, 1, 0, 1]".to_vec(),
            422,
            "expected a JSON object",
        ),
        (
            "null",
            post.into(),
            json_ct,
            b"null".to_vec(),
            422,
            "expected a JSON object",
        ),
        (
            "put: fields by position",
            put.clone(),
            json_ct,
            b"[null, null]".to_vec(),
            422,
            "expected a JSON object",
        ),
        (
            "unknown field",
            post.into(),
            json_ct,
            with("colour", json!("red")).to_string().into_bytes(),
            422,
            "unknown field `colour`",
        ),
        (
            "missing field",
            post.into(),
            json_ct,
            br#"{"width":64}"#.to_vec(),
            422,
            "missing field",
        ),
        (
            "string width",
            post.into(),
            json_ct,
            with("width", json!("64")).to_string().into_bytes(),
            422,
            "invalid type",
        ),
        (
            "negative width",
            post.into(),
            json_ct,
            with("width", json!(-64)).to_string().into_bytes(),
            422,
            "invalid value",
        ),
        (
            "huge width",
            post.into(),
            json_ct,
            with("width", json!(1u64 << 40)).to_string().into_bytes(),
            422,
            "invalid value",
        ),
        (
            "width 1",
            post.into(),
            json_ct,
            with("width", json!(1)).to_string().into_bytes(),
            422,
            "width must be at least 2",
        ),
        (
            "height 0",
            post.into(),
            json_ct,
            with("height", json!(0)).to_string().into_bytes(),
            422,
            "height must be at least 2",
        ),
        (
            "pixel cap",
            post.into(),
            json_ct,
            with("width", json!(100_000)).to_string().into_bytes(),
            422,
            "exceeds the limit",
        ),
        (
            "iterations 0",
            post.into(),
            json_ct,
            with("iterations", json!(0)).to_string().into_bytes(),
            422,
            "iterations",
        ),
        (
            "iteration cap",
            post.into(),
            json_ct,
            with("iterations", json!(1001)).to_string().into_bytes(),
            422,
            "iterations",
        ),
        (
            "xa >= xb",
            post.into(),
            json_ct,
            with("xa", json!(5.0)).to_string().into_bytes(),
            422,
            "xa must be less than xb",
        ),
        (
            "ya >= yb",
            post.into(),
            json_ct,
            with("yb", json!(-5.0)).to_string().into_bytes(),
            422,
            "ya must be less than yb",
        ),
        (
            "overflow",
            post.into(),
            json_ct,
            br#"{"width":64,"height":48,"iterations":9,"xa":-1.7e308,"xb":1.7e308,"ya":0,"yb":1}"#
                .to_vec(),
            422,
            "overflows",
        ),
        (
            "half a constant",
            post.into(),
            json_ct,
            with("c_re", json!(0.1)).to_string().into_bytes(),
            422,
            "both or neither",
        ),
        (
            "too few iterations to draw a constant",
            post.into(),
            json_ct,
            with("iterations", json!(5)).to_string().into_bytes(),
            422,
            "give c_re and c_im",
        ),
        (
            "bad uuid",
            post.into(),
            json_ct,
            with("uuid", json!("'; DROP TABLE fractal; --"))
                .to_string()
                .into_bytes(),
            422,
            "not a UUID",
        ),
        (
            "duplicate",
            post.into(),
            json_ct,
            with("uuid", json!(existing.uuid)).to_string().into_bytes(),
            409,
            "exists already",
        ),
        (
            "too large",
            post.into(),
            json_ct,
            vec![b' '; MAX_BODY as usize + 1],
            413,
            "larger than",
        ),
        (
            "put: not JSON",
            put.clone(),
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "application/json",
        ),
        (
            "put: unknown field",
            put.clone(),
            json_ct,
            br#"{"width": 3}"#.to_vec(),
            422,
            "unknown field `width`",
        ),
        (
            "put: bad status",
            put.clone(),
            json_ct,
            br#"{"status": "finished"}"#.to_vec(),
            422,
            "unknown variant",
        ),
        (
            "put: negative duration",
            put.clone(),
            json_ct,
            br#"{"duration": -1}"#.to_vec(),
            422,
            "duration",
        ),
        (
            "put: bad checksum",
            put.clone(),
            json_ct,
            br#"{"checksum": "abc"}"#.to_vec(),
            422,
            "checksum",
        ),
        (
            "put: other uuid",
            put.clone(),
            json_ct,
            json!({"uuid": uuid::Uuid::new_v4().to_string()})
                .to_string()
                .into_bytes(),
            422,
            "is not the URL's",
        ),
        (
            "put: done without image",
            put.clone(),
            json_ct,
            br#"{"status": "done"}"#.to_vec(),
            409,
            "no image yet",
        ),
        (
            "put: control characters",
            put.clone(),
            json_ct,
            br#"{"generated_by": "a\u0000b"}"#.to_vec(),
            422,
            "generated_by",
        ),
        (
            "put: NUL in the error (PostgreSQL cannot store it)",
            put.clone(),
            json_ct,
            br#"{"error": "a\u0000b"}"#.to_vec(),
            422,
            "error",
        ),
        (
            "put: too large",
            put.clone(),
            json_ct,
            vec![b' '; MAX_BODY as usize + 1],
            413,
            "larger than",
        ),
    ];
    for (name, path, content_type, body, status, needle) in cases {
        for method in [Method::POST, Method::PUT] {
            if (method == Method::PUT) != path.starts_with(&put) {
                continue;
            }
            let (got, text) = raw(&app, method, &path, content_type, body.clone()).await;
            assert_eq!(got, status, "{name}: {text}");
            let error: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: not JSON: {text}"));
            assert_eq!(error["code"], json!(status), "{name}");
            assert!(
                error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle)),
                "{name}: {text}"
            );
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "a rejected request changed something"
    );
    assert_no_server_errors(&app).await;
    app.stop().await;
}

/// A JSON body is read up to 1 MiB, whatever `max_body_size` (64 MiB by
/// default, for images): a fractal is a few kilobytes, and a 64 MiB body
/// would be held and copied before it is refused.
#[tokio::test]
async fn json_bodies_are_read_up_to_a_mebibyte_whatever_the_image_limit() {
    let app = spawn_app(Backend::Sqlite).await;
    let created = app
        .api
        .create(&new_fractal(64, 48, None))
        .await
        .expect("create");
    let put = format!("/v1/fractal/{}", created.uuid);
    let json_ct = Some("application/json");
    // Within the limit, padded: taken.
    let mut padded = valid().to_string();
    padded.push_str(&" ".repeat(900 * 1024));
    let (status, text) = raw(
        &app,
        Method::POST,
        "/v1/fractal",
        json_ct,
        padded.into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    for (method, path) in [(Method::POST, "/v1/fractal"), (Method::PUT, put.as_str())] {
        let (status, text) = raw(
            &app,
            method.clone(),
            path,
            json_ct,
            vec![b' '; (1 << 20) + 1],
        )
        .await;
        assert_eq!(status, 413, "{method} {path}: {text}");
        assert!(text.contains("1 MiB for JSON"), "{text}");
    }
    assert_no_server_errors(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn hostile_paths_and_query_strings() {
    let app = app().await;
    app.api
        .create(&new_fractal(16, 16, None))
        .await
        .expect("create");
    let before = app.snapshot().await;
    let injections = [
        "' OR '1'='1",
        "1; DROP TABLE fractal; --",
        "done' UNION SELECT * FROM fractal --",
        "%00",
        "%ff%fe",
        "..%2F..%2Fetc%2Fpasswd",
        "\u{202e}",
    ];
    for injection in injections {
        let encoded: String = url_encode(injection);
        for path in [
            format!("/v1/fractal/{encoded}"),
            format!("/fractal/{encoded}"),
            format!("/v1/fractal/{encoded}/image"),
        ] {
            let (status, text) = raw(&app, Method::GET, &path, None, Vec::new()).await;
            assert!(
                status == 400 || status == 404 || status == 405,
                "{path}: {status} {text}"
            );
        }
        for key in [
            "status",
            "order_by",
            "updated_before",
            "page",
            "results_per_page",
        ] {
            let path = format!("/v1/fractal?{key}={encoded}");
            error_of(app.get(&path).await, 400).await;
        }
        let (status, _) = raw(
            &app,
            Method::DELETE,
            &format!("/v1/fractal/{encoded}"),
            None,
            Vec::new(),
        )
        .await;
        assert_eq!(status, 400);
    }
    for query in [
        "page=0",
        "page=-1",
        "page=1.5",
        "results_per_page=0",
        "results_per_page=99999999999999999999999",
        "unknown=1",
        "page=1&page=2",
        // Year 10000 once in UTC: used to panic the handler.
        "updated_before=9999-12-31T23:30:00-01:00",
    ] {
        let message = error_of(app.get(&format!("/v1/fractal?{query}")).await, 400).await;
        assert!(!message.is_empty(), "{query}");
        assert!(
            !message.contains("Failed to deserialize"),
            "{query}: {message}"
        );
    }
    let (status, _) = raw(&app, Method::GET, "/index/0", None, Vec::new()).await;
    assert_eq!(status, 404);
    // Past the last page: a 404 that links to the last page (page 1 when
    // nothing is finished), not an empty "page 999999 of 1".
    let (status, text) = raw(&app, Method::GET, "/index/999999", None, Vec::new()).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("the last page is 1"), "{text}");
    assert!(text.contains(r#"href="/""#), "{text}");
    let (status, _) = raw(&app, Method::GET, "/show/%27%20OR%201=1", None, Vec::new()).await;
    assert_eq!(status, 404);
    let (status, text) = raw(&app, Method::PATCH, "/v1/fractal", None, Vec::new()).await;
    assert_eq!(status, 405, "{text}");
    // A method is any token, of any length: cut in the answer (and the
    // log line), not echoed whole.
    let long = Method::from_bytes(&[b'A'; 100_000]).expect("a method");
    let (status, text) = raw(&app, long, "/v1/fractal", None, Vec::new()).await;
    assert_eq!(status, 405, "{}", &text[..text.len().min(200)]);
    assert!(text.len() < 1000, "{} bytes answered", text.len());
    let (status, _) = raw(&app, Method::GET, "/no/such/route", None, Vec::new()).await;
    assert_eq!(status, 404);
    assert_eq!(app.snapshot().await, before);
    assert_no_server_errors(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn hostile_image_uploads() {
    let app = app().await;
    let f = app
        .api
        .create(&new_fractal(16, 16, None))
        .await
        .expect("create");
    let before = app.snapshot().await;
    let path = format!("/v1/fractal/{}/image", f.uuid);
    for (content_type, body, status) in [
        (None, b"\x89PNG".to_vec(), 415),
        (Some("application/json"), b"{}".to_vec(), 415),
        (Some("image/png"), Vec::new(), 422),
        (
            Some("image/png"),
            b"GIF89a.....................................".to_vec(),
            422,
        ),
        (Some("image/png"), vec![0x89; MAX_BODY as usize + 10], 413),
    ] {
        let (got, text) = raw(&app, Method::PUT, &path, content_type, body).await;
        assert_eq!(got, status, "{content_type:?}: {text}");
    }
    let (got, _) = raw(
        &app,
        Method::PUT,
        &format!("/v1/fractal/{}/image", uuid::Uuid::new_v4()),
        Some("image/png"),
        crate::helpers::render(&f).png,
    )
    .await;
    assert_eq!(got, 404);
    assert_eq!(app.snapshot().await, before);
    assert_no_server_errors(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
    let app = app().await;
    let response = app
        .http
        .get(app.at("/healthz"))
        .header("X-Request-Id", "req-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "req-abc-123");
    let response = app
        .http
        .get(app.at("/healthz"))
        .header("X-Request-Id", "bad id\"")
        .send()
        .await
        .expect("request");
    let id = response.headers()["x-request-id"].to_str().expect("text");
    assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    app.stop().await;
}

async fn assert_no_server_errors(app: &TestApp) {
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("faafo_api_http_requests_total") && l.contains("status=\"5"))
        .collect();
    assert!(server_errors.is_empty(), "server errors: {server_errors:?}");
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

fn url_encode(text: &str) -> String {
    if text.starts_with('%') || text.contains("%2F") {
        return text.to_string();
    }
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A connection to `app` that has sent `start` of a request and nothing
/// more (yet).
async fn half_a_request(app: &crate::helpers::TestApp, start: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream.write_all(start).await.expect("part of a request");
    stream
}

/// A client that never finishes its request (headers sent a byte at a
/// time, then nothing) does not keep a stopping API, and its database,
/// from stopping: at most SHUTDOWN_DRAIN.
#[tokio::test]
async fn a_stalled_client_does_not_hold_the_shutdown() {
    let app = spawn_app(Backend::Sqlite).await;
    let stalled = half_a_request(&app, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    // The server has the connection (and its half request) before the stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(
        faafo_api::startup::SHUTDOWN_DRAIN + Duration::from_secs(10),
        app.stop(),
    )
    .await
    .expect("the API stops despite the stalled client");
    drop(stalled);
}

/// A client that sends its headers too slowly (a slow-loris) is
/// disconnected after HEADER_READ_TIMEOUT, instead of holding its
/// connection, and a file descriptor, for as long as it likes.
#[tokio::test]
async fn a_slow_loris_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Backend::Sqlite).await;
    let mut slow = half_a_request(&app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let started = std::time::Instant::now();
    let limit = faafo_api::startup::HEADER_READ_TIMEOUT + Duration::from_secs(15);
    // A header line every 5 s: never the end of the headers.
    let mut answer = Vec::new();
    loop {
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => {
                assert!(
                    started.elapsed() < limit,
                    "still connected after {:?}",
                    started.elapsed()
                );
                if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break;
                }
            }
        }
    }
    assert!(
        started.elapsed() >= faafo_api::startup::HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "cut off early, after {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    app.stop().await;
}

/// An upload that stops arriving half way is answered 408 after
/// BODY_READ_TIMEOUT, and the connection closed, instead of holding a
/// connection and a handler for as long as the client likes.
#[tokio::test]
async fn a_stalled_upload_is_answered_408() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app(Backend::Sqlite).await;
    let mut stalled = half_a_request(
        &app,
        b"POST /v1/fractal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"width\": 64,",
    )
    .await;
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(
        faafo_api::startup::BODY_READ_TIMEOUT + Duration::from_secs(15),
        stalled.read_to_end(&mut answer),
    )
    .await
    .expect("the connection is closed in time")
    .expect("read");
    assert!(
        started.elapsed() >= faafo_api::startup::BODY_READ_TIMEOUT - Duration::from_secs(1),
        "cut off early, after {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("stopped arriving"), "{answer}");
    // The API goes on serving.
    app.api
        .list(&Default::default())
        .await
        .expect("a later request");
    app.stop().await;
}
