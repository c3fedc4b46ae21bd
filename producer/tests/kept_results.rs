//! A result the API does not take by the end of a stop (the API away) is
//! kept on disk and stored by the next start, before anything else: the
//! task is done without being rendered again. The API (SQLite in a
//! temporary directory), the producers and a worker whose render waits for
//! the test run in this process on the in-memory broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{FractalStatus, ProcessArgs};
use faafo_common::messaging::{Endpoint, RequestContext, RpcClient, RpcServer, Target};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};
use tokio::sync::{Notify, Semaphore};

mod support;
use support::{LocalApi, sha256_hex, small_tasks_config, tiny_task, worker_service};

const UUID: &str = "01a20784-fe99-72fe-a554-0000000000bb";

fn producer(config: &FaafoConfig, rpc: RpcClient, shutdown: &Shutdown) -> Arc<Producer> {
    let mut settings = ProducerSettings::from_config(config);
    settings.shutdown_grace = Duration::from_millis(500);
    settings.poll_interval = Duration::from_millis(200);
    Arc::new(Producer::new(
        ResilientApi::new(ApiClient::new(&config.default.endpoint_url, None).expect("client")),
        rpc,
        settings,
        shutdown.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_api_missed_at_a_stop_is_stored_by_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_tasks_config(dir.path(), "kept-results", 1, 4);
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let kept_dir = dir.path().join("producer-results");

    // A real worker's rendering, which waits for the test.
    let (transport, service) = worker_service(&config).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let called = Arc::new(Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let worker = {
        let (calls, called, gate) = (calls.clone(), called.clone(), gate.clone());
        RpcServer::builder(
            &transport,
            Target::topic(&config.worker.topic).with_server("gated"),
        )
        .endpoint(Endpoint::new().method(
            "process",
            move |ctx: RequestContext, args: ProcessArgs| {
                let (service, called, gate) = (service.clone(), called.clone(), gate.clone());
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    called.notify_one();
                    let _ = gate.acquire().await;
                    service.process(ctx, args.task).await
                }
            },
        ))
        .start()
        .await
        .expect("the worker")
    };
    let topic = config.worker.topic.clone();
    let rpc = || RpcClient::new(&transport, Target::topic(&topic));

    // The task is rendering when the API goes away; its result comes back
    // while the API is away, and the producer stops.
    let shutdown = Shutdown::new();
    let first = producer(&config, rpc(), &shutdown);
    let rendering = called.notified();
    let batch = {
        let first = first.clone();
        tokio::spawn(async move { first.one_shot(vec![tiny_task(Some(UUID))]).await })
    };
    tokio::time::timeout(Duration::from_secs(30), rendering)
        .await
        .expect("the render starts");
    local_api.stop().await;
    gate.add_permits(1);
    // The result reaches the producer, which cannot store it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.trigger();
    first.give_up_in_flight().await;
    let report = tokio::time::timeout(Duration::from_secs(30), batch)
        .await
        .expect("the batch ends at the stop")
        .expect("the batch");
    assert_eq!((report.done, report.other), (0, 1), "{report:?}");
    let json = kept_dir.join(format!("{UUID}.json"));
    let png = kept_dir.join(format!("{UUID}.png"));
    assert!(json.is_file() && png.is_file(), "kept in {kept_dir:?}");
    let kept_png = std::fs::read(&png).expect("the kept image");

    // The next start, the API back (the same database): the kept result
    // is stored, and the task is not rendered again.
    let local_api = LocalApi::start(&mut config).await;
    let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let before = api.get(UUID).await.expect("the task");
    assert_eq!(before.status, FractalStatus::Running);
    let shutdown = Shutdown::new();
    let second = producer(&config, rpc(), &shutdown);
    let serving = {
        let second = second.clone();
        tokio::spawn(async move { second.dispatch_only().await })
    };
    let mut done = None;
    for _ in 0..100 {
        let task = api.get(UUID).await.expect("the task");
        if task.status == FractalStatus::Done {
            done = Some(task);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.expect("the kept result is stored");
    assert_eq!(
        done.checksum.as_deref(),
        Some(sha256_hex(&kept_png).as_str())
    );
    let image = api.image(UUID).await.expect("the image");
    assert_eq!(image, kept_png);
    assert_eq!(done.attempts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "rendered once");
    assert!(!json.exists() && !png.exists(), "delivered, then removed");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the producer stops")
        .expect("the producer task");
    worker.stop().await;
    local_api.stop().await;
}
