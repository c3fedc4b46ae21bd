//! The producer's scans (pending tasks nobody dispatches, running tasks
//! past `task_timeout`) act on a list that can be out of date by the time a
//! dispatch slot frees: the task may have been finished since, by this
//! process or another. Such a task is left alone, never called again nor
//! revived; one that is still as listed is dispatched. The API (SQLite in a
//! temporary directory), the producer's dispatcher and a fake worker run in
//! this process on the in-memory broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{FractalStatus, FractalUpdate, ProcessArgs};
use faafo_common::messaging::{
    Endpoint, RemoteError, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Outcome, Producer, ProducerSettings, ResilientApi};

mod support;
use support::{LocalApi, tiny_task};

/// The API, a dispatcher and a fake worker whose `process` runs `handle`
/// (given the task's uuid) after counting the call.
struct Fixture {
    api: ApiClient,
    calls: Arc<AtomicUsize>,
    dispatcher: Arc<faafo_producer::Dispatcher>,
    producer: Producer,
    worker: RpcServer,
    transport: Transport,
    local_api: LocalApi,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start<F, Fut>(name: &str, handle: F) -> Self
    where
        F: Fn(ApiClient, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), RemoteError>> + Send + 'static,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = FaafoConfig::default();
        config.default.state_path = dir.path().display().to_string();
        config.default.transport_url = format!("memory:///{name}-{}", std::process::id());
        config.producer.poll_interval = 0.2;
        let local_api = LocalApi::start(&mut config).await;
        config.validate().expect("valid configuration");
        let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");
        let transport = Transport::connect(&config.default.transport_url)
            .await
            .expect("memory transport");
        let settings = ProducerSettings::from_config(&config);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let worker_api = api.clone();
        let worker = RpcServer::builder(
            &transport,
            Target::topic(&settings.topic).with_server("counting"),
        )
        .endpoint(Endpoint::new().method(
            "process",
            move |_ctx: RequestContext, args: ProcessArgs| {
                counted.fetch_add(1, Ordering::SeqCst);
                handle(worker_api.clone(), args.task.uuid.clone())
            },
        ))
        .start()
        .await
        .expect("the fake worker");
        let shutdown = Shutdown::new();
        let producer = Producer::new(
            ResilientApi::new(api.clone()),
            RpcClient::new(&transport, Target::topic(&settings.topic)),
            settings,
            shutdown.clone(),
        );
        let dispatcher = producer.dispatcher().clone();
        Self {
            producer,
            api,
            calls,
            dispatcher,
            worker,
            transport,
            local_api,
            shutdown,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.worker.stop().await;
        self.transport.close().await;
        self.local_api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_changed_since_it_was_listed_is_left_alone() {
    // A worker that fails each call with a worker error.
    let fixture = Fixture::start("stale-listing", |_, _| async {
        Err(RemoteError::value_error("not rendered in this test"))
    })
    .await;
    let (api, dispatcher, calls) = (&fixture.api, &fixture.dispatcher, &fixture.calls);

    // Listed pending, then finished (failed) before its dispatch began.
    let listed = api.create(&tiny_task(None)).await.expect("a task");
    let failed = FractalUpdate {
        status: Some(FractalStatus::Failed),
        error: Some("finished elsewhere".into()),
        attempts: Some(3),
        ..FractalUpdate::default()
    };
    api.update(&listed.uuid, &failed)
        .await
        .expect("marked failed");
    let claim = dispatcher.claim(&listed.uuid).expect("not claimed yet");
    let outcome = dispatcher.clone().dispatch(listed.clone(), claim).await;
    assert!(matches!(outcome, Outcome::Gone), "{outcome:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no call for it");
    let after = api.get(&listed.uuid).await.expect("the task");
    assert_eq!(after.status, FractalStatus::Failed, "not revived");
    assert_eq!(after.error.as_deref(), Some("finished elsewhere"));
    assert_eq!(after.attempts, 3);

    // Listed pending, then taken by someone else (running, attempt 1).
    let listed = api.create(&tiny_task(None)).await.expect("a task");
    let running = FractalUpdate {
        status: Some(FractalStatus::Running),
        attempts: Some(1),
        ..FractalUpdate::default()
    };
    api.update(&listed.uuid, &running).await.expect("taken");
    let claim = dispatcher.claim(&listed.uuid).expect("not claimed yet");
    let outcome = dispatcher.clone().dispatch(listed.clone(), claim).await;
    assert!(matches!(outcome, Outcome::Gone), "{outcome:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no second call for it");

    // Still as listed: dispatched (and marked failed, as this worker says).
    let listed = api.create(&tiny_task(None)).await.expect("a task");
    let claim = dispatcher.claim(&listed.uuid).expect("not claimed yet");
    let outcome = dispatcher.clone().dispatch(listed.clone(), claim).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "called once");
    let after = api.get(&listed.uuid).await.expect("the task");
    assert_eq!(after.status, FractalStatus::Failed);
    assert_eq!(after.attempts, 1);

    fixture.stop().await;
}

/// A worker call during which another producer takes the task over
/// (running, attempt 2); the worker then refuses it.
async fn taken_over_then_refused(api: ApiClient, uuid: String) -> Result<(), RemoteError> {
    let takeover = FractalUpdate {
        status: Some(FractalStatus::Running),
        attempts: Some(2),
        ..FractalUpdate::default()
    };
    api.update(&uuid, &takeover)
        .await
        .map_err(|e| RemoteError::value_error(format!("takeover: {e}")))?;
    Err(RemoteError::value_error("not rendered in this test"))
}

/// A producer whose call outlived `task_timeout` sees another producer's
/// recovery take the task over (attempt 2, running) while it waits; its
/// worker then fails the task for good. Its "failed" must not land on the
/// other producer's attempt: it applies only at the revision it marked
/// running (`If-Match`), and is refused (412) since the task moved on. A
/// request that hung on an API host the producer had left is in the same
/// position when it finally runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_taken_over_during_its_call_is_not_marked_failed_under_its_new_owner() {
    let fixture = Fixture::start("taken-over", taken_over_then_refused).await;
    let (api, dispatcher) = (&fixture.api, &fixture.dispatcher);
    let listed = api.create(&tiny_task(None)).await.expect("a task");
    let claim = dispatcher.claim(&listed.uuid).expect("not claimed yet");
    let outcome = dispatcher.clone().dispatch(listed.clone(), claim).await;
    assert_eq!(outcome, Outcome::TakenOver(listed.uuid.clone()));
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 1);
    let after = api.get(&listed.uuid).await.expect("the task");
    assert_eq!(
        (after.status, after.attempts, after.error.as_deref()),
        (FractalStatus::Running, 2, None),
        "the other producer's attempt stands"
    );
    fixture.stop().await;
}

/// `--one-shot` whose task another producer took over waits for the task
/// to end in the other's hands and counts it as it ends, rather than
/// exiting at once as if it had failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_batch_waits_for_a_task_taken_over() {
    let fixture = Fixture::start("one-shot-taken-over", taken_over_then_refused).await;
    let api = &fixture.api;
    let report = {
        let batch = fixture.producer.one_shot(vec![tiny_task(None)]);
        tokio::pin!(batch);
        // Until the other producer has it (attempt 2), and a while after:
        // the batch is still waiting.
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let waited =
                tokio::time::timeout(std::time::Duration::from_millis(100), &mut batch).await;
            assert!(
                waited.is_err(),
                "still waiting for the other producer: {waited:?}"
            );
            tasks = api
                .list_all(&faafo_common::api_client::ListQuery::default())
                .await
                .expect("list");
            if tasks.iter().any(|t| t.attempts == 2) {
                break;
            }
        }
        let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut batch).await;
        assert!(
            waited.is_err(),
            "still waiting for the other producer: {waited:?}"
        );
        assert_eq!(tasks.len(), 1);
        assert_eq!(
            (tasks[0].status, tasks[0].attempts),
            (FractalStatus::Running, 2)
        );
        // The other producer's worker fails it for good.
        let failed = FractalUpdate {
            status: Some(FractalStatus::Failed),
            error: Some("the other producer's worker refused it".into()),
            ..FractalUpdate::default()
        };
        api.update(&tasks[0].uuid, &failed).await.expect("failed");
        tokio::time::timeout(std::time::Duration::from_secs(10), batch)
            .await
            .expect("the batch ends once the task does")
    };
    assert_eq!((report.done, report.failed, report.other), (0, 1, 0));
    assert!(!report.all_done());
    fixture.stop().await;
}

/// A task the other producer gives back (pending again) while a
/// `--one-shot` batch waits for it is taken back and seen through: a
/// one-shot producer runs no scan that would find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_batch_takes_back_a_task_given_back() {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let fixture = Fixture::start(
        "one-shot-given-back",
        move |api: ApiClient, uuid: String| {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    // Another producer took it and gave it back.
                    let back = FractalUpdate {
                        status: Some(FractalStatus::Pending),
                        ..FractalUpdate::default()
                    };
                    api.update(&uuid, &back)
                        .await
                        .map_err(|e| RemoteError::value_error(format!("give back: {e}")))?;
                }
                Err(RemoteError::value_error("not rendered in this test"))
            }
        },
    )
    .await;
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        fixture.producer.one_shot(vec![tiny_task(None)]),
    )
    .await
    .expect("the batch ends");
    assert_eq!((report.done, report.failed, report.other), (0, 1, 0));
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 2, "dispatched again");
    let tasks = fixture
        .api
        .list_all(&faafo_common::api_client::ListQuery::default())
        .await
        .expect("list");
    assert_eq!(
        (tasks[0].status, tasks[0].attempts),
        (FractalStatus::Failed, 2)
    );
    fixture.stop().await;
}
