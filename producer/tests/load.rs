//! 10,000 small tasks through the API, a worker and the producer (separate
//! processes, RabbitMQ and SQLite): the worker's and the API's resident
//! memory after the run is within 20% of what it was after the first
//! 1,000, and the tasks queue never holds more than the calls in flight.
//! `FAAFO_LOAD_TASKS` changes the number of tasks.

mod support;

use std::time::{Duration, Instant};

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, NewFractal};
use faafo_common::testing::RabbitVhost;
use support::*;

const MAX_IN_FLIGHT: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_leak_nothing_and_queues_stay_bounded() {
    let tasks: usize = std::env::var("FAAFO_LOAD_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let vhost = RabbitVhost::create().await;
    let port = free_port();
    let config = dir.path().join("faafo.conf");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\ntransport_url = {}\nstate_path = {}\nendpoint_url = http://127.0.0.1:{port}\n\n\
             [api]\nbind_port = {port}\n\n[producer]\nmin_tasks = 0\nmax_tasks = 0\npoll_interval = 0.2\n\
             max_in_flight = {MAX_IN_FLIGHT}\n",
            vhost.url(),
            dir.path().display()
        ),
    )
    .expect("config");
    let d = dir.path();
    let mut api_service = Service::start("api", d, &config, &["api"]);
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    api_ready(&api, &api_service).await;
    let mut worker = Service::start("worker", d, &config, &["worker"]);
    let mut producer = Service::start("producer", d, &config, &["producer"]);
    let started = Instant::now();
    let feeder = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut draw = fastrand::Rng::with_seed(3);
            for chunk in (0..tasks).collect::<Vec<_>>().chunks(16) {
                let batch: Vec<NewFractal> = chunk
                    .iter()
                    .map(|_| small_task(&mut draw, 32..=64, 16..=32))
                    .collect();
                let posts = batch.iter().map(|t| api.create(t));
                for created in futures_util::future::join_all(posts).await {
                    created.expect("task created");
                }
            }
        })
    };

    // (done, worker RSS, API RSS) after the first thousand tasks, every
    // further thousand and at the end: a leak climbs steadily, a cache
    // levels off. The first sample is the baseline, the last the result.
    let step = tasks.min(1000);
    let mut trajectory: Vec<(usize, u64, u64)> = Vec::new();
    let (mut deepest_queue, mut queue_samples) = (0usize, 0usize);
    loop {
        let done = count(&api, FractalStatus::Done).await as usize;
        // Waiting in the queue, not yet delivered: the unacknowledged ones
        // include calls whose reply already freed the producer's slot (a
        // worker acknowledges once its reply is confirmed).
        if let Some(ready) = vhost
            .queue_info("tasks")
            .await
            .and_then(|q| q["messages_ready"].as_u64())
        {
            deepest_queue = deepest_queue.max(ready as usize);
            queue_samples += 1;
        }
        if done >= (step * (trajectory.len() + 1)).min(tasks) {
            trajectory.push((
                done,
                rss_kib(worker.pid()).expect("worker rss"),
                rss_kib(api_service.pid()).expect("api rss"),
            ));
        }
        if done >= tasks {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {done} of {tasks} done after 15 minutes"
        );
        assert!(worker.is_running() && api_service.is_running() && producer.is_running());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    feeder.await.expect("feeder");
    let elapsed = started.elapsed();
    let (_, worker_first, api_first) = trajectory[0];
    let (_, worker_last, api_last) = trajectory[trajectory.len() - 1];
    println!(
        "load: {tasks} tasks in {:.1}s ({:.0}/s); worker RSS {worker_first} -> {worker_last} KiB ({:+.1}%), \
         API RSS {api_first} -> {api_last} KiB ({:+.1}%); deepest tasks queue {deepest_queue}",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64(),
        (worker_last as f64 / worker_first as f64 - 1.0) * 100.0,
        (api_last as f64 / api_first as f64 - 1.0) * 100.0,
    );
    let samples: Vec<String> = trajectory
        .iter()
        .map(|(done, w, a)| format!("{done}: {w}/{a}"))
        .collect();
    println!(
        "load: RSS (KiB, worker/API) by tasks done: {}",
        samples.join(", ")
    );
    assert!(
        worker_last as f64 <= worker_first as f64 * 1.2,
        "the worker's memory grew by more than 20%"
    );
    assert!(
        api_last as f64 <= api_first as f64 * 1.2,
        "the API's memory grew by more than 20%"
    );
    // Looked at, not just assumed: a management API that never answered
    // would leave the depth at 0.
    assert!(queue_samples > 0, "the queue's depth was never read");
    assert!(
        deepest_queue <= MAX_IN_FLIGHT,
        "the tasks queue grew past the calls in flight: {deepest_queue}"
    );
    assert!(
        support::listed(&api, Some(FractalStatus::Failed))
            .await
            .is_empty(),
        "no task failed"
    );
    drop(producer);
}
