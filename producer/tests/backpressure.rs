//! While the API cannot be reached, the producer keeps generating on its
//! schedule but holds at most 4 x `max_in_flight` tasks (plus the batch
//! being created): batches are skipped, not piled up in memory.

use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::messaging::{RpcClient, Target, Transport};
use faafo_common::shutdown::Shutdown;
use faafo_producer::{Producer, ProducerSettings, ResilientApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_skipped_while_nothing_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FaafoConfig::default();
    // Nothing of the user's (results kept by a stop) is read.
    config.default.state_path = dir.path().display().to_string();
    config.default.transport_url = format!("memory:///backpressure-{}", std::process::id());
    config.producer.interval = 0.02;
    config.producer.min_tasks = 10;
    config.producer.max_tasks = 10;
    config.producer.max_in_flight = 2;
    config.validate().expect("valid configuration");
    let settings = ProducerSettings::from_config(&config);

    // Nobody listens there: every request fails and is retried.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let api = ApiClient::new(&format!("http://{nobody}"), None).expect("client");
    let transport = Transport::connect(&config.default.transport_url)
        .await
        .expect("memory transport");
    let rpc = RpcClient::new(&transport, Target::topic(&settings.topic));
    let shutdown = Shutdown::new();
    let producer = std::sync::Arc::new(Producer::new(
        ResilientApi::new(api),
        rpc,
        settings,
        shutdown.clone(),
    ));
    let running = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.run().await })
    };
    // About 50 batch times: 500 tasks without a bound.
    let mut most = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        most = most.max(producer.dispatcher().in_flight());
    }
    assert!(most >= 8, "it generated ({most} held)");
    assert!(most <= 4 * 2 + 10, "{most} tasks held while nothing moves");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the producer stops")
        .expect("join");
    transport.close().await;
}
