//! The worker's RPC service, over `memory://` and over RabbitMQ (a vhost of
//! the test's own), driven by an RPC client as the producer drives it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faafo_common::fractal::{
    CANCEL_METHOD, CancelArgs, FRACTAL_DELETED, ProcessArgs, Task, TaskResult, control_topic,
};
use faafo_common::messaging::*;
use faafo_common::testing::{TestBroker, remote_error};
use faafo_worker::service::{self, RunningWorker, WorkerSettings};
use faafo_worker::{CancelToken, FractalParams, FractalSpec, JuliaRenderer, RenderLimits};
use sha2::{Digest, Sha256};

fn settings() -> WorkerSettings {
    WorkerSettings {
        topic: "tasks".into(),
        server_name: "worker-under-test".into(),
        executor_size: 2,
        prefetch: 8,
        render_threads: 2,
        exec_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(30),
        datadir: None,
        store_wait: Duration::from_secs(30),
        notifications: false,
        limits: RenderLimits::default(),
        max_message_size: 64 << 20,
        dead_letter_exchange: None,
    }
}

async fn start(t: &Transport, settings: WorkerSettings) -> RunningWorker {
    service::start(t, settings).await.expect("worker starts")
}

fn task(uuid: &str) -> Task {
    Task {
        uuid: uuid.to_string(),
        width: 96,
        height: 64,
        iterations: 128,
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

/// A task of a noticeable length: c = 0 and a view inside the unit disk,
/// so no pixel escapes and every one runs all its iterations.
fn slow_task(size: i64, iterations: i64) -> Task {
    Task {
        width: size,
        height: size,
        iterations,
        xa: -0.5,
        xb: 0.5,
        ya: -0.5,
        yb: 0.5,
        c_re: Some(0.0),
        c_im: Some(0.0),
        ..task(&uuid::Uuid::new_v4().to_string())
    }
}

/// A worker named "first" rendering one task at a time on one thread,
/// holding `prefetch` tasks.
fn one_at_a_time(prefetch: usize) -> WorkerSettings {
    WorkerSettings {
        server_name: "first".into(),
        executor_size: 1,
        prefetch,
        render_threads: 1,
        ..settings()
    }
}

/// Waits until `worker` has started a task: a delivery is counted
/// received once it has an executor slot.
async fn until_a_task_started(worker: &RunningWorker) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while worker.stats().received == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never started a task"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A worker like `first`, named "second", to take over what it gave back.
/// A task whose render takes minutes: c = 0, the whole disc never
/// escapes, every pixel runs all its iterations.
fn heavy_task() -> Task {
    Task {
        width: 2000,
        height: 2000,
        iterations: 100_000,
        c_re: Some(0.0),
        c_im: Some(0.0),
        ..task(&uuid::Uuid::new_v4().to_string())
    }
}

async fn start_second(t: &Transport, first: WorkerSettings) -> RunningWorker {
    start(
        t,
        WorkerSettings {
            server_name: "second".into(),
            ..first
        },
    )
    .await
}

async fn process(client: &RpcClient, task: Task) -> Result<TaskResult, MessagingError> {
    client
        .call(
            &RequestContext::with_new_request_id(),
            "process",
            &ProcessArgs { task },
        )
        .await
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn renders_and_returns_the_png(env: TestBroker) {
    let t = env.transport().await;
    let worker = start(&t, settings()).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let client = RpcClient::new(&t, Target::topic("tasks")).codec(codec);
        let uuid = uuid::Uuid::new_v4().to_string();
        let result = process(&client, task(&uuid)).await.expect("process");
        assert_eq!(result.uuid, uuid);
        assert_eq!(result.generated_by, "worker-under-test");
        assert_eq!(result.size as usize, result.image.len());
        assert_eq!(
            sha256_hex(&result.image),
            result.checksum,
            "the checksum is the PNG's"
        );
        assert_eq!((result.c_re, result.c_im), (-0.8, 0.156));
        assert!(result.pixel_iterations > 0 && result.duration > 0.0);
        // The same bytes as rendering it here.
        let spec = FractalSpec::try_from(
            FractalParams {
                width: 96,
                height: 64,
                iterations: 128,
                ..FractalParams::default()
            }
            .with_c(-0.8, 0.156),
        )
        .expect("spec");
        let mut png = Vec::new();
        JuliaRenderer::new(RenderLimits::default())
            .render_png(&spec, &CancelToken::new(), &mut png)
            .expect("render");
        assert_eq!(result.image, png);
    }
    worker.stop().await;
}

async fn seeded_tasks_are_reproducible(env: TestBroker) {
    let t = env.transport().await;
    let worker = start(&t, settings()).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut seeded = task(&uuid);
    (seeded.c_re, seeded.c_im, seeded.seed) = (None, None, Some(42));
    let a = process(&client, seeded.clone()).await.expect("first");
    let b = process(&client, seeded).await.expect("second");
    assert_eq!(
        (a.checksum.as_str(), a.c_re, a.c_im),
        (b.checksum.as_str(), b.c_re, b.c_im)
    );
    // No seed and no c: derived from the uuid, still reproducible.
    let mut from_uuid = task(&uuid);
    (from_uuid.c_re, from_uuid.c_im) = (None, None);
    let c = process(&client, from_uuid.clone()).await.expect("third");
    let d = process(&client, from_uuid).await.expect("fourth");
    assert_eq!(c.checksum, d.checksum);
    worker.stop().await;
}

async fn bad_tasks_get_value_errors_and_the_worker_keeps_serving(env: TestBroker) {
    let t = env.transport().await;
    let mut s = settings();
    s.limits = RenderLimits {
        max_pixels: 1_000_000,
        max_iterations: 10_000,
    };
    let worker = start(&t, s).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let good = task(&uuid::Uuid::new_v4().to_string());
    let bad: Vec<(Task, &str)> = vec![
        (
            Task {
                width: 1,
                ..good.clone()
            },
            "width",
        ),
        (
            Task {
                height: -5,
                ..good.clone()
            },
            "height",
        ),
        (
            Task {
                iterations: 0,
                ..good.clone()
            },
            "iterations",
        ),
        (
            Task {
                xa: 3.0,
                ..good.clone()
            },
            "xa",
        ),
        (
            Task {
                yb: -2.0,
                ..good.clone()
            },
            "ya",
        ),
        (
            Task {
                width: 2000,
                height: 2000,
                ..good.clone()
            },
            "pixels",
        ),
        (
            Task {
                iterations: 20_000,
                ..good.clone()
            },
            "iterations",
        ),
        (
            Task {
                c_re: Some(1.0),
                c_im: None,
                ..good.clone()
            },
            "c",
        ),
        (
            Task {
                iterations: 5,
                c_re: None,
                c_im: None,
                seed: Some(1),
                ..good.clone()
            },
            "give c explicitly",
        ),
    ];
    for (task, mentions) in bad {
        let error = remote_error(process(&client, task.clone()).await, "ValueError");
        assert!(
            error.message.to_lowercase().contains(mentions),
            "{task:?}: {error}"
        );
    }
    // Arguments that are not a task at all: a TypeError.
    let outcome = client
        .call::<_, TaskResult>(
            &RequestContext::new(),
            "process",
            &serde_json::json!({"task": "x"}),
        )
        .await;
    remote_error(outcome, "TypeError");
    process(&client, good).await.expect("still serving");
    worker.stop().await;
}

/// A render that takes minutes does not hold up the worker's other render
/// slot: a small task sent while it runs is answered at once (with one
/// render pool shared by the slots, it waited for the long render).
async fn a_long_render_does_not_hold_up_the_others(env: TestBroker) {
    let t = env.transport().await;
    let worker = start(&t, settings()).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let heavy = heavy_task();
    let long = {
        let client = client.clone();
        tokio::spawn(async move { process(&client, heavy).await })
    };
    // Its render has started and keeps its slot's threads busy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let small = tokio::time::timeout(
        Duration::from_secs(20),
        process(&client, task(&uuid::Uuid::new_v4().to_string())),
    )
    .await
    .expect("the small task is not held up by the long render")
    .expect("rendered");
    assert!(small.duration < 5.0, "{}", small.duration);
    assert!(!long.is_finished(), "the long render still runs");
    // Cancelled by the stop, given back unanswered.
    assert!(!worker.stop_within(Duration::ZERO).await);
    long.abort();
}

async fn renders_past_exec_timeout_are_cancelled(env: TestBroker) {
    let t = env.transport().await;
    let mut s = settings();
    s.exec_timeout = Duration::from_secs(1);
    let worker = start(&t, s).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let heavy = heavy_task();
    let started = Instant::now();
    let error = remote_error(process(&client, heavy).await, "TimeoutError");
    assert!(error.message.contains("exec_timeout"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The cancelled render frees the cores: the next task is quick.
    let started = Instant::now();
    process(&client, task(&uuid::Uuid::new_v4().to_string()))
        .await
        .expect("next task");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    worker.stop().await;
}

/// A copy in `filesystem_store_datadir` that does not finish (a disk that
/// hangs; here a named pipe nobody reads, planted where the PNG goes) does
/// not hold the answer: it comes after `store_wait`.
async fn a_png_directory_that_hangs_does_not_hold_the_reply(env: TestBroker) {
    let t = env.transport().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let uuid = uuid::Uuid::new_v4().to_string();
    let pipe = dir.path().join(format!("{uuid}.png"));
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", pipe.display());
    let mut s = settings();
    s.datadir = Some(dir.path().to_path_buf());
    s.store_wait = Duration::from_millis(300);
    let worker = start(&t, s).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let result = tokio::time::timeout(Duration::from_secs(20), process(&client, task(&uuid)))
        .await
        .expect("answered without the copy")
        .expect("rendered");
    assert_eq!(result.uuid, uuid);
    // The write still waits on its thread: read it, so that it ends.
    let read = tokio::task::spawn_blocking(move || std::fs::read(&pipe))
        .await
        .expect("join")
        .expect("the pipe");
    assert_eq!(read, result.image, "the copy, once somebody reads");
    worker.stop().await;
}

/// While the directory hangs, the copies that outlast `store_wait` go on
/// on threads of their own, each holding its PNG: no more than
/// `copy_slots` of them; the tasks past that are answered without a copy.
async fn copies_into_a_directory_that_hangs_are_bounded(env: TestBroker) {
    let t = env.transport().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings();
    s.datadir = Some(dir.path().to_path_buf());
    s.store_wait = Duration::from_millis(100);
    let slots = s.copy_slots();
    let hanging: Vec<String> = (0..slots)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    for uuid in &hanging {
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join(format!("{uuid}.png")))
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo");
    }
    let worker = start(&t, s).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    for uuid in &hanging {
        process(&client, task(uuid)).await.expect("rendered");
    }
    // Every copy slot is held by a write waiting on its pipe: the next
    // task is answered, and not copied.
    let next = uuid::Uuid::new_v4().to_string();
    let result = process(&client, task(&next)).await.expect("rendered");
    assert_eq!(result.uuid, next);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !dir.path().join(format!("{next}.png")).exists(),
        "a copy past the {slots} waiting ones was written"
    );
    // The pipes read, their writes end and free their slots: copies again.
    for uuid in &hanging {
        let pipe = dir.path().join(format!("{uuid}.png"));
        tokio::task::spawn_blocking(move || std::fs::read(&pipe))
            .await
            .expect("join")
            .expect("the pipe");
    }
    let last = uuid::Uuid::new_v4().to_string();
    let freed = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let written = process(&client, task(&last)).await.is_ok()
                && dir.path().join(format!("{last}.png")).exists();
            if written {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), freed)
        .await
        .expect("copies are written again once the directory answers");
    worker.stop().await;
}

async fn notifications_and_the_png_directory(env: TestBroker) {
    let t = env.transport().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings();
    s.notifications = true;
    s.datadir = Some(dir.path().to_path_buf());
    let (listener, mut rx) =
        faafo_common::testing::collecting_listener(NotificationListener::builder(&t)).await;
    let worker = start(&t, s).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let uuid = uuid::Uuid::new_v4().to_string();
    let result = process(&client, task(&uuid)).await.expect("process");
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(
        (n.event_type.as_str(), n.priority.as_str()),
        ("fractal.rendered", "INFO")
    );
    assert_eq!(n.payload["uuid"], uuid.as_str());
    assert_eq!(n.payload["checksum"], result.checksum.as_str());
    assert_eq!(n.publisher_id, "faafo.worker.worker-under-test");
    let on_disk = std::fs::read(dir.path().join(format!("{uuid}.png"))).expect("png written");
    assert_eq!(on_disk, result.image);
    // A uuid a peer spells otherwise (capitals, braces) names the file as
    // the API names the fractal.
    let spelled = uuid::Uuid::new_v4();
    let odd = format!("{{{}}}", spelled.hyphenated().to_string().to_uppercase());
    process(&client, task(&odd)).await.expect("process");
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(n.event_type, "fractal.rendered");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("readable")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        names.contains(&format!("{}.png", spelled.hyphenated())),
        "{names:?}"
    );
    // A peer's uuid never becomes a path: refused, with nothing written
    // outside the directory (nor in it).
    let inside = dir.path().join("inside");
    std::fs::create_dir(&inside).expect("a subdirectory");
    let mut s = settings();
    s.datadir = Some(inside.clone());
    s.topic = "tasks-traversal".into();
    let traversal_worker = start(&t, s).await;
    let traversal_client = RpcClient::new(&t, Target::topic("tasks-traversal"));
    let mut hostile = task("../escaped");
    hostile.seed = Some(1);
    hostile.c_re = None;
    hostile.c_im = None;
    let error = remote_error(process(&traversal_client, hostile).await, "ValueError");
    assert!(error.message.contains("is not a UUID"), "{}", error.message);
    assert!(!dir.path().join("escaped.png").exists(), "written outside");
    assert_eq!(
        std::fs::read_dir(&inside).expect("readable").count(),
        0,
        "nothing written inside either"
    );
    traversal_worker.stop().await;
    let _ = process(
        &client,
        Task {
            width: 0,
            ..task(&uuid)
        },
    )
    .await
    .expect_err("bad");
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(
        (n.event_type.as_str(), n.priority.as_str()),
        ("fractal.failed", "ERROR")
    );
    assert_eq!(n.payload["class"], "ValueError");
    assert_eq!(n.payload["uuid"], uuid.as_str());
    // A peer's uuid that is no UUID reaches no notification (nor log line)
    // as it is: a line break in it would forge a log line, megabytes of it
    // would be copied. It is cut short and quoted.
    let forged = format!(
        "x\n2026-01-01 00:00:00.000 1 ERROR forged{}",
        "y".repeat(10_000)
    );
    let _ = process(&client, task(&forged))
        .await
        .expect_err("not a UUID");
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(n.event_type, "fractal.failed");
    let shown = n.payload["uuid"].as_str().expect("a uuid as text");
    assert!(
        shown.starts_with("\"x\\n2026") && shown.len() < 100 && !shown.contains('\n'),
        "{shown}"
    );
    worker.stop().await;
    listener.stop().await;
}

/// A PNG the reply cannot carry (`max_message_size` too small for it) is
/// refused for good, as a ValueError: every try would render the same
/// bytes. Before, the RPC server answered a RuntimeError, which the
/// producer tries again up to max_attempts, after the copy was written and
/// `fractal.rendered` sent each time.
async fn a_png_the_reply_cannot_carry_is_refused_for_good(env: TestBroker) {
    let t = env.transport().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings();
    s.notifications = true;
    s.datadir = Some(dir.path().to_path_buf());
    s.max_message_size = 64 * 1024;
    let (listener, mut rx) =
        faafo_common::testing::collecting_listener(NotificationListener::builder(&t)).await;
    let worker = start(&t, s).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let uuid = uuid::Uuid::new_v4().to_string();
    let big = Task {
        width: 600,
        height: 600,
        iterations: 256,
        ..task(&uuid)
    };
    let error = remote_error(process(&client, big).await, "ValueError");
    assert!(
        error
            .message
            .contains("does not fit max_message_size (65536 bytes)"),
        "{}",
        error.message
    );
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("in time")
        .expect("one");
    assert_eq!(n.event_type, "fractal.failed", "not rendered: {n:?}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("readable").count(),
        0,
        "no copy of a result that is not sent"
    );
    // A small one still fits.
    process(&client, task(&uuid::Uuid::new_v4().to_string()))
        .await
        .expect("a small result");
    worker.stop().await;
    listener.stop().await;
}

async fn many_tasks_in_parallel(env: TestBroker) {
    let t = env.transport().await;
    let worker = start(&t, settings()).await;
    let client = Arc::new(RpcClient::new(&t, Target::topic("tasks")));
    let calls = (0..16).map(|_| {
        let client = client.clone();
        async move {
            let uuid = uuid::Uuid::new_v4().to_string();
            let result = process(&client, task(&uuid)).await.expect("process");
            assert_eq!(result.uuid, uuid);
        }
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(worker.stats().succeeded, 16);
    worker.stop().await;
}

/// A stopped worker finishes the task it is rendering and gives back the
/// ones it held but had not started: another worker answers them.
async fn a_stopped_worker_gives_back_what_it_has_not_started(env: TestBroker) {
    let t = env.transport().await;
    let one_at_a_time = one_at_a_time(4);
    let first = start(&t, one_at_a_time.clone()).await;
    let client = Arc::new(RpcClient::new(&t, Target::topic("tasks")));
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            let task = slow_task(128, 1000);
            tokio::spawn(async move { process(&client, task).await })
        })
        .collect();
    // All four are with the first worker (prefetch 4), one rendering.
    until_a_task_started(&first).await;
    first.stop().await;
    let second = start_second(&t, one_at_a_time).await;
    let mut answered_by = Vec::new();
    for call in calls {
        let result = call.await.expect("join").expect("every task is answered");
        answered_by.push(result.generated_by);
    }
    // The first finished what it was rendering; the rest went back to
    // the queue and the second worker rendered them.
    let by_second = answered_by.iter().filter(|w| *w == "second").count();
    assert!((1..4).contains(&by_second), "answered by {answered_by:?}");
    second.stop().await;
}

/// A worker whose stop runs out of grace does not answer the render it
/// gives up, nor count it failed: the task goes back to the queue and
/// another worker answers it, to the same waiting caller.
async fn a_stop_out_of_grace_gives_the_render_to_another_worker(env: TestBroker) {
    let t = env.transport().await;
    let one_at_a_time = one_at_a_time(1);
    let first = start(&t, one_at_a_time.clone()).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    // Seconds of rendering on one thread in a test build, far more than
    // the 0.4 s before the grace ends.
    let slow = slow_task(512, 2000);
    let call = tokio::spawn(async move { process(&client, slow).await });
    until_a_task_started(&first).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = std::time::Instant::now();
    assert!(
        !first.stop_within(Duration::from_millis(200)).await,
        "the render in progress was given up"
    );
    let stopped_in = stopping.elapsed();
    assert!(!call.is_finished(), "the given-up render was not answered");
    let second = start_second(&t, one_at_a_time).await;
    let result = call.await.expect("join").expect("answered by the second");
    assert_eq!(result.generated_by, "second");
    // The first's render was cancelled at its next tile, not run to the
    // end: its stop took less than half the whole render took the second,
    // on the same one thread (a bound that scales with the machine's load;
    // the first had rendered for about 0.4 s when its stop began).
    assert!(
        stopped_in.as_secs_f64() < result.duration / 2.0,
        "the stop took {stopped_in:?}, a whole render {} s",
        result.duration
    );
    assert_eq!(
        second.stats().received,
        1,
        "one delivery, nothing else left"
    );
    second.stop().await;
}

/// A fractal deleted from the API (the producer casts `cancel` to every
/// worker's control server): its render stops and its call is answered
/// `FractalDeleted`; a task of a deleted fractal waiting behind it is not
/// started; the worker keeps serving; a cancel for nothing is harmless.
async fn a_deleted_fractal_stops_its_render(env: TestBroker) {
    let t = env.transport().await;
    let worker = start(&t, one_at_a_time(4)).await;
    let client = RpcClient::new(&t, Target::topic("tasks"));
    let control = RpcClient::new(&t, Target::topic(control_topic("tasks"))).fanout(true);
    let cancel = |uuid: String| {
        let control = control.clone();
        async move {
            control
                .cast(
                    &RequestContext::with_new_request_id(),
                    CANCEL_METHOD,
                    &CancelArgs {
                        uuid,
                        revision: None,
                    },
                )
                .await
                .expect("cast")
        }
    };
    // Minutes of rendering, even in a release build.
    let heavy = slow_task(3000, 100_000);
    let waiting = task(&uuid::Uuid::new_v4().to_string());
    let (heavy_uuid, waiting_uuid) = (heavy.uuid.clone(), waiting.uuid.clone());
    let heavy_call = tokio::spawn({
        let client = client.clone();
        async move { process(&client, heavy).await }
    });
    until_a_task_started(&worker).await;
    let waiting_call = tokio::spawn({
        let client = client.clone();
        async move { process(&client, waiting).await }
    });
    cancel(uuid::Uuid::new_v4().to_string()).await;
    cancel("../not a uuid".to_string()).await;
    cancel(waiting_uuid.clone()).await;
    let cancelled = Instant::now();
    cancel(heavy_uuid.clone()).await;
    for (call, uuid) in [(heavy_call, &heavy_uuid), (waiting_call, &waiting_uuid)] {
        let outcome = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("answered soon after the cancel")
            .expect("join");
        let error = remote_error(outcome, FRACTAL_DELETED);
        assert!(error.message.contains(uuid.as_str()), "{error}");
    }
    assert!(
        cancelled.elapsed() < Duration::from_secs(20),
        "{:?}",
        cancelled.elapsed()
    );
    // The render stopped: its slot is free, and the next task renders.
    process(&client, task(&uuid::Uuid::new_v4().to_string()))
        .await
        .expect("still serving");
    worker.stop().await;
}

faafo_common::on_both_transports!(
    a_deleted_fractal_stops_its_render,
    a_long_render_does_not_hold_up_the_others,
    a_stopped_worker_gives_back_what_it_has_not_started,
    a_stop_out_of_grace_gives_the_render_to_another_worker,
    renders_and_returns_the_png,
    seeded_tasks_are_reproducible,
    bad_tasks_get_value_errors_and_the_worker_keeps_serving,
    renders_past_exec_timeout_are_cancelled,
    notifications_and_the_png_directory,
    a_png_directory_that_hangs_does_not_hold_the_reply,
    copies_into_a_directory_that_hangs_are_bounded,
    many_tasks_in_parallel,
    a_png_the_reply_cannot_carry_is_refused_for_good,
);
