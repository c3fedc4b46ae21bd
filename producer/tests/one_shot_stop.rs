//! A one-shot producer told to stop (SIGTERM, Ctrl-C) creates no more tasks
//! but gives the calls in flight up to `shutdown_grace` to finish, and
//! stores their results: rendered work is not thrown away. The API (SQLite
//! in a temporary directory), a worker that takes a second per task, and
//! `serve` (what `faafo producer --one-shot` runs) share this process and
//! the in-memory broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, ProcessArgs};
use faafo_common::messaging::{Endpoint, RequestContext, RpcServer, Target};
use faafo_common::shutdown::Shutdown;

mod support;
use support::LocalApi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_finish_when_a_one_shot_producer_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "one-shot-stop", 6, 2);
    config.producer.shutdown_grace = 30;
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");

    // A real worker's rendering, a second late.
    let (transport, service) = support::worker_service(&config).await;
    let topic = config.worker.topic.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let counted = started.clone();
    let worker = RpcServer::builder(&transport, Target::topic(&topic).with_server("slow"))
        .endpoint(Endpoint::new().method(
            "process",
            move |ctx: RequestContext, args: ProcessArgs| {
                let (service, started) = (service.clone(), counted.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    service.process(ctx, args.task).await
                }
            },
        ))
        .executor_size(4)
        .start()
        .await
        .expect("the slow worker");

    let shutdown = Shutdown::new();
    let producer = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tokio::spawn(async move {
            faafo_producer::serve(&config, true, shutdown)
                .await
                .map_err(|e| e.to_string())
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never got two calls"
        );
        if producer.is_finished() {
            let result = producer.await.expect("join");
            panic!("the producer stopped before two calls: {result:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.trigger();
    let all_done = tokio::time::timeout(Duration::from_secs(30), producer)
        .await
        .expect("the producer stops within its grace period")
        .expect("join")
        .expect("the producer runs");
    assert!(!all_done, "a batch cut short is not reported all done");

    let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let fractals = api
        .list_all(&Default::default())
        .await
        .expect("the fractals");
    assert_eq!(
        fractals.len(),
        2,
        "only the two tasks in flight were created: {fractals:?}"
    );
    for fractal in &fractals {
        assert_eq!(
            fractal.status,
            FractalStatus::Done,
            "a call in flight finished and was stored: {fractal:?}"
        );
    }
    assert_eq!(started.load(Ordering::SeqCst), 2, "no call after the stop");

    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
}

/// A batch of no task (`min_tasks = 0` allows one) did all it had to:
/// `--one-shot` exits 0, as the issue says ("non-zero if any failed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_one_shot_batch_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "empty-batch", 0, 2);
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let succeeded = tokio::time::timeout(
        Duration::from_secs(30),
        faafo_producer::serve(&config, true, Shutdown::new()),
    )
    .await
    .expect("an empty batch ends at once")
    .map_err(|e| e.to_string())
    .expect("the producer runs");
    assert!(succeeded, "nothing failed: the exit status is 0");
    local_api.stop().await;
}
