//! A result the API does not take by the end of a stop (the API away) is
//! kept on disk and stored by the next start, before anything else: the
//! task is done without being rendered again. The API (SQLite in a
//! temporary directory), the producers and a worker whose render waits for
//! the test run in this process on the in-memory broker.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{Fractal, FractalStatus, Task, TaskResult};
use faafo_common::messaging::{RequestContext, RpcClient, Target};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

mod support;
use support::{
    GatedWorker, LocalApi, done_fractal, gated_worker, sha256_hex, small_tasks_config, tiny_task,
};

const UUID: &str = "01a20784-fe99-72fe-a554-0000000000bb";

/// Task `UUID` created running (as a stopped producer leaves it), and
/// its render by `worker`'s service (not through a call).
async fn running_task_and_its_render(
    api: &ApiClient,
    worker: &GatedWorker,
) -> (Fractal, TaskResult) {
    let task = api
        .create(&faafo_common::fractal::NewFractal {
            status: Some(FractalStatus::Running),
            attempts: Some(1),
            ..tiny_task(Some(UUID))
        })
        .await
        .expect("the task");
    let result = worker
        .service
        .process(RequestContext::new(), Task::from_fractal(&task))
        .await
        .expect("rendered");
    (task, result)
}

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
    // The same API address after the restart: a result is kept for an API.
    let port = support::free_port();
    let local_api = LocalApi::start_at(&mut config, port).await;
    config.validate().expect("valid configuration");
    let kept_dir = dir.path().join("producer-results");

    // A real worker's rendering, which waits for the test.
    let worker = gated_worker(&config, "gated", 1).await;
    let transport = &worker.transport;
    let topic = config.worker.topic.clone();
    let rpc = || RpcClient::new(transport, Target::topic(&topic));

    // The task is rendering when the API goes away; its result comes back
    // while the API is away, and the producer stops.
    let shutdown = Shutdown::new();
    let first = producer(&config, rpc(), &shutdown);
    let rendering = worker.called.notified();
    let batch = {
        let first = first.clone();
        tokio::spawn(async move { first.one_shot(vec![tiny_task(Some(UUID))]).await })
    };
    tokio::time::timeout(Duration::from_secs(30), rendering)
        .await
        .expect("the render starts");
    local_api.stop().await;
    worker.gate.add_permits(1);
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
    let local_api = LocalApi::start_at(&mut config, port).await;
    let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let before = api.get(UUID).await.expect("the task");
    assert_eq!(before.status, FractalStatus::Running);
    let shutdown = Shutdown::new();
    let second = producer(&config, rpc(), &shutdown);
    let serving = {
        let second = second.clone();
        tokio::spawn(async move { second.dispatch_only().await })
    };
    let done = done_fractal(&api, UUID).await;
    assert_eq!(
        done.checksum.as_deref(),
        Some(sha256_hex(&kept_png).as_str())
    );
    let image = api.image(UUID).await.expect("the image");
    assert_eq!(image, kept_png);
    assert_eq!(done.attempts, 1);
    assert_eq!(worker.calls.load(Ordering::SeqCst), 1, "rendered once");
    assert!(!json.exists() && !png.exists(), "delivered, then removed");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the producer stops")
        .expect("the producer task");
    worker.server.stop().await;
    local_api.stop().await;
}

/// A kept result the API cannot take yet holds its task: the recovery of
/// tasks left running, which runs as soon as the API answers, does not
/// dispatch it again; the kept result is stored at its next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_result_waiting_for_the_api_is_not_rendered_again() {
    use faafo_common::fractal::FractalUpdate;
    use faafo_producer::kept_results::KeptResults;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_tasks_config(dir.path(), "kept-waiting", 1, 4);
    let port = support::free_port();
    let local_api = LocalApi::start_at(&mut config, port).await;
    config.validate().expect("valid configuration");
    let endpoint = config.default.endpoint_url.clone();
    let api = ApiClient::new(&endpoint, None).expect("client");

    // A task a stopped producer left running, with its result kept.
    let worker = gated_worker(&config, "counting", 0).await;
    let transport = &worker.transport;
    let (task, result) = running_task_and_its_render(&api, &worker).await;
    let update = FractalUpdate {
        status: Some(FractalStatus::Done),
        duration: Some(result.duration),
        checksum: Some(result.checksum.clone()),
        size: Some(result.size),
        generated_by: Some(result.generated_by.clone()),
        c_re: Some(result.c_re),
        c_im: Some(result.c_im),
        ..FractalUpdate::default()
    };
    KeptResults::new(
        dir.path().join("producer-results"),
        std::slice::from_ref(&endpoint),
    )
    .keep(UUID, &task.created_at, &update, result.image.clone().into())
    .await
    .expect("kept");
    local_api.stop().await;

    // The producer starts while the API is away: the kept result waits,
    // offered again after 0.1, 0.2, 0.4, 0.8 s, then 1.6 s later. The API
    // comes back in that last pause: the next poll's recovery of running
    // tasks finds this one, held by its kept result.
    let mut settings = ProducerSettings::from_config(&config);
    settings.poll_interval = Duration::from_millis(100);
    let shutdown = Shutdown::new();
    let producer = Arc::new(Producer::new(
        ResilientApi::new(ApiClient::new(&endpoint, None).expect("client")),
        RpcClient::new(transport, Target::topic(&config.worker.topic)),
        settings,
        shutdown.clone(),
    ));
    let serving = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.dispatch_only().await })
    };
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let local_api = LocalApi::start_at(&mut config, port).await;
    let done = done_fractal(&api, UUID).await;
    assert_eq!(done.checksum.as_deref(), Some(result.checksum.as_str()));
    assert_eq!(done.attempts, 1);
    assert_eq!(worker.calls.load(Ordering::SeqCst), 0, "not rendered again");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the producer stops")
        .expect("the producer task");
    worker.server.stop().await;
    local_api.stop().await;
}

/// A result kept for other API hosts is offered to this one all the same:
/// left alone (not deleted) when this API has no such fractal (another
/// deployment's, sharing the directory), stored when it does (the same API
/// at a new address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_kept_for_other_hosts_is_left_alone_unless_this_api_has_it() {
    use faafo_common::fractal::FractalUpdate;
    use faafo_producer::kept_results::{KeptOutcome, KeptResults};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_tasks_config(dir.path(), "kept-elsewhere", 1, 4);
    let local_api = LocalApi::start(&mut config).await;
    let endpoint = config.default.endpoint_url.clone();
    let api = ApiClient::new(&endpoint, None).expect("client");
    let kept_dir = dir.path().join("producer-results");
    let elsewhere = vec!["http://192.0.2.1:5000".to_string()];
    let here = KeptResults::new(kept_dir.clone(), std::slice::from_ref(&endpoint));

    // A real PNG (the API reads the image before it looks the uuid up).
    let worker = gated_worker(&config, "unused", 0).await;
    let (task, result) = running_task_and_its_render(&api, &worker).await;
    // Kept by another deployment's producer, for a fractal this API does
    // not have.
    let other = "01a20784-fe99-72fe-a554-0000000000cc";
    let update = FractalUpdate {
        status: Some(FractalStatus::Done),
        ..FractalUpdate::default()
    };
    KeptResults::new(kept_dir.clone(), &elsewhere)
        .keep(
            other,
            "2026-11-25T00:00:00.000000Z",
            &update,
            result.image.clone().into(),
        )
        .await
        .expect("kept");
    assert!(matches!(
        here.deliver(&api, other).await,
        KeptOutcome::Elsewhere
    ));
    assert_eq!(here.list().await, vec![other.to_string()], "left alone");

    // This API's fractal, kept when the API had another address: stored.
    let update = FractalUpdate {
        status: Some(FractalStatus::Done),
        checksum: Some(result.checksum.clone()),
        size: Some(result.size),
        ..FractalUpdate::default()
    };
    KeptResults::new(kept_dir.clone(), &elsewhere)
        .keep(UUID, &task.created_at, &update, result.image.clone().into())
        .await
        .expect("kept");
    assert!(matches!(
        here.deliver(&api, UUID).await,
        KeptOutcome::Delivered
    ));
    assert_eq!(here.list().await, vec![other.to_string()]);
    let done = api.get(UUID).await.expect("the task");
    assert_eq!(done.status, FractalStatus::Done);
    assert_eq!(done.checksum, Some(result.checksum));
    worker.server.stop().await;
    local_api.stop().await;
}
