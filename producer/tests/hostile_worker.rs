//! A broken worker peer (a bug, or a peer speaking the protocol badly):
//! it answers `process` for another task than the one it was given, then
//! with a checksum that is not one (longer than a URL takes), then with an
//! image that is not a PNG, then with an error message longer than
//! the API keeps and holding a NUL. The producer must store none of it on either task, count
//! each as a failed attempt (another worker might have done it right), and
//! finally mark the task failed with the last error, cut to what the API
//! keeps. The API (SQLite in a temporary directory), the producer and the
//! fake worker run in this process on the in-memory broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{FractalStatus, ProcessArgs, TaskResult};
use faafo_common::messaging::{
    Endpoint, RemoteError, RequestContext, RpcServer, Target, Transport,
};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

mod support;
use support::{LocalApi, tiny_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_workers_answers_are_failed_attempts_stored_nowhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FaafoConfig::default();
    config.default.state_path = dir.path().display().to_string();
    config.default.transport_url = format!("memory:///hostile-worker-{}", std::process::id());
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let url = config.default.endpoint_url.clone();
    let api = ApiClient::new(&url, None).expect("client");

    // The other task exists, pending, untouched by anyone.
    let other = "01a20784-fe99-72fe-a554-000000000002";
    api.create(&tiny_task(Some(other)))
        .await
        .expect("the other task");

    let transport = Transport::connect(&config.default.transport_url)
        .await
        .expect("memory transport");
    let mut settings = ProducerSettings::from_config(&config);
    settings.max_attempts = 4;
    let wrong = other.to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // What the API says of the task when a retry's call arrives: the
    // attempt before's error, stored with the running mark (a producer
    // killed now leaves that, not "ended with its producer").
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seeing = seen.clone();
    let reader = ApiClient::new(&url, None).expect("client");
    let worker = RpcServer::builder(
        &transport,
        Target::topic(&settings.topic).with_server("bad"),
    )
    .endpoint(
        Endpoint::new().method("process", move |_ctx: RequestContext, args: ProcessArgs| {
            let wrong = wrong.clone();
            let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let (seeing, reader) = (seeing.clone(), reader.clone());
            async move {
                if call > 1 {
                    let now = reader.get(&args.task.uuid).await.expect("the task");
                    seeing.lock().expect("lock").push((now.status, now.error));
                }
                let result = TaskResult {
                    uuid: args.task.uuid,
                    duration: 0.1,
                    checksum: "0".repeat(64),
                    size: 4,
                    c_re: 0.0,
                    c_im: 0.0,
                    generated_by: "bad".into(),
                    pixel_iterations: 1,
                    image: b"\x89PNG".to_vec(),
                };
                match call {
                    1 => Ok(TaskResult {
                        uuid: wrong,
                        ..result
                    }),
                    2 => Ok(TaskResult {
                        checksum: "f".repeat(100_000),
                        ..result
                    }),
                    3 => Ok(result),
                    _ => Err(RemoteError::runtime_error(format!(
                        "worker bug \0 {}",
                        "x".repeat(20_000)
                    ))),
                }
            }
        }),
    )
    .start()
    .await
    .expect("the fake worker");

    let rpc = faafo_common::messaging::RpcClient::new(&transport, Target::topic(&settings.topic));
    let shutdown = Shutdown::new();
    let producer = Producer::new(
        ResilientApi::new(ApiClient::new(&url, None).expect("client")),
        rpc,
        settings,
        shutdown.clone(),
    );
    let asked = "01a20784-fe99-72fe-a554-000000000001";
    let report = producer.one_shot(vec![tiny_task(Some(asked))]).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one call per attempt");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, FractalStatus::Running);
    assert!(
        seen[0].1.as_deref().is_some_and(|e| e.contains("instead")),
        "the first attempt's error, kept while the second runs: {seen:?}"
    );
    assert_eq!(seen[1].0, FractalStatus::Running);
    assert!(
        seen[1]
            .1
            .as_deref()
            .is_some_and(|e| e.contains("checksum is not a sha256")),
        "the second attempt's error while the third runs: {seen:?}"
    );
    assert_eq!(seen[2].0, FractalStatus::Running);
    assert!(
        seen[2]
            .1
            .as_deref()
            .is_some_and(|e| !e.contains("instead") && !e.contains("sha256")),
        "the third attempt's error while the fourth runs: {seen:?}"
    );

    let failed = api.get(asked).await.expect("the task asked about");
    assert_eq!(failed.status, FractalStatus::Failed);
    assert_eq!(failed.attempts, 4);
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("worker bug \u{fffd} xxx"),
        "a NUL replaced: {error:.200}"
    );
    assert_eq!(
        error.chars().count(),
        faafo_common::fractal::MAX_ERROR_CHARS,
        "cut to what the API keeps"
    );
    assert!(error.ends_with('…'));
    assert_eq!(failed.checksum, None, "no result stored on it");
    let image = api.image(asked).await.expect_err("no image stored on it");
    assert!(image.to_string().contains("has no image"), "{image}");
    let untouched = api.get(other).await.expect("the other task");
    assert_eq!(untouched.status, FractalStatus::Pending);
    assert_eq!(untouched.checksum, None, "nor on the other one");

    shutdown.trigger();
    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
}

/// A stop that comes while a task backs off after a failed attempt leaves
/// that attempt's error on the task (the next start's running mark keeps
/// it, and so does a failure at that start): before, the record kept the
/// attempt before's error, or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_backoff_keeps_the_failed_attempts_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FaafoConfig::default();
    config.default.state_path = dir.path().display().to_string();
    config.default.transport_url = format!("memory:///backoff-stop-{}", std::process::id());
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let url = config.default.endpoint_url.clone();
    let api = ApiClient::new(&url, None).expect("client");
    let transport = Transport::connect(&config.default.transport_url)
        .await
        .expect("memory transport");
    let settings = ProducerSettings::from_config(&config);
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let worker =
        RpcServer::builder(
            &transport,
            Target::topic(&settings.topic).with_server("failing"),
        )
        .endpoint(Endpoint::new().method(
            "process",
            move |_ctx: RequestContext, _args: ProcessArgs| {
                // The stop comes with the failure: the producer sees it as
                // it backs off.
                stop.trigger();
                async move {
                    Err::<TaskResult, _>(RemoteError::runtime_error("the first attempt failed"))
                }
            },
        ))
        .start()
        .await
        .expect("the failing worker");
    let rpc = faafo_common::messaging::RpcClient::new(&transport, Target::topic(&settings.topic));
    let producer = Producer::new(
        ResilientApi::new(ApiClient::new(&url, None).expect("client")),
        rpc,
        settings,
        shutdown.clone(),
    );
    let uuid = "01a20784-fe99-72fe-a554-000000000003";
    let report = producer.one_shot(vec![tiny_task(Some(uuid))]).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let task = api.get(uuid).await.expect("the task");
    assert_eq!(task.status, FractalStatus::Running, "{task:?}");
    assert_eq!(task.attempts, 1, "{task:?}");
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("the first attempt failed")),
        "{task:?}"
    );
    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
}
