//! A fractal deleted while it renders, and its uuid created again at once
//! (a client may choose it) with other parameters: the render of the
//! deleted fractal must never be stored as the new one's. The new one is
//! another fractal, rendered by a dispatch of its own. Once with the
//! producer's deletion check off (only the API's `Faafo-If-Created-At`
//! precondition on the result guards it), once with the check on (the
//! dispatch sees the uuid created again and gives the old render up). The
//! API (SQLite in a temporary directory), the producer and a worker whose
//! first render waits for the test run in this process on the in-memory
//! broker.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, NewFractal};
use faafo_common::messaging::Target;
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

mod support;
use support::{LocalApi, done_fractal, gated_worker, small_tasks_config, tiny_task};

const UUID: &str = "01a20784-fe99-72fe-a554-0000000000aa";

async fn a_replaced_fractal_is_not_finished_by_the_deleted_ones_render(
    name: &str,
    deletion_check_interval: Option<Duration>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_tasks_config(dir.path(), name, 1, 4);
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");

    // A real worker's rendering; its first call waits for the test.
    let worker = gated_worker(&config, "gated", 1).await;
    let (transport, calls, gate) = (&worker.transport, &worker.calls, &worker.gate);

    let mut settings = ProducerSettings::from_config(&config);
    settings.deletion_check_interval = deletion_check_interval;
    settings.poll_interval = Duration::from_millis(200);
    let rpc = faafo_common::messaging::RpcClient::new(transport, Target::topic(&settings.topic));
    let shutdown = Shutdown::new();
    let producer = Arc::new(Producer::new(
        ResilientApi::new(ApiClient::new(&config.default.endpoint_url, None).expect("client")),
        rpc,
        settings,
        shutdown.clone(),
    ));
    let first_render = worker.called.notified();
    let batch = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.one_shot(vec![tiny_task(Some(UUID))]).await })
    };
    tokio::time::timeout(Duration::from_secs(30), first_render)
        .await
        .expect("the first render starts");
    let old = api.get(UUID).await.expect("the task");
    assert_eq!(old.status, FractalStatus::Running);

    // Deleted and created again: the same size (so its image would fit),
    // other parameters, pending.
    api.delete(UUID).await.expect("deleted");
    let again = NewFractal {
        iterations: old.iterations + 7,
        xa: old.xa - 0.25,
        ..tiny_task(Some(UUID))
    };
    let new = api.create(&again).await.expect("created again");
    assert_ne!(new.created_at, old.created_at);
    if deletion_check_interval.is_some() {
        // The dispatch sees the uuid created again, and ends.
        let report = tokio::time::timeout(Duration::from_secs(30), batch)
            .await
            .expect("the batch ends without the render")
            .expect("the batch");
        assert_eq!((report.done, report.other), (0, 1), "{report:?}");
        gate.add_permits(1);
    } else {
        // The deleted fractal's render comes back: refused on the new one.
        gate.add_permits(1);
        let report = tokio::time::timeout(Duration::from_secs(30), batch)
            .await
            .expect("the batch ends")
            .expect("the batch");
        assert_eq!((report.done, report.other), (0, 1), "{report:?}");
    }
    let now = api.get(UUID).await.expect("the new fractal");
    assert_eq!(now.created_at, new.created_at);
    assert_eq!(
        (now.status, now.checksum.clone(), now.iterations, now.xa),
        (FractalStatus::Pending, None, again.iterations, again.xa),
        "the new fractal, untouched by the deleted one's render: {now:?}"
    );

    // The new fractal is rendered by a dispatch of its own (the recovery
    // of pending tasks), for its own parameters.
    let service_loop = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.dispatch_only().await })
    };
    let rendered = done_fractal(&api, UUID).await;
    assert_eq!(rendered.created_at, new.created_at);
    let image = api.image(UUID).await.expect("its image");
    assert_eq!(
        faafo_common::fractal::sha256_hex(&image),
        rendered.checksum.clone().expect("a checksum")
    );
    assert_eq!(rendered.iterations, again.iterations);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one render each");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), service_loop)
        .await
        .expect("the producer stops")
        .expect("the producer task");
    worker.server.stop().await;
    local_api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_of_a_deleted_fractal_is_refused_on_its_uuid_created_again() {
    a_replaced_fractal_is_not_finished_by_the_deleted_ones_render("replaced-store", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_sees_its_uuid_deleted_and_created_again() {
    a_replaced_fractal_is_not_finished_by_the_deleted_ones_render(
        "replaced-check",
        // Long next to the delete and the creation that follows it (a
        // check between the two would see a deletion, not a creation).
        Some(Duration::from_secs(1)),
    )
    .await;
}
