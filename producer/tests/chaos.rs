//! The chaos run: 1,000 small tasks (`FAAFO_CHAOS_TASKS`) through three
//! worker processes (`FAAFO_CHAOS_WORKERS`), the producer and the API, on a
//! RabbitMQ node of the test's own and PostgreSQL reached through a proxy
//! the test controls, while:
//! - a random worker is SIGKILLed every few seconds and started again;
//! - RabbitMQ is restarted once (`rabbitmqctl stop_app` / `start_app`);
//! - the API is restarted once, and the database is unreachable for 10 s once;
//! - the producer is SIGKILLed once and started again.
//!
//! At the end every task is done, with one record each, every image hashes
//! to its checksum, and the services not killed are still running. It
//! prints one summary line.

mod support;

use std::time::{Duration, Instant};

use faafo_common::api_client::ApiClient;
use faafo_common::fractal::{FractalStatus, NewFractal};
use faafo_common::testing::PrivateRabbit;
use support::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default, Debug)]
struct Faults {
    worker_kills: usize,
    broker_restarts: usize,
    database_outages: usize,
    api_restarts: usize,
    producer_kills: usize,
}

impl Faults {
    fn total(&self) -> usize {
        self.worker_kills
            + self.broker_restarts
            + self.database_outages
            + self.api_restarts
            + self.producer_kills
    }
}

/// POSTs until the API takes it (it may be restarting or cut from its database).
async fn create_until_accepted(api: &ApiClient, task: &NewFractal) {
    loop {
        match api.create(task).await {
            Ok(_) => return,
            // An earlier attempt got through but its answer was lost.
            Err(e) if e.status() == Some(409) => return,
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("the API refused a valid task: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_loses_nothing() {
    let tasks = env_usize("FAAFO_CHAOS_TASKS", 1000);
    let workers = env_usize("FAAFO_CHAOS_WORKERS", 3);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("rabbit node");
    let database = TestDatabase::postgres();
    let db_target: std::net::SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = TcpProxy::start(db_target).await;
    let db_url = database
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let port = free_port();
    let config = dir.path().join("faafo.conf");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\ntransport_url = {}?rabbit_retry_interval=0.5&rabbit_retry_backoff=0.5&rabbit_interval_max=2\n\
             database_url = {db_url}\nstate_path = {}\nendpoint_url = http://127.0.0.1:{port}\n\n\
             [database]\nconnect_timeout = 2\n\n\
             [api]\nbind_port = {port}\n\n\
             [worker]\nexecutor_size = 2\nrender_threads = 1\n\n\
             [producer]\nmin_tasks = 0\nmax_tasks = 0\npoll_interval = 0.3\nrecovery_interval = 5\n\
             task_timeout = 20\nmax_in_flight = 16\ncall_timeout = 30\nshutdown_grace = 5\n",
            rabbit.url(),
            dir.path().display()
        ),
    )
    .expect("config");
    let d = dir.path();
    let mut api_service = Service::start("api", d, &config, &["api"]);
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    api_ready(&api, &api_service).await;
    let mut pool: Vec<Service> = (0..workers)
        .map(|i| Service::start(&format!("worker-{i}"), d, &config, &["worker"]))
        .collect();
    let mut producer = Service::start("producer", d, &config, &["producer"]);
    let mut faults = Faults::default();
    let mut rng = fastrand::Rng::with_seed(2026);

    // Tasks arrive over ~40 s while the faults happen.
    let feeder = {
        let api = api.clone();
        tokio::spawn(async move {
            let per_tick = tasks.div_ceil(80).max(1);
            let mut created = 0;
            let mut draw = fastrand::Rng::with_seed(1);
            while created < tasks {
                for _ in 0..per_tick.min(tasks - created) {
                    let task = small_task(&mut draw, 32..=96, 16..=64);
                    create_until_accepted(&api, &task).await;
                    created += 1;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let mut worker_kill_at = Instant::now() + Duration::from_secs(3);
    let schedule_start = Instant::now();
    let at = |s: u64| schedule_start + Duration::from_secs(s);
    let (mut broker_done, mut db_done, mut api_done, mut producer_done) =
        (false, false, false, false);
    loop {
        let now = Instant::now();
        if now >= worker_kill_at && schedule_start.elapsed() < Duration::from_secs(60) {
            let i = rng.usize(..pool.len());
            pool[i].signal("KILL");
            let name = format!("worker-{i}-{}", faults.worker_kills);
            pool[i] = Service::start(&name, d, &config, &["worker"]);
            faults.worker_kills += 1;
            worker_kill_at = now + Duration::from_secs(3);
        }
        if !broker_done && now >= at(6) {
            let r = &rabbit;
            tokio::task::block_in_place(|| {
                r.stop_app();
                std::thread::sleep(Duration::from_secs(2));
                r.start_app();
            });
            faults.broker_restarts += 1;
            broker_done = true;
        }
        if !db_done && now >= at(14) {
            proxy.cut_for(Duration::from_secs(10)).await;
            faults.database_outages += 1;
            db_done = true;
        }
        if !api_done && now >= at(28) {
            api_service.signal("TERM");
            tokio::task::block_in_place(|| api_service.wait(Duration::from_secs(30)));
            api_service = Service::start("api-restarted", d, &config, &["api"]);
            faults.api_restarts += 1;
            api_done = true;
        }
        if !producer_done && now >= at(34) {
            producer.signal("KILL");
            producer = Service::start("producer-restarted", d, &config, &["producer"]);
            faults.producer_kills += 1;
            producer_done = true;
        }
        if broker_done && db_done && api_done && producer_done && feeder.is_finished() {
            let done = all(&api, Some(FractalStatus::Done)).await.len();
            if done >= tasks {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "chaos run did not finish in 10 minutes; producer log:\n{}",
            producer.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    feeder.await.expect("feeder");

    let records = all(&api, None).await;
    let done = records
        .iter()
        .filter(|f| f.status == FractalStatus::Done)
        .count();
    let failed = records
        .iter()
        .filter(|f| f.status == FractalStatus::Failed)
        .count();
    let mut uuids: Vec<&str> = records.iter().map(|f| f.uuid.as_str()).collect();
    uuids.sort_unstable();
    uuids.dedup();
    let duplicates = records.len() - uuids.len();
    let lost = tasks.saturating_sub(uuids.len()) + records.len().saturating_sub(done + failed);
    println!(
        "chaos: tasks={tasks} done={done} failed={failed} lost={lost} duplicates={duplicates} \
         faults={} (worker kills {}, broker restarts {}, database outages {}, api restarts {}, producer kills {}) \
         duration={:.1}s",
        faults.total(),
        faults.worker_kills,
        faults.broker_restarts,
        faults.database_outages,
        faults.api_restarts,
        faults.producer_kills,
        started.elapsed().as_secs_f64()
    );
    assert_all_done_and_intact(&api, tasks).await;
    assert!(api_service.is_running(), "the API kept running");
    assert!(producer.is_running(), "the producer kept running");
    for w in &mut pool {
        assert!(w.is_running(), "{} kept running", w.name);
    }
}
