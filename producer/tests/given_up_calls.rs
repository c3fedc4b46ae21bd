//! A producer that stops while its calls wait at a busy worker gives them
//! up after its grace, and tells the workers so (`cancel` with the reason
//! `given_up` and the revision each call was made at): the worker does not
//! render them for nobody when their turn comes, and the producer's next
//! start has each of those tasks rendered once. Before, each was rendered
//! twice: once for the stopped producer, whose reply queue nobody reads,
//! and once for the next.
//!
//! The API (SQLite in a temporary directory), a worker whose calls wait at
//! a gate before the real rendering, and `serve` (what `faafo producer`
//! runs) share this process and the in-memory broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, ProcessArgs, TASK_GIVEN_UP, control_topic};
use faafo_common::messaging::{Endpoint, RequestContext, RpcServer, Target};
use faafo_common::shutdown::Shutdown;

mod support;
use support::{LocalApi, eventually};

/// How each call of a task ended at the worker: rendered (`None`) or the
/// error class it was answered with.
type Outcomes = Arc<Mutex<HashMap<String, Vec<Option<String>>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_given_up_at_a_stop_are_not_rendered_for_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "given-up", 4, 4);
    config.producer.shutdown_grace = 1;
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");

    let (transport, service) = support::worker_service(&config).await;
    let topic = config.worker.topic.clone();
    // The worker is busy: calls wait at the gate until it opens.
    let (gate, opened) = tokio::sync::watch::channel(false);
    let outcomes: Outcomes = Arc::default();
    let worker = {
        let (service, outcomes) = (service.clone(), outcomes.clone());
        RpcServer::builder(&transport, Target::topic(&topic).with_server("busy"))
            .endpoint(Endpoint::new().method(
                "process",
                move |ctx: RequestContext, args: ProcessArgs| {
                    let (service, outcomes, mut opened) =
                        (service.clone(), outcomes.clone(), opened.clone());
                    async move {
                        let uuid = args.task.uuid.clone();
                        outcomes
                            .lock()
                            .expect("outcomes")
                            .entry(uuid.clone())
                            .or_default();
                        let _ = opened.wait_for(|open| *open).await;
                        let outcome = service.process(ctx, args.task).await;
                        let class = outcome.as_ref().err().map(|e| e.class.clone());
                        outcomes
                            .lock()
                            .expect("outcomes")
                            .entry(uuid)
                            .or_default()
                            .push(class);
                        outcome
                    }
                },
            ))
            .executor_size(8)
            .start()
            .await
            .expect("the busy worker")
    };
    let control = RpcServer::builder(
        &transport,
        Target::topic(control_topic(&topic)).with_server("busy"),
    )
    .endpoint(service.control_endpoint())
    .executor_size(1)
    .start()
    .await
    .expect("the worker's control server");

    // A first producer: its four calls wait at the worker, and it stops.
    let stop = Shutdown::new();
    let first = {
        let (config, stop) = (config.clone(), stop.clone());
        tokio::spawn(async move { faafo_producer::serve(&config, true, stop).await.is_ok() })
    };
    let waiting = || outcomes.lock().expect("outcomes").len();
    eventually(
        "the four calls wait at the worker",
        Duration::from_secs(30),
        async || waiting() == 4,
    )
    .await;
    let first_tasks: Vec<String> = outcomes.lock().expect("outcomes").keys().cloned().collect();
    stop.trigger();
    let ran = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the producer stops after its grace")
        .expect("join");
    assert!(ran, "the first producer ran and stopped");

    // The producer's stop waits for the broker to take its `given_up`
    // casts, not for the worker to read them: the worker's turn comes
    // once it has (a render it starts before the news is one for nobody,
    // which the cast cannot prevent). Then every call of the stopped
    // producer is refused, none rendered.
    eventually(
        "the worker has read the given-up calls",
        Duration::from_secs(30),
        async || control.stats().settled() >= first_tasks.len() as u64,
    )
    .await;
    gate.send(true).expect("the gate opens");
    let ended = |uuid: &str| {
        outcomes
            .lock()
            .expect("outcomes")
            .get(uuid)
            .map_or(0, Vec::len)
    };
    eventually(
        "the given-up calls end",
        Duration::from_secs(30),
        async || first_tasks.iter().all(|uuid| ended(uuid) == 1),
    )
    .await;
    for uuid in &first_tasks {
        assert_eq!(
            outcomes.lock().expect("outcomes")[uuid],
            [Some(TASK_GIVEN_UP.to_string())],
            "{uuid}: not rendered for nobody"
        );
    }

    // The next start dispatches them again, at later revisions: each is
    // rendered once, and done.
    let mut again = config.clone();
    again.producer.min_tasks = 1;
    again.producer.max_tasks = 1;
    again.producer.interval = 3600.0;
    let stop_again = Shutdown::new();
    let second = {
        let stop = stop_again.clone();
        tokio::spawn(async move { faafo_producer::serve(&again, false, stop).await.is_ok() })
    };
    let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");
    eventually(
        "the first tasks are done",
        Duration::from_secs(60),
        async || {
            let mut done = 0;
            for uuid in &first_tasks {
                if api
                    .get(uuid)
                    .await
                    .is_ok_and(|f| f.status == FractalStatus::Done)
                {
                    done += 1;
                }
            }
            done == first_tasks.len()
        },
    )
    .await;
    for uuid in &first_tasks {
        assert_eq!(
            outcomes.lock().expect("outcomes")[uuid],
            [Some(TASK_GIVEN_UP.to_string()), None],
            "{uuid}: refused once, then rendered once"
        );
        let fractal = api.get(uuid).await.expect("the task");
        assert_eq!(fractal.attempts, 1, "the stop used no attempt: {fractal:?}");
    }
    stop_again.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(30), second).await;

    worker.stop().await;
    control.stop().await;
    transport.close().await;
    local_api.stop().await;
}
