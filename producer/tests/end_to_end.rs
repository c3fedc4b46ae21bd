//! faafo end to end: the services as separate processes on RabbitMQ (a vhost
//! of the test's own) with SQLite, MariaDB and PostgreSQL; `faafo up` in
//! one process; and recovery when the producer and a worker are killed.

mod support;

use std::path::Path;
use std::time::Duration;

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, NewFractal};
use faafo_common::testing::RabbitVhost;
use support::*;

/// Small tasks, quick to render.
const SMALL_TASKS: &str = "
min_width = 64
max_width = 160
min_height = 64
max_height = 160
min_iterations = 32
max_iterations = 128
";

async fn separate_processes(database: TestDatabase, dir: &Path) {
    let vhost = RabbitVhost::create().await;
    let port = free_port();
    let tasks = 12;
    let config = write_config(
        dir,
        "faafo.conf",
        &format!(
            "[DEFAULT]\ntransport_url = {}\ndatabase_url = {}\nstate_path = {}\nendpoint_url = http://127.0.0.1:{port}\n\n\
             [api]\nbind_port = {port}\n\n[producer]\nmin_tasks = {tasks}\nmax_tasks = {tasks}\npoll_interval = 0.5\n{SMALL_TASKS}",
            vhost.url(),
            database.url,
            dir.display()
        ),
    );
    let api_service = Service::start("api", dir, &config, &["api"]);
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    api_ready(&api, &api_service).await;
    let w1 = Service::start("worker-1", dir, &config, &["worker"]);
    let w2 = Service::start("worker-2", dir, &config, &["worker"]);
    let mut producer = Service::start("producer", dir, &config, &["producer", "--one-shot"]);
    let code = tokio::task::spawn_blocking(move || {
        let code = producer.wait(Duration::from_secs(180));
        (code, producer.log_text())
    })
    .await
    .expect("join");
    assert_eq!(
        code.0,
        Some(0),
        "the one-shot producer reports every task done; its log:\n{}",
        code.1
    );
    assert_all_done_and_intact(&api, tasks).await;
    // Rendered once each, between the two workers (they share the topic
    // queue; which took how many is the broker's choice).
    let rendered = |w: &Service| w.log_text().matches("processed in").count();
    assert_eq!(
        rendered(&w1) + rendered(&w2),
        tasks,
        "each task rendered once"
    );
    // One request id follows each fractal from the producer through the
    // RPC context into the worker's lines and the API's.
    let worker_log = w1.log_text() + &w2.log_text();
    let line = worker_log
        .lines()
        .find(|l| l.contains("processing task"))
        .expect("a worker line");
    let request_id = line
        .split('[')
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("a request id on the line");
    let uuid = line.rsplit(' ').next().expect("uuid");
    assert!(request_id.starts_with("req-"), "{line}");
    let api_log = api_service.log_text();
    assert!(
        api_log
            .lines()
            .any(|l| l.contains(&format!("[{request_id}]"))
                && l.contains(&format!("/v1/fractal/{uuid}"))),
        "the API's lines for {uuid} carry {request_id}"
    );
    let producer_log = std::fs::read_to_string(dir.join("producer.log")).unwrap_or_default();
    assert!(
        producer_log.contains(&format!("[{request_id}]")),
        "the producer's too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_with_rabbitmq_and_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    separate_processes(TestDatabase::sqlite(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_with_rabbitmq_and_mariadb() {
    let dir = tempfile::tempdir().expect("tempdir");
    separate_processes(TestDatabase::mariadb(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_with_rabbitmq_and_postgresql() {
    let dir = tempfile::tempdir().expect("tempdir");
    separate_processes(TestDatabase::postgres(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faafo_up_renders_and_serves_the_page_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(
        dir.path(),
        "faafo.conf",
        &format!(
            "[DEFAULT]\nstate_path = {}\n\n[producer]\ninterval = 1\nmin_tasks = 2\nmax_tasks = 3\n{SMALL_TASKS}",
            dir.path().display()
        ),
    );
    let up = Service::start(
        "up",
        dir.path(),
        &config,
        &["up", "--port", &port.to_string()],
    );
    let url = format!("http://127.0.0.1:{port}");
    let api = ApiClient::new(&url, None).expect("client");
    api_ready(&api, &up).await;
    eventually(
        "fractals are rendered",
        Duration::from_secs(60),
        async || all(&api, Some(FractalStatus::Done)).await.len() >= 3,
    )
    .await;
    let done = all(&api, Some(FractalStatus::Done)).await;
    let page = reqwest::get(format!("{url}/"))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        done.iter().any(|f| page.contains(&f.uuid)),
        "the page shows a rendered fractal"
    );
    let png = api.image(&done[0].uuid).await.expect("image");
    assert_eq!(Some(sha256_hex(&png)), done[0].checksum);

    // Ctrl-C (SIGINT) stops it cleanly; its data stays.
    up.signal("INT");
    let mut up = up;
    let code =
        tokio::task::spawn_blocking(move || (up.wait(Duration::from_secs(60)), up.log_text()))
            .await
            .expect("join");
    assert_eq!(code.0, Some(0), "clean exit; log:\n{}", code.1);
    assert!(code.1.contains("faafo stopped"), "{}", code.1);
    let again = Service::start(
        "up-again",
        dir.path(),
        &config,
        &["up", "--port", &port.to_string(), "--no-producer"],
    );
    api_ready(&api, &again).await;
    let kept = all(&api, Some(FractalStatus::Done)).await;
    for f in &done {
        assert!(
            kept.iter().any(|k| k.uuid == f.uuid),
            "{} kept across restarts",
            f.uuid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_is_done_once_after_killing_the_producer_and_a_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vhost = RabbitVhost::create().await;
    let port = free_port();
    let config = write_config(
        dir.path(),
        "faafo.conf",
        &format!(
            "[DEFAULT]\ntransport_url = {}\nstate_path = {}\nendpoint_url = http://127.0.0.1:{port}\n\n\
             [api]\nbind_port = {port}\n\n\
             [worker]\nexecutor_size = 1\nrender_threads = 1\n\n\
             [producer]\nmin_tasks = 0\nmax_tasks = 0\npoll_interval = 0.3\nmax_in_flight = 8\n",
            vhost.url(),
            dir.path().display()
        ),
    );
    let api_service = Service::start("api", dir.path(), &config, &["api"]);
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    api_ready(&api, &api_service).await;
    let w1 = Service::start("worker-1", dir.path(), &config, &["worker"]);
    let _w2 = Service::start("worker-2", dir.path(), &config, &["worker"]);
    let producer = Service::start("producer", dir.path(), &config, &["producer"]);
    // c = 0: a third of the view never escapes, so each render takes a
    // noticeable time on one thread.
    let tasks = 10;
    for _ in 0..tasks {
        api.create(&NewFractal {
            uuid: None,
            width: 300,
            height: 300,
            iterations: 2000,
            xa: -1.5,
            xb: 1.5,
            ya: -1.5,
            yb: 1.5,
            seed: None,
            c_re: Some(0.0),
            c_im: Some(0.0),
            status: None,
            attempts: None,
        })
        .await
        .expect("create");
    }
    eventually(
        "calls are in flight and a worker renders",
        Duration::from_secs(60),
        async || {
            !all(&api, Some(FractalStatus::Running)).await.is_empty()
                && w1.log_text().contains("processing task")
        },
    )
    .await;
    producer.signal("KILL");
    w1.signal("KILL");
    drop(producer);
    drop(w1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _producer = Service::start("producer-restarted", dir.path(), &config, &["producer"]);
    let _w1 = Service::start("worker-1-restarted", dir.path(), &config, &["worker"]);
    let started = std::time::Instant::now();
    eventually("every task is done", Duration::from_secs(240), async || {
        all(&api, Some(FractalStatus::Done)).await.len() == tasks
    })
    .await;
    println!("recovered in {:?}", started.elapsed());
    if std::env::var_os("FAAFO_KEEP_LOGS").is_some() {
        let keep = std::env::temp_dir().join("faafo-e2e-logs");
        let _ = std::fs::create_dir_all(&keep);
        for entry in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
            }
        }
    }
    assert_all_done_and_intact(&api, tasks).await;
}
