//! A worker peer that answers `process` for another task than the one it
//! was given (a bug, or a peer speaking the protocol badly): the producer
//! must not store that image and result on the task it asked about, nor on
//! the other one. The API (SQLite in a temporary directory), the producer
//! and the fake worker run in this process on the in-memory broker.

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{FractalStatus, NewFractal, ProcessArgs, TaskResult};
use faafo_common::messaging::{
    Endpoint, RemoteError, RequestContext, RpcServer, Target, Transport,
};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

/// A fractal the producer will create and dispatch.
fn task(uuid: &str) -> NewFractal {
    NewFractal {
        uuid: Some(uuid.into()),
        width: 64,
        height: 64,
        iterations: 32,
        xa: -1.5,
        xb: 1.5,
        ya: -1.5,
        yb: 1.5,
        seed: Some(1),
        c_re: None,
        c_im: None,
        status: None,
        attempts: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_another_task_is_not_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FaafoConfig::default();
    config.default.state_path = dir.path().display().to_string();
    config.default.transport_url = format!("memory:///hostile-worker-{}", std::process::id());
    config.api.bind_host = "127.0.0.1".into();
    config.api.bind_port = 0;
    config.validate().expect("valid configuration");
    let app = faafo_api::Application::build(&config)
        .await
        .expect("the API starts");
    let url = app.url();
    let stop_api = Shutdown::new();
    let api_task = {
        let stop = stop_api.clone();
        tokio::spawn(app.run_until_stopped(async move { stop.wait().await }))
    };
    let api = ApiClient::new(&url, None).expect("client");

    // The other task exists, pending, untouched by anyone.
    let other = "01a20784-fe99-72fe-a554-000000000002";
    api.create(&task(other)).await.expect("the other task");

    let transport = Transport::connect(&config.default.transport_url)
        .await
        .expect("memory transport");
    let settings = ProducerSettings::from_config(&config);
    let wrong = other.to_string();
    let worker = RpcServer::builder(
        &transport,
        Target::topic(&settings.topic).with_server("bad"),
    )
    .endpoint(
        Endpoint::new().method("process", move |_ctx: RequestContext, args: ProcessArgs| {
            let wrong = wrong.clone();
            async move {
                let _ = args.task;
                Ok::<_, RemoteError>(TaskResult {
                    uuid: wrong,
                    duration: 0.1,
                    checksum: "0".repeat(64),
                    size: 4,
                    c_re: 0.0,
                    c_im: 0.0,
                    generated_by: "bad".into(),
                    pixel_iterations: 1,
                    image: b"\x89PNG".to_vec(),
                })
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
    let report = producer.one_shot(vec![task(asked)]).await;
    assert_eq!(report.failed, 1, "{report:?}");

    let failed = api.get(asked).await.expect("the task asked about");
    assert_eq!(failed.status, FractalStatus::Failed);
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains(&format!("the worker answered for task {other} instead")),
        "{error}"
    );
    assert_eq!(failed.checksum, None, "no result stored on it");
    let untouched = api.get(other).await.expect("the other task");
    assert_eq!(untouched.status, FractalStatus::Pending);
    assert_eq!(untouched.checksum, None, "nor on the other one");

    shutdown.trigger();
    worker.stop().await;
    transport.close().await;
    stop_api.trigger();
    api_task
        .await
        .expect("the API task")
        .expect("the API stops cleanly");
}
