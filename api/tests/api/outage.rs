//! The database going away while the API runs: with a TCP proxy of the
//! test's own in front of the server, stopped (connections refused) and
//! started again on the same port. Requests must fail fast, with the
//! reason, and work again as soon as the database is back; a pool that is
//! merely busy must still be waited for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faafo_api::Application;
use faafo_common::configuration::FaafoConfig;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::helpers::{Backend, TestDatabase, error_of, run_as_admin};

/// A TCP proxy to the database server, on a port of 127.0.0.1.
struct Proxy {
    port: u16,
    target: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `port` (0: any free one) and forwards every connection
    /// to `target`.
    async fn start(target: &str, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the proxy's port");
        let port = listener.local_addr().expect("address").port();
        let to = target.to_string();
        let task = tokio::spawn(async move {
            // Dropped with the task: every forwarded connection is cut.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = to.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            port,
            target: target.to_string(),
            task: Some(task),
        }
    }

    /// Stops listening and cuts every connection: the database is away,
    /// its port refuses connections.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        *self = Proxy::start(&self.target, self.port).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `host:port` of a database URL (`scheme://user@host:port/db`).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.to_string()
}

/// An API on the database `url` through `proxy`, serving until the test ends.
async fn api_through(
    url: &str,
    proxy: &Proxy,
    max_connections: u32,
) -> (String, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("temporary directory");
    let mut config = FaafoConfig::default();
    config.default.database_url =
        url.replacen(&host_port(url), &format!("127.0.0.1:{}", proxy.port), 1);
    config.default.state_path = state.path().display().to_string();
    config.api.bind_host = "127.0.0.1".into();
    config.api.bind_port = 0;
    config.database.max_connections = max_connections;
    let app = Application::build(&config).await.expect("the API starts");
    let url = app.url();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (url, state)
}

/// How long `GET url` took, and its response.
async fn timed_get(http: &reqwest::Client, url: &str) -> (Duration, reqwest::Response) {
    let started = Instant::now();
    let response = http.get(url).send().await.expect("request");
    (started.elapsed(), response)
}

/// How soon an answer must come: the old way took `[database]
/// connect_timeout` (10 s); the new one about 0.2-0.8 s, with room here for
/// a loaded machine.
const FAST: Duration = Duration::from_secs(5);

async fn the_database_goes_away_and_comes_back(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let target = host_port(&db.url);
    let mut proxy = Proxy::start(&target, 0).await;
    let (api, _state) = api_through(&db.url, &proxy, 8).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for path in ["/readyz", "/v1/fractal"] {
        let (_, response) = timed_get(&http, &format!("{api}{path}")).await;
        assert_eq!(response.status(), 200, "{backend:?} {path}");
    }

    proxy.stop().await;
    // Twice: the first request finds the pool's connections dead, the
    // second one knows the server is away.
    for round in 0..2 {
        for path in ["/readyz", "/v1/fractal", "/v1/fractal?status=done"] {
            let (took, response) = timed_get(&http, &format!("{api}{path}")).await;
            let message = error_of(response, 503).await;
            assert!(
                took < FAST,
                "{backend:?} {path} (round {round}) took {took:?}: {message}"
            );
            assert!(
                message.contains("Connection refused"),
                "{backend:?} {path}: {message}"
            );
            assert!(
                !message.contains("pool timed out"),
                "{backend:?} {path}: {message}"
            );
        }
    }
    // The web page: an HTML page, not the JSON error.
    let (took, page) = timed_get(&http, &format!("{api}/")).await;
    assert_eq!(page.status(), 503, "{backend:?}");
    assert!(took < FAST, "{backend:?}: the page took {took:?}");
    let content_type = page.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_string();
    assert!(
        content_type.starts_with("text/html"),
        "{backend:?}: {content_type}"
    );
    let text = page.text().await.expect("body");
    assert!(text.contains("<!DOCTYPE html>"), "{text}");
    assert!(text.contains("Connection refused"), "{text}");

    proxy.restart().await;
    for path in ["/readyz", "/v1/fractal", "/"] {
        let (took, response) = timed_get(&http, &format!("{api}{path}")).await;
        assert_eq!(
            response.status(),
            200,
            "{backend:?} {path} once the database is back"
        );
        assert!(took < FAST, "{backend:?} {path} took {took:?}");
    }
}

#[tokio::test]
async fn postgres_goes_away_and_comes_back() {
    the_database_goes_away_and_comes_back(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_goes_away_and_comes_back() {
    the_database_goes_away_and_comes_back(Backend::MySql).await;
}

/// A role of PostgreSQL made for one test, dropped after it (after the
/// test's database, which it owns: declare it first).
struct TestRole {
    admin: String,
    name: String,
}

impl TestRole {
    /// `CREATE ROLE <random> LOGIN CONNECTION LIMIT <limit>`.
    async fn create(limit: u32) -> Self {
        let (admin, _) = Backend::Postgres.admin_url().expect("a server");
        let name = format!("faafo_role_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
        let sql = format!("CREATE ROLE {name} LOGIN CONNECTION LIMIT {limit}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("create role");
        Self { admin, name }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let statement = format!("DROP ROLE IF EXISTS {}", self.name);
        if !run_as_admin(Backend::Postgres, self.admin.clone(), statement) {
            eprintln!("warning: could not drop the test role {}", self.name);
        }
    }
}

/// A pool whose one connection is busy (a table lock held elsewhere for
/// longer than the API's probe delays), for a role the server lets have
/// one connection only, is waited for, not answered 503: the server's
/// "too many connections" to the probe says it is up.
#[tokio::test]
async fn a_busy_pool_is_waited_for() {
    let role = TestRole::create(1).await;
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let sql = format!(
        "ALTER DATABASE {} OWNER TO {}",
        database_of(&db.url),
        role.name
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .expect("owner");
    let proxy = Proxy::start(&host_port(&db.url), 0).await;
    let as_role = db
        .url
        .replacen("://postgres@", &format!("://{}@", role.name), 1);
    assert_ne!(
        as_role, db.url,
        "the test expects the user postgres in the URL"
    );
    let (api, _state) = api_through(&as_role, &proxy, 1).await;
    let http = reqwest::Client::new();
    sqlx::raw_sql("BEGIN; LOCK TABLE fractal IN ACCESS EXCLUSIVE MODE")
        .execute(&mut admin)
        .await
        .expect("lock");
    let mut requests = JoinSet::new();
    for _ in 0..6 {
        let (http, url) = (http.clone(), format!("{api}/v1/fractal"));
        requests.spawn(async move {
            let response = http.get(url).send().await.expect("answer");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut admin)
        .await
        .expect("unlock");
    while let Some(answer) = requests.join_next().await {
        let (status, body) = answer.expect("task");
        assert_eq!(status, 200, "{body}");
    }
}

/// The database's name in a URL.
fn database_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    path.split('?').next().unwrap_or(path).to_string()
}

#[test]
fn host_and_port_of_urls() {
    assert_eq!(
        host_port("mysql://root@127.0.0.1:3306/test"),
        "127.0.0.1:3306"
    );
    assert_eq!(
        host_port("postgresql://p:x@h:5432/db?sslmode=disable"),
        "h:5432"
    );
    let _: SocketAddr = host_port("postgresql://127.0.0.1:5432/db")
        .parse()
        .expect("an address");
}
