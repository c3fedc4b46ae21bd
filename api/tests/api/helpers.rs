//! Spawning the API on port 0 against a database of its own, and making
//! fractals with real rendered PNGs.

use std::sync::LazyLock;
use std::time::Duration;

use faafo_api::Application;
use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::fractal::{Fractal, FractalStatus, FractalUpdate, NewFractal};
use faafo_worker::{CancelToken, FractalParams, FractalSpec, JuliaRenderer, RenderLimits};
use serde_json::Value;
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Logs go to stderr when `TEST_LOG` is set (as in zero2prod).
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = faafo_common::telemetry::TelemetrySettings {
            debug: true,
            ..Default::default()
        };
        if let Ok(guard) = faafo_common::telemetry::init(&settings) {
            std::mem::forget(guard);
        }
    }
});

/// The databases of the contract suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in a temporary directory.
    Sqlite,
    /// MariaDB at `FAAFO_TEST_MYSQL_URL`.
    MySql,
    /// PostgreSQL at `FAAFO_TEST_POSTGRES_URL`.
    Postgres,
}

const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";
const POSTGRES_DEFAULT: &str = "postgresql://postgres@127.0.0.1:5432/test";

impl Backend {
    /// The URL of the server's administrator and the variable that sets it.
    pub fn admin_url(self) -> Option<(String, &'static str)> {
        match self {
            Backend::Sqlite => None,
            Backend::MySql => Some((
                std::env::var("FAAFO_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_DEFAULT.into()),
                "FAAFO_TEST_MYSQL_URL",
            )),
            Backend::Postgres => Some((
                std::env::var("FAAFO_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| POSTGRES_DEFAULT.into()),
                "FAAFO_TEST_POSTGRES_URL",
            )),
        }
    }
}

/// A database made for one test and dropped after it, even when it panics.
pub struct TestDatabase {
    /// The URL the API is given.
    pub url: String,
    backend: Backend,
    admin_url: Option<String>,
    name: String,
    _dir: TempDir,
}

/// `url` with its database (path) replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

impl TestDatabase {
    /// Creates `faafo_test_<random>` through the admin URL (a SQLite file
    /// in a temporary directory for SQLite).
    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let name = format!("faafo_test_{}", uuid::Uuid::new_v4().simple());
        let Some((admin, variable)) = backend.admin_url() else {
            let url = format!("sqlite://{}", dir.path().join("faafo.db").display());
            return Self {
                url,
                backend,
                admin_url: None,
                name,
                _dir: dir,
            };
        };
        let create = format!("CREATE DATABASE {name}");
        let result = match backend {
            Backend::MySql => match sqlx::MySqlConnection::connect(&admin).await {
                Ok(mut conn) => sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                    .execute(&mut conn)
                    .await
                    .map(drop),
                Err(e) => Err(e),
            },
            _ => match sqlx::PgConnection::connect(&admin).await {
                Ok(mut conn) => sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                    .execute(&mut conn)
                    .await
                    .map(drop),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            panic!(
                "{backend:?} is needed by this test but cannot be used at {} (set {variable}): {e}",
                faafo_common::messaging::redact_url(&admin)
            );
        }
        Self {
            url: with_database(&admin, &name),
            backend,
            admin_url: Some(admin),
            name,
            _dir: dir,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let statement = match self.backend {
            Backend::MySql => format!("DROP DATABASE IF EXISTS {}", self.name),
            _ => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        };
        if !run_as_admin(self.backend, admin, statement) {
            eprintln!("warning: could not drop the test database {}", self.name);
        }
    }
}

/// Runs `statement` on the server at `admin` (a clean-up from a `Drop`,
/// which runs inside the test's runtime: on a thread with a runtime of its
/// own); whether it succeeded.
pub fn run_as_admin(backend: Backend, admin: String, statement: String) -> bool {
    let ran = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let statement = sqlx::raw_sql(sqlx::AssertSqlSafe(statement));
            match backend {
                Backend::MySql => {
                    let mut conn = sqlx::MySqlConnection::connect(&admin).await?;
                    statement.execute(&mut conn).await?;
                }
                _ => {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    statement.execute(&mut conn).await?;
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
    })
    .join();
    matches!(ran, Ok(Ok(())))
}

/// The API running in this test's runtime.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// A plain client.
    pub http: reqwest::Client,
    /// The producer's and CLI's client.
    pub api: ApiClient,
    /// Its data directory.
    pub state_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _db: TestDatabase,
}

/// A configuration of the API on `url`, bound to a free port of 127.0.0.1,
/// its state in `state`.
pub fn config_on(url: &str, state: &TempDir) -> FaafoConfig {
    let mut config = FaafoConfig::default();
    config.default.database_url = url.to_string();
    config.default.state_path = state.path().display().to_string();
    config.api.bind_host = "127.0.0.1".into();
    config.api.bind_port = 0;
    config
}

/// Starts the API on `backend` with the default configuration.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the API on `backend`, with `tweak` applied to its configuration.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut FaafoConfig)) -> TestApp {
    LazyLock::force(&TRACING);
    let db = TestDatabase::create(backend).await;
    let state_dir = tempfile::tempdir().expect("temporary directory");
    let mut config = config_on(&db.url, &state_dir);
    tweak(&mut config);
    config.validate().expect("valid test configuration");
    let app = Application::build(&config).await.expect("the API starts");
    let url = app.url();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let token = config.api.auth_tokens.0.first().cloned();
    TestApp {
        api: ApiClient::new(&url, token).expect("client"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        url,
        state_dir,
        shutdown: Some(tx),
        server: Some(server),
        _db: db,
    }
}

impl TestApp {
    /// `self.url + path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.at(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.at(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.at(path)).send().await.expect("request")
    }

    /// Every fractal, oldest first (for "nothing changed" checks).
    pub async fn snapshot(&self) -> Vec<Fractal> {
        let query = faafo_common::api_client::ListQuery {
            order_by: Some("uuid".into()),
            ..Default::default()
        };
        self.api.list_all(&query).await.expect("list")
    }

    /// Creates a fractal, renders it for real, uploads the PNG and marks it
    /// done as the producer does; returns the record and the PNG.
    pub async fn finished_fractal(
        &self,
        width: u32,
        height: u32,
        c: (f64, f64),
    ) -> (Fractal, Vec<u8>) {
        let created = self
            .api
            .create(&new_fractal(width, height, Some(c)))
            .await
            .expect("create");
        let running = FractalUpdate {
            status: Some(FractalStatus::Running),
            attempts: Some(1),
            ..FractalUpdate::default()
        };
        self.api
            .update(&created.uuid, &running)
            .await
            .expect("running");
        let rendered = render(&created);
        self.api
            .upload_image(&created.uuid, rendered.png.clone())
            .await
            .expect("upload");
        let done = self
            .api
            .update(&created.uuid, &rendered.done())
            .await
            .expect("done");
        assert_eq!(done.status, FractalStatus::Done);
        (done, rendered.png)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A valid new fractal (the original's kind of task), with a given c.
pub fn new_fractal(width: u32, height: u32, c: Option<(f64, f64)>) -> NewFractal {
    NewFractal {
        uuid: None,
        width,
        height,
        iterations: 128,
        xa: -1.6,
        xb: 1.6,
        ya: -1.0,
        yb: 1.0,
        seed: None,
        c_re: c.map(|c| c.0),
        c_im: c.map(|c| c.1),
        status: None,
        attempts: None,
    }
}

/// The worker's output for a fractal.
pub struct Rendered {
    /// The PNG.
    pub png: Vec<u8>,
    /// Its sha256.
    pub checksum: String,
    /// Render time.
    pub duration: f64,
    /// c used.
    pub c: (f64, f64),
}

impl Rendered {
    /// The producer's "done" update.
    pub fn done(&self) -> FractalUpdate {
        FractalUpdate {
            status: Some(FractalStatus::Done),
            duration: Some(self.duration),
            checksum: Some(self.checksum.clone()),
            size: Some(self.png.len() as u64),
            generated_by: Some("test-worker".into()),
            c_re: Some(self.c.0),
            c_im: Some(self.c.1),
            ..FractalUpdate::default()
        }
    }
}

/// Renders `f` with faafo's real renderer.
pub fn render(f: &Fractal) -> Rendered {
    let params = FractalParams {
        width: i64::from(f.width),
        height: i64::from(f.height),
        iterations: i64::from(f.iterations),
        xa: f.xa,
        xb: f.xb,
        ya: f.ya,
        yb: f.yb,
        c_re: f.c_re,
        c_im: f.c_im,
        seed: f.seed,
        uuid: Some(f.uuid.clone()),
    };
    let spec = FractalSpec::try_from(params).expect("valid spec");
    let mut png = Vec::new();
    let output = JuliaRenderer::new(RenderLimits::default())
        .render_png(&spec, &CancelToken::new(), &mut png)
        .expect("render");
    Rendered {
        checksum: output.png.checksum.to_string(),
        duration: output.duration().as_secs_f64(),
        c: (output.constant.re(), output.constant.im()),
        png,
    }
}

/// The JSON error body of a response, checking its shape and status.
pub async fn error_of(response: reqwest::Response, status: u16) -> String {
    let got = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], Value::from(status), "{body}");
    body["message"].as_str().expect("a message").to_string()
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("mysql://root@127.0.0.1:3306/test", "x"),
        "mysql://root@127.0.0.1:3306/x"
    );
    assert_eq!(
        with_database("postgresql://p@h:5432/test?sslmode=disable", "x"),
        "postgresql://p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://p@h", "x"), "postgresql://p@h/x");
}
