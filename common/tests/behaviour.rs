//! One behavioural suite, run against `memory://` and against RabbitMQ
//! (`FAAFO_TEST_TRANSPORT_URL`, default the local broker; each test gets a
//! vhost of its own). The same assertions hold on both: the memory
//! transport is not allowed to behave differently.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faafo_common::messaging::*;
use faafo_common::testing::{TestBroker, publish_raw, queue_depth, remote_error, unique_name};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Default)]
struct Shared {
    counter: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    started: tokio::sync::Notify,
}

#[derive(Serialize, Deserialize)]
struct EchoArgs {
    value: Value,
}

#[derive(Serialize, Deserialize)]
struct SleepArgs {
    ms: u64,
}

#[derive(Serialize, Deserialize)]
struct FailArgs {
    message: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Blob {
    #[serde(with = "faafo_common::messaging::bytes")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Empty {}

/// A method's value whose Serialize panics (a bug in the endpoint's
/// types, not the peer's input).
struct PanicsWhenSerialized;

impl serde::Serialize for PanicsWhenSerialized {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("serialize bug")
    }
}

fn service(server: &str, shared: Arc<Shared>) -> Endpoint {
    let name = server.to_string();
    let count = shared.clone();
    let slow = shared.clone();
    Endpoint::new()
        .version(Version::new(1, 3))
        .method("echo", |_ctx, args: EchoArgs| async move {
            Ok::<_, RemoteError>(args.value)
        })
        .method("blob", |_ctx, args: Blob| async move {
            Ok::<_, RemoteError>(Blob {
                data: args.data.iter().rev().copied().collect(),
            })
        })
        .method("hello", |_ctx, (): ()| async move {
            Ok::<_, RemoteError>("hello".to_string())
        })
        .method("whoami", move |_ctx, _: Empty| {
            let name = name.clone();
            async move { Ok::<_, RemoteError>(name) }
        })
        .method("request_id", |ctx: RequestContext, _: Empty| async move {
            Ok::<_, RemoteError>(ctx.request_id().map(str::to_string))
        })
        .method("fail", |_ctx, args: FailArgs| async move {
            Err::<(), _>(RemoteError::value_error(args.message))
        })
        .method("panic", |_ctx, _: Empty| async move {
            if true {
                panic!("endpoint bug");
            }
            Ok::<(), RemoteError>(())
        })
        .method("panic_in_serialize", |_ctx, _: Empty| async move {
            Ok::<_, RemoteError>(PanicsWhenSerialized)
        })
        .method("panic_early", |_ctx, _: Empty| {
            // Panics in the closure itself, before any future exists.
            if true {
                panic!("closure bug");
            }
            async { Ok::<(), RemoteError>(()) }
        })
        .method("count", move |_ctx, _: Empty| {
            let shared = count.clone();
            async move { Ok::<_, RemoteError>(shared.counter.fetch_add(1, Ordering::SeqCst) + 1) }
        })
        .method("sleep", move |_ctx, args: SleepArgs| {
            let shared = slow.clone();
            async move {
                let now = shared.running.fetch_add(1, Ordering::SeqCst) + 1;
                shared.max_running.fetch_max(now, Ordering::SeqCst);
                shared.started.notify_waiters();
                tokio::time::sleep(Duration::from_millis(args.ms)).await;
                shared.running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(args.ms)
            }
        })
}

async fn start_server(
    transport: &Transport,
    topic: &str,
    server: &str,
    shared: Arc<Shared>,
) -> RpcServer {
    RpcServer::builder(transport, Target::topic(topic).with_server(server))
        .endpoint(service(server, shared))
        .executor_size(4)
        .start()
        .await
        .expect("server starts")
}

/// Publishes `message` in an oslo 2.0 envelope to the queue of `topic`,
/// as a peer would: for requests this crate's client would not send (a
/// chosen `_unique_id`, an absurd `_timeout`).
async fn publish_oslo(t: &Transport, topic: &str, message: &Value) {
    let body = json!({"oslo.version": "2.0", "oslo.message": message.to_string()}).to_string();
    publish_raw(
        t,
        DEFAULT_EXCHANGE,
        topic,
        body.into_bytes(),
        "application/json",
    )
    .await
    .expect("publish");
}

/// Calls `sleep(ms)` through `client` in the background; returns once the
/// method runs on a server sharing `shared`.
async fn sleeping_call(
    client: RpcClient,
    shared: &Shared,
    ms: u64,
) -> tokio::task::JoinHandle<Result<u64, MessagingError>> {
    let started = shared.started.notified();
    let call = tokio::spawn(async move {
        client
            .call::<_, u64>(&ctx(), "sleep", &SleepArgs { ms })
            .await
    });
    started.await;
    call
}

fn ctx() -> RequestContext {
    RequestContext::with_new_request_id()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

// ------------------------------------------------------------------ tests

async fn call_returns_a_typed_result(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "calc", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("calc"));
    let value = json!({"nested": [1, 2.5, "three", null, {"x": true}]});
    let back: Value = client
        .call(
            &ctx(),
            "echo",
            &EchoArgs {
                value: value.clone(),
            },
        )
        .await
        .expect("call");
    assert_eq!(back, value);
    server.stop().await;
    t.close().await;
}

async fn the_request_context_reaches_the_endpoint(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "ctx", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("ctx"));
    let id: Option<String> = client
        .call(
            &RequestContext::new().with_request_id("req-abc"),
            "request_id",
            &Empty {},
        )
        .await
        .expect("call");
    assert_eq!(id.as_deref(), Some("req-abc"));
    server.stop().await;
}

async fn casts_run_and_are_confirmed(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = start_server(&t, "casts", "h1", shared.clone()).await;
    let client = RpcClient::new(&t, Target::topic("casts"));
    for _ in 0..20 {
        client.cast(&ctx(), "count", &Empty {}).await.expect("cast");
    }
    eventually("20 casts ran", async || {
        shared.counter.load(Ordering::SeqCst) == 20
    })
    .await;
    server.stop().await;
}

async fn fanout_casts_reach_every_server(env: TestBroker) {
    let t = env.transport().await;
    let (a, b) = (Arc::new(Shared::default()), Arc::new(Shared::default()));
    let sa = start_server(&t, "fan", "a", a.clone()).await;
    let t2 = env.transport().await;
    let sb = start_server(&t2, "fan", "b", b.clone()).await;
    let client = RpcClient::new(&t, Target::topic("fan")).fanout(true);
    client
        .cast(&ctx(), "count", &Empty {})
        .await
        .expect("fanout cast");
    eventually("both servers got the fanout", async || {
        a.counter.load(Ordering::SeqCst) == 1 && b.counter.load(Ordering::SeqCst) == 1
    })
    .await;
    let err = client
        .call::<_, Value>(&ctx(), "count", &Empty {})
        .await
        .expect_err("no fanout call");
    assert!(matches!(err, MessagingError::Invalid(_)), "{err}");
    let stats = sa.stop().await;
    // The call on a fanout target was refused before it was sent.
    assert_eq!((stats.received, stats.succeeded), (1, 1), "{stats:?}");
    sb.stop().await;
    // Stopped servers take their fanout queues with them: a fanout cast
    // with no server running reaches nobody, and says so.
    let err = client
        .cast(&ctx(), "count", &Empty {})
        .await
        .expect_err("nobody left");
    assert!(matches!(err, MessagingError::Undeliverable { .. }), "{err}");
}

async fn calls_can_address_one_server(env: TestBroker) {
    let t = env.transport().await;
    let sa = start_server(&t, "pick", "a", Arc::default()).await;
    let sb = start_server(&t, "pick", "b", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("pick"));
    for server in ["a", "b", "b", "a"] {
        let who: String = client
            .prepare()
            .server(server)
            .call(&ctx(), "whoami", &Empty {})
            .await
            .expect("call");
        assert_eq!(who, server);
    }
    sa.stop().await;
    sb.stop().await;
}

async fn nobody_listening_fails_at_once(env: TestBroker) {
    let t = env.transport().await;
    let client = RpcClient::new(&t, Target::topic("nobody-here")).timeout(Duration::from_secs(30));
    let started = Instant::now();
    let err = client
        .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect_err("fails");
    assert!(matches!(err, MessagingError::Undeliverable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let err = client
        .cast(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect_err("fails");
    assert!(matches!(err, MessagingError::Undeliverable { .. }), "{err}");
    let err = client
        .prepare()
        .fanout(true)
        .cast(&ctx(), "echo", &Empty {})
        .await
        .expect_err("fails");
    assert!(matches!(err, MessagingError::Undeliverable { .. }), "{err}");
}

/// Arguments are keyword arguments, as oslo's: a struct or a map. `()` is
/// none, sent as `{}`, and a method that takes `()` is served for `{}` (what
/// a Python caller sends for none). Anything else is refused before it is
/// sent, and arguments that do not fit a method are a `TypeError` without
/// serde's position in text the caller never wrote.
async fn arguments_are_keyword_arguments(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "kwargs", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("kwargs"));
    let hello: String = client.call(&ctx(), "hello", &()).await.expect("()");
    assert_eq!(hello, "hello");
    let hello: String = client.call(&ctx(), "hello", &json!({})).await.expect("{}");
    assert_eq!(hello, "hello");
    client.cast(&ctx(), "hello", &()).await.expect("cast ()");
    let whoami: String = client.call(&ctx(), "whoami", &()).await.expect("() for {}");
    assert_eq!(whoami, "h1");
    for (what, outcome) in [
        (
            "a tuple",
            client.call::<_, Value>(&ctx(), "echo", &(1, 2)).await,
        ),
        (
            "a number",
            client.call::<_, Value>(&ctx(), "echo", &5).await,
        ),
        (
            "a list",
            client.call::<_, Value>(&ctx(), "echo", &json!([1])).await,
        ),
    ] {
        let err = outcome.expect_err(what);
        assert!(
            matches!(&err, MessagingError::Encode(m) if m.contains("keyword arguments")),
            "{what}: {err}"
        );
    }
    let err = client
        .cast(&ctx(), "echo", &"text")
        .await
        .expect_err("a string");
    assert!(matches!(err, MessagingError::Encode(_)), "{err}");
    let wrong = remote_error(
        client
            .call::<_, Value>(&ctx(), "echo", &json!({"valeu": 1}))
            .await,
        "TypeError",
    );
    assert!(wrong.message.contains("missing field `value`"), "{wrong}");
    assert!(!wrong.message.contains("at line"), "{wrong}");
    server.stop().await;
}

/// A call given no time at all (a zero timeout) timed out: on RabbitMQ it
/// was reported as a broker blocked by an alarm (`memory://` has no such
/// wait, and passes either way).
async fn a_call_out_of_time_before_it_is_sent_times_out(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "no-time", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("no-time")).timeout(Duration::ZERO);
    let err = client
        .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect_err("no time");
    assert!(matches!(err, MessagingError::Timeout { .. }), "{err}");
    server.stop().await;
}

/// A request nobody took before its call timed out expires from the queue
/// (its TTL is the call's timeout), consumers or not.
async fn calls_nobody_took_expire_from_the_queue(env: TestBroker) {
    let t = env.transport().await;
    // The server declares the queue, then leaves: the queue stays.
    let server = start_server(&t, "unattended", "h1", Arc::default()).await;
    server.stop().await;
    let client =
        RpcClient::new(&t, Target::topic("unattended")).timeout(Duration::from_millis(200));
    let err = client
        .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect_err("nobody answers");
    assert!(matches!(err, MessagingError::Timeout { .. }), "{err}");
    eventually("the request expired from the queue", async || {
        queue_depth(&t, "unattended").await.ok().flatten() == Some(0)
    })
    .await;
}

async fn slow_servers_time_out(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "slow", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("slow")).timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = client
        .call::<_, u64>(&ctx(), "sleep", &SleepArgs { ms: 10_000 })
        .await
        .expect_err("times out");
    assert!(matches!(err, MessagingError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Not waiting for the method nobody waits for.
    server.stop_within(Duration::ZERO).await;
}

async fn remote_errors_keep_class_module_and_message(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "errs", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("errs"));
    let outcome = client
        .call::<_, Value>(
            &ctx(),
            "fail",
            &FailArgs {
                message: "bad width".into(),
            },
        )
        .await;
    let error = remote_error(outcome, "ValueError");
    assert_eq!(
        (error.module.as_str(), error.message.as_str()),
        ("builtins", "bad width")
    );
    let outcome = client.call::<_, Value>(&ctx(), "panic", &Empty {}).await;
    let error = remote_error(outcome, "RuntimeError");
    assert!(error.message.contains("endpoint bug"), "{error}");
    let outcome = client
        .call::<_, Value>(&ctx(), "panic_early", &Empty {})
        .await;
    let error = remote_error(outcome, "RuntimeError");
    assert!(error.message.contains("closure bug"), "{error}");
    // A result whose Serialize panics: an error answered, the request
    // settled (the server's stop below would wait for it otherwise).
    let outcome = client
        .call::<_, Value>(&ctx(), "panic_in_serialize", &Empty {})
        .await;
    let error = remote_error(outcome, "TypeError");
    assert!(error.message.contains("could not be encoded"), "{error}");
    let outcome = client
        .call::<_, Value>(&ctx(), "echo", &json!({"wrong": 1}))
        .await;
    let error = remote_error(outcome, "TypeError");
    assert!(error.message.contains("missing field `value`"), "{error}");
    // The server is still serving.
    let v: Value = client
        .call(&ctx(), "echo", &EchoArgs { value: json!("ok") })
        .await
        .expect("call");
    assert_eq!(v, json!("ok"));
    server.stop().await;
}

async fn unknown_methods_and_versions_are_typed_errors(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "disp", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("disp"));
    let err = client
        .call::<_, Value>(&ctx(), "nope", &Empty {})
        .await
        .expect_err("fails");
    assert!(
        matches!(&err, MessagingError::NoSuchMethod { method, .. } if method == "nope"),
        "{err}"
    );
    let err = client
        .call::<_, Value>(&ctx(), "_private", &Empty {})
        .await
        .expect_err("fails");
    assert!(matches!(err, MessagingError::NoSuchMethod { .. }), "{err}");
    // Same major, older or equal minor: served.
    let v: Value = client
        .prepare()
        .version(Version::new(1, 2))
        .call(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect("1.2 is served by 1.3");
    assert_eq!(v, json!(1));
    for version in [Version::new(1, 4), Version::new(2, 0)] {
        let err = client
            .prepare()
            .version(version)
            .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(1) })
            .await
            .expect_err("fails");
        assert!(
            matches!(err, MessagingError::UnsupportedVersion { .. }),
            "{err}"
        );
    }
    let err = client
        .prepare()
        .namespace("other")
        .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect_err("fails");
    assert!(
        matches!(err, MessagingError::UnsupportedVersion { .. }),
        "{err}"
    );
    let err = client
        .call::<_, String>(&ctx(), "echo", &EchoArgs { value: json!(5) })
        .await
        .expect_err("type");
    assert!(matches!(err, MessagingError::Decode(_)), "{err}");
    server.stop().await;
}

async fn many_calls_in_flight_get_their_own_replies(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "many", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("many"));
    let calls = (0..200).map(|i| {
        let client = client.clone();
        async move {
            let v: Value = client
                .call(&ctx(), "echo", &EchoArgs { value: json!(i) })
                .await
                .expect("call");
            assert_eq!(v, json!(i));
        }
    });
    futures_util::future::join_all(calls).await;
    server.stop().await;
}

async fn concurrency_is_bounded_by_the_executor(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    // A prefetch above the executor's size: the broker hands over all six,
    // so only the executor can hold them to two at a time.
    let server = RpcServer::builder(&t, Target::topic("bounded").with_server("h1"))
        .endpoint(service("h1", shared.clone()))
        .executor_size(2)
        .prefetch(6)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&t, Target::topic("bounded"));
    let calls = (0..6).map(|_| {
        let client = client.clone();
        async move {
            client
                .call::<_, u64>(&ctx(), "sleep", &SleepArgs { ms: 150 })
                .await
                .expect("call")
        }
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(shared.max_running.load(Ordering::SeqCst), 2);
    server.stop().await;
}

async fn stopping_finishes_running_calls_and_requeues_the_rest(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    // All three delivered to it (one running, two held for the executor).
    // Each takes 300 ms: the stop comes while the first runs.
    let server = RpcServer::builder(&t, Target::topic("stop").with_server("h1"))
        .endpoint(service("h1", shared.clone()))
        .executor_size(1)
        .prefetch(3)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&t, Target::topic("stop")).timeout(Duration::from_secs(20));
    let started = shared.started.notified();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<_, u64>(&ctx(), "sleep", &SleepArgs { ms: 300 })
                    .await
            })
        })
        .collect();
    started.await;
    // Time for the other two to be delivered (and held for the executor:
    // `received` counts requests started, so it cannot tell).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = server.stop().await;
    // One call ran to completion during stop; the other two, held
    // unstarted, went back to the queue for the next server.
    assert_eq!(
        (stopped.succeeded, stopped.abandoned),
        (1, 0),
        "{stopped:?}"
    );
    let next = start_server(&t, "stop", "h2", shared.clone()).await;
    for call in calls {
        assert_eq!(call.await.expect("join").expect("call"), 300);
    }
    assert_eq!(
        next.stats().received,
        2,
        "the two held requests, given back"
    );
    next.stop().await;
}

/// A stop out of grace does not wait for a long request: it is given back
/// to the queue unanswered, and its caller gets the answer of the next
/// server, which runs it again.
async fn a_stop_out_of_grace_gives_running_requests_back(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = start_server(&t, "grace", "h1", shared.clone()).await;
    let client = RpcClient::new(&t, Target::topic("grace")).timeout(Duration::from_secs(20));
    let call = sleeping_call(client, &shared, 4000).await;
    let stopping = Instant::now();
    assert!(
        server
            .stop_within(Duration::from_millis(100))
            .await
            .abandoned
            > 0,
        "a request was still running"
    );
    assert!(
        stopping.elapsed() < Duration::from_millis(3000),
        "the stop waited for the request: {:?}",
        stopping.elapsed()
    );
    assert!(!call.is_finished(), "the caller got no answer from h1");
    let next = start_server(&t, "grace", "h2", Arc::new(Shared::default())).await;
    assert_eq!(call.await.expect("join").expect("served by h2"), 4000);
    // Nothing left behind for a third server.
    assert_eq!(next.stats().received, 1);
    // Idle: even with no grace at all (less than its consumers take to
    // stop), nothing is abandoned.
    assert_eq!(next.stop_within(Duration::ZERO).await.abandoned, 0);
}

/// Under at-most-once acknowledgement a request abandoned by a stop cannot
/// go back to the queue: its caller is told at once instead of waiting for
/// its timeout. A duplicate of a running request is acknowledged at once,
/// not held (held unacknowledged, a crash would have given it to another
/// server to run), so nothing is given back either.
async fn an_acknowledged_request_abandoned_by_a_stop_is_answered(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = RpcServer::builder(&t, Target::topic("grace-ack").with_server("h1"))
        .endpoint(service("h1", shared.clone()))
        .ack_mode(AckMode::BeforeDispatch)
        .executor_size(4)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&t, Target::topic("grace-ack")).timeout(Duration::from_secs(20));
    let call = sleeping_call(client, &shared, 10_000).await;
    // A cast and its duplicate (same _unique_id): one runs, the other is
    // acknowledged at once.
    let cast = json!({"method": "sleep", "args": {"ms": 10_000},
                      "_unique_id": "fedcba9876543210fedcba9876543210"});
    for _ in 0..2 {
        publish_oslo(&t, "grace-ack", &cast).await;
    }
    eventually("the duplicate is acknowledged", async || {
        server.stats().duplicates == 1 && server.stats().settled() == 1
    })
    .await;
    assert!(
        server
            .stop_within(Duration::from_millis(100))
            .await
            .abandoned
            > 0
    );
    assert_eq!(
        queue_depth(&t, "grace-ack").await.expect("depth"),
        Some(0),
        "the duplicate was acknowledged, not given back"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the server's answer comes at once")
        .expect("join");
    let error = remote_error(outcome, "RuntimeError");
    assert!(
        error.message.contains("stopped before sleep() finished"),
        "{error}"
    );
}

/// At most once, a duplicate of a running request is acknowledged, not
/// held: held unacknowledged, it went back to the queue when this
/// server's connection died (a crash), and another server ran it.
async fn at_most_once_a_duplicate_is_not_run_elsewhere_after_a_crash(env: TestBroker) {
    let t1 = env.transport().await;
    let first = Arc::new(Shared::default());
    let server = RpcServer::builder(&t1, Target::topic("amo-crash").with_server("h1"))
        .endpoint(service("h1", first.clone()))
        .ack_mode(AckMode::BeforeDispatch)
        .executor_size(4)
        .start()
        .await
        .expect("server");
    let cast = json!({"method": "sleep", "args": {"ms": 5_000},
                      "_unique_id": "0123456789abcdef0123456789abcdee"});
    for _ in 0..2 {
        publish_oslo(&t1, "amo-crash", &cast).await;
    }
    eventually("the copy is seen", async || server.stats().duplicates == 1).await;
    // The connection dies under the server: whatever it holds
    // unacknowledged goes back to the queue.
    t1.close().await;
    let t2 = env.transport().await;
    let second = Arc::new(Shared::default());
    let other = RpcServer::builder(&t2, Target::topic("amo-crash").with_server("h2"))
        .endpoint(service("h2", second.clone()))
        .ack_mode(AckMode::BeforeDispatch)
        .start()
        .await
        .expect("server");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(other.stats().received, 0, "the copy went to another server");
    assert_eq!(second.max_running.load(Ordering::SeqCst), 0);
    other.stop().await;
    drop(server);
}

async fn a_request_whose_server_dies_is_served_by_another(env: TestBroker) {
    let dying = env.transport().await;
    let shared = Arc::new(Shared::default());
    let _server = start_server(&dying, "crash", "dying", shared.clone()).await;
    let t = env.transport().await;
    let client = RpcClient::new(&t, Target::topic("crash")).timeout(Duration::from_secs(20));
    let call = sleeping_call(client, &shared, 2000).await;
    // The connection of the server goes away mid-request (as when its
    // process dies): the broker delivers the request again.
    dying.close().await;
    let survivor = start_server(&t, "crash", "survivor", Arc::new(Shared::default())).await;
    assert_eq!(
        call.await.expect("join").expect("served by the survivor"),
        2000
    );
    survivor.stop().await;
}

/// Requests a server held ahead (prefetched, waiting for its executor)
/// when its connection went away are not run there: the broker gives them
/// to the next server, which runs them; running them here too ran each
/// twice.
async fn requests_held_ahead_by_a_server_that_lost_its_connection_run_elsewhere(env: TestBroker) {
    let dying = env.transport().await;
    let topic = unique_name("held");
    let runs_on = |runs: Arc<AtomicUsize>, ended: Arc<AtomicUsize>| {
        Endpoint::new().method("work", move |_ctx, args: SleepArgs| {
            let (runs, ended) = (runs.clone(), ended.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(args.ms)).await;
                ended.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(args.ms)
            }
        })
    };
    let (dying_runs, survivor_runs) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let dying_ended = Arc::new(AtomicUsize::new(0));
    let _dying_server = RpcServer::builder(&dying, Target::topic(&topic).with_server("dying"))
        .endpoint(runs_on(dying_runs.clone(), dying_ended.clone()))
        .executor_size(1)
        .prefetch(3)
        .start()
        .await
        .expect("server");
    let t = env.transport().await;
    let client = RpcClient::new(&t, Target::topic(&topic));
    // The first long enough to be running still when the connection
    // goes, on a loaded machine too.
    for ms in [3000, 100, 100] {
        client
            .cast(&ctx(), "work", &SleepArgs { ms })
            .await
            .expect("cast");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dying_runs.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first request never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other two are held ahead, in the server, unstarted.
    dying.close().await;
    let survivor = RpcServer::builder(&t, Target::topic(&topic).with_server("survivor"))
        .endpoint(runs_on(survivor_runs.clone(), Arc::default()))
        .executor_size(4)
        .start()
        .await
        .expect("server");
    eventually("the survivor ran the three requests", async || {
        survivor_runs.load(Ordering::SeqCst) == 3
    })
    .await;
    // Once the running one has ended, the executor is free for those held
    // ahead: they would start now, if they were to run here.
    eventually("the dying server's running request ended", async || {
        dying_ended.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        dying_runs.load(Ordering::SeqCst),
        1,
        "the requests held ahead ran on the server that lost them too"
    );
    survivor.stop().await;
}

async fn messagepack_carries_raw_bytes(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "mp", "h1", Arc::default()).await;
    let blob = Blob {
        data: (0..=255u8).collect(),
    };
    for codec in [Codec::Json, Codec::MsgPack] {
        let client = RpcClient::new(&t, Target::topic("mp")).codec(codec);
        let back: Blob = client.call(&ctx(), "blob", &blob).await.expect("call");
        assert_eq!(
            back.data,
            blob.data.iter().rev().copied().collect::<Vec<_>>()
        );
    }
    server.stop().await;
}

async fn call_monitor_heartbeats_keep_long_calls_alive(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "hb", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("hb"))
        .timeout(Duration::from_secs(20))
        .call_monitor_timeout(Some(Duration::from_secs(3)));
    // Heartbeats every 1.5 s: a 1.5 s margin on a loaded machine.
    let ms: u64 = client
        .call(&ctx(), "sleep", &SleepArgs { ms: 4500 })
        .await
        .expect("heartbeats kept it alive");
    assert_eq!(ms, 4500);
    server.stop().await;
    // The queue is still there but nobody consumes: no heartbeat comes.
    let started = Instant::now();
    let err = client
        .call::<_, u64>(&ctx(), "sleep", &SleepArgs { ms: 1 })
        .await
        .expect_err("fails");
    assert!(
        matches!(err, MessagingError::HeartbeatTimeout { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A result larger than the broker takes (`max_message_size`) is answered
/// with an error, once: RabbitMQ would close the publishing channel on it,
/// which reads as a lost connection, and the request ran again for ever.
async fn a_reply_larger_than_max_message_size_is_an_error_answered_once(env: TestBroker) {
    let t = env.transport().await;
    let topic = unique_name("big");
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let server = RpcServer::builder(&t, Target::topic(&topic).with_server("h1"))
        .endpoint(Endpoint::new().method("big", move |_ctx, args: EchoArgs| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let bytes = args.value.as_u64().unwrap_or_default() as usize;
                Ok::<_, RemoteError>("x".repeat(bytes))
            }
        }))
        .max_message_size(64 * 1024)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&t, Target::topic(&topic)).timeout(Duration::from_secs(10));
    let small: String = client
        .call(&ctx(), "big", &EchoArgs { value: json!(1000) })
        .await
        .expect("a result under the limit");
    assert_eq!(small.len(), 1000);
    let error = remote_error(
        client
            .call::<_, String>(
                &ctx(),
                "big",
                &EchoArgs {
                    value: json!(100_000),
                },
            )
            .await,
        "RuntimeError",
    );
    assert!(
        error
            .message
            .contains("more than max_message_size (65536 bytes)"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "each request ran once");
    server.stop().await;
}

async fn bad_messages_are_answered_rejected_and_never_requeued(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let dlx = unique_name("dead");
    let server = RpcServer::builder(&t, Target::topic("bad").with_server("h1"))
        .endpoint(service("h1", shared.clone()))
        .dead_letter_exchange(dlx.clone())
        .max_message_size(64 * 1024)
        .start()
        .await
        .expect("server");
    let exchange = DEFAULT_EXCHANGE;
    let json = "application/json";
    let bodies: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\x01garbage".to_vec(), json),
        (
            b"{\"oslo.version\": \"9.0\", \"oslo.message\": \"{}\"}".to_vec(),
            json,
        ),
        (
            json!({"oslo.version": "2.0", "oslo.message": "{\"method\": 7}"})
                .to_string()
                .into_bytes(),
            json,
        ),
        (
            json!({"method": "echo", "args": "not a dict"})
                .to_string()
                .into_bytes(),
            json,
        ),
        (b"{}".to_vec(), "text/plain"),
        (vec![b' '; 100 * 1024], json),
        // A reply queue no AMQP queue can be named after (lapin would
        // panic on it as a routing key): a call answered nowhere.
        (
            json!({"method": "echo", "args": {"value": 1}, "_msg_id": "m1",
                "_reply_q": "r".repeat(300), "_unique_id": "0123456789abcdef0123456789abcd01"})
            .to_string()
            .into_bytes(),
            json,
        ),
        // The same, with a method that does not exist.
        (
            json!({"method": "nope", "args": {}, "_msg_id": "m2",
                "_reply_q": "r".repeat(256), "_unique_id": "0123456789abcdef0123456789abcd02"})
            .to_string()
            .into_bytes(),
            json,
        ),
    ];
    let n = bodies.len();
    for (body, content_type) in bodies {
        publish_raw(&t, exchange, "bad", body, content_type)
            .await
            .expect("raw publish");
    }
    eventually("the server rejected every bad message", async || {
        let s = server.stats();
        s.malformed + s.rejected == n as u64
    })
    .await;
    eventually("every bad message was dead-lettered", async || {
        queue_depth(&t, &dlx).await.ok().flatten() == Some(n)
    })
    .await;
    assert_eq!(
        queue_depth(&t, "bad").await.expect("depth"),
        Some(0),
        "nothing requeued"
    );
    // The server keeps serving (and ignores unknown keyword arguments).
    let client = RpcClient::new(&t, Target::topic("bad"));
    match client
        .call::<_, Value>(&ctx(), "echo", &json!({"value": 1, "extra": [1]}))
        .await
    {
        Ok(v) => assert_eq!(v, json!(1)),
        Err(e) => panic!("a good call after bad ones must work: {e}"),
    }
    assert_eq!(server.stats().received, n as u64 + 1);
    server.stop().await;
}

/// A name longer than AMQP allows (255 bytes: a topic from a
/// configuration file, say) is an error to the caller, on every transport,
/// never a panic in the client library.
async fn names_longer_than_amqp_allows_are_refused(env: TestBroker) {
    let t = env.transport().await;
    let long = "t".repeat(256);
    let client = RpcClient::new(&t, Target::topic(&long)).timeout(Duration::from_secs(5));
    for outcome in [
        client.cast(&ctx(), "echo", &json!({"value": 1})).await,
        client
            .call::<_, Value>(&ctx(), "echo", &json!({"value": 1}))
            .await
            .map(drop),
    ] {
        match outcome {
            Err(MessagingError::Invalid(reason)) => {
                assert!(reason.contains("at most 255 bytes, got 256"), "{reason}");
            }
            other => panic!("an over-long topic must be refused: {other:?}"),
        }
    }
    match RpcServer::builder(&t, Target::topic(&long).with_server("h1"))
        .endpoint(service("h1", Arc::default()))
        .start()
        .await
    {
        Err(MessagingError::Invalid(reason)) => {
            assert!(reason.contains("at most 255 bytes"), "{reason}");
        }
        Err(other) => panic!("an over-long topic must be invalid: {other}"),
        Ok(_) => panic!("a server on an over-long topic must not start"),
    }
    // A long topic that fits (a server's fanout queue adds 40 bytes to it).
    let longest = "t".repeat(215);
    let server = start_server(&t, &longest, "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic(&longest)).timeout(Duration::from_secs(10));
    let echoed: Value = client
        .call(&ctx(), "echo", &json!({"value": 2}))
        .await
        .expect("a 215-byte topic works");
    assert_eq!(echoed, json!(2));
    server.stop().await;
}

/// A call timeout longer than the 2^32 - 1 ms RabbitMQ takes as a
/// message's TTL (its request's expiration) works: the expiration is cut
/// to that (sent as it is, RabbitMQ closed the publishing channel, and the
/// call was sent again and again).
async fn call_timeouts_longer_than_a_broker_ttl_work(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "longttl", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("longttl"))
        .timeout(Duration::from_secs(60 * 24 * 3600))
        .retry(RetryPolicy::NEVER);
    let echoed: Value = tokio::time::timeout(
        Duration::from_secs(20),
        client.call(&ctx(), "echo", &json!({"value": "far"})),
    )
    .await
    .expect("answered in time")
    .expect("a call with a 60-day timeout");
    assert_eq!(echoed, json!("far"));
    server.stop().await;
}

async fn malformed_calls_get_an_error_reply(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "badcall", "h1", Arc::default()).await;
    // A client that sends a call whose method is not a string: the server
    // cannot dispatch it but knows where to answer.
    let client = RpcClient::new(&t, Target::topic("badcall")).timeout(Duration::from_secs(5));
    let outcome = client.call::<_, Value>(&ctx(), "", &Empty {}).await;
    remote_error(outcome, "MalformedMessage");
    assert_eq!(server.stats().malformed, 1);
    server.stop().await;

    // A call larger than the server takes is refused unread, and answered
    // so, not left to its caller's timeout.
    let server = RpcServer::builder(&t, Target::topic("bigcall").with_server("h1"))
        .endpoint(service("h1", Arc::default()))
        .max_message_size(64 * 1024)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&t, Target::topic("bigcall")).timeout(Duration::from_secs(20));
    let started = std::time::Instant::now();
    let outcome = client
        .call::<_, Value>(&ctx(), "echo", &json!({"value": "x".repeat(100 * 1024)}))
        .await;
    match &outcome {
        Err(MessagingError::Remote { error, .. }) => assert!(
            error
                .message
                .contains("larger than the server's max_message_size (65536 bytes)"),
            "{error:?}"
        ),
        other => panic!("expected MalformedMessage: {other:?}"),
    }
    remote_error(outcome, "MalformedMessage");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.stats().rejected, 1);
    server.stop().await;
}

async fn duplicates_run_once(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = start_server(&t, "dup", "h1", shared.clone()).await;
    let cast =
        json!({"method": "count", "args": {}, "_unique_id": "0123456789abcdef0123456789abcdef"});
    for _ in 0..3 {
        publish_oslo(&t, "dup", &cast).await;
    }
    eventually("all three were handled", async || {
        server.stats().settled() == 3
    })
    .await;
    assert_eq!(shared.counter.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().duplicates, 2);
    server.stop().await;
}

/// A peer's absurd call-monitor timeout is served, not a panic that would
/// leave the message unsettled.
async fn huge_call_monitor_timeouts_are_served(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = RpcServer::builder(&t, Target::topic("monitor").with_server("h1"))
        .endpoint(service("h1", shared.clone()))
        .missing_reply_queue_timeout(Duration::ZERO)
        .start()
        .await
        .expect("server");
    for (i, timeout) in [json!(1e30), json!(u64::MAX)].into_iter().enumerate() {
        let call = json!({"method": "count", "args": {}, "_msg_id": format!("m{i}"),
            "_reply_q": unique_name("nobody"), "_timeout": timeout});
        publish_oslo(&t, "monitor", &call).await;
    }
    eventually("both calls ran", async || server.stats().succeeded == 2).await;
    assert_eq!(shared.counter.load(Ordering::SeqCst), 2);
    eventually("both were acknowledged", async || {
        queue_depth(&t, "monitor").await.ok().flatten() == Some(0)
    })
    .await;
    server.stop().await;
}

/// Mandatory publishes in flight together on one transport, half to a
/// queue, half to nowhere: none that a queue took is reported unroutable.
/// For the `i`th of many messages: whether it goes to `routed` (every
/// other one), and the routing key it goes to (else one nobody binds).
fn every_other_nowhere(i: usize, routed: &str) -> (bool, String) {
    if i.is_multiple_of(2) {
        (true, routed.to_string())
    } else {
        (false, unique_name("nowhere"))
    }
}

/// A return names no message, and the client ties it to the next confirm,
/// which can be a neighbour's: that one must not be failed (and sent
/// again) for it.
async fn a_neighbours_return_does_not_fail_a_delivered_message(env: TestBroker) {
    let t = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = start_server(&t, "returns", "h1", shared).await;
    let mut publishes = tokio::task::JoinSet::new();
    for i in 0..400 {
        let t = t.clone();
        publishes.spawn(async move {
            let (to_queue, key) = every_other_nowhere(i, "returns");
            let body = format!("{{\"n\": {i}}}").into_bytes();
            let published = publish_raw(&t, DEFAULT_EXCHANGE, &key, body, "application/json").await;
            (i, to_queue, published)
        });
    }
    while let Some(joined) = publishes.join_next().await {
        let (i, to_queue, published) = joined.expect("the publish task");
        if to_queue {
            assert!(published.is_ok(), "publish {i} to the queue: {published:?}");
        }
    }
    server.stop().await;
}

/// Calls to topics nobody listens on, in flight beside delivered ones on
/// the same transport, all fail at once as undeliverable, even those whose
/// return the client tied to a neighbour's confirm (their own then looks
/// delivered: they used to wait for their timeout), and the delivered ones
/// are answered.
async fn unroutable_calls_beside_delivered_ones_fail_at_once(env: TestBroker) {
    let t = env.transport().await;
    let server = start_server(&t, "beside", "h1", Arc::default()).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300 {
        let t = t.clone();
        calls.spawn(async move {
            let (routable, topic) = every_other_nowhere(i, "beside");
            let client = RpcClient::new(&t, Target::topic(&topic)).timeout(Duration::from_secs(30));
            let started = Instant::now();
            let outcome = client
                .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(i) })
                .await;
            (i, routable, outcome, started.elapsed())
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (i, routable, outcome, took) = joined.expect("the call task");
        if routable {
            assert_eq!(outcome.expect("answered"), json!(i));
        } else {
            let err = outcome.expect_err("nobody listens");
            assert!(
                matches!(err, MessagingError::Undeliverable { .. }),
                "call {i} after {took:?}: {err}"
            );
            assert!(took < Duration::from_secs(10), "call {i} took {took:?}");
        }
    }
    server.stop().await;
}

/// Closing a transport ends the calls still waiting on it at once, as
/// closed, rather than at their timeout.
async fn closing_the_transport_ends_waiting_calls(env: TestBroker) {
    let t = env.transport().await;
    let server_side = env.transport().await;
    let shared = Arc::new(Shared::default());
    let server = RpcServer::builder(&server_side, Target::topic("closing").with_server("h1"))
        .endpoint(service("h1", shared.clone()))
        .missing_reply_queue_timeout(Duration::ZERO)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&t, Target::topic("closing")).timeout(Duration::from_secs(60));
    let call = tokio::spawn(async move {
        client
            .call::<_, u64>(&ctx(), "sleep", &SleepArgs { ms: 30_000 })
            .await
    });
    eventually("the call is running", async || {
        shared.running.load(Ordering::SeqCst) == 1
    })
    .await;
    let closed_at = Instant::now();
    t.close().await;
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call ends when its transport closes")
        .expect("join");
    assert!(matches!(result, Err(MessagingError::Closed)), "{result:?}");
    // Not its 60 s timeout, nor the method's 30 s.
    assert!(
        closed_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        closed_at.elapsed()
    );
    server.stop_within(Duration::ZERO).await;
}

/// A closed transport refuses everything at once, as closed: calls, casts,
/// notifications, new servers; it says it is not connected.
async fn a_closed_transport_refuses_everything(env: TestBroker) {
    let t = env.transport().await;
    let client = RpcClient::new(&t, Target::topic("closed")).timeout(Duration::from_secs(30));
    let notifier = Notifier::new(&t, "faafo.test.closed");
    t.close().await;
    assert!(!t.is_connected());
    let started = Instant::now();
    let call = client
        .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await;
    assert!(
        matches!(call, Err(MessagingError::Closed)),
        "call: {call:?}"
    );
    let cast = client
        .cast(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await;
    assert!(
        matches!(cast, Err(MessagingError::Closed)),
        "cast: {cast:?}"
    );
    let notified = notifier.info(&ctx(), "closed.event", &json!({})).await;
    assert!(
        matches!(notified, Err(MessagingError::Closed)),
        "notify: {notified:?}"
    );
    let server = RpcServer::builder(&t, Target::topic("closed").with_server("h1"))
        .endpoint(service("h1", Arc::new(Shared::default())))
        .start()
        .await;
    assert!(
        matches!(server, Err(MessagingError::Closed)),
        "server: {:?}",
        server.as_ref().err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A handler that panics drops its notification; the listener goes on.
async fn a_panicking_notification_handler_does_not_stop_the_listener(env: TestBroker) {
    let t = env.transport().await;
    let notifier = Notifier::new(&t, "faafo.test.h1");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::builder(&t)
        .start(move |n: Notification| {
            let tx = tx.clone();
            async move {
                if n.event_type == "boom" {
                    panic!("handler bug");
                }
                let _ = tx.send(n.event_type);
                NotificationResult::Handled
            }
        })
        .await
        .expect("listener");
    for event in ["boom", "boom", "fine"] {
        notifier
            .info(&ctx(), event, &json!({}))
            .await
            .expect("notify");
    }
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the listener still takes notifications")
        .expect("one");
    assert_eq!(got, "fine");
    listener.stop().await;
}

/// A notification its handler puts back comes back after a pause, not at
/// once (the broker requeues it at the head of the queue: a handler that
/// cannot take it now would spin on it).
async fn a_requeued_notification_comes_back_after_a_pause(env: TestBroker) {
    let t = env.transport().await;
    let notifier = Notifier::new(&t, "faafo.test.h1");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = NotificationListener::builder(&t)
        .start(move |n: Notification| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((Instant::now(), n.event_type));
                NotificationResult::Requeue
            }
        })
        .await
        .expect("listener");
    notifier
        .info(&ctx(), "not.now", &json!({}))
        .await
        .expect("notify");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (at, event) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("handed in time")
            .expect("one");
        assert_eq!(event, "not.now");
        seen.push(at);
    }
    assert!(
        seen[1] - seen[0] >= REQUEUE_DELAY - Duration::from_millis(50),
        "back after {:?}",
        seen[1] - seen[0]
    );
    listener.stop().await;
}

async fn notifications_reach_listeners_and_pools(env: TestBroker) {
    let t = env.transport().await;
    let notifier = Notifier::new(&t, "faafo.test.h1");
    // Sent before anyone listens: the notifier's queue keeps it.
    notifier
        .info(&ctx(), "fractal.rendered", &json!({"uuid": "early"}))
        .await
        .expect("notify");
    let (listener, mut rx) =
        faafo_common::testing::collecting_listener(NotificationListener::builder(&t)).await;
    let early = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(early.event_type, "fractal.rendered");
    assert_eq!(early.priority, "INFO");
    assert_eq!(early.publisher_id, "faafo.test.h1");
    assert_eq!(early.payload, json!({"uuid": "early"}));
    assert!(early.context.request_id().is_some());
    notifier
        .error(
            &RequestContext::new().with_request_id("req-n"),
            "fractal.failed",
            &json!({"why": "x"}),
        )
        .await
        .expect("notify");
    let failed = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(failed.priority, "ERROR");
    assert_eq!(failed.context.request_id(), Some("req-n"));
    listener.stop().await;

    // Two listeners in one pool share; a listener in another pool sees all.
    let counts: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let mut listeners = Vec::new();
    for (i, pool) in ["workers", "workers", "audit"].into_iter().enumerate() {
        let counts = counts.clone();
        listeners.push(
            NotificationListener::builder(&t)
                .pool(pool)
                .priorities(vec![Priority::Info])
                .start(move |_n| {
                    counts[i].fetch_add(1, Ordering::SeqCst);
                    async { NotificationResult::Handled }
                })
                .await
                .expect("listener"),
        );
    }
    for i in 0..10 {
        notifier
            .info(&ctx(), "tick", &json!({"i": i}))
            .await
            .expect("notify");
    }
    eventually("pools got their share", async || {
        let pool = counts[0].load(Ordering::SeqCst) + counts[1].load(Ordering::SeqCst);
        pool == 10 && counts[2].load(Ordering::SeqCst) == 10
    })
    .await;
    for l in listeners {
        l.stop().await;
    }
}

/// An exchange another peer declared with other properties (durable, as
/// a Python peer with `amqp_durable_queues` does) takes faafo's casts as
/// it is, and the declaration the broker refuses spoils none of the calls
/// in flight on the same connection (it was made on the publishing
/// channel, whose close failed every confirm still to come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_a_peer_declared_otherwise_takes_casts_and_spoils_no_call() {
    let env = TestBroker::rabbit().await;
    let vhost = env.vhost().expect("rabbit");
    vhost
        .declare_as_another_client(
            "exchanges",
            "peer-durable",
            json!({"type": "topic", "durable": true}),
        )
        .await;
    vhost
        .declare_as_another_client("queues", "peer-queue", json!({"durable": true}))
        .await;
    vhost
        .bind_as_another_client("peer-durable", "peer-queue", "peer-topic")
        .await;
    let t = env.transport().await;
    let server = start_server(&t, "busy", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("busy"));
    let caster = RpcClient::new(
        &t,
        Target::topic("peer-topic").with_exchange("peer-durable"),
    );
    let calls = (0..50).map(|i| {
        let client = client.clone();
        async move {
            client
                .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(i) })
                .await
        }
    });
    let (cast_ctx, nothing) = (ctx(), json!({}));
    let (answers, cast) = tokio::join!(
        futures_util::future::join_all(calls),
        caster.cast(&cast_ctx, "anything", &nothing)
    );
    cast.expect("the cast reaches the peer's exchange as it is");
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.expect("a call beside the cast"), json!(i));
    }
    assert_eq!(
        queue_depth(&t, "peer-queue").await.expect("depth"),
        Some(1),
        "the cast is in the peer's queue"
    );
    server.stop().await;
}

/// An exchange deleted under a sender (by an operator, or with a
/// peer's last binding when the peer declared it auto-delete) is declared
/// again by the next message: RabbitMQ refuses a publish to it by closing
/// the channel after the publish, before the confirm, which was taken for
/// a lost connection, and the exchange was never declared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_deleted_under_a_sender_is_declared_again() {
    let env = TestBroker::rabbit().await;
    let vhost = env.vhost().expect("rabbit");
    let t = env.transport().await;
    let caster = RpcClient::new(
        &t,
        Target::topic("gone-topic").with_exchange("gone-exchange"),
    );
    let nothing = json!({});
    let undeliverable = caster.cast(&ctx(), "anything", &nothing).await;
    assert!(
        matches!(undeliverable, Err(MessagingError::Undeliverable { .. })),
        "no queue yet: {undeliverable:?}"
    );
    vhost
        .declare_as_another_client("queues", "peer-gone", json!({"durable": false}))
        .await;
    vhost
        .bind_as_another_client("gone-exchange", "peer-gone", "gone-topic")
        .await;
    caster
        .cast(&ctx(), "anything", &nothing)
        .await
        .expect("a cast to the bound queue");
    vhost
        .delete_as_another_client("exchanges", "gone-exchange")
        .await;
    for round in 0..2 {
        let result = caster.cast(&ctx(), "anything", &nothing).await;
        assert!(
            matches!(result, Err(MessagingError::Undeliverable { .. })),
            "round {round}: the exchange is declared again, with nothing bound yet: {result:?}"
        );
    }
    vhost
        .bind_as_another_client("gone-exchange", "peer-gone", "gone-topic")
        .await;
    caster
        .cast(&ctx(), "anything", &nothing)
        .await
        .expect("a cast once the peer bound its queue again");
    assert_eq!(
        queue_depth(&t, "peer-gone").await.expect("depth"),
        Some(2),
        "the casts before the delete and after the new binding"
    );
    t.close().await;
}

/// A message RabbitMQ refuses (here: to an exchange that does not exist)
/// closes the publishing channel, failing the confirms of the messages
/// beside it, calls and replies: those are sent again on a channel of
/// their own, where a second refusal of the guilty one cannot reach them.
/// Sent again on the shared channel, an innocent call met the next bad
/// publish's refusal and was reported refused. (So many refusals also
/// make RabbitMQ close the whole connection now and then: lapin can send
/// a message's last frames on a channel after its close, which RabbitMQ
/// takes for a protocol error. After such a loss the calls not yet
/// confirmed are sent again, as the producer's are, and the others get
/// their replies from the kept reply queue; a refusal is never sent
/// again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_spoils_none_of_its_neighbours() {
    let env = TestBroker::rabbit().await;
    let t = env.transport().await;
    let server = start_server(&t, "neighbours", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("neighbours"))
        .timeout(Duration::from_secs(30))
        .retry(RetryPolicy::UNTIL_DEADLINE);
    let missing = unique_name("missing");
    // Refused messages all along, while calls (requests and replies) go.
    let refusing = {
        let (t, missing) = (t.clone(), missing.clone());
        tokio::spawn(async move {
            loop {
                match publish_raw(&t, &missing, "nowhere", b"{}".to_vec(), "application/json").await
                {
                    Err(MessagingError::Refused(_)) => {}
                    // The connection being made again (above).
                    Err(MessagingError::Disconnected(_)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("a publish to a missing exchange: {other:?}"),
                }
            }
        })
    };
    for round in 0..10 {
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..20 {
            let client = client.clone();
            calls.spawn(async move {
                let echoed = client
                    .call::<_, Value>(&ctx(), "echo", &json!({"value": n}))
                    .await;
                assert_eq!(
                    echoed.as_ref().ok(),
                    Some(&json!(n)),
                    "round {round}, call {n} beside refused messages: {echoed:?}"
                );
            });
        }
        while let Some(joined) = calls.join_next().await {
            joined.expect("a call");
        }
    }
    assert!(!refusing.is_finished(), "{:?}", refusing.await);
    refusing.abort();
    server.stop().await;
    t.close().await;
}

/// Each refused message makes RabbitMQ close a channel, and lapin 4.12.3
/// kept that channel's error under its id; ids wrap at `channel_max`
/// (2,047), so after about 2,000 refusals every new channel of the
/// connection failed at once with the old `NOT_FOUND`, calls and replies
/// included, the connection still up. faafo's patched lapin
/// (`common/vendor/lapin`) drops the old error when an id is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_outlives_thousands_of_refused_messages() {
    let env = TestBroker::rabbit().await;
    let t = env.transport().await;
    let server = start_server(&t, "outlives", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("outlives")).timeout(Duration::from_secs(10));
    let _: Value = client
        .call(&ctx(), "echo", &json!({"value": 0}))
        .await
        .expect("a call before the refusals");
    let missing = unique_name("missing");
    // More than channel_max: every channel id is used, then reused.
    for n in 0..2_300 {
        match publish_raw(&t, &missing, "nowhere", b"{}".to_vec(), "application/json").await {
            Err(MessagingError::Refused(_)) => {}
            other => panic!("refused publish {n} to a missing exchange: {other:?}"),
        }
    }
    for n in 0..50 {
        let echoed = client
            .call::<_, Value>(&ctx(), "echo", &json!({"value": n}))
            .await;
        assert_eq!(
            echoed.as_ref().ok(),
            Some(&json!(n)),
            "call {n} after 2,300 refused messages: {echoed:?}"
        );
    }
    server.stop().await;
    t.close().await;
}

/// Only RabbitMQ has a management API to compare declarations with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_declares_oslo_topology() {
    let env = TestBroker::rabbit().await;
    let t = env.transport().await;
    let server = start_server(&t, "topo", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("topo"));
    let _: Value = client
        .call(&ctx(), "echo", &EchoArgs { value: json!(1) })
        .await
        .expect("call");
    let vhost = env.vhost().expect("rabbit");
    for name in ["topo", "topo.h1"] {
        let q = vhost
            .queue_info(name)
            .await
            .unwrap_or_else(|| panic!("queue {name}"));
        assert_eq!(q["durable"], json!(false), "{name}");
        assert_eq!(q["auto_delete"], json!(false), "{name}");
        assert_eq!(q["arguments"], json!({}), "{name}");
    }
    let names = vhost.queue_names().await;
    let fanout = names
        .iter()
        .find(|n| n.starts_with("topo_fanout_"))
        .expect("fanout queue");
    let reply = names
        .iter()
        .find(|n| n.starts_with("reply_"))
        .expect("reply queue");
    for name in [fanout, reply] {
        let q = vhost.queue_info(name).await.expect("queue");
        assert_eq!(q["arguments"], json!({"x-expires": 1_800_000}), "{name}");
        assert_eq!(q["durable"], json!(false));
        assert_eq!(hex_suffix(name).len(), 32, "{name}");
    }
    server.stop().await;
}

/// A call whose caller loses its connection while the request runs is
/// answered from the reply queue, which outlives the loss, and is not sent
/// again: sent again, it ran on another server too (here the only one
/// free), rendering a fractal twice. The reply the server sends while the
/// caller is away waits in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_loses_its_connection_gets_its_reply_and_sends_nothing_again() {
    let env = TestBroker::rabbit().await;
    let vhost = env.vhost().expect("rabbit");
    let topic = unique_name("kept");
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let held = |runs: Arc<AtomicUsize>, release: Arc<tokio::sync::Semaphore>| {
        Endpoint::new().method("work", move |_ctx, _: Empty| {
            let (runs, release) = (runs.clone(), release.clone());
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = release.acquire().await.map(|p| p.forget());
                Ok::<_, RemoteError>(run)
            }
        })
    };
    // Two servers, each taking one request at a time: a copy sent again
    // while the first runs goes to the other one.
    let mut servers = Vec::new();
    for name in ["h1", "h2"] {
        let t = env.transport().await;
        let server = RpcServer::builder(&t, Target::topic(&topic).with_server(name))
            .endpoint(held(runs.clone(), release.clone()))
            .executor_size(1)
            .prefetch(1)
            .start()
            .await
            .expect("server");
        servers.push((t, server));
    }
    let caller_name = unique_name("caller");
    let caller = Transport::builder(&format!(
        "{}?rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1",
        env.url()
    ))
    .connection_name(caller_name.clone())
    .connect()
    .await
    .expect("the caller connects");
    // Sending again allowed, as the producer's calls do.
    let client = RpcClient::new(&caller, Target::topic(&topic))
        .timeout(Duration::from_secs(60))
        .retry(RetryPolicy::UNTIL_DEADLINE);
    let call = tokio::spawn(async move {
        let answer = client.call::<_, usize>(&ctx(), "work", &Empty {}).await;
        (answer, client)
    });
    eventually("the request runs", async || {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(vhost.close_connections_named(&caller_name).await, 1);
    // Answered while the caller is away (it waits 0.2 s at least before
    // it connects again).
    let away = Instant::now() + Duration::from_secs(10);
    while caller.is_connected() {
        assert!(
            Instant::now() < away,
            "the caller's connection was not closed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.add_permits(1);
    let (answer, _client) = tokio::time::timeout(Duration::from_secs(50), call)
        .await
        .expect("the call ends")
        .expect("the call's task");
    assert_eq!(answer.expect("the reply, after the reconnect"), 1);
    // A copy sent again would run on the free server now.
    release.add_permits(10);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the call was sent again and ran twice"
    );
    for (t, server) in servers {
        server.stop().await;
        t.close().await;
    }
    caller.close().await;
}

/// Replies are acknowledged (one on its way when the connection goes
/// comes again), several at once under load: none is left
/// unacknowledged, for the broker to hold and deliver again after a
/// reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_is_acknowledged() {
    let env = TestBroker::rabbit().await;
    let t = env.transport().await;
    let server = start_server(&t, "acked", "h1", Arc::default()).await;
    let client = RpcClient::new(&t, Target::topic("acked"));
    let calls = (0..300).map(|i| {
        let client = client.clone();
        async move {
            client
                .call::<_, Value>(&ctx(), "echo", &EchoArgs { value: json!(i) })
                .await
        }
    });
    for (i, answer) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(answer.expect("a call"), json!(i));
    }
    let vhost = env.vhost().expect("rabbit");
    let names = vhost.queue_names().await;
    let reply = names
        .iter()
        .find(|n| n.starts_with("reply_"))
        .expect("reply queue");
    // The management API's figures come seconds late.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = vhost.queue_info(reply).await.expect("the reply queue");
        let delivered = info["message_stats"]["deliver"].as_u64().unwrap_or(0);
        if delivered >= 300 && info["messages_unacknowledged"] == json!(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "300 replies delivered with acknowledgement, none left unacknowledged: {info}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.stop().await;
}

fn hex_suffix(name: &str) -> &str {
    name.rsplit('_').next().unwrap_or_default()
}

faafo_common::on_both_transports!(
    call_returns_a_typed_result,
    at_most_once_a_duplicate_is_not_run_elsewhere_after_a_crash,
    the_request_context_reaches_the_endpoint,
    casts_run_and_are_confirmed,
    fanout_casts_reach_every_server,
    calls_can_address_one_server,
    nobody_listening_fails_at_once,
    arguments_are_keyword_arguments,
    a_call_out_of_time_before_it_is_sent_times_out,
    slow_servers_time_out,
    calls_nobody_took_expire_from_the_queue,
    remote_errors_keep_class_module_and_message,
    unknown_methods_and_versions_are_typed_errors,
    many_calls_in_flight_get_their_own_replies,
    concurrency_is_bounded_by_the_executor,
    stopping_finishes_running_calls_and_requeues_the_rest,
    a_stop_out_of_grace_gives_running_requests_back,
    an_acknowledged_request_abandoned_by_a_stop_is_answered,
    a_request_whose_server_dies_is_served_by_another,
    requests_held_ahead_by_a_server_that_lost_its_connection_run_elsewhere,
    messagepack_carries_raw_bytes,
    call_monitor_heartbeats_keep_long_calls_alive,
    bad_messages_are_answered_rejected_and_never_requeued,
    a_reply_larger_than_max_message_size_is_an_error_answered_once,
    malformed_calls_get_an_error_reply,
    names_longer_than_amqp_allows_are_refused,
    call_timeouts_longer_than_a_broker_ttl_work,
    duplicates_run_once,
    huge_call_monitor_timeouts_are_served,
    a_neighbours_return_does_not_fail_a_delivered_message,
    unroutable_calls_beside_delivered_ones_fail_at_once,
    closing_the_transport_ends_waiting_calls,
    a_closed_transport_refuses_everything,
    a_panicking_notification_handler_does_not_stop_the_listener,
    a_requeued_notification_comes_back_after_a_pause,
    notifications_reach_listeners_and_pools,
);
