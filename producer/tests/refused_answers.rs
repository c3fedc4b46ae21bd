//! An answer that refuses a rendered result for a reason that is not the
//! result's (the API's tokens being changed: 401, 403) keeps the result
//! until the API takes it: it is neither dropped nor rendered again. The
//! API runs in this process (SQLite in a temporary directory), behind a
//! proxy that refuses the first upload of an image (or, playing an API
//! older than the combined upload, the result sent after it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use faafo_common::api_client::ApiClient;
use faafo_common::fractal::FractalStatus;
use faafo_common::messaging::{RpcClient, Target};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

mod support;
use support::{LocalApi, tiny_task};

/// What the proxy passes on to, and how many uploads it has refused.
#[derive(Clone)]
struct Refuser {
    upstream: String,
    refusal: StatusCode,
    /// Plays an API older than the combined upload: the image's query
    /// string (the result) is dropped, and the result's own `PUT` is the
    /// one refused.
    older_api: bool,
    refused: Arc<AtomicUsize>,
    client: reqwest::Client,
}

/// An HTTP proxy to `upstream` that answers the first `PUT
/// .../image` with `refusal`, and passes everything else on; its URL and
/// the count of refusals.
async fn refusing_proxy(
    upstream: String,
    refusal: StatusCode,
    older_api: bool,
) -> (String, Arc<AtomicUsize>) {
    let refused = Arc::new(AtomicUsize::new(0));
    let state = Refuser {
        upstream,
        refusal,
        older_api,
        refused: refused.clone(),
        client: reqwest::Client::new(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, refused)
}

async fn forward(State(proxy): State<Refuser>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .expect("the request's body");
    let image = parts.uri.path().ends_with("/image");
    if parts.method == Method::PUT
        && image != proxy.older_api
        && proxy
            .refused
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        let message = format!(
            r#"{{"code": {}, "message": "this request needs a valid X-Auth-Token header"}}"#,
            proxy.refusal.as_u16()
        );
        return (
            proxy.refusal,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            message,
        )
            .into_response();
    }
    let target = if proxy.older_api && image {
        format!("{}{}", proxy.upstream, parts.uri.path())
    } else {
        format!(
            "{}{}",
            proxy.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        )
    };
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let answer = proxy
        .client
        .request(parts.method, target)
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the API answers");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let bytes = answer.bytes().await.expect("the API's answer");
    response.body(Body::from(bytes)).expect("a response")
}

/// One task, rendered by a real worker, its first upload refused with
/// `refusal` by the proxy: how many uploads were refused, the producer's
/// report, and the task as the API has it then.
async fn one_task_behind(
    refusal: StatusCode,
    older_api: bool,
) -> (
    usize,
    faafo_producer::BatchReport,
    faafo_common::fractal::Fractal,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("refused-{}-{older_api}", refusal.as_u16());
    let mut config = support::small_tasks_config(dir.path(), &name, 1, 2);
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let (transport, worker) = support::rendering_worker(&config, &name).await;
    let (url, refused) =
        refusing_proxy(config.default.endpoint_url.clone(), refusal, older_api).await;
    let settings = ProducerSettings::from_config(&config);
    assert!(settings.max_attempts > 1, "{}", settings.max_attempts);
    let producer = Producer::new(
        ResilientApi::new(ApiClient::new(&url, None).expect("client")),
        RpcClient::new(&transport, Target::topic(&settings.topic)),
        settings,
        Shutdown::new(),
    );
    let uuid = uuid::Uuid::new_v4().to_string();
    let report = producer.one_shot(vec![tiny_task(Some(&uuid))]).await;
    let direct = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let task = direct.get(&uuid).await.expect("the task");
    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
    (refused.load(Ordering::SeqCst), report, task)
}

async fn a_result_refused_with(refusal: StatusCode, older_api: bool) {
    let (refused, report, task) = one_task_behind(refusal, older_api).await;
    assert_eq!(refused, 1, "one upload was refused");
    assert_eq!(
        (report.done, report.failed, report.other),
        (1, 0, 0),
        "{report:?}"
    );
    assert_eq!(
        (task.status, task.attempts),
        (FractalStatus::Done, 1),
        "the result refused with {refusal} is sent again, not rendered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_refused_for_its_token_is_kept_and_sent_again() {
    for older_api in [false, true] {
        a_result_refused_with(StatusCode::UNAUTHORIZED, older_api).await;
        a_result_refused_with(StatusCode::FORBIDDEN, older_api).await;
    }
}

/// An image larger than the API takes (413: `max_body_size`, MariaDB's
/// packet) fails its task at once: a new render would make the same image,
/// refused the same way, `max_attempts` times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_too_large_for_the_api_fails_its_task_at_once() {
    let (refused, report, task) = one_task_behind(StatusCode::PAYLOAD_TOO_LARGE, false).await;
    assert_eq!(refused, 1);
    assert_eq!(
        (report.done, report.failed, report.other),
        (0, 1, 0),
        "{report:?}"
    );
    assert_eq!(
        (task.status, task.attempts),
        (FractalStatus::Failed, 1),
        "rendered once, not max_attempts times"
    );
    let error = task.error.unwrap_or_default();
    assert!(error.contains("413"), "{error}");
}
