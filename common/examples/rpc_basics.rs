//! RPC basics: one server, one client, and every documented outcome of a call.
//!
//! Runs an `RpcServer` with two endpoints (API versions 1.2 and 2.0) and an
//! `RpcClient` on the same transport, then shows:
//! call vs cast, version negotiation, a remote error, an unknown method,
//! bad arguments, a panicking method, a call timeout, a call to a topic
//! nobody listens on, a fanout cast reaching two servers, and a graceful stop.
//!
//! ```sh
//! # in-process broker, nothing to install
//! cargo run -p faafo-common --example rpc_basics
//! # the same against RabbitMQ (use a vhost of your own)
//! cargo run -p faafo-common --example rpc_basics -- amqp://guest:guest@127.0.0.1:5672/demo
//! ```
//!
//! The panicking method is answered with a `RuntimeError`, but Rust's panic
//! hook still prints the panic on standard error. On RabbitMQ the queues
//! `calc`, `calc.host1` and `calc.host2` stay after the program ends (as
//! oslo.messaging's do), and so do the two servers' `calc_fanout_<id>`
//! queues, for 30 minutes (`rabbit_transient_queues_ttl`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faafo_common::messaging::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize)]
struct SleepArgs {
    seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct NoteArgs {
    text: String,
}

/// The calculator's API: version 1.2 in the default namespace.
fn calculator_v1(notes: Arc<AtomicUsize>) -> Endpoint {
    Endpoint::new()
        .version(Version::new(1, 2))
        .method("add", |ctx: RequestContext, args: AddArgs| async move {
            println!(
                "  [server] add({}, {}) for {}",
                args.a,
                args.b,
                ctx.log_id()
            );
            Ok::<_, RemoteError>(args.a + args.b)
        })
        .method("divide", |_ctx: RequestContext, args: AddArgs| async move {
            if args.b == 0 {
                return Err(RemoteError::value_error("division by zero"));
            }
            Ok(args.a / args.b)
        })
        .method(
            "sleep",
            |_ctx: RequestContext, args: SleepArgs| async move {
                tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
                Ok::<_, RemoteError>("slept")
            },
        )
        .method("note", move |_ctx: RequestContext, args: NoteArgs| {
            let notes = notes.clone();
            async move {
                notes.fetch_add(1, Ordering::SeqCst);
                println!("  [server] note: {}", args.text);
                Ok::<_, RemoteError>(())
            }
        })
        .method(
            "explode",
            |_ctx: RequestContext, _args: AddArgs| async move {
                if true {
                    panic!("boom");
                }
                Ok::<_, RemoteError>(0)
            },
        )
}

/// Version 2.0 of the API: `add` now returns a string.
fn calculator_v2() -> Endpoint {
    Endpoint::new().version(Version::new(2, 0)).method(
        "add",
        |_ctx: RequestContext, args: AddArgs| async move {
            Ok::<_, RemoteError>(format!("{} + {} = {}", args.a, args.b, args.a + args.b))
        },
    )
}

/// Prints what a call that should fail gave.
fn show<T: std::fmt::Debug>(what: &str, result: Result<T>) {
    match result {
        Ok(value) => println!("{what}: unexpectedly succeeded with {value:?}"),
        Err(e) => println!("{what}: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".into());
    let transport = Transport::connect(&url).await?;
    println!("connected to {}", transport.url());

    let notes = Arc::new(AtomicUsize::new(0));
    let server = RpcServer::builder(&transport, Target::topic("calc").with_server("host1"))
        .endpoint(calculator_v1(notes.clone()))
        .endpoint(calculator_v2())
        .executor_size(4)
        .start()
        .await?;

    let client = RpcClient::new(&transport, Target::topic("calc"));
    let ctx = RequestContext::with_new_request_id().with("user", "alice");

    // A call waits for the result; a cast returns once the broker has the message.
    let sum: i64 = client.call(&ctx, "add", &AddArgs { a: 2, b: 3 }).await?;
    println!("call add(2, 3) = {sum}");
    let text = NoteArgs {
        text: "a cast has no result".into(),
    };
    client.cast(&ctx, "note", &text).await?;
    while notes.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Version negotiation: the first endpoint that can serve the requested
    // version runs the method (same major, requested minor not newer).
    let v1: i64 = client
        .prepare()
        .version(Version::new(1, 1))
        .call(&ctx, "add", &AddArgs { a: 1, b: 1 })
        .await?;
    let v2: String = client
        .prepare()
        .version(Version::new(2, 0))
        .call(&ctx, "add", &AddArgs { a: 1, b: 1 })
        .await?;
    println!("add at 1.1 = {v1}, add at 2.0 = {v2:?}");
    show(
        "add at 1.3",
        client
            .prepare()
            .version(Version::new(1, 3))
            .call::<_, i64>(&ctx, "add", &AddArgs { a: 1, b: 1 })
            .await,
    );

    // The server's refusals and errors are typed.
    match client
        .call::<_, i64>(&ctx, "divide", &AddArgs { a: 1, b: 0 })
        .await
    {
        Err(MessagingError::Remote { error, .. }) => {
            println!(
                "divide by 0: remote {}.{}: {}",
                error.module, error.class, error.message
            )
        }
        other => println!("divide by 0: unexpected {other:?}"),
    }
    show(
        "unknown method",
        client
            .call::<_, i64>(&ctx, "multiply", &AddArgs { a: 1, b: 1 })
            .await,
    );
    show(
        "bad arguments",
        client
            .call::<_, i64>(&ctx, "add", &serde_json::json!({"a": "two"}))
            .await,
    );
    show(
        "panicking method",
        client
            .call::<_, i64>(&ctx, "explode", &AddArgs { a: 0, b: 0 })
            .await,
    );

    // A call that outlives its timeout.
    let started = Instant::now();
    show(
        "slow call",
        client
            .prepare()
            .timeout(Duration::from_millis(500))
            .call::<_, String>(&ctx, "sleep", &SleepArgs { seconds: 2.0 })
            .await,
    );
    println!("  (gave up after {:.1?})", started.elapsed());

    // Nobody listens on this topic (or this server): fails at once.
    let started = Instant::now();
    show(
        "call to topic 'nobody'",
        client
            .prepare()
            .topic("nobody")
            .call::<_, i64>(&ctx, "add", &AddArgs { a: 1, b: 1 })
            .await,
    );
    show(
        "cast to server 'host9'",
        client
            .prepare()
            .server("host9")
            .cast(&ctx, "note", &text)
            .await,
    );
    println!("  (both in {:.1?})", started.elapsed());

    // Fanout: every server of the topic gets the cast.
    let second = RpcServer::builder(&transport, Target::topic("calc").with_server("host2"))
        .endpoint(calculator_v1(notes.clone()))
        .start()
        .await?;
    let before = notes.load(Ordering::SeqCst);
    let fanout = NoteArgs {
        text: "fanout to every server".into(),
    };
    client
        .prepare()
        .fanout(true)
        .cast(&ctx, "note", &fanout)
        .await?;
    while notes.load(Ordering::SeqCst) < before + 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    show(
        "call on a fanout target",
        client
            .prepare()
            .fanout(true)
            .call::<_, i64>(&ctx, "add", &AddArgs { a: 1, b: 1 })
            .await,
    );

    // Graceful stop: the request in progress is finished and answered first.
    let slow = {
        let client = client.prepare().server("host1");
        let ctx = ctx.clone();
        tokio::spawn(async move {
            client
                .call::<_, String>(&ctx, "sleep", &SleepArgs { seconds: 1.0 })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("server stats: {:?}", server.stats());
    server.stop().await;
    println!("stopped host1; its slow call got {:?}", slow.await);
    second.stop().await;
    transport.close().await;
    Ok(())
}
