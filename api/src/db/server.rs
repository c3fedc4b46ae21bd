//! MariaDB/MySQL and PostgreSQL through sqlx. Each query is written once
//! and expanded for both drivers by [`on_pool!`].

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Pool, Row, SqlSafeStr, SqlStr};

use super::sql::{self, parse_status, to_i64, unsigned};
use super::{Backend, DbError, StatusCounts};
use crate::domain::{Checksum, FractalId, FractalRecord, ListQuery, Timestamp};

/// A pool of connections to a database server, and what it knows of the
/// server's reachability (so that a server that refuses connections is
/// answered at once, with its reason, rather than after the pool's
/// `acquire_timeout` of retries with "pool timed out").
#[derive(Debug, Clone)]
pub struct ServerPool {
    pool: Pools,
    reach: Arc<Reachability>,
    /// `[database] connect_timeout`.
    connect_timeout: Duration,
    /// `[database] query_timeout`.
    query_timeout: Duration,
    /// MariaDB's `max_allowed_packet`, read at start. An image whose
    /// statement would pass it is refused before it is sent: the server
    /// stops reading a statement that large, and the client, still
    /// writing, sees a broken connection (a 503, retried for ever) rather
    /// than the server's error.
    max_packet: Option<u64>,
}

/// What an image's INSERT adds to the image in MariaDB's packet, with room
/// to spare: the command, the statement id, the parameters' types, the
/// uuid and the blob's length.
const IMAGE_STATEMENT_OVERHEAD: u64 = 1024;

/// The pool of one driver.
#[derive(Debug, Clone)]
enum Pools {
    /// MariaDB or MySQL.
    MySql(MySqlPool),
    /// PostgreSQL.
    Postgres(PgPool),
}

tokio::task_local! {
    /// Set while [`ServerPool::bounded`] drops an operation it gave up on.
    static GIVEN_UP: ();
}

/// A future whose database connections are closed, not returned to the
/// pool, when it is dropped before its end: a request whose client hung up
/// (hyper drops its handler then) may be in the middle of a statement, as
/// one that `ServerPool::bounded` gives up on (see `Checkout`).
pub struct ClosesConnectionsIfAbandoned<F: Future> {
    inner: Option<std::pin::Pin<Box<F>>>,
}

impl<F: Future> ClosesConnectionsIfAbandoned<F> {
    /// `inner`, watched.
    pub fn new(inner: F) -> Self {
        Self {
            inner: Some(Box::pin(inner)),
        }
    }
}

impl<F: Future> Future for ClosesConnectionsIfAbandoned<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Pending;
        };
        let output = std::task::ready!(inner.as_mut().poll(cx));
        self.inner = None;
        std::task::Poll::Ready(output)
    }
}

impl<F: Future> Drop for ClosesConnectionsIfAbandoned<F> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            GIVEN_UP.sync_scope((), move || drop(inner));
        }
    }
}

/// A connection of the pool, checked out for one operation. An operation
/// given up in the middle of a statement ([`ServerPool::bounded`]) leaves
/// the connection in an unknown state; returned to the pool, sqlx would
/// ping it first, without a time limit, and on a server gone silent that
/// ping would hold its place in the pool for good (until every place is
/// held and every request waits in vain, the server back or not). Such a
/// connection is closed instead, which sqlx limits to 5 s.
pub(super) struct Checkout<DB: sqlx::Database> {
    connection: PoolConnection<DB>,
    /// Counts it as at work while it lives.
    _at_work: AtWork,
}

/// One connection handed out to an operation, counted in
/// [`Reachability::at_work`] while it lives.
struct AtWork(Arc<Reachability>);

impl AtWork {
    fn new(reach: &Arc<Reachability>) -> Self {
        reach.at_work.fetch_add(1, Ordering::Relaxed);
        Self(reach.clone())
    }
}

impl Drop for AtWork {
    fn drop(&mut self) {
        self.0.at_work.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<DB: sqlx::Database> Drop for Checkout<DB> {
    fn drop(&mut self) {
        if GIVEN_UP.try_with(|()| ()).is_ok() {
            self.connection.close_on_drop();
        }
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Checkout<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.connection
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Checkout<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.connection
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool, once per driver.
macro_rules! on_pool {
    ($which:expr, $pool:ident => $body:expr) => {
        match &$which.pool {
            Pools::MySql($pool) => $body,
            Pools::Postgres($pool) => $body,
        }
    };
}

/// How long a request waits for a connection before the server is checked
/// with a connection of its own ([`Reachability::probe`]). Shorter than any
/// client gives up, longer than opening a connection to a healthy server.
pub const PROBE_AFTER: Duration = Duration::from_millis(200);

/// A pool that handed out a connection this recently is busy, not cut off
/// from its server: its waiters wait (up to `[database] connect_timeout`)
/// without a probe, so a pool under load costs no extra connection.
pub const BUSY_WINDOW: Duration = Duration::from_millis(500);

/// The longest a probe waits for its connection: a server that does not
/// answer in this time (packets dropped) is reported as such.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest an API waits for another one's schema update (MariaDB/MySQL's
/// named lock, PostgreSQL's advisory lock waits without a limit).
pub const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(300);

/// What the pool knows of its server's reachability. sqlx's pool retries a
/// refused connection until its `acquire_timeout` and keeps the error to
/// itself, so a request waiting for a connection checks the server with a
/// connection of its own when the pool is slow and has handed nothing out
/// lately; one such probe at a time, shared by every waiter.
#[derive(Debug)]
struct Reachability {
    /// The origin of the times below.
    epoch: Instant,
    /// When the pool last handed out a connection, or a probe connected
    /// (milliseconds since `epoch`, plus one; 0: never).
    last_alive: AtomicU64,
    /// The last probe failed and nothing has connected since: requests
    /// probe at once instead of waiting [`PROBE_AFTER`].
    down: AtomicBool,
    /// The last probe's end and result; held while probing, so that
    /// concurrent waiters share one probe.
    last_probe: tokio::sync::Mutex<Option<(Instant, Result<(), ProbeFailed>)>>,
    /// The probe's timeout: [`PROBE_TIMEOUT`], or `connect_timeout` if shorter.
    probe_timeout: Duration,
    /// How many connections operations hold now. (Not the pool's size,
    /// which also counts the connections being opened or checked for a
    /// waiter: a waiter's own connect to a silent server would count as
    /// a busy pool, and the server would never be reported silent.)
    at_work: AtomicUsize,
}

impl Reachability {
    fn new(connect_timeout: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            last_alive: AtomicU64::new(0),
            down: AtomicBool::new(false),
            last_probe: tokio::sync::Mutex::new(None),
            probe_timeout: PROBE_TIMEOUT.min(connect_timeout),
            at_work: AtomicUsize::new(0),
        }
    }

    /// The server answered: a connection was handed out, or a probe connected.
    fn alive(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_alive
            .store(now.saturating_add(1), Ordering::Relaxed);
        self.down.store(false, Ordering::Relaxed);
    }

    /// Whether the server answered within [`BUSY_WINDOW`].
    fn recently_alive(&self) -> bool {
        let last = self.last_alive.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let since = Duration::from_millis(last - 1);
        self.epoch.elapsed().saturating_sub(since) < BUSY_WINDOW
    }

    /// Opens and closes a connection of its own; the reason in words when
    /// it cannot. A waiter that comes while another probes takes its result.
    async fn probe<C: Connection>(&self, options: &C::Options) -> Result<(), ProbeFailed> {
        let asked = Instant::now();
        let mut last = self.last_probe.lock().await;
        if let Some((at, result)) = last.as_ref()
            && *at >= asked
        {
            return result.clone();
        }
        let timeout = self.probe_timeout;
        let result = match first_connection::<C>(options, timeout).await {
            // A server at its connection limit is up: the pool's own
            // connections are the way in, and worth waiting for.
            Ok(()) | Err(ConnectFailure::Full(_)) => Ok(()),
            Err(e) => Err(ProbeFailed {
                timed_out: matches!(e, ConnectFailure::TimedOut),
                reason: e.for_clients(&format!("{} ms", timeout.as_millis())),
            }),
        };
        match &result {
            Ok(()) => self.alive(),
            Err(_) => self.down.store(true, Ordering::Relaxed),
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Why a probe could not connect.
#[derive(Debug, Clone)]
struct ProbeFailed {
    /// In words ("Connection refused", "no connection within 2000 ms").
    reason: String,
    /// Nothing answered in time: a server gone silent, or one too loaded
    /// to take a new connection soon (inconclusive while the pool's own
    /// connections are at work).
    timed_out: bool,
}

/// A record from a row of `SELECT {COLUMNS}`, for either driver's row type.
macro_rules! record_from_row {
    ($row:expr) => {{
        let row = $row;
        FractalRecord {
            uuid: FractalId::parse(&row.try_get::<String, _>("uuid")?)
                .map_err(|e| DbError::Corrupt(e.0))?,
            width: unsigned(row.try_get::<i64, _>("width")?, "width")?,
            height: unsigned(row.try_get::<i64, _>("height")?, "height")?,
            iterations: unsigned(row.try_get::<i64, _>("iterations")?, "iterations")?,
            xa: row.try_get("xa")?,
            xb: row.try_get("xb")?,
            ya: row.try_get("ya")?,
            yb: row.try_get("yb")?,
            // A u64 seed is stored as the i64 of the same bits.
            seed: row.try_get::<Option<i64>, _>("seed")?.map(|s| s as u64),
            c_re: row.try_get("c_re")?,
            c_im: row.try_get("c_im")?,
            status: parse_status(&row.try_get::<String, _>("status")?)?,
            error: row.try_get("error")?,
            attempts: unsigned(row.try_get::<i64, _>("attempts")?, "attempts")?,
            duration: row.try_get("duration")?,
            checksum: row
                .try_get::<Option<String>, _>("checksum")?
                .map(|c| Checksum::parse(&c).map_err(|e| DbError::Corrupt(e.0)))
                .transpose()?,
            size: row
                .try_get::<Option<i64>, _>("size")?
                .map(|s| unsigned(s, "size"))
                .transpose()?,
            generated_by: row.try_get("generated_by")?,
            has_image: row.try_get("has_image")?,
            created_at: row.try_get::<Timestamp, _>("created_at")?,
            updated_at: row.try_get::<Timestamp, _>("updated_at")?,
            revision: row.try_get("revision")?,
        }
    }};
}

/// Opens one connection and closes it, at start-up, so that a server that
/// cannot be used is reported for what it is ("Connection refused", "password
/// authentication failed"...): the pool retries a refused connection until
/// its timeout and then says only that it timed out.
async fn first_connection<C: Connection>(
    options: &<C as Connection>::Options,
    timeout: Duration,
) -> Result<(), ConnectFailure> {
    let connection = connect_within::<C>(options, timeout).await?;
    // Closing politely is a courtesy; the connection is dropped anyway.
    let _ = connection.close().await;
    Ok(())
}

/// A connection of its own to the server, within `timeout`; why not, in
/// words, when it cannot be had.
async fn connect_within<C: Connection>(
    options: &<C as Connection>::Options,
    timeout: Duration,
) -> Result<C, ConnectFailure> {
    match tokio::time::timeout(timeout, C::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) if is_too_many_connections(&e) => Err(ConnectFailure::Full(server_message(&e))),
        Ok(Err(sqlx::Error::Database(db))) => Err(ConnectFailure::Rejected {
            code: error_code(db.as_ref()),
            words: db.message().to_string(),
        }),
        Ok(Err(e)) => Err(ConnectFailure::Refused(server_message(&e))),
        Err(_) => Err(ConnectFailure::TimedOut),
    }
}

/// `[database] connect_timeout` as a failed connection names it.
fn connect_limit(timeout: Duration) -> String {
    format!("{} s ([database] connect_timeout)", timeout.as_secs())
}

/// The server refused a connection for having too many: MySQL 1040 (too
/// many connections), 1203 (the user's limit) or 1226 (an account's
/// `MAX_USER_CONNECTIONS` or hourly limit), PostgreSQL 53300.
fn is_too_many_connections(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => is_too_many(db.as_ref()),
        _ => false,
    }
}

/// See [`is_too_many_connections`].
fn is_too_many(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1040 | 1203 | 1226);
    }
    db.code().as_deref() == Some("53300")
}

/// Why [`first_connection`] failed.
#[derive(Debug)]
enum ConnectFailure {
    /// The system said why (in words: "Connection refused").
    Refused(String),
    /// The server refused it (a wrong password, a database missing), with
    /// its error code and its words, which can name the database user and
    /// the API's address.
    Rejected { code: String, words: String },
    /// The server answered, but has as many connections as it takes (in
    /// words): it is up, and a pool's connection may free up.
    Full(String),
    /// Nothing within the timeout.
    TimedOut,
}

impl ConnectFailure {
    /// In words; `limit` names the timeout ("10 s ([database]
    /// connect_timeout)").
    fn describe(self, limit: &str) -> String {
        match self {
            ConnectFailure::Refused(reason) | ConnectFailure::Full(reason) => reason,
            ConnectFailure::Rejected { words, .. } => words,
            ConnectFailure::TimedOut => format!("no connection within {limit}"),
        }
    }

    /// In words for anyone who asks the API (a 503, `/readyz`): the
    /// server's own words go to the log only ([`refusal_for_clients`]).
    fn for_clients(self, limit: &str) -> String {
        match self {
            ConnectFailure::Rejected { code, words } => refusal_for_clients(&code, &words),
            other => other.describe(limit),
        }
    }
}

/// A database server's refusal of a connection, as the API's clients are
/// told it: its code, not its words (logged as a warning), which can name
/// the database user and the API's address ("Access denied for user
/// 'faafo'@'10.0.0.5'").
fn refusal_for_clients(code: &str, words: &str) -> String {
    tracing::warn!("the database server refused a connection: {words}");
    format!("the database server refused the connection ({code}; the API's log has its words)")
}

/// A server error's code for people: MariaDB/MySQL's error number (its
/// refusals before the handshake, such as 1130 "host not allowed", carry
/// no SQLSTATE, and the SQLSTATE of the others is coarse), PostgreSQL's
/// SQLSTATE.
fn error_code(db: &dyn sqlx::error::DatabaseError) -> String {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return format!("MariaDB/MySQL error {}", mysql.number());
    }
    match db.code() {
        Some(code) => format!("SQLSTATE {code}"),
        None => "no error code".into(),
    }
}

/// An sqlx error in words: the server's own message for an error it
/// returned (without sqlx's prefix or PostgreSQL's "at line N", the line of
/// the server's C source), the system's for a connection that failed.
pub(super) fn server_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// A migration error in words: the server's message, with the migration's
/// version when it was one's statement that failed.
fn migrate_message(e: sqlx::migrate::MigrateError) -> String {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => server_message(&e),
        sqlx::migrate::MigrateError::ExecuteMigration(e, version) => {
            format!("migration {version}: {}", server_message(&e))
        }
        other => other.to_string(),
    }
}

/// The name of the MariaDB/MySQL lock of `database`'s schema updates.
/// Named locks are the server's, not the database's, hence the database's
/// name in it; a name is at most 64 characters, so a long one is hashed.
fn migration_lock_name(database: &str) -> String {
    let name = format!("faafo-schema:{database}");
    if name.len() <= 64 {
        name
    } else {
        let hash = faafo_common::fractal::sha256_hex(database.as_bytes());
        format!("faafo-schema:{}", &hash[..40])
    }
}

/// MySQL's "Unknown system variable": a variable of MariaDB's that MySQL
/// lacks, or the other way round.
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

/// Sets the session's limits so that no statement of a pool's connection
/// runs, or waits for a lock, longer than `seconds`: `lock_wait_timeout`
/// (table and metadata locks, such as another session's `LOCK TABLES` or
/// `ALTER TABLE`), `innodb_lock_wait_timeout` (row locks), and the whole
/// statement's time, MariaDB's `max_statement_time` or, failing that,
/// MySQL's `max_execution_time` (which limits only `SELECT`s).
async fn limit_statements_mysql(
    conn: &mut sqlx::MySqlConnection,
    seconds: u64,
) -> Result<(), sqlx::Error> {
    let locks =
        format!("SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}");
    sqlx::raw_sql(AssertSqlSafe(locks))
        .execute(&mut *conn)
        .await?;
    for statement in [
        format!("SET SESSION max_statement_time = {seconds}"),
        format!(
            "SET SESSION max_execution_time = {}",
            seconds.saturating_mul(1000)
        ),
    ] {
        match sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(db))
                if db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|e| e.number() == ER_UNKNOWN_SYSTEM_VARIABLE) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets the session's `statement_timeout` (lock waits included) to `seconds`.
async fn limit_statements_postgres(
    conn: &mut sqlx::PgConnection,
    seconds: u64,
) -> Result<(), sqlx::Error> {
    let statement = format!("SET statement_timeout = '{seconds}s'");
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Runs `migrator` (its own locking off) on a connection of its own to
/// MariaDB/MySQL holding the named lock of the database's schema, taken
/// with `GET_LOCK(name, wait)`: 1 got it, 0 another process held it for
/// `wait`, NULL an error. The connection (opened within `connect_timeout`)
/// is closed after, which releases the lock whatever happened.
async fn migrate_mysql(
    options: &MySqlConnectOptions,
    connect_timeout: Duration,
    migrator: &Migrator,
    wait: Duration,
) -> Result<(), String> {
    let mut conn = connect_within::<sqlx::MySqlConnection>(options, connect_timeout)
        .await
        .map_err(|e| e.describe(&connect_limit(connect_timeout)))?;
    let result = migrate_mysql_locked(&mut conn, migrator, wait).await;
    // Closing releases the lock too; RELEASE_LOCK is a courtesy.
    let _ = conn.close().await;
    result
}

async fn migrate_mysql_locked(
    conn: &mut sqlx::MySqlConnection,
    migrator: &Migrator,
    wait: Duration,
) -> Result<(), String> {
    let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| server_message(&e))?;
    let Some(database) = database else {
        return Err("the URL names no database".into());
    };
    let name = migration_lock_name(&database);
    let seconds = i64::try_from(wait.as_secs()).unwrap_or(i64::MAX).max(1);
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(&name)
        .bind(seconds)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| server_message(&e))?;
    match got {
        Some(1) => {}
        Some(_) => {
            return Err(format!(
                "another process has been updating the schema (holding the lock '{name}') \
                 for more than {seconds} s; start this one again once it is done"
            ));
        }
        None => return Err(format!("GET_LOCK('{name}') failed on the server")),
    }
    let result = migrator.run(&mut *conn).await.map_err(migrate_message);
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&name)
        .execute(&mut *conn)
        .await;
    result
}

impl ServerPool {
    /// Connects and migrates. Every connection of the pool gets the
    /// server's own limit of `query_timeout` a statement
    /// ([`limit_statements_mysql`], [`limit_statements_postgres`]).
    pub async fn connect(
        url: &str,
        redacted: &str,
        backend: Backend,
        max: u32,
        timeout: Duration,
        query_timeout: Duration,
    ) -> Result<Self, DbError> {
        let open = |reason: String| DbError::Open {
            url: redacted.to_string(),
            reason,
        };
        let limit = connect_limit(timeout);
        let seconds = query_timeout.as_secs().max(1);
        let (pool, max_packet) = if backend == Backend::MySql {
            let url = match url.strip_prefix("mariadb://") {
                Some(rest) => format!("mysql://{rest}"),
                None => url.to_string(),
            };
            let connect = MySqlConnectOptions::from_str(&url)
                .map_err(|e| open(server_message(&e)))?
                .charset("utf8mb4");
            first_connection::<sqlx::MySqlConnection>(&connect, timeout)
                .await
                .map_err(|e| open(e.describe(&limit)))?;
            let pool = MySqlPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(timeout)
                .after_connect(move |conn, _| Box::pin(limit_statements_mysql(conn, seconds)))
                .connect_with(connect)
                .await
                .map_err(|e| open(server_message(&e)))?;
            let max_packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
                .fetch_one(&pool)
                .await
                .map_err(|e| open(server_message(&e)))?;
            (Pools::MySql(pool), u64::try_from(max_packet).ok())
        } else {
            let connect = PgConnectOptions::from_str(url).map_err(|e| open(server_message(&e)))?;
            first_connection::<sqlx::PgConnection>(&connect, timeout)
                .await
                .map_err(|e| open(e.describe(&limit)))?;
            let pool = PgPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(timeout)
                .after_connect(move |conn, _| Box::pin(limit_statements_postgres(conn, seconds)))
                .connect_with(connect)
                .await
                .map_err(|e| open(server_message(&e)))?;
            (Pools::Postgres(pool), None)
        };
        let pool = ServerPool {
            pool,
            reach: Arc::new(Reachability::new(timeout)),
            connect_timeout: timeout,
            query_timeout: Duration::from_secs(seconds),
            max_packet,
        };
        pool.migrate(timeout)
            .await
            .map_err(|reason| DbError::Migrate {
                url: redacted.to_string(),
                reason,
            })?;
        Ok(pool)
    }

    /// `operation`, of at most `statements` statements, given up with
    /// [`DbError::Unavailable`] when it has not ended within
    /// (`connect_timeout` + `query_timeout`) for each statement, plus a
    /// second: longer than the pool's wait for a connection and the
    /// server's own limit of each statement, which end a slow operation
    /// first, with their reasons. This limit ends the wait for a server
    /// that went silent (a host gone from the network answers nothing, and
    /// TCP waits many minutes to say so). The connections the operation
    /// holds are then closed, not returned to the pool ([`Checkout`]).
    pub async fn bounded<T>(
        &self,
        statements: u32,
        operation: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let deadline = (self.connect_timeout + self.query_timeout) * statements.max(1)
            + Duration::from_secs(1);
        let mut operation = Box::pin(operation);
        match tokio::time::timeout(deadline, operation.as_mut()).await {
            Ok(result) => result,
            Err(_) => {
                GIVEN_UP.sync_scope((), move || drop(operation));
                Err(DbError::Unavailable(format!(
                    "the database server did not answer within {} s \
                     ([database] connect_timeout + query_timeout for each statement)",
                    deadline.as_secs()
                )))
            }
        }
    }

    /// MySQL or PostgreSQL.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pools::MySql(_) => Backend::MySql,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Brings the schema up to date; the reason in words when it cannot.
    ///
    /// Several APIs may start together on a new database (a first deploy of
    /// several hosts): one updates the schema while the others wait for it.
    /// On PostgreSQL, sqlx's advisory lock does that. sqlx's MySQL lock,
    /// `GET_LOCK(name, -1)`, waits forever on MySQL but is answered NULL at
    /// once by MariaDB (10.11), which takes no lock, so every API applied
    /// the migration and all but one died on a duplicate version row: on
    /// MariaDB/MySQL the lock is ours ([`migrate_mysql`]).
    async fn migrate(&self, connect_timeout: Duration) -> Result<(), String> {
        let sql: &'static str = match self.pool {
            Pools::MySql(_) => include_str!("../../migrations/mysql/0001_create_fractal.sql"),
            Pools::Postgres(_) => {
                include_str!("../../migrations/postgres/0001_create_fractal.sql")
            }
        };
        let mut migrator = Migrator::with_migrations(vec![Migration::new(
            1,
            "create fractal".into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )]);
        match &self.pool {
            Pools::MySql(pool) => {
                migrator.set_locking(false);
                migrate_mysql(
                    &pool.connect_options(),
                    connect_timeout,
                    &migrator,
                    MIGRATION_LOCK_WAIT,
                )
                .await
            }
            // A connection taken out of the pool (which may be all the
            // server allows this user), without the pool's statement limit:
            // the advisory lock waits for another API's update, and an
            // update of a big table may take long. Closed after, so no
            // connection without the limit stays in the pool.
            Pools::Postgres(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| server_message(&e))?
                    .detach();
                let result = match sqlx::raw_sql("SET statement_timeout = 0")
                    .execute(&mut conn)
                    .await
                {
                    Ok(_) => migrator.run(&mut conn).await.map_err(migrate_message),
                    Err(e) => Err(server_message(&e)),
                };
                let _ = conn.close().await;
                result
            }
        }
    }

    /// A connection of the pool, or [`DbError::Unavailable`] with the
    /// reason as soon as the server is known not to take connections.
    ///
    /// sqlx's pool retries a refused connection until its acquire timeout
    /// (`[database] connect_timeout`) and then says only "pool timed out",
    /// so every request took that long to fail, with no reason. Here a wait
    /// longer than [`PROBE_AFTER`], in a pool that has handed nothing out
    /// for [`BUSY_WINDOW`] (a busy pool's waiters just wait), is checked
    /// with a connection of the probe's own: if that fails, the request is
    /// answered with its reason ("Connection refused", an authentication
    /// error...). Once a probe has failed, the next request probes at once;
    /// the first that connects again ends that.
    async fn checkout<DB: sqlx::Database>(&self, pool: &Pool<DB>) -> Result<Checkout<DB>, DbError> {
        let reach = &self.reach;
        let mut acquire = std::pin::pin!(pool.acquire());
        let mut wait = if reach.down.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            PROBE_AFTER
        };
        loop {
            tokio::select! {
                biased;
                acquired = &mut acquire => return self.handed_out(acquired),
                () = tokio::time::sleep(wait) => {}
            }
            wait = PROBE_AFTER;
            if reach.recently_alive() {
                continue;
            }
            let options = pool.connect_options();
            tokio::select! {
                biased;
                acquired = &mut acquire => return self.handed_out(acquired),
                probed = reach.probe::<DB::Connection>(&options) => match probed {
                    Ok(()) => {}
                    // A server too loaded to take a new connection in time
                    // while the pool's own are all at work is busy, not
                    // gone: those are waited for, as any busy pool's.
                    Err(failed) if failed.timed_out && reach.at_work.load(Ordering::Relaxed) > 0 => {
                        reach.down.store(false, Ordering::Relaxed);
                    }
                    Err(failed) => return Err(DbError::Unavailable(failed.reason)),
                }
            }
        }
    }

    /// The outcome of the pool's acquire: any error of it is the server's
    /// or the network's (the statement has not been sent), worth a retry.
    fn handed_out<DB: sqlx::Database>(
        &self,
        acquired: Result<PoolConnection<DB>, sqlx::Error>,
    ) -> Result<Checkout<DB>, DbError> {
        match acquired {
            Ok(connection) => {
                self.reach.alive();
                Ok(Checkout {
                    connection,
                    _at_work: AtWork::new(&self.reach),
                })
            }
            // At its connection limit: said so, in the API's words (the
            // server's can name the user).
            Err(sqlx::Error::Database(db)) if is_too_many(db.as_ref()) => {
                Err(DbError::Unavailable(format!(
                    "the database server has as many connections as it allows ({})",
                    error_code(db.as_ref())
                )))
            }
            Err(sqlx::Error::Database(db)) => Err(DbError::Unavailable(refusal_for_clients(
                &error_code(db.as_ref()),
                db.message(),
            ))),
            Err(e) => Err(DbError::Unavailable(server_message(&e))),
        }
    }

    /// `sql` in this backend's placeholder style.
    fn sql(&self, text: &str) -> SqlStr {
        match self.pool {
            Pools::Postgres(_) => AssertSqlSafe(sql::numbered_placeholders(text)).into_sql_str(),
            Pools::MySql(_) => AssertSqlSafe(text.to_string()).into_sql_str(),
        }
    }

    /// `SELECT 1`.
    pub async fn ping(&self) -> Result<(), DbError> {
        on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            sqlx::query("SELECT 1").execute(&mut *conn).await.map(drop)
        })?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// See [`super::Database::insert`].
    pub async fn insert(&self, r: &FractalRecord) -> Result<(), DbError> {
        let statement = self.sql(sql::INSERT);
        on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            sqlx::query(statement)
                .bind(r.uuid.to_string())
                .bind(i64::from(r.width))
                .bind(i64::from(r.height))
                .bind(i64::from(r.iterations))
                .bind(r.xa)
                .bind(r.xb)
                .bind(r.ya)
                .bind(r.yb)
                .bind(r.seed.map(|s| s as i64))
                .bind(r.c_re)
                .bind(r.c_im)
                .bind(r.status.as_str())
                .bind(r.error.clone())
                .bind(i64::from(r.attempts))
                .bind(r.duration)
                .bind(r.checksum.as_ref().map(|c| c.as_str().to_string()))
                .bind(r.size.map(to_i64))
                .bind(r.generated_by.clone())
                .bind(r.has_image)
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(r.revision)
                .execute(&mut *conn)
                .await
                .map(drop)
        })?;
        Ok(())
    }

    /// See [`super::Database::get`].
    pub async fn get(&self, id: FractalId) -> Result<Option<FractalRecord>, DbError> {
        let statement = self.sql(sql::SELECT_ONE);
        on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            match sqlx::query(statement).bind(id.to_string()).fetch_optional(&mut *conn).await? {
                Some(row) => Ok(Some(record_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// See [`super::Database::list`].
    pub async fn list(&self, query: &ListQuery) -> Result<(u64, Vec<FractalRecord>), DbError> {
        let (count, page) = sql::list(query);
        let (count, page) = (self.sql(&count), self.sql(&page));
        let status = query.status.map(|s| s.as_str());
        let before = query.updated_before;
        let after = query.uuid_after.as_ref().map(ToString::to_string);
        let total: i64 = on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            let mut q = sqlx::query_scalar(count);
            if let Some(status) = status {
                q = q.bind(status);
            }
            if let Some(before) = before {
                q = q.bind(before);
            }
            if let Some(after) = &after {
                q = q.bind(after.clone());
            }
            q.fetch_one(&mut *conn).await?
        });
        let total = unsigned::<u64>(total, "COUNT(*)")?;
        let Some(offset) = query.offset().filter(|&o| o.unsigned_abs() < total) else {
            return Ok((total, Vec::new()));
        };
        let records = on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            let mut q = sqlx::query(page);
            if let Some(status) = status {
                q = q.bind(status);
            }
            if let Some(before) = before {
                q = q.bind(before);
            }
            if let Some(after) = &after {
                q = q.bind(after.clone());
            }
            let rows = q.bind(i64::from(query.per_page)).bind(offset).fetch_all(&mut *conn).await?;
            let mut records = Vec::with_capacity(rows.len());
            for row in &rows {
                records.push(record_from_row!(row));
            }
            records
        });
        Ok((total, records))
    }

    /// See [`super::Database::count_by_status`].
    pub async fn count_by_status(&self) -> Result<StatusCounts, DbError> {
        let statement = self.sql(sql::COUNT_BY_STATUS);
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            sqlx::query_as(statement).fetch_all(&mut *conn).await?
        });
        sql::status_counts(rows)
    }

    /// See [`super::Database::replace_with_image`].
    pub async fn replace_with_image(
        &self,
        before: &FractalRecord,
        after: &FractalRecord,
        image: Option<&Bytes>,
    ) -> Result<bool, DbError> {
        let (update, delete_image, insert_image) = (
            self.sql(sql::UPDATE),
            self.sql(sql::DELETE_IMAGE),
            self.sql(sql::INSERT_IMAGE),
        );
        if let (Some(max), Some(data)) = (self.max_packet, image)
            && (data.len() as u64).saturating_add(IMAGE_STATEMENT_OVERHEAD) > max
        {
            return Err(DbError::TooLarge);
        }
        let uuid = before.uuid.to_string();
        on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            let mut tx = Connection::begin(&mut *conn).await?;
            let applied = sqlx::query(update)
                .bind(after.c_re)
                .bind(after.c_im)
                .bind(after.status.as_str())
                .bind(after.error.clone())
                .bind(i64::from(after.attempts))
                .bind(after.duration)
                .bind(after.checksum.as_ref().map(|c| c.as_str().to_string()))
                .bind(after.size.map(to_i64))
                .bind(after.generated_by.clone())
                .bind(after.has_image)
                .bind(after.updated_at)
                .bind(after.revision)
                .bind(uuid.clone())
                .bind(before.revision)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if applied && let Some(data) = image {
                // Only an image that exists is deleted: deleting a missing
                // row takes a gap lock in InnoDB, and two first uploads (new
                // uuids share the index's last gap) then deadlock on their
                // inserts.
                if before.has_image {
                    sqlx::query(delete_image).bind(uuid.clone()).execute(&mut *tx).await?;
                }
                sqlx::query(insert_image).bind(uuid).bind(data.as_ref()).execute(&mut *tx).await?;
            }
            if applied {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(applied)
        })
    }

    /// See [`super::Database::image`].
    pub async fn image(&self, id: FractalId, checksum: String) -> Result<Option<Vec<u8>>, DbError> {
        let statement = self.sql(sql::SELECT_IMAGE);
        let data = on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            sqlx::query_scalar(statement)
                .bind(id.to_string())
                .bind(checksum.clone())
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(data)
    }

    /// See [`super::Database::delete`].
    pub async fn delete(&self, id: FractalId, revision: i64) -> Result<bool, DbError> {
        let delete = self.sql(sql::DELETE);
        let uuid = id.to_string();
        // The fractal's row first, its image by the schema's ON DELETE
        // CASCADE: the order an upload locks them in (deleting the image
        // first deadlocked with an upload of it).
        on_pool!(self, pool => {
            let mut conn = self.checkout(pool).await?;
            let deleted =
                sqlx::query(delete).bind(uuid).bind(revision).execute(&mut *conn).await?.rows_affected() == 1;
            Ok(deleted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fit_in_64_characters() {
        assert_eq!(migration_lock_name("faafo"), "faafo-schema:faafo");
        let long = "d".repeat(64);
        let name = migration_lock_name(&long);
        assert!(name.len() <= 64, "{name}");
        assert!(name.starts_with("faafo-schema:"), "{name}");
        assert_ne!(name, migration_lock_name(&"e".repeat(64)));
    }

    /// A schema lock held too long by another process is one clear line,
    /// not a wait without end nor a migration without the lock. Needs
    /// MariaDB/MySQL at `FAAFO_TEST_MYSQL_URL` (default root@127.0.0.1).
    #[tokio::test]
    async fn a_schema_lock_held_elsewhere_times_out_in_words() {
        let admin = std::env::var("FAAFO_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let admin = MySqlConnectOptions::from_str(&admin).expect("a MySQL URL");
        let name = format!("faafo_lock_{}", uuid::Uuid::new_v4().simple());
        let mut holder = sqlx::MySqlConnection::connect_with(&admin)
            .await
            .expect("MariaDB/MySQL is needed (FAAFO_TEST_MYSQL_URL)");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut holder)
            .await
            .expect("create database");
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 1)")
            .bind(migration_lock_name(&name))
            .fetch_one(&mut holder)
            .await
            .expect("lock");
        let result = migrate_mysql(
            &admin.clone().database(&name),
            Duration::from_secs(10),
            &Migrator::with_migrations(Vec::new()),
            Duration::from_secs(1),
        )
        .await;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&mut holder)
            .await
            .expect("drop database");
        assert_eq!(got, Some(1));
        let err = result.expect_err("the lock is held");
        assert_eq!(
            err,
            format!(
                "another process has been updating the schema (holding the lock \
                 'faafo-schema:{name}') for more than 1 s; start this one again once it is done"
            )
        );
    }
}
