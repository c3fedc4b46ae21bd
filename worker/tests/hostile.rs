//! 1,000 malformed messages on the `tasks` queue, among real tasks: the
//! worker keeps serving, rejects poison without requeueing it (dead-letters
//! it, counted), and answers bad calls with typed errors. On `memory://` and
//! on RabbitMQ.

use std::time::{Duration, Instant};

use faafo_common::fractal::{ProcessArgs, Task, TaskResult};
use faafo_common::messaging::*;
use faafo_common::testing::{RabbitVhost, publish_raw, queue_depth, unique_name};
use faafo_worker::RenderLimits;
use faafo_worker::service::{self, WorkerSettings};
use serde_json::json;

const JUNK: usize = 1000;
const MAX_MESSAGE: usize = 256 * 1024;

fn task() -> Task {
    Task {
        uuid: uuid::Uuid::new_v4().to_string(),
        width: 64,
        height: 48,
        iterations: 64,
        xa: -2.0,
        xb: 2.0,
        ya: -1.5,
        yb: 1.5,
        seed: None,
        c_re: Some(-0.8),
        c_im: Some(0.156),
        revision: None,
    }
}

/// The kinds of poison; `true` when the worker cannot even decode it (it is
/// then rejected and dead-lettered), `false` when it is a well-formed
/// request the dispatcher refuses (answered or dropped as a failed cast).
fn junk(i: usize, rng: &mut fastrand::Rng) -> (Vec<u8>, &'static str, bool) {
    let json = "application/json";
    let envelope = |inner: serde_json::Value| {
        json!({"oslo.version": "2.0", "oslo.message": inner.to_string()})
            .to_string()
            .into_bytes()
    };
    match i % 10 {
        0 => (
            (0..rng.usize(1..2000)).map(|_| rng.u8(..)).collect(),
            json,
            true,
        ),
        1 => (b"[1, 2, 3]".to_vec(), json, true),
        2 => (
            json!({"oslo.version": "3.0", "oslo.message": "{}"})
                .to_string()
                .into_bytes(),
            json,
            true,
        ),
        3 => (
            json!({"oslo.version": "2.0", "oslo.message": 42})
                .to_string()
                .into_bytes(),
            json,
            true,
        ),
        4 => (
            envelope(json!({"args": {}, "_unique_id": format!("{i:032x}")})),
            json,
            true,
        ),
        5 => (
            envelope(json!({"method": "nope", "args": {}, "_unique_id": format!("{i:032x}")})),
            json,
            false,
        ),
        6 => (
            envelope(
                json!({"method": "process", "args": {"task": "x"}, "_unique_id": format!("{i:032x}")}),
            ),
            json,
            false,
        ),
        7 => (
            envelope(json!({"method": "process", "args": {"task": {
                "uuid": "u", "width": 1_000_000_000, "height": 1_000_000_000, "iterations": 5,
                "xa": -1, "xb": 1, "ya": -1, "yb": 1, "c_re": 0.0, "c_im": 0.0}},
                "_unique_id": format!("{i:032x}")})),
            json,
            false,
        ),
        8 => (vec![b'{'; MAX_MESSAGE + 1 + rng.usize(..1000)], json, true),
        _ => (b"<task/>".to_vec(), "application/xml", true),
    }
}

async fn poison_is_rejected_and_real_tasks_keep_flowing(url: &str) {
    let transport = Transport::connect(url).await.expect("connects");
    let dlx = unique_name("poison");
    let settings = WorkerSettings {
        topic: "tasks".into(),
        server_name: "w1".into(),
        executor_size: 2,
        prefetch: 8,
        render_threads: 2,
        exec_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(30),
        datadir: None,
        store_wait: Duration::from_secs(30),
        notifications: false,
        limits: RenderLimits::default(),
        max_message_size: MAX_MESSAGE,
        dead_letter_exchange: Some(dlx.clone()),
    };
    let worker = service::start(&transport, settings).await.expect("worker");
    let client =
        RpcClient::new(&transport, Target::topic("tasks")).timeout(Duration::from_secs(60));

    let mut rng = fastrand::Rng::with_seed(7);
    let (mut undecodable, mut refused) = (0u64, 0u64);
    let mut real = Vec::new();
    let started = Instant::now();
    for i in 0..JUNK {
        let (body, content_type, poison) = junk(i, &mut rng);
        if poison {
            undecodable += 1;
        } else {
            refused += 1;
        }
        publish_raw(&transport, DEFAULT_EXCHANGE, "tasks", body, content_type)
            .await
            .expect("junk published");
        if i % 50 == 0 {
            let client = client.clone();
            real.push(tokio::spawn(async move {
                let t = task();
                let result: TaskResult = client
                    .call(
                        &RequestContext::new(),
                        "process",
                        &ProcessArgs { task: t.clone() },
                    )
                    .await
                    .expect("a real task among the junk is served");
                assert_eq!(result.uuid, t.uuid);
            }));
        }
    }
    let served = real.len() as u64;
    for r in real {
        r.await.expect("join");
    }
    let elapsed = started.elapsed();
    let expected = JUNK as u64 + served;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for every message's outcome, not its arrival: `received` is
    // counted before a message is read, so the last one may still be on
    // its way to `rejected`.
    while worker.stats().settled() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = worker.stats();
    println!("{JUNK} junk + {served} real messages in {elapsed:.2?}: {stats:?}");
    assert_eq!(
        stats.received, expected,
        "every message was seen once: nothing requeued"
    );
    assert_eq!(
        stats.malformed + stats.rejected,
        undecodable,
        "poison counted"
    );
    assert_eq!(
        stats.failed, refused,
        "refused requests answered or dropped as failures"
    );
    assert_eq!(stats.succeeded, served);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dead = queue_depth(&transport, &dlx).await.expect("depth");
        if dead == Some(undecodable as usize) || Instant::now() > deadline {
            assert_eq!(dead, Some(undecodable as usize), "poison dead-lettered");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        queue_depth(&transport, "tasks").await.expect("depth"),
        Some(0),
        "nothing left or requeued"
    );
    // Still serving.
    let _: TaskResult = client
        .call(
            &RequestContext::new(),
            "process",
            &ProcessArgs { task: task() },
        )
        .await
        .expect("still serving");
    worker.stop().await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_poison_is_rejected_and_real_tasks_keep_flowing() {
    poison_is_rejected_and_real_tasks_keep_flowing(&format!(
        "memory:///{}",
        unique_name("hostile")
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_poison_is_rejected_and_real_tasks_keep_flowing() {
    let vhost = RabbitVhost::create().await;
    poison_is_rejected_and_real_tasks_keep_flowing(vhost.url()).await;
}
