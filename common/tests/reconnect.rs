//! Broker restarts and failover, on a RabbitMQ node of the test's own.

use std::time::{Duration, Instant};

use faafo_common::messaging::*;
use faafo_common::testing::PrivateRabbit;
use serde_json::{Value, json};

#[derive(serde::Deserialize)]
struct EchoArgs {
    value: Value,
}

#[derive(serde::Deserialize)]
struct SleepArgs {
    ms: u64,
}

fn endpoint() -> Endpoint {
    Endpoint::new()
        .method("echo", |_c, a: EchoArgs| async move {
            Ok::<_, RemoteError>(a.value)
        })
        .method("sleep", |_c, a: SleepArgs| async move {
            tokio::time::sleep(Duration::from_millis(a.ms)).await;
            Ok::<_, RemoteError>(a.ms)
        })
}

/// Fast reconnects for the test (the defaults start at 1 s).
fn url(rabbit: &PrivateRabbit) -> String {
    format!(
        "{}?rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=1&heartbeat=10",
        rabbit.url()
    )
}

async fn call_until_ok(client: &RpcClient, within: Duration) -> Duration {
    let started = Instant::now();
    let ctx = RequestContext::with_new_request_id();
    loop {
        match client
            .call::<_, Value>(&ctx, "echo", &json!({"value": "again"}))
            .await
        {
            Ok(v) => {
                assert_eq!(v, json!("again"));
                return started.elapsed();
            }
            Err(e) if started.elapsed() < within => {
                assert!(
                    e.is_transient(),
                    "a restart must give transient errors, got: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing {within:?} after the restart: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_servers_survive_a_broker_restart() {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("node");
    let server_transport = Transport::connect(&url(&rabbit))
        .await
        .expect("server connects");
    // Its dead-letter exchange and queue are transient (as by default):
    // a restart removes them, and the server declares them again.
    let server = RpcServer::builder(&server_transport, Target::topic("tasks").with_server("w1"))
        .endpoint(endpoint())
        .dead_letter_exchange("tasks-dead")
        .start()
        .await
        .expect("server");
    let client_transport = Transport::connect(&url(&rabbit))
        .await
        .expect("client connects");
    let client =
        RpcClient::new(&client_transport, Target::topic("tasks")).timeout(Duration::from_secs(5));
    let ctx = RequestContext::with_new_request_id();
    let v: Value = client
        .call(&ctx, "echo", &json!({"value": 1}))
        .await
        .expect("before restart");
    assert_eq!(v, json!(1));

    // A call in flight when the broker goes away waits for it (its reply
    // queue may outlive a lost connection, with the reply); once the
    // broker is back and the queue had to be made again (a restart empties
    // the node of transient queues), the call ends with a clear error,
    // long before its 60 s timeout. Its method runs for 20 s: longer than
    // stopping the node takes, even on a loaded machine.
    let slow = client.prepare().timeout(Duration::from_secs(60));
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        let r = slow
            .call::<_, u64>(
                &RequestContext::with_new_request_id(),
                "sleep",
                &json!({"ms": 20_000}),
            )
            .await;
        (r, started.elapsed())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().received < 2 {
        assert!(Instant::now() < deadline, "the server never got the call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let r = &rabbit;
    tokio::task::block_in_place(|| r.stop_app());
    let deadline = Instant::now() + Duration::from_secs(5);
    while client_transport.is_connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!client_transport.is_connected());
    // While the broker is down, calls fail with transient errors.
    let err = client
        .call::<_, Value>(&ctx, "echo", &json!({"value": 2}))
        .await
        .expect_err("down");
    assert!(err.is_transient(), "{err}");
    assert!(
        !in_flight.is_finished(),
        "the call in flight waits for the broker: its reply may still come"
    );

    tokio::task::block_in_place(|| r.start_app());
    let (result, took) = in_flight.await.expect("join");
    match result {
        Err(MessagingError::Disconnected(reason)) => {
            assert!(reason.contains("may or may not have run"), "{reason}")
        }
        other => panic!("expected Disconnected for the call in flight, got {other:?}"),
    }
    assert!(took < Duration::from_secs(50), "took {took:?}");
    // Both sides reconnect, re-declare their (transient, now gone) queues
    // and carry on: no process restart.
    let recovered = call_until_ok(&client, Duration::from_secs(30)).await;
    println!("calls work again {recovered:?} after start_app");
    assert!(client_transport.is_connected() && server_transport.is_connected());
    for i in 0..20 {
        let v: Value = client
            .call(&ctx, "echo", &json!({"value": i}))
            .await
            .expect("after restart");
        assert_eq!(v, json!(i));
    }
    // A request no server can read is kept by the dead-letter queue, as
    // before the restart: not dropped for want of its exchange.
    faafo_common::testing::publish_raw(
        &client_transport,
        "",
        "tasks",
        b"garbage".to_vec(),
        "application/json",
    )
    .await
    .expect("raw publish");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let depth = faafo_common::testing::queue_depth(&client_transport, "tasks-dead")
            .await
            .expect("depth");
        if depth == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bad request was not dead-lettered after the restart (queue depth {depth:?}); the server rejected {}",
            server.stats().malformed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Notifications work again too.
    Notifier::new(&client_transport, "test")
        .info(&ctx, "after.restart", &json!({}))
        .await
        .expect("notify after restart");
    // Not waiting for the 20 s method that lost its caller.
    server.stop_within(Duration::from_secs(1)).await;
    client_transport.close().await;
    server_transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_call_survives_a_broker_restart() {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("node");
    let server_transport = Transport::connect(&url(&rabbit))
        .await
        .expect("server connects");
    let server = RpcServer::builder(&server_transport, Target::topic("tasks").with_server("w1"))
        .endpoint(endpoint())
        .start()
        .await
        .expect("server");
    let client_transport = Transport::connect(&url(&rabbit))
        .await
        .expect("client connects");
    let client = RpcClient::new(&client_transport, Target::topic("tasks"))
        .timeout(Duration::from_secs(60))
        .retry(RetryPolicy::UNTIL_DEADLINE);
    let _: Value = client
        .call(&RequestContext::new(), "echo", &json!({"value": 0}))
        .await
        .expect("warm up");
    let in_flight = tokio::spawn(async move {
        client
            .call::<_, u64>(
                &RequestContext::with_new_request_id(),
                "sleep",
                &json!({"ms": 2000}),
            )
            .await
    });
    // In flight: the server has it (the warm-up was the first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().received < 2 {
        assert!(Instant::now() < deadline, "the server never got the call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = &rabbit;
    tokio::task::block_in_place(|| {
        r.stop_app();
        std::thread::sleep(Duration::from_millis(500));
        r.start_app();
    });
    // The call is answered after the reconnect: sent again, or its first
    // run's reply taken by the reply queue declared again (which of the
    // two comes first is a race; either way the call does not fail).
    assert_eq!(in_flight.await.expect("join").expect("retried call"), 2000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_skips_a_dead_host() {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("node");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let url = format!(
        "amqp://guest:guest@127.0.0.1:{dead_port},guest:guest@127.0.0.1:{}/?connection_timeout=2",
        rabbit.port()
    );
    // Hosts are tried in shuffled order: connect several times so both
    // orders are exercised.
    for _ in 0..4 {
        let t = Transport::connect(&url)
            .await
            .expect("connects to the live host");
        assert!(t.is_connected());
        t.close().await;
    }
    let only_dead = format!("amqp://guest:guest@127.0.0.1:{dead_port}/?connection_timeout=2");
    let err = Transport::connect(&only_dead)
        .await
        .err()
        .expect("no broker");
    let text = err.to_string();
    assert!(matches!(err, MessagingError::Disconnected(_)), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{dead_port}")) && !text.contains("guest:guest"),
        "{text}"
    );
}

/// A result larger than the broker takes, from a server whose
/// `max_message_size` is above the broker's own (RabbitMQ 4's 16 MiB against
/// the 64 MiB default): the broker closes the publishing channel on it.
/// That read as a lost connection, and the request ran again for ever,
/// its caller never answered. Now the caller is told at once, in a small
/// error reply, and the request runs once. The refusal closes the
/// channel, failing the confirms of the replies sent beside it: those are
/// sent again on channels of their own, where the refused one's second
/// refusal cannot meet them, and their callers get their results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_broker_refuses_is_answered_with_an_error_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rabbit = tokio::task::spawn_blocking(|| {
        let rabbit = PrivateRabbit::start();
        rabbit.set_max_message_size(1024 * 1024);
        rabbit
    })
    .await
    .expect("node");
    let transport = Transport::connect(&url(&rabbit)).await.expect("connects");
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let endpoint = Endpoint::new()
        .method("big", move |_c, _a: Value| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RemoteError>("x".repeat(2 * 1024 * 1024))
            }
        })
        .method(
            "small",
            |_c, a: Value| async move { Ok::<_, RemoteError>(a) },
        );
    let server = RpcServer::builder(&transport, Target::topic("big").with_server("w1"))
        .endpoint(endpoint)
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&transport, Target::topic("big")).timeout(Duration::from_secs(30));
    let started = Instant::now();
    let result = client
        .call::<_, String>(&RequestContext::new(), "big", &json!({}))
        .await;
    match &result {
        Err(MessagingError::Remote { error, .. }) => {
            assert_eq!(error.class, "RuntimeError", "{error:?}");
            assert!(
                error.message.contains("the broker refused the result"),
                "{error:?}"
            );
        }
        other => panic!("expected the broker's refusal as an error: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the caller waited {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the request ran again");
    // The server answers on (a small answer: no such method).
    let answer = client
        .call::<_, Value>(&RequestContext::new(), "missing", &json!({}))
        .await;
    assert!(
        matches!(answer, Err(MessagingError::NoSuchMethod { .. })),
        "{answer:?}"
    );

    // Refused replies among good ones, all at once, several rounds.
    for round in 0..5 {
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..24 {
            let client = client.clone();
            calls.spawn(async move {
                let ctx = RequestContext::new();
                if n % 6 == 0 {
                    let refused = client.call::<_, String>(&ctx, "big", &json!({})).await;
                    assert!(
                        matches!(&refused, Err(MessagingError::Remote { error, .. })
                            if error.class == "RuntimeError"),
                        "round {round}, call {n}: {refused:?}"
                    );
                } else {
                    let answer = client
                        .call::<_, Value>(&ctx, "small", &json!({"n": n}))
                        .await;
                    assert_eq!(
                        answer.as_ref().ok(),
                        Some(&json!({"n": n})),
                        "round {round}, call {n}: a good reply beside a refused one: {answer:?}"
                    );
                }
            });
        }
        while let Some(joined) = calls.join_next().await {
            joined.expect("a call");
        }
    }
    server.stop().await;
    transport.close().await;
}

/// A server that is not a broker (an HTTP server on the port given) is
/// named as such, not with the AMQP parser's internals.
#[tokio::test]
async fn a_server_that_is_not_a_broker_is_named() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let http = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 64];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/?connection_timeout=2");
    let err = Transport::connect(&url).await.err().expect("not a broker");
    let text = err.to_string();
    assert!(
        text.contains("not as an AMQP 0-9-1 broker") && !text.contains("ParserErrors"),
        "{text}"
    );
    http.abort();
}

/// A broker blocked by a resource alarm: once the connection knows it,
/// a cast is refused within its time as not sent, and is not delivered
/// once the alarm clears (lapin kept the message and sent it then, after
/// its sender had been told that it failed: a retry would have run it
/// twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cast_to_a_blocked_broker_is_refused_and_not_sent_later() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("the node");
    let transport = Transport::connect(&format!("{}&connection_timeout=2", url(&rabbit)))
        .await
        .expect("connect");
    let counted = Arc::new(AtomicUsize::new(0));
    let seen = counted.clone();
    let server = RpcServer::builder(&transport, Target::topic("alarm").with_server("h1"))
        .endpoint(Endpoint::new().method("count", move |_c, _a: Value| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(())
            }
        }))
        .start()
        .await
        .expect("server");
    let client = RpcClient::new(&transport, Target::topic("alarm")).timeout(Duration::from_secs(2));
    let ctx = RequestContext::new();
    client
        .cast(&ctx, "count", &json!({}))
        .await
        .expect("a cast before the alarm");
    let started = Instant::now();
    while counted.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first cast"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| rabbit.set_memory_alarm(true));
    // RabbitMQ blocks a connection when it publishes during the alarm: the
    // first cast is taken by the broker, which holds it unconfirmed (it
    // will be delivered when the alarm clears), and the connection is told
    // that it is blocked.
    let held = client
        .cast(&ctx, "count", &json!({}))
        .await
        .expect_err("a cast the blocked broker holds");
    assert!(held.to_string().contains("in time"), "{held}");
    let refused = client
        .cast(&ctx, "count", &json!({}))
        .await
        .expect_err("a cast to a connection known to be blocked");
    assert!(
        refused.to_string().contains("resource alarm") && refused.to_string().contains("not sent"),
        "{refused}"
    );
    tokio::task::block_in_place(|| rabbit.set_memory_alarm(false));
    // The held cast arrives; the refused one, sent now, would arrive too.
    let started = Instant::now();
    while counted.load(Ordering::SeqCst) < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "the held cast");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        counted.load(Ordering::SeqCst),
        2,
        "the refused cast was delivered once the alarm cleared"
    );
    client
        .cast(&ctx, "count", &json!({}))
        .await
        .expect("a cast after the alarm");
    server.stop().await;
    transport.close().await;
}

/// A transport closed while it reconnects to a host that does not answer
/// (here a listener that never speaks) closes at once: it does not wait
/// for the connect's `connection_timeout`, and nothing is sent after, nor
/// waits for a link that came up after the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_a_reconnect_is_not_held_by_it() {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("node");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let silent_port = silent.local_addr().expect("addr").port();
    // Closed while the transport connects: a refused connection, so the
    // live host is the one it connects to, whatever the order.
    drop(silent);
    let url = format!(
        "amqp://guest:guest@127.0.0.1:{silent_port},guest:guest@127.0.0.1:{}/\
         ?connection_timeout=30&rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2",
        rabbit.port()
    );
    let t = Transport::connect(&url).await.expect("connects");
    // A call made (to nobody): the transport has a reply queue to delete.
    let nobody = RpcClient::new(&t, Target::topic("nobody"))
        .call::<_, Value>(
            &RequestContext::with_new_request_id(),
            "echo",
            &json!({"value": 1}),
        )
        .await;
    assert!(
        matches!(nobody, Err(MessagingError::Undeliverable { .. })),
        "{nobody:?}"
    );
    let silent = tokio::net::TcpListener::bind(("127.0.0.1", silent_port))
        .await
        .expect("the port again");
    let knocked = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = tokio::spawn({
        let knocked = knocked.clone();
        async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                sockets.push(socket);
                knocked.notify_one();
            }
        }
    });
    let r = &rabbit;
    tokio::task::block_in_place(|| r.stop_app());
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.is_connected() {
        assert!(Instant::now() < deadline, "the loss was never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The reconnect to the other host (the silent one) has begun.
    tokio::time::timeout(Duration::from_secs(10), knocked.notified())
        .await
        .expect("the reconnect never came to the silent host");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    t.close().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the close took {took:?}");
    assert!(!t.is_connected());
    let started = Instant::now();
    let cast = RpcClient::new(&t, Target::topic("tasks"))
        .timeout(Duration::from_secs(20))
        .cast(
            &RequestContext::with_new_request_id(),
            "echo",
            &json!({"value": 1}),
        )
        .await;
    assert!(
        matches!(cast, Err(MessagingError::Closed)) && started.elapsed() < Duration::from_secs(2),
        "a cast after the close: {cast:?} after {:?}",
        started.elapsed()
    );
    held.abort();
}

/// A transport's first call, made while the broker is away, waits for it
/// as its retry policy says: the reply queue it must make first used to
/// fail the call after `connection_timeout`, whatever the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_call_during_an_outage_waits_as_its_retry_policy_says() {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("node");
    let url = format!("{}&connection_timeout=2", url(&rabbit));
    let server_transport = Transport::connect(&url).await.expect("server connects");
    let server = RpcServer::builder(&server_transport, Target::topic("tasks").with_server("w1"))
        .endpoint(endpoint())
        .start()
        .await
        .expect("server");
    let client_transport = Transport::connect(&url).await.expect("client connects");
    let r = &rabbit;
    tokio::task::block_in_place(|| r.stop_app());
    let client = RpcClient::new(&client_transport, Target::topic("tasks"))
        .timeout(Duration::from_secs(60))
        .retry(RetryPolicy::UNTIL_DEADLINE);
    let call = tokio::spawn(async move {
        client
            .call::<_, Value>(
                &RequestContext::with_new_request_id(),
                "echo",
                &json!({"value": "waited"}),
            )
            .await
    });
    // Longer than connection_timeout: the call is still waiting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!call.is_finished(), "the call ended: {:?}", call.await);
    tokio::task::block_in_place(|| r.start_app());
    let answer = call.await.expect("join");
    assert_eq!(
        answer.expect("answered once the broker is back"),
        json!("waited")
    );
    server.stop().await;
    client_transport.close().await;
    server_transport.close().await;
}
