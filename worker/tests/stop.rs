//! `faafo-worker` stopped by SIGTERM while it renders: it waits
//! `shutdown_grace` for the render, then cancels it, gives the task back to
//! the queue unanswered (another worker takes it; no failed attempt) and
//! exits 0, instead of rendering on for up to `exec_timeout`. On RabbitMQ:
//! the memory transport lives inside one process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faafo_common::fractal::{ProcessArgs, Task, TaskResult};
use faafo_common::messaging::{RequestContext, RpcClient, Target, Transport};
use faafo_common::testing::{RabbitVhost, queue_depth};

/// Kills the worker if the test ends early, so no process outlives it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool, log: &Path) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; the worker's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn logged(log: &Path, line: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(line))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_a_long_render_back_after_the_grace() {
    let vhost = RabbitVhost::create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("worker.conf");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\ntransport_url = {}\n\n[worker]\nserver_name = standalone\n\
             executor_size = 1\nrender_threads = 1\nshutdown_grace = 1\n",
            vhost.url()
        ),
    )
    .expect("config written");
    let log = dir.path().join("worker.log");
    let mut worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_faafo-worker"))
            .arg("--config-file")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("faafo-worker starts"),
    );

    // Its queue exists once it is ready: a call before would find nobody.
    wait_for(
        "the worker is ready",
        Duration::from_secs(60),
        || logged(&log, "worker ready"),
        &log,
    )
    .await;
    // faafo's control exchange, which the worker's configuration defaults to.
    let transport = Transport::builder(vhost.url())
        .control_exchange("faafo")
        .connect()
        .await
        .expect("connects");
    let client =
        RpcClient::new(&transport, Target::topic("tasks")).timeout(Duration::from_secs(600));
    // Minutes of rendering: every pixel runs all its iterations.
    let task = Task {
        uuid: uuid::Uuid::new_v4().to_string(),
        width: 4000,
        height: 4000,
        iterations: 100_000,
        xa: -0.5,
        xb: 0.5,
        ya: -0.5,
        yb: 0.5,
        seed: None,
        c_re: Some(0.0),
        c_im: Some(0.0),
        revision: None,
    };
    let uuid = task.uuid.clone();
    let call = tokio::spawn(async move {
        client
            .call::<_, TaskResult>(&RequestContext::new(), "process", &ProcessArgs { task })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logged(&log, "processing task") {
        if call.is_finished() {
            panic!("the call ended before it was rendered: {:?}", call.await);
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not take the task within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stopped = Instant::now();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(worker.0.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut exit = None;
    wait_for(
        "the worker exits",
        Duration::from_secs(30),
        || {
            exit = worker.0.try_wait().expect("waits");
            exit.is_some()
        },
        &log,
    )
    .await;
    let took = stopped.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{text}");
    // Not at once: the grace (1 s) is waited out first.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(15),
        "stopped after {took:?}:\n{text}"
    );
    assert!(
        text.contains("their tasks went back to the queue"),
        "says what became of the render:\n{text}"
    );
    assert!(
        !text.contains(&format!("task {uuid} failed")),
        "not a failure of the task:\n{text}"
    );
    // Back in the queue, unanswered: the caller still waits for a worker.
    let mut depth = None;
    for _ in 0..100 {
        depth = queue_depth(&transport, "tasks").await.expect("depth");
        if depth == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(depth, Some(1), "the task is back in the queue");
    assert!(
        !call.is_finished(),
        "no answer was sent for the given-up render"
    );
    call.abort();
    transport.close().await;
}
