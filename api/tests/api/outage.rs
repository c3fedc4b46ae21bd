//! The database going away while the API runs: with a TCP proxy of the
//! test's own in front of the server, stopped (connections refused) and
//! started again on the same port, or with its connections stranded (a
//! server gone silent: bytes held forever, while new connections pass).
//! Requests must fail fast, with the reason, and work again as soon as the
//! database is back; a pool that is merely busy must still be waited for,
//! and a statement blocked by a lock held elsewhere ends at `[database]
//! query_timeout`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faafo_api::Application;
use faafo_common::configuration::FaafoConfig;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::helpers::{Backend, TestDatabase, config_on, error_of, run_as_admin};

/// A TCP proxy to the database server, on a port of 127.0.0.1.
pub(crate) struct Proxy {
    port: u16,
    target: String,
    task: Option<JoinHandle<()>>,
    /// The hold of the connections made from now on: true holds every
    /// byte, either way.
    hold: Arc<Mutex<watch::Sender<bool>>>,
    /// The holds of stranded connections, kept (a dropped one would end
    /// its connections).
    stranded: Vec<watch::Sender<bool>>,
}

impl Proxy {
    /// Listens on `port` (0: any free one) and forwards every connection
    /// to `target`.
    pub(crate) async fn start(target: &str, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the proxy's port");
        let port = listener.local_addr().expect("address").port();
        let to = target.to_string();
        let hold = Arc::new(Mutex::new(watch::channel(false).0));
        let holds = hold.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: every forwarded connection is cut.
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let to = to.clone();
                let held = holds.lock().expect("hold").subscribe();
                connections.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&to).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_server, to_server) = outbound.into_split();
                        tokio::join!(
                            pump(from_client, to_server, held.clone()),
                            pump(from_server, to_client, held),
                        );
                    }
                });
            }
        });
        Self {
            port,
            target: target.to_string(),
            task: Some(task),
            hold,
            stranded: Vec::new(),
        }
    }

    /// The database URL `url` with the proxy in place of its server.
    pub(crate) fn in_front_of(&self, url: &str) -> String {
        url.replacen(&host_port(url), &format!("127.0.0.1:{}", self.port), 1)
    }

    /// The connections open now go silent for good, either way (their
    /// bytes are held, nothing is closed), while new ones pass: a server
    /// whose host left the network, replaced by another at its address.
    fn strand(&mut self) {
        let mut hold = self.hold.lock().expect("hold");
        hold.send_replace(true);
        let old = std::mem::replace(&mut *hold, watch::channel(false).0);
        self.stranded.push(old);
    }

    /// Every connection, open now or made from now on, goes silent (its
    /// bytes are held, nothing is refused or closed): the server's host
    /// dropped off the network.
    fn silence(&self) {
        self.hold.lock().expect("hold").send_replace(true);
    }

    /// Stops listening and cuts every connection: the database is away,
    /// its port refuses connections.
    pub(crate) async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn restart(&mut self) {
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

/// Copies `from` to `to` until either ends, holding each read while
/// `held` says so.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if held.wait_for(|held| !held).await.is_err() {
            break;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `host:port` of a database URL (`scheme://user@host:port/db`).
pub(crate) fn host_port(url: &str) -> String {
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
    api_on(&proxy.in_front_of(url), |config| {
        config.database.max_connections = max_connections;
    })
    .await
}

/// An API on the database `url`, with `tweak` applied to its
/// configuration, serving until the test ends.
pub(crate) async fn api_on(
    url: &str,
    tweak: impl FnOnce(&mut FaafoConfig),
) -> (String, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("temporary directory");
    let mut config = config_on(url, &state);
    tweak(&mut config);
    config.validate().expect("valid test configuration");
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
            if path == "/readyz" {
                // Anyone may ask: the kind of database, not where it is.
                assert!(
                    !message.contains(&format!("127.0.0.1:{}", proxy.port)),
                    "{backend:?}: {message}"
                );
                let kind = faafo_api::db::Backend::of_url(&db.url).expect("a server's URL");
                assert!(
                    message.contains(&format!("the {} database does not answer", kind.name())),
                    "{message}"
                );
            }
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
    // It asks again by itself, and loads the page once it can.
    assert!(text.contains("/static/live.js?v="), "{text}");
    assert!(text.contains("<main class=\"unavailable\">"), "{text}");

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

    // Silent, old connections and new alike: the probe's own limit says
    // so, not the pool's whole connect_timeout (10 s here) with sqlx's
    // "pool timed out".
    proxy.silence();
    for path in ["/readyz", "/v1/fractal"] {
        let (took, response) = timed_get(&http, &format!("{api}{path}")).await;
        let message = error_of(response, 503).await;
        assert!(
            took < FAST,
            "{backend:?} {path} on a silent server took {took:?}: {message}"
        );
        assert!(
            message.contains("no connection within 2000 ms"),
            "{backend:?} {path}: {message}"
        );
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

/// A table locked elsewhere (a backup's `LOCK TABLES`, an administrator's
/// open transaction): every statement on it waits for the lock, and a
/// request must end at `[database] query_timeout` with a 503 that says so,
/// not hang; once the lock is gone, requests work again.
async fn a_locked_table_ends_requests_at_query_timeout(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let (api, _state) = api_on(&db.url, |config| {
        config.database.query_timeout = 1;
    })
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let created = http
        .post(format!("{api}/v1/fractal"))
        .json(
            &serde_json::json!({"width": 16, "height": 16, "iterations": 16,
            "xa": -1.0, "xb": 1.0, "ya": -1.0, "yb": 1.0}),
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(created.status(), 201, "{backend:?}");
    let uuid = created.json::<serde_json::Value>().await.expect("JSON")["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();

    let holder = lock_table(backend, &db.url).await;
    let get_one = format!("{api}/v1/fractal/{uuid}");
    let update = serde_json::json!({"status": "running", "attempts": 1});
    for (what, request) in [
        ("GET one", http.get(&get_one)),
        ("GET list", http.get(format!("{api}/v1/fractal"))),
        ("PUT", http.put(&get_one).json(&update)),
    ] {
        let started = Instant::now();
        let response = request.send().await.expect("answer");
        let took = started.elapsed();
        let message = error_of(response, 503).await;
        assert!(took < FAST, "{backend:?} {what} took {took:?}: {message}");
        assert!(
            message.contains("query_timeout") || message.contains("Lock wait timeout"),
            "{backend:?} {what}: {message}"
        );
    }
    drop(holder);
    let response = http
        .put(&get_one)
        .json(&update)
        .send()
        .await
        .expect("answer");
    assert_eq!(
        response.status(),
        200,
        "{backend:?} PUT once the lock is gone"
    );
    let fractal: serde_json::Value = http
        .get(&get_one)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(fractal["status"], "running", "{backend:?}");
}

#[tokio::test]
async fn postgres_a_locked_table_ends_requests_at_query_timeout() {
    a_locked_table_ends_requests_at_query_timeout(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_locked_table_ends_requests_at_query_timeout() {
    a_locked_table_ends_requests_at_query_timeout(Backend::MySql).await;
}

/// Locks the table `fractal` of the database at `url` on a connection of
/// the test's own, held until the returned value is dropped.
async fn lock_table(backend: Backend, url: &str) -> Box<dyn std::any::Any + Send> {
    match backend {
        Backend::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
            sqlx::raw_sql("LOCK TABLES fractal WRITE")
                .execute(&mut conn)
                .await
                .expect("lock");
            Box::new(conn)
        }
        _ => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::raw_sql("BEGIN; LOCK TABLE fractal IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .expect("lock");
            Box::new(conn)
        }
    }
}

/// How many statements of `url`'s database wait for a lock, as the server
/// sees them.
async fn lock_waiters(backend: Backend, url: &str) -> i64 {
    match backend {
        Backend::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE DB = DATABASE() AND STATE LIKE 'Waiting for table%'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("the process list")
        }
        _ => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_activity")
        }
    }
}

/// The API on a pool of one connection to a new database of `backend`,
/// behind a proxy the test can strand, with 1 s to connect and 3 s a
/// statement; once it answered a first list.
struct PoolOfOne {
    db: TestDatabase,
    proxy: Proxy,
    api: String,
    _state: tempfile::TempDir,
    /// A client that waits a minute.
    http: reqwest::Client,
}

impl PoolOfOne {
    async fn start(backend: Backend) -> Self {
        let db = TestDatabase::create(backend).await;
        let proxy = Proxy::start(&host_port(&db.url), 0).await;
        let (api, state) = api_on(&proxy.in_front_of(&db.url), |config| {
            config.database.connect_timeout = 1;
            config.database.query_timeout = 3;
            config.database.max_connections = 1;
        })
        .await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let (_, response) = timed_get(&http, &format!("{api}/v1/fractal")).await;
        assert_eq!(response.status(), 200, "{backend:?}");
        Self {
            db,
            proxy,
            api,
            _state: state,
            http,
        }
    }

    /// Locks the fractal table, has `request` sent, and strands the
    /// proxy once the API's statement waits for the lock: the server goes
    /// silent in the middle of it. The lock's holder, to drop.
    async fn go_silent_during<T: Send + 'static>(
        &mut self,
        backend: Backend,
        request: impl Future<Output = T> + Send + 'static,
    ) -> (Box<dyn std::any::Any + Send>, tokio::task::JoinHandle<T>) {
        let holder = lock_table(backend, &self.db.url).await;
        let request = tokio::spawn(request);
        let seen = Instant::now();
        while lock_waiters(backend, &self.db.url).await == 0 {
            assert!(
                seen.elapsed() < Duration::from_secs(3),
                "{backend:?}: the API's statement never waited for the lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.proxy.strand();
        (holder, request)
    }

    /// Waits until a list is answered again, at most `within`: the
    /// pool's one place is free.
    async fn works_again(&self, backend: Backend, within: Duration) {
        let back = Instant::now();
        loop {
            let (_, response) = timed_get(&self.http, &format!("{}/v1/fractal", self.api)).await;
            if response.status() == 200 {
                return;
            }
            let message = error_of(response, 503).await;
            assert!(
                back.elapsed() < within,
                "{backend:?}: the pool's one place is still held after {:?}: {message}",
                back.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A server gone silent in the middle of a statement (its host off the
/// network, another at its address: no refusal, no answer on the old
/// connections): the request ends after `(connect_timeout + query_timeout)`
/// for each statement plus a second, with a 503 that says so, where it
/// waited for TCP's many minutes. The statement waits for a lock, so that
/// the silence starts while it runs; the server's own answer at
/// `query_timeout` is held with the connection. The connection given up
/// is closed, not handed back to the pool: the pool (of one connection
/// here) works again at once, where sqlx's check of a returned connection
/// would have waited on the silent one for good.
async fn a_silent_server_is_given_up(backend: Backend) {
    let mut scene = PoolOfOne::start(backend).await;
    let (http, url) = (scene.http.clone(), format!("{}/v1/fractal", scene.api));
    let (holder, request) = scene
        .go_silent_during(backend, async move { timed_get(&http, &url).await })
        .await;
    let (took, response) = request.await.expect("request");
    let message = error_of(response, 503).await;
    // A list is two statements: (1 s + 3 s) x 2 + 1 s.
    assert!(
        message.contains("did not answer within 9 s"),
        "{backend:?} after {took:?}: {message}"
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "{backend:?} took {took:?}: {message}"
    );
    drop(holder);
    scene.works_again(backend, Duration::from_secs(15)).await;
}

/// A client that hangs up while the API waits on a server gone silent
/// (the producer gives a request 60 s, less than the API's own limit):
/// hyper drops the handler, and the connection it held mid-statement is
/// closed, not handed back to the pool, where sqlx's check of it would
/// have waited on the silent server for good and held the pool's one place.
async fn a_client_that_hangs_up_leaves_no_connection_stuck(backend: Backend) {
    let mut scene = PoolOfOne::start(backend).await;
    let hasty = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let url = format!("{}/v1/fractal", scene.api);
    let (holder, request) = scene
        .go_silent_during(backend, async move { hasty.get(&url).send().await })
        .await;
    let outcome = request.await.expect("request");
    assert!(
        outcome.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{backend:?}: the client hangs up: {outcome:?}"
    );
    drop(holder);
    scene.works_again(backend, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn postgres_a_client_that_hangs_up_leaves_no_connection_stuck() {
    a_client_that_hangs_up_leaves_no_connection_stuck(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_client_that_hangs_up_leaves_no_connection_stuck() {
    a_client_that_hangs_up_leaves_no_connection_stuck(Backend::MySql).await;
}

#[tokio::test]
async fn postgres_a_silent_server_is_given_up() {
    a_silent_server_is_given_up(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_silent_server_is_given_up() {
    a_silent_server_is_given_up(Backend::MySql).await;
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

impl TestRole {
    /// A new PostgreSQL database the role owns: the database, a
    /// connection of the admin to it, and its URL as the role.
    async fn owned_database(&self) -> (TestDatabase, sqlx::PgConnection, String) {
        let db = TestDatabase::create(Backend::Postgres).await;
        let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let sql = format!(
            "ALTER DATABASE {} OWNER TO {}",
            database_of(&db.url),
            self.name
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect("owner");
        let as_role = db
            .url
            .replacen("://postgres@", &format!("://{}@", self.name), 1);
        assert_ne!(
            as_role, db.url,
            "the test expects the user postgres in the URL"
        );
        (db, admin, as_role)
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
    let (db, mut admin, as_role) = role.owned_database().await;
    let proxy = Proxy::start(&host_port(&db.url), 0).await;
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

/// A server that refuses the API's connections (here its role may no
/// longer log in) is a 503 at once, and anyone may ask: the answer gives
/// the server's error code, not its words, which name the role (and, on
/// MariaDB, the API's address).
#[tokio::test]
async fn a_refused_login_is_answered_without_the_servers_words() {
    let role = TestRole::create(10).await;
    let (_db, mut admin, as_role) = role.owned_database().await;
    let (api, _state) = api_on(&as_role, |_| {}).await;
    let http = reqwest::Client::new();
    let (_, response) = timed_get(&http, &format!("{api}/readyz")).await;
    assert_eq!(response.status(), 200);

    let sql = format!(
        "ALTER ROLE {0} NOLOGIN; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{0}'",
        role.name
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .expect("no more logins");
    for round in 0..2 {
        for path in ["/readyz", "/v1/fractal"] {
            let (took, response) = timed_get(&http, &format!("{api}{path}")).await;
            let message = error_of(response, 503).await;
            assert!(
                took < FAST,
                "{path} (round {round}) took {took:?}: {message}"
            );
            assert!(
                message.contains("refused the connection (SQLSTATE 28000;"),
                "{path} (round {round}): {message}"
            );
            assert!(
                !message.contains(&role.name),
                "{path} (round {round}): {message}"
            );
        }
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
