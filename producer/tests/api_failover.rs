//! Two API hosts sharing one PostgreSQL database, the producer given both
//! (`endpoint_url = http://a,http://b`): the host it uses is SIGKILLed in
//! the middle of a batch (its first calls in flight, no worker yet), and
//! the producer carries on with the other: every result is stored after
//! the kill. Every task still reaches `done` once, with an image that
//! hashes to its checksum.

mod support;

use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::FractalStatus;
use faafo_common::testing::RabbitVhost;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_moves_to_another_api_host_when_one_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let database = TestDatabase::postgres();
    let vhost = RabbitVhost::create().await;
    let (port_a, port_b) = (free_port(), free_port());
    let tasks: usize = 40;
    let common = format!(
        "[DEFAULT]\ntransport_url = {}\ndatabase_url = {}\nstate_path = {}\n\
         endpoint_url = http://127.0.0.1:{port_a}, http://127.0.0.1:{port_b}\n\n\
         [worker]\nexecutor_size = 2\n\n\
         [producer]\nmin_tasks = {tasks}\nmax_tasks = {tasks}\nmax_in_flight = 4\npoll_interval = 0.5\n\
         min_width = 128\nmax_width = 192\nmin_height = 128\nmax_height = 192\n\
         min_iterations = 64\nmax_iterations = 128\n",
        vhost.url(),
        database.url,
        d.display()
    );
    let services = write_config(d, "faafo.conf", &common);
    let api_config = |name: &str, port: u16| {
        write_config(d, name, &format!("{common}\n[api]\nbind_port = {port}\n"))
    };
    let (config_a, config_b) = (api_config("a.conf", port_a), api_config("b.conf", port_b));
    // One after the other: both would create the schema at once otherwise.
    let mut api_a = Service::start("api-a", d, &config_a, &["api"]);
    let a = ApiClient::new(&format!("http://127.0.0.1:{port_a}"), None).expect("client");
    api_ready(&a, &api_a).await;
    let api_b = Service::start("api-b", d, &config_b, &["api"]);
    let b = ApiClient::new(&format!("http://127.0.0.1:{port_b}"), None).expect("client");
    api_ready(&b, &api_b).await;

    let mut producer = Service::start("producer", d, &services, &["producer", "--one-shot"]);
    eventually(
        "the producer's first calls are in flight, created through host a",
        Duration::from_secs(60),
        async || count(&b, FractalStatus::Running).await >= 4,
    )
    .await;
    api_a.signal("KILL");
    assert!(api_a.wait(Duration::from_secs(10)).is_none(), "killed");
    // Only now: every result, and the rest of the batch, goes through b.
    let _worker = Service::start("worker", d, &services, &["worker"]);

    let (code, log) = tokio::task::spawn_blocking(move || {
        let code = producer.wait(Duration::from_secs(180));
        (code, producer.log_text())
    })
    .await
    .expect("join");
    assert_eq!(
        code,
        Some(0),
        "the one-shot producer finished every task; its log:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "the faafo API at http://127.0.0.1:{port_a} failed; using http://127.0.0.1:{port_b} from now on"
        )),
        "the producer says it moved to host b; its log:\n{log}"
    );
    assert_all_done_and_intact(&b, tasks).await;
    drop(api_b);
}
