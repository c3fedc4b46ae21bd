//! A producer that starts while its API does not answer yet (a boot where
//! the API comes up second, a database restarting) looks for the tasks a
//! previous producer left running as soon as the API answers, not
//! `task_timeout` later: its start-up scan is tried again at each poll
//! until it succeeds. The API (SQLite in a temporary directory) behind a
//! proxy the test cuts, a real worker's rendering and `serve` (what
//! `faafo producer` runs) share this process and the in-memory broker.

use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::FractalStatus;
use faafo_common::shutdown::Shutdown;

mod support;
use support::{LocalApi, TcpProxy, eventually, tiny_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_left_running_are_recovered_once_a_late_api_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = support::small_tasks_config(dir.path(), "late-api", 1, 4);
    config.producer.poll_interval = 0.2;
    let local_api = LocalApi::start(&mut config).await;
    config.validate().expect("valid configuration");
    let api = ApiClient::new(&config.default.endpoint_url, None).expect("client");

    // What a producer that died mid-call left: a task running, just
    // updated, which the periodic scan takes only after task_timeout.
    let mut left = tiny_task(None);
    left.status = Some(FractalStatus::Running);
    left.attempts = Some(1);
    let left = api.create(&left).await.expect("the task left running");

    let (transport, worker) = support::rendering_worker(&config, "late-api").await;

    let address = config
        .default
        .endpoint_url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .expect("the API's address");
    let proxy = TcpProxy::start(address).await;
    let mut producing = config.clone();
    producing.default.endpoint_url = format!("http://127.0.0.1:{}", proxy.port);
    let stop = Shutdown::new();
    // The API unreachable for the producer's first three seconds.
    // (join! polls the cut first: it is in place when the producer starts.)
    let ((), [producer]) = tokio::join!(proxy.cut_for(Duration::from_secs(3)), async {
        let stop = stop.clone();
        [tokio::spawn(async move {
            faafo_producer::serve(&producing, false, stop).await.is_ok()
        })]
    });

    eventually(
        "the task left running is done, well before task_timeout",
        Duration::from_secs(30),
        async || {
            api.get(&left.uuid)
                .await
                .is_ok_and(|f| f.status == FractalStatus::Done)
        },
    )
    .await;
    let done = api.get(&left.uuid).await.expect("the task");
    assert_eq!(done.attempts, 2, "dispatched once more: {done:?}");

    stop.trigger();
    let ran = tokio::time::timeout(Duration::from_secs(30), producer)
        .await
        .expect("the producer stops")
        .expect("join");
    assert!(ran, "the producer ran and stopped");
    worker.stop().await;
    transport.close().await;
    local_api.stop().await;
}
