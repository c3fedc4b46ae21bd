//! `auth_strategy = token`, route by route.

use faafo_common::configuration::CommaList;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, new_fractal, render, spawn_app_with};

const TOKEN: &str = "s3cret-token";

/// A write: method, path, body (content type and bytes), success status.
type Write<'a> = (Method, String, Option<(&'a str, Vec<u8>)>, u16);

async fn app(protect_reads: bool) -> TestApp {
    spawn_app_with(Backend::Sqlite, |c| {
        c.api.auth_strategy = "token".into();
        c.api.auth_tokens = CommaList(vec![TOKEN.into(), "second-token".into()]);
        c.api.protect_reads = protect_reads;
    })
    .await
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.at(path));
    if let Some(token) = token {
        request = request.header("X-Auth-Token", token);
    }
    if let Some((content_type, body)) = body {
        request = request.header("Content-Type", content_type).body(body);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn every_write_needs_a_valid_token() {
    let app = app(false).await;
    // The client carries the token: the producer's flow works.
    let (done, _) = app.finished_fractal(24, 16, (-0.8, 0.156)).await;
    let pending = app
        .api
        .create(&new_fractal(24, 16, Some((-0.4, 0.6))))
        .await
        .expect("create");
    let png = render(&pending).png;
    let new = serde_json::to_vec(&new_fractal(8, 8, None)).expect("json");
    let update = serde_json::to_vec(&json!({"attempts": 2})).expect("json");
    let writes: Vec<Write> = vec![
        (
            Method::POST,
            "/v1/fractal".into(),
            Some(("application/json", new.clone())),
            201,
        ),
        (
            Method::POST,
            "/api/fractal".into(),
            Some(("application/json", new)),
            201,
        ),
        (
            Method::PUT,
            format!("/v1/fractal/{}", pending.uuid),
            Some(("application/json", update.clone())),
            200,
        ),
        (
            Method::PUT,
            format!("/api/fractal/{}", pending.uuid),
            Some(("application/json", update)),
            200,
        ),
        (
            Method::PUT,
            format!("/v1/fractal/{}/image", pending.uuid),
            Some(("image/png", png)),
            200,
        ),
        (
            Method::DELETE,
            format!("/v1/fractal/{}", pending.uuid),
            None,
            204,
        ),
        (
            Method::DELETE,
            format!("/api/fractal/{}", done.uuid),
            None,
            204,
        ),
    ];
    for (method, path, body, ok) in writes {
        let before = app.snapshot().await;
        for token in [
            None,
            Some("wrong"),
            Some(""),
            Some("S3CRET-TOKEN"),
            Some("s3cret-token2"),
        ] {
            let response = send(&app, method.clone(), &path, token, body.clone()).await;
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Token realm="faafo-api", header="X-Auth-Token""#,
                "a 401 names its scheme"
            );
            let message = error_of(response, 401).await;
            assert!(message.contains("X-Auth-Token"), "{message}");
        }
        assert_eq!(
            app.snapshot().await,
            before,
            "{method} {path}: a refused request changed something"
        );
        let token = if ok == 204 { "second-token" } else { TOKEN };
        let response = send(&app, method.clone(), &path, Some(token), body.clone()).await;
        assert_eq!(response.status().as_u16(), ok, "{method} {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn reads_are_public_unless_protected() {
    let app = app(false).await;
    let (done, _) = app.finished_fractal(24, 16, (-0.8, 0.156)).await;
    let reads = [
        "/v1/fractal".to_string(),
        format!("/v1/fractal/{}", done.uuid),
        format!("/api/fractal/{}", done.uuid),
        format!("/fractal/{}", done.uuid),
        "/".into(),
        "/index/1".into(),
        format!("/show/{}", done.uuid),
        "/healthz".into(),
        "/readyz".into(),
        "/metrics".into(),
        "/openapi.json".into(),
        "/static/live.js".into(),
    ];
    for path in &reads {
        let response = send(&app, Method::GET, path, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        // What each answer is, the browser takes from Content-Type alone.
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    // A public image may sit in shared caches for good at the URL the page
    // links it by, with its checksum (a uuid used again after a delete is
    // another URL); at the plain one, revalidated.
    image_cache_policies(
        &app,
        &done,
        None,
        ["public, max-age=31536000, immutable", "no-cache"],
    )
    .await;
    let page = send(
        &app,
        Method::GET,
        &format!("/show/{}", done.uuid),
        None,
        None,
    )
    .await
    .text()
    .await
    .expect("the page");
    let checksum = done.checksum.clone().expect("checksum");
    assert!(
        page.contains(&format!("src=\"/fractal/{}?v={checksum}\"", done.uuid)),
        "{page}"
    );
    // The document says which operations need the token.
    let doc: Value = app.get("/openapi.json").await.json().await.expect("json");
    assert_eq!(
        doc["paths"]["/v1/fractal"]["post"]["security"],
        json!([{"token": []}])
    );
    assert!(doc["paths"]["/v1/fractal"]["get"].get("security").is_none());
    app.stop().await;

    let app = app_protected().await;
    let (done, _) = app.finished_fractal(24, 16, (-0.8, 0.156)).await;
    for path in [
        "/v1/fractal".to_string(),
        format!("/v1/fractal/{}", done.uuid),
        format!("/fractal/{}", done.uuid),
        "/".into(),
        "/index/1".into(),
        format!("/show/{}", done.uuid),
        "/status/failed".into(),
    ] {
        let refused = send(&app, Method::GET, &path, None, None).await;
        if ["/", "/index/", "/show/", "/status/"]
            .iter()
            .any(|page| path == *page || (page.len() > 1 && path.starts_with(page)))
        {
            // A browser's page: a page that says why, not raw JSON.
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert!(refused.headers().contains_key("www-authenticate"), "{path}");
            assert!(
                refused.headers()["content-type"]
                    .to_str()
                    .expect("text")
                    .starts_with("text/html"),
                "{path}"
            );
            assert!(
                refused.headers().contains_key("content-security-policy"),
                "{path}"
            );
            let text = refused.text().await.expect("page");
            assert!(
                text.contains("protect_reads") && text.contains("X-Auth-Token"),
                "{text}"
            );
        } else {
            error_of(refused, 401).await;
        }
        let opened = send(&app, Method::GET, &path, Some(TOKEN), None).await;
        assert_eq!(opened.status(), StatusCode::OK, "{path}");
        // What a token opened is no shared cache's to serve to others.
        let cache_control = opened.headers()["cache-control"].to_str().expect("text");
        assert!(
            cache_control.starts_with("private"),
            "{path}: {cache_control}"
        );
        if path.starts_with("/v1/") {
            assert_eq!(cache_control, "private, no-cache", "{path}");
        }
        let vary: Vec<&str> = opened
            .headers()
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            vary.iter().any(|v| v.eq_ignore_ascii_case("x-auth-token")),
            "{path}: {vary:?}"
        );
    }
    // A protected image is no shared cache's to keep.
    image_cache_policies(
        &app,
        &done,
        Some(TOKEN),
        ["private, max-age=31536000, immutable", "private, no-cache"],
    )
    .await;
    // The page's script holds no data: it needs no token.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/static/live.js",
    ] {
        assert_eq!(
            send(&app, Method::GET, path, None, None).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    app.stop().await;
}

/// The `Cache-Control` of `done`'s image asked for with `token`: at the
/// page's URL (`?v=<checksum>`), then at the plain one.
async fn image_cache_policies(
    app: &TestApp,
    done: &faafo_common::fractal::Fractal,
    token: Option<&str>,
    expected: [&str; 2],
) {
    let checksum = done.checksum.clone().expect("checksum");
    for (query, expected) in [format!("?v={checksum}"), String::new()]
        .into_iter()
        .zip(expected)
    {
        let image = send(
            app,
            Method::GET,
            &format!("/fractal/{}{query}", done.uuid),
            token,
            None,
        )
        .await;
        assert_eq!(image.headers()["cache-control"], expected, "{query}");
    }
}

async fn app_protected() -> TestApp {
    app(true).await
}
