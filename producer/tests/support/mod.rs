//! Running faafo's services as separate processes, and the databases they use.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faafo_common::api_client::{ApiClient, ListQuery};
use faafo_common::fractal::{Fractal, FractalStatus};
use sha2::{Digest, Sha256};

/// The `faafo` binary built for these tests.
pub fn faafo() -> &'static str {
    env!("CARGO_BIN_EXE_faafo")
}

/// A TCP port for a service the test starts (see the function).
#[allow(unused_imports)]
pub use faafo_common::testing::free_port;

/// Writes the configuration file `name` in `dir`; its path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config");
    path
}

/// A faafo process (`faafo api`, `faafo worker`...), killed when dropped.
pub struct Service {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Starts `faafo <args...> --config-file <config>`, logging to a file in `dir`.
    pub fn start(name: &str, dir: &Path, config: &Path, args: &[&str]) -> Service {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(faafo())
            .args(args)
            .arg("--config-file")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(
                file.try_clone()
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start faafo {args:?}: {e}"));
        Service {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (`KILL`, `TERM`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits for the process to end; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => panic!(
                    "{} did not stop within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                ),
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, or fails naming `what`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

/// Waits until the API answers.
pub async fn api_ready(api: &ApiClient, service: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if api.alive().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the API did not come up; its log:\n{}", service.log_text());
}

/// Every fractal (of `status`), or none while the API fails: for polling
/// loops. An assertion on the list wants [`listed`].
pub async fn all(api: &ApiClient, status: Option<FractalStatus>) -> Vec<Fractal> {
    api.list_all(&ListQuery {
        status,
        ..ListQuery::default()
    })
    .await
    .unwrap_or_default()
}

/// Every fractal (of `status`); an API that fails fails the test.
pub async fn listed(api: &ApiClient, status: Option<FractalStatus>) -> Vec<Fractal> {
    api.list_all(&ListQuery {
        status,
        ..ListQuery::default()
    })
    .await
    .expect("the API lists the fractals")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every fractal is done, once, and its image hashes to its checksum.
pub async fn assert_all_done_and_intact(api: &ApiClient, expected: usize) {
    let fractals = all(api, None).await;
    assert_eq!(
        fractals.len(),
        expected,
        "one record per task: {fractals:#?}"
    );
    let mut uuids: Vec<&str> = fractals.iter().map(|f| f.uuid.as_str()).collect();
    uuids.sort_unstable();
    uuids.dedup();
    assert_eq!(uuids.len(), expected, "no duplicate records");
    for f in &fractals {
        assert_eq!(f.status, FractalStatus::Done, "{f:#?}");
        let png = api.image(&f.uuid).await.expect("image downloads");
        assert_eq!(
            Some(sha256_hex(&png)),
            f.checksum,
            "image of {} hashes to its checksum",
            f.uuid
        );
        assert_eq!(f.size, Some(png.len() as u64));
    }
}

/// A database of the test's own on the shared MariaDB or PostgreSQL,
/// dropped at the end (also when the test panics).
pub struct TestDatabase {
    pub url: String,
    drop_with: Option<(String, Vec<String>)>,
}

fn run_client(program: &str, args: &[String], what: &str) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{what}: cannot run {program} ({e}); install its client package")
        });
    assert!(
        out.status.success(),
        "{what} failed (is the server running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestDatabase {
    /// No server: SQLite in `dir`.
    pub fn sqlite(dir: &Path) -> Self {
        Self {
            url: format!("sqlite://{}", dir.join("faafo.db").display()),
            drop_with: None,
        }
    }

    /// A fresh database on MariaDB at 127.0.0.1:3306 as root.
    pub fn mariadb() -> Self {
        let name = format!(
            "faafo_e2e_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let base = ["-h", "127.0.0.1", "-P", "3306", "-u", "root"]
            .map(String::from)
            .to_vec();
        let mut create = base.clone();
        create.extend(["-e".into(), format!("CREATE DATABASE {name}")]);
        run_client("mariadb", &create, "creating a MariaDB database");
        let mut drop = base;
        drop.extend(["-e".into(), format!("DROP DATABASE IF EXISTS {name}")]);
        Self {
            url: format!("mysql://root@127.0.0.1:3306/{name}"),
            drop_with: Some(("mariadb".into(), drop)),
        }
    }

    /// A fresh database on PostgreSQL at 127.0.0.1:5432 as postgres.
    pub fn postgres() -> Self {
        let name = format!(
            "faafo_e2e_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let base = [
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "test",
        ]
        .map(String::from)
        .to_vec();
        let mut create = base.clone();
        create.extend(["-c".into(), format!("CREATE DATABASE {name}")]);
        run_client("psql", &create, "creating a PostgreSQL database");
        let mut drop = base;
        drop.extend([
            "-c".into(),
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ]);
        Self {
            url: format!("postgresql://postgres@127.0.0.1:5432/{name}"),
            drop_with: Some(("psql".into(), drop)),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((program, args)) = &self.drop_with {
            let _ = Command::new(program).args(args).output();
        }
    }
}

/// A TCP proxy the test controls, to cut a service off the network.
pub struct TcpProxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards 127.0.0.1:<port> to `target`.
    pub async fn start(target: std::net::SocketAddr) -> TcpProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (c, o) = (cut.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut open = o.lock().unwrap_or_else(|p| p.into_inner());
                open.retain(|h| !h.is_finished());
                open.push(task.abort_handle());
            }
        });
        TcpProxy {
            port,
            cut,
            open,
            accept,
        }
    }

    /// Drops every connection and refuses new ones for `duration`.
    pub async fn cut_for(&self, duration: Duration) {
        use std::sync::atomic::Ordering;
        self.cut.store(true, Ordering::SeqCst);
        for handle in self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            handle.abort();
        }
        tokio::time::sleep(duration).await;
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for handle in self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            handle.abort();
        }
    }
}

/// Resident memory of a process, in KiB (from /proc).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

impl Service {
    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// How many fractals are in `status` (one small request).
pub async fn count(api: &ApiClient, status: FractalStatus) -> u64 {
    api.list(&ListQuery {
        status: Some(status),
        results_per_page: Some(1),
        ..ListQuery::default()
    })
    .await
    .map(|p| p.num_results)
    .unwrap_or(0)
}

/// A small task over the bench view with a seeded constant: quick to render.
pub fn small_task(
    draw: &mut fastrand::Rng,
    size: std::ops::RangeInclusive<u32>,
    iterations: std::ops::RangeInclusive<u32>,
) -> faafo_common::fractal::NewFractal {
    faafo_common::fractal::NewFractal {
        uuid: Some(uuid::Uuid::new_v4().to_string()),
        width: draw.u32(size.clone()),
        height: draw.u32(size),
        iterations: draw.u32(iterations),
        xa: -2.0,
        xb: 2.0,
        ya: -1.5,
        yb: 1.5,
        seed: Some(draw.u64(..)),
        c_re: None,
        c_im: None,
        status: None,
        attempts: None,
    }
}

/// A 64 x 64 fractal of 32 iterations with seed 1 and the given uuid (or
/// one the API gives it).
pub fn tiny_task(uuid: Option<&str>) -> faafo_common::fractal::NewFractal {
    faafo_common::fractal::NewFractal {
        uuid: uuid.map(str::to_string),
        width: 64,
        height: 64,
        iterations: 32,
        xa: -1.5,
        xb: 1.5,
        ya: -1.5,
        yb: 1.5,
        seed: Some(1),
        c_re: None,
        c_im: None,
        status: None,
        attempts: None,
    }
}

/// The API in this process, on SQLite in the config's `state_path`, on a
/// free port of 127.0.0.1; `config`'s `endpoint_url` is set to it.
pub struct LocalApi {
    stop: faafo_common::shutdown::Shutdown,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalApi {
    pub async fn start(config: &mut faafo_common::configuration::FaafoConfig) -> LocalApi {
        Self::start_at(config, 0).await
    }

    /// As [`LocalApi::start`], on `port` (0: a free one).
    pub async fn start_at(
        config: &mut faafo_common::configuration::FaafoConfig,
        port: u16,
    ) -> LocalApi {
        config.api.bind_host = "127.0.0.1".into();
        config.api.bind_port = port;
        let app = faafo_api::Application::build(config)
            .await
            .expect("the API starts");
        config.default.endpoint_url = app.url();
        let stop = faafo_common::shutdown::Shutdown::new();
        let task = {
            let stop = stop.clone();
            tokio::spawn(app.run_until_stopped(async move { stop.wait().await }))
        };
        LocalApi { stop, task }
    }

    /// Stops it and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.stop.trigger();
        self.task
            .await
            .expect("the API task")
            .expect("the API stops cleanly");
    }
}

/// A configuration for a producer and worker in the test's process: its
/// data in `dir`, the in-memory broker `memory:///<name>-<pid>`, and
/// batches of `tasks` small tasks (64 x 64, 32 iterations), at most
/// `in_flight` calls at once.
pub fn small_tasks_config(
    dir: &Path,
    name: &str,
    tasks: u32,
    in_flight: usize,
) -> faafo_common::configuration::FaafoConfig {
    let mut config = faafo_common::configuration::FaafoConfig::default();
    config.default.state_path = dir.display().to_string();
    config.default.transport_url = format!("memory:///{name}-{}", std::process::id());
    config.producer.min_tasks = tasks;
    config.producer.max_tasks = tasks;
    config.producer.max_in_flight = in_flight;
    config.producer.min_width = 64;
    config.producer.max_width = 64;
    config.producer.min_height = 64;
    config.producer.max_height = 64;
    config.producer.min_iterations = 32;
    config.producer.max_iterations = 32;
    config
}

/// A connection to `config`'s broker and a worker's service on it (its
/// renderer and `cancel` endpoint), for a test to serve its `process` as it
/// likes (late, behind a gate...).
pub async fn worker_service(
    config: &faafo_common::configuration::FaafoConfig,
) -> (
    faafo_common::messaging::Transport,
    std::sync::Arc<faafo_worker::service::WorkerService>,
) {
    let transport = faafo_common::messaging::Transport::builder(&config.default.transport_url)
        .control_exchange(&config.default.control_exchange)
        .connect()
        .await
        .expect("the transport");
    let settings = faafo_worker::service::WorkerSettings::from_config(config);
    let service = faafo_worker::service::WorkerService::new(settings, &transport)
        .expect("the worker's service");
    (transport, std::sync::Arc::new(service))
}

/// A worker in the test's process: on `config`'s broker, a real worker's
/// rendering behind `process`, as server `name`.
pub async fn rendering_worker(
    config: &faafo_common::configuration::FaafoConfig,
    name: &str,
) -> (
    faafo_common::messaging::Transport,
    faafo_common::messaging::RpcServer,
) {
    let worker = gated_worker(config, name, 0).await;
    (worker.transport, worker.server)
}

/// A worker in the test's process that renders as a real one and counts
/// the renders asked of it: its first `gated` calls say they arrived
/// (`called`) and wait for a permit of `gate` before rendering.
pub struct GatedWorker {
    pub transport: faafo_common::messaging::Transport,
    pub server: faafo_common::messaging::RpcServer,
    pub service: std::sync::Arc<faafo_worker::service::WorkerService>,
    pub calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub called: std::sync::Arc<tokio::sync::Notify>,
    pub gate: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Starts a [`GatedWorker`] on `config`'s broker, as server `name`.
pub async fn gated_worker(
    config: &faafo_common::configuration::FaafoConfig,
    name: &str,
    gated: usize,
) -> GatedWorker {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (transport, service) = worker_service(config).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let called = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let server = {
        let (service, calls, called, gate) =
            (service.clone(), calls.clone(), called.clone(), gate.clone());
        faafo_common::messaging::RpcServer::builder(
            &transport,
            faafo_common::messaging::Target::topic(&config.worker.topic).with_server(name),
        )
        .endpoint(faafo_common::messaging::Endpoint::new().method(
            "process",
            move |ctx: faafo_common::messaging::RequestContext,
                  args: faafo_common::fractal::ProcessArgs| {
                let (service, called, gate) = (service.clone(), called.clone(), gate.clone());
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if call <= gated {
                        called.notify_one();
                        let _ = gate.acquire().await;
                    }
                    service.process(ctx, args.task).await
                }
            },
        ))
        .start()
        .await
        .expect("the worker")
    };
    GatedWorker {
        transport,
        server,
        service,
        calls,
        called,
        gate,
    }
}

/// Fractal `uuid` once it is done (asked every 0.1 s, for 30 s at most).
pub async fn done_fractal(api: &ApiClient, uuid: &str) -> Fractal {
    for _ in 0..300 {
        let fractal = api.get(uuid).await.expect("the fractal");
        if fractal.status == FractalStatus::Done {
            return fractal;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fractal {uuid} is not done after 30 s");
}
