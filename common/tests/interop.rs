//! Wire compatibility with Python oslo.messaging, both directions, on RabbitMQ.
//!
//! The test setup makes a virtualenv with oslo.messaging (cached in cargo's
//! target directory) and runs `tests/python/oslo_peer.py` as the Python
//! peer. Each test has a RabbitMQ vhost of its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faafo_common::messaging::*;
use faafo_common::testing::{RabbitVhost, remote_error};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const OSLO_MESSAGING: &str = "oslo.messaging==18.3.1";

/// A virtualenv with oslo.messaging, made once and reused.
fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = std::env::var_os("FAAFO_OSLO_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("oslo-venv-18.3.1"));
            let python = dir.join("bin/python");
            if dir.join(".complete").exists() {
                return python;
            }
            // Build beside, then rename: concurrent test processes never see
            // a half-made venv.
            let staging = dir.with_extension(format!("staging-{}", std::process::id()));
            let run = |cmd: &mut std::process::Command, what: &str| {
                let out = cmd.output().unwrap_or_else(|e| {
                    panic!("{what}: cannot run it: {e}; python3 (with venv) is needed")
                });
                assert!(
                    out.status.success(),
                    "{what} failed (PyPI must be reachable to install {OSLO_MESSAGING}):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(
                std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&staging),
                "python3 -m venv",
            );
            run(
                std::process::Command::new(staging.join("bin/python")).args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    OSLO_MESSAGING,
                ]),
                "pip install oslo.messaging",
            );
            std::fs::write(staging.join(".complete"), OSLO_MESSAGING).expect("marker");
            if std::fs::rename(&staging, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
            python
        })
        .clone()
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/oslo_peer.py")
}

/// A running Python peer, killed when dropped.
struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn start(args: &[&str]) -> Peer {
        Peer::start_with_config(args, None).await
    }

    /// A peer reading the oslo.config file `config` too.
    async fn start_with_config(args: &[&str], config: Option<&Path>) -> Peer {
        let python = tokio::task::spawn_blocking(python).await.expect("venv");
        // The peer logs every expected failure with a traceback: keep that
        // out of the test output, in a file next to the venv.
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "oslo-peer-{}-{}.log",
            args[0],
            std::process::id()
        ));
        let stderr = std::fs::File::create(&log)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let mut command = Command::new(python);
        if let Some(config) = config {
            command.env("OSLO_CONFIG_FILE", config);
        }
        let mut child = command
            .arg("-W")
            .arg("ignore")
            .arg(peer_script())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("python peer starts");
        let stdout = child.stdout.take().expect("stdout");
        Peer {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(60), self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!("the Python peer said nothing more: {other:?}"),
        }
    }

    async fn ready(mut self) -> Peer {
        assert_eq!(self.line().await, "READY");
        self
    }

    async fn all_lines(mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(60), self.lines.next_line()).await
        {
            out.push(line);
        }
        let status = self.child.wait().await.expect("wait");
        assert!(status.success(), "the Python peer failed: {status}");
        out
    }
}

/// A Rust listener of the notifications, in a pool of its own (so a
/// Python listener's queue does not take them), and what it receives.
async fn rust_listener(
    transport: &Transport,
) -> (
    NotificationListener,
    tokio::sync::mpsc::UnboundedReceiver<Notification>,
) {
    faafo_common::testing::collecting_listener(
        NotificationListener::builder(transport).pool("rust-pool"),
    )
    .await
}

fn oslo_url(vhost: &RabbitVhost) -> String {
    vhost.url().replacen("amqp://", "rabbit://", 1)
}

/// The Rust twin of the Python `TestEndpoint`.
fn rust_endpoint() -> Endpoint {
    #[derive(Deserialize)]
    struct Value_ {
        value: Value,
    }
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    #[derive(Deserialize)]
    struct Seconds {
        // Returned as given, like Python's `return seconds`.
        seconds: serde_json::Number,
    }
    #[derive(Deserialize)]
    struct NoArgs {}
    let count = Arc::new(AtomicUsize::new(0));
    let read = count.clone();
    Endpoint::new()
        .version(Version::new(1, 3))
        .method("echo", |_c, a: Value_| async move {
            Ok::<_, RemoteError>(a.value)
        })
        .method("request_id", |c: RequestContext, _: NoArgs| async move {
            Ok::<_, RemoteError>(c.request_id().map(str::to_string))
        })
        .method("count_up", move |_c, _: NoArgs| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(())
            }
        })
        .method("get_count", move |_c, _: NoArgs| {
            let read = read.clone();
            async move { Ok::<_, RemoteError>(read.load(Ordering::SeqCst)) }
        })
        .method("fail", |_c, a: Message| async move {
            Err::<(), _>(RemoteError::value_error(a.message))
        })
        .method("custom_fail", |_c, a: Message| async move {
            Err::<(), _>(RemoteError::new("MyError", "__main__", a.message))
        })
        .method("sleep", |_c, a: Seconds| async move {
            let seconds = a.seconds.as_f64().unwrap_or(0.0).clamp(0.0, 60.0);
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok::<_, RemoteError>(a.seconds)
        })
}

/// Keeps what must match between peers: results, exception types, and
/// the dispatcher's messages (argument errors word themselves differently).
fn normalized(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let mut v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}"));
            if v["step"] == "bad_arguments" {
                v["error"]["message"] = Value::Null;
            }
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_gets_the_same_answers_from_rust_and_python_servers() {
    let vhost = RabbitVhost::create().await;
    let url = oslo_url(&vhost);
    let transport = Transport::connect(vhost.url()).await.expect("connect");
    let rust_server = RpcServer::builder(&transport, Target::topic("rs").with_server("rust-host"))
        .endpoint(rust_endpoint())
        .start()
        .await
        .expect("rust server");
    let py_server = Peer::start(&["server", &url, "py", "python-host"])
        .await
        .ready()
        .await;

    let from_python = Peer::start(&["client", &url, "py"]).await.all_lines().await;
    let from_rust = Peer::start(&["client", &url, "rs"]).await.all_lines().await;
    assert_eq!(from_python.len(), 10, "{from_python:#?}");
    let (python, rust) = (normalized(&from_python), normalized(&from_rust));
    for (p, r) in python.iter().zip(&rust) {
        assert_eq!(
            p, r,
            "a Python client sees a difference at step {}",
            p["step"]
        );
    }
    // Spot checks that the comparison compares something.
    assert_eq!(
        rust[0],
        json!({"step": "echo", "ok": [1, "x", {"a": null}, 2.5]})
    );
    assert_eq!(rust[1]["ok"], "req-py-1");
    assert_eq!(rust[2]["ok"], 3);
    assert_eq!(rust[3]["error"]["exc_type"], "NoSuchMethod");
    assert_eq!(rust[4]["error"]["type"], "ValueError");
    assert_eq!(rust[5]["error"]["exc_type"], "MyError");
    assert_eq!(rust[6]["error"]["exc_type"], "UnsupportedVersion");
    assert_eq!(rust[8]["error"]["type"], "TypeError");
    assert_eq!(rust[9]["ok"], 4.5);

    drop(py_server);
    rust_server.stop().await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_calls_and_casts_to_a_python_server() {
    let vhost = RabbitVhost::create().await;
    let _py_server = Peer::start(&["server", &oslo_url(&vhost), "py", "python-host"])
        .await
        .ready()
        .await;
    let transport = Transport::connect(vhost.url()).await.expect("connect");
    let client = RpcClient::new(&transport, Target::topic("py")).timeout(Duration::from_secs(15));
    let ctx = RequestContext::new()
        .with_request_id("req-rs-1")
        .with("user", "bob");

    let v: Value = client
        .call(&ctx, "echo", &json!({"value": {"k": [1, 2]}}))
        .await
        .expect("echo");
    assert_eq!(v, json!({"k": [1, 2]}));
    let id: Option<String> = client
        .call(&ctx, "request_id", &json!({}))
        .await
        .expect("request_id");
    assert_eq!(id.as_deref(), Some("req-rs-1"));

    for _ in 0..3 {
        client
            .cast(&ctx, "count_up", &json!({}))
            .await
            .expect("cast");
    }
    let mut n = 0usize;
    for _ in 0..100 {
        n = client
            .call(&ctx, "get_count", &json!({}))
            .await
            .expect("get_count");
        if n == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, 3);

    let err = client
        .call::<_, Value>(&ctx, "nope", &json!({}))
        .await
        .expect_err("nope");
    assert!(
        matches!(&err, MessagingError::NoSuchMethod { method, .. } if method == "nope"),
        "{err}"
    );
    let outcome = client
        .call::<_, Value>(&ctx, "fail", &json!({"message": "boom"}))
        .await;
    let error = remote_error(outcome, "ValueError");
    assert_eq!(
        (error.module.as_str(), error.message.as_str()),
        ("builtins", "boom")
    );
    assert!(
        error.traceback.iter().any(|l| l.contains("Traceback")),
        "{:?}",
        error.traceback
    );
    let outcome = client
        .call::<_, Value>(&ctx, "custom_fail", &json!({"message": "custom"}))
        .await;
    assert_eq!(remote_error(outcome, "MyError").module, "__main__");
    let err = client
        .prepare()
        .version(Version::new(1, 5))
        .call::<_, Value>(&ctx, "echo", &json!({"value": 1}))
        .await
        .expect_err("version");
    assert!(
        matches!(err, MessagingError::UnsupportedVersion { .. }),
        "{err}"
    );
    let outcome = client
        .call::<_, Value>(&ctx, "echo", &json!({"wrong": 1}))
        .await;
    remote_error(outcome, "TypeError");
    // The Python server's call-monitor heartbeats keep a 4.5 s call alive
    // under a 3 s monitor timeout (a heartbeat every 1.5 s).
    let slept: f64 = client
        .prepare()
        .timeout(Duration::from_secs(20))
        .call_monitor_timeout(Some(Duration::from_secs(3)))
        .call(&ctx, "sleep", &json!({"seconds": 4.5}))
        .await
        .expect("heartbeats understood");
    assert_eq!(slept, 4.5);
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_cross_between_rust_and_python() {
    let vhost = RabbitVhost::create().await;
    let url = oslo_url(&vhost);
    let transport = Transport::connect(vhost.url()).await.expect("connect");

    // Rust notifier -> Python listener.
    let mut listener = Peer::start(&["listen", &url]).await.ready().await;
    let notifier = Notifier::new(&transport, "faafo.worker.h1");
    notifier
        .info(
            &RequestContext::new().with_request_id("req-rs-n"),
            "fractal.rendered",
            &json!({"uuid": "from-rust"}),
        )
        .await
        .expect("notify");
    let got: Value = serde_json::from_str(&listener.line().await).expect("json");
    assert_eq!(
        got,
        json!({"priority": "info", "publisher_id": "faafo.worker.h1", "event_type": "fractal.rendered",
               "payload": {"uuid": "from-rust"}, "request_id": "req-rs-n"})
    );
    drop(listener);

    // Python notifier -> Rust listener (in a pool of its own, so the
    // Python listener's queue above does not take it).
    let (rust_listener, mut rx) = rust_listener(&transport).await;
    let lines = Peer::start(&["notify", &url]).await.all_lines().await;
    assert!(lines.is_empty(), "{lines:?}");
    let n = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("in time")
        .expect("a notification");
    assert_eq!(n.publisher_id, "python.peer");
    assert_eq!(n.event_type, "fractal.rendered");
    assert_eq!(n.priority, "INFO");
    assert_eq!(n.payload, json!({"uuid": "from-python", "size": 3}));
    assert_eq!(n.context.request_id(), Some("req-py-n"));
    assert!(!n.message_id.is_empty() && !n.timestamp.is_empty());
    let anonymous = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("in time")
        .expect("the notification without a publisher id");
    assert_eq!(anonymous.event_type, "fractal.anonymous");
    assert_eq!(anonymous.publisher_id, "");
    rust_listener.stop().await;
    transport.close().await;
}

/// A Python peer with `kombu_compression` set sends every message
/// compressed (the `compression` header: kombu's zlib stream for `gzip`,
/// bz2): a Rust server answers its calls as an uncompressed peer's, and a
/// Rust listener reads its notifications. They were rejected as "not
/// UTF-8", the caller left to its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_python_peer_compressed_are_read() {
    let vhost = RabbitVhost::create().await;
    let url = oslo_url(&vhost);
    let transport = Transport::connect(vhost.url()).await.expect("connect");
    let (rust_listener, mut rx) = rust_listener(&transport).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A server of its own for each run, its cast counter from 0.
    let mut answers = Vec::new();
    for method in [None, Some("gzip"), Some("bzip2")] {
        let topic = format!("rs-{}", method.unwrap_or("plain"));
        let rust_server =
            RpcServer::builder(&transport, Target::topic(&topic).with_server("rust-host"))
                .endpoint(rust_endpoint())
                .start()
                .await
                .expect("rust server");
        let config = method.map(|method| {
            let config = dir.path().join(format!("{method}.conf"));
            std::fs::write(
                &config,
                format!("[oslo_messaging_rabbit]\nkombu_compression = {method}\n"),
            )
            .expect("the config file");
            config
        });
        let lines = Peer::start_with_config(&["client", &url, &topic], config.as_deref())
            .await
            .all_lines()
            .await;
        answers.push((method, normalized(&lines)));
        assert_eq!(
            rust_server.stats().malformed,
            0,
            "{method:?}: none rejected"
        );
        rust_server.stop().await;
        // A Python server compresses its replies as well.
        let py_topic = format!("py-{}", method.unwrap_or("plain"));
        let py_server = Peer::start_with_config(
            &["server", &url, &py_topic, "python-host"],
            config.as_deref(),
        )
        .await
        .ready()
        .await;
        let client =
            RpcClient::new(&transport, Target::topic(&py_topic)).timeout(Duration::from_secs(15));
        let echoed: Value = client
            .call(
                &RequestContext::new(),
                "echo",
                &json!({"value": {"method": method, "filler": "x".repeat(4096)}}),
            )
            .await
            .unwrap_or_else(|e| panic!("{method:?}: the Python server's reply: {e}"));
        assert_eq!(echoed["method"], json!(method), "{method:?}");
        drop(py_server);
        let lines = Peer::start_with_config(&["notify", &url], config.as_deref())
            .await
            .all_lines()
            .await;
        assert!(lines.is_empty(), "{lines:?}");
        for event_type in ["fractal.rendered", "fractal.anonymous"] {
            let n = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("in time")
                .unwrap_or_else(|| panic!("{method:?}: a notification"));
            assert_eq!(n.event_type, event_type, "{method:?}");
        }
    }
    let (_, plain) = &answers[0];
    assert_eq!(plain.len(), 10, "{plain:#?}");
    for (method, compressed) in &answers[1..] {
        assert_eq!(compressed, plain, "{method:?}: the same answers");
    }
    rust_listener.stop().await;
    transport.close().await;
}
