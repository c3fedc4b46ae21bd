//! A one-shot batch whose tasks another producer took over and then left
//! (it died) takes each of them back once it has stood still for
//! `task_timeout`, all side by side: the batch ends about one
//! `task_timeout` later, not one per task. The API (SQLite in a temporary
//! directory), the producer and the worker run in this process on the
//! in-memory broker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, FractalUpdate, ProcessArgs};
use faafo_common::messaging::{
    Endpoint, RemoteError, RequestContext, RpcClient, RpcServer, Target,
};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

mod support;
use support::{LocalApi, tiny_task};

const TASKS: usize = 4;
const TASK_TIMEOUT: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_another_producer_took_and_left_are_taken_back_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "taken-back", 1, 8);
    config.producer.task_timeout = TASK_TIMEOUT;
    config.producer.poll_interval = 0.2;
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let direct = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    let (transport, service) = support::worker_service(&config).await;
    let settings = ProducerSettings::from_config(&config);

    // Each task's first call: another producer takes the task over (its
    // attempt 2), and the call fails; that producer then says nothing.
    let taken: Arc<Mutex<HashSet<String>>> = Arc::default();
    let other = direct.clone();
    let worker = RpcServer::builder(
        &transport,
        Target::topic(&settings.topic).with_server("taken-back"),
    )
    .endpoint(
        Endpoint::new().method("process", move |ctx: RequestContext, args: ProcessArgs| {
            let (service, other, taken) = (service.clone(), other.clone(), taken.clone());
            async move {
                let uuid = args.task.uuid.clone();
                let first = taken.lock().expect("lock").insert(uuid.clone());
                if !first {
                    return service.process(ctx, args.task).await;
                }
                let task = other.get(&uuid).await.expect("the task");
                let running = FractalUpdate {
                    status: Some(FractalStatus::Running),
                    attempts: Some(2),
                    ..FractalUpdate::default()
                };
                other
                    .update_at_revision(&uuid, &running, task.revision)
                    .await
                    .expect("another producer takes it over");
                Err(RemoteError::runtime_error("the first call fails"))
            }
        }),
    )
    .start()
    .await
    .expect("the worker");

    let producer = Producer::new(
        ResilientApi::new(direct.clone()),
        RpcClient::new(&transport, Target::topic(&settings.topic)),
        settings,
        Shutdown::new(),
    );
    let tasks: Vec<_> = (0..TASKS).map(|_| tiny_task(None)).collect();
    let started = Instant::now();
    let report = producer.one_shot(tasks).await;
    let took = started.elapsed();
    assert_eq!(
        (report.done, report.failed, report.other),
        (TASKS, 0, 0),
        "{report:?}"
    );
    // One after the other: TASKS x TASK_TIMEOUT (12 s) at least.
    assert!(
        took < Duration::from_secs(TASK_TIMEOUT * 2 + 2),
        "the {TASKS} tasks were taken back one after the other: {took:?}"
    );
    let tasks = support::listed(&direct, None).await;
    assert_eq!(tasks.len(), TASKS);
    for task in tasks {
        assert_eq!(
            (task.status, task.attempts),
            (FractalStatus::Done, 3),
            "created (1), taken over (2), taken back (3): {}",
            task.uuid
        );
    }
    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
}
