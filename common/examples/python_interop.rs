//! Wire compatibility with Python oslo.messaging, both ways, on RabbitMQ.
//!
//! Starts a Python oslo.messaging RPC server (topic `pycalc`, API version
//! 1.3) and calls it from Rust: a typed result, a Python `ValueError` with
//! its traceback, an unknown method, a version the server does not have,
//! and a call kept alive by call-monitor heartbeats. Then serves a Rust
//! endpoint (topic `rscalc`) and lets a Python client call it, including a
//! method without arguments.
//!
//! It needs RabbitMQ and a Python with oslo.messaging:
//!
//! ```sh
//! python3 -m venv /tmp/oslo && /tmp/oslo/bin/pip install oslo.messaging==18.3.1
//! OSLO_PYTHON=/tmp/oslo/bin/python cargo run -p faafo-common --example python_interop -- \
//!     rabbit://guest:guest@127.0.0.1:5672/demo
//! ```
//!
//! The URL must use the `rabbit://` scheme, which both sides read (oslo
//! takes `amqp://` for another driver).

use std::process::Stdio;
use std::time::Duration;

use faafo_common::messaging::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Python side: `server URL` serves until its standard input closes,
/// `client URL` calls the Rust server and prints one line per call.
const PEER: &str = r#"
import sys, time
from oslo_config import cfg
import oslo_messaging as messaging

class Calc:
    target = messaging.Target(version="1.3")
    def add(self, ctxt, a, b):
        return a + b
    def fail(self, ctxt, message):
        raise ValueError(message)
    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return ctxt.get("request_id")

cfg.CONF([], project="faafo-example")
mode, url = sys.argv[1], sys.argv[2]
transport = messaging.get_rpc_transport(cfg.CONF, url=url)
if mode == "server":
    server = messaging.get_rpc_server(
        transport, messaging.Target(topic="pycalc", server="py1"), [Calc()])
    server.start()
    print("READY", flush=True)
    sys.stdin.read()
    server.stop()
    server.wait()
else:
    client = messaging.get_rpc_client(transport, messaging.Target(topic="rscalc"), timeout=10)
    ctxt = {"request_id": "req-from-python"}
    for name, call in [
        ("add(a=2, b=3)", lambda: client.call(ctxt, "add", a=2, b=3)),
        ("hello()", lambda: client.call(ctxt, "hello")),
        ("add(a='x', b=1)", lambda: client.call(ctxt, "add", a="x", b=1)),
        ("divide(a=1, b=0)", lambda: client.call(ctxt, "divide", a=1, b=0)),
    ]:
        try:
            print(f"{name} = {call()!r}", flush=True)
        except Exception as e:
            print(f"{name} raised {type(e).__name__}: {str(e).splitlines()[0]}", flush=True)
    transport.cleanup()
"#;

#[derive(Serialize, Deserialize)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct SleepArgs {
    seconds: f64,
}

#[derive(Serialize)]
struct FailArgs<'a> {
    message: &'a str,
}

/// The arguments of a method that takes none: an empty struct (Python
/// sends `{}`, which `()` does not accept).
#[derive(Deserialize)]
struct NoArgs {}

/// Runs the Python peer in `mode`.
fn python(mode: &str, url: &str) -> std::io::Result<Child> {
    let python = std::env::var("OSLO_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(python)
        .args(["-W", "ignore", "-c", PEER, mode, url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The server logs every exception it raises: expected here.
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// The error a call ended with, in one line.
fn show<T: std::fmt::Debug>(what: &str, result: Result<T>) {
    match result {
        Ok(value) => println!("{what} = {value:?}"),
        Err(MessagingError::Remote { error, .. }) => println!(
            "{what}: remote {}.{}: {} ({} traceback lines)",
            error.module,
            error.class,
            error.message,
            error.traceback.len()
        ),
        Err(e) => println!("{what}: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: python_interop rabbit://user:pass@host:5672/vhost")?;
    let transport = Transport::connect(&url).await?;

    // Rust client, Python server.
    let mut server = python("server", &url)?;
    let mut lines = BufReader::new(server.stdout.take().ok_or("no stdout")?).lines();
    match lines.next_line().await? {
        Some(line) if line == "READY" => {}
        other => return Err(format!("the Python server did not start: {other:?}").into()),
    }
    let client =
        RpcClient::new(&transport, Target::topic("pycalc")).timeout(Duration::from_secs(10));
    let ctx = RequestContext::with_new_request_id();
    show(
        "add(a=2, b=3)",
        client
            .call::<_, i64>(&ctx, "add", &AddArgs { a: 2, b: 3 })
            .await,
    );
    show(
        "fail(message='boom')",
        client
            .call::<_, ()>(&ctx, "fail", &FailArgs { message: "boom" })
            .await,
    );
    show(
        "nope()",
        client
            .call::<_, ()>(&ctx, "nope", &serde_json::json!({}))
            .await,
    );
    show(
        "add at version 2.0",
        client
            .prepare()
            .version(Version::new(2, 0))
            .call::<_, i64>(&ctx, "add", &AddArgs { a: 1, b: 1 })
            .await,
    );
    show(
        "sleep(3) with a 2 s call monitor",
        client
            .prepare()
            .call_monitor_timeout(Some(Duration::from_secs(2)))
            .call::<_, String>(&ctx, "sleep", &SleepArgs { seconds: 3.0 })
            .await,
    );
    drop(server.stdin.take());
    server.wait().await?;

    // Python client, Rust server.
    let rust_server = RpcServer::builder(&transport, Target::topic("rscalc").with_server("rs1"))
        .endpoint(
            Endpoint::new()
                .method("add", |_ctx: RequestContext, args: AddArgs| async move {
                    Ok::<_, RemoteError>(args.a + args.b)
                })
                .method("hello", |ctx: RequestContext, _: NoArgs| async move {
                    Ok::<_, RemoteError>(format!("hello, {}", ctx.log_id()))
                })
                .method("divide", |_ctx: RequestContext, args: AddArgs| async move {
                    args.a
                        .checked_div(args.b)
                        .ok_or_else(|| RemoteError::value_error("division by zero"))
                }),
        )
        .start()
        .await?;
    let client = python("client", &url)?;
    let output = client.wait_with_output().await?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("python: {line}");
    }
    rust_server.stop().await;
    transport.close().await;
    Ok(())
}
