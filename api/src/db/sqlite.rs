//! SQLite through rusqlite: a file in WAL mode (`synchronous = NORMAL`).
//!
//! A lookup by uuid (the API's hot path) runs on the calling thread: with
//! WAL, readers never wait for the writer and a primary-key lookup takes
//! microseconds, far less than handing it to another thread. Lists,
//! counts and images run on tokio's blocking threads. Readers come from a
//! small pool of connections.
//!
//! Writes go to one writer thread, which owns the only writing connection
//! and commits them in groups: it takes every write queued (up to
//! [`MAX_BATCH`]; under load, also those arriving within half a
//! millisecond), runs each in a savepoint of one transaction (so one
//! failing write, such as a duplicate uuid, leaves the others), commits
//! once, then answers each. Under load this turns many small commits into
//! a few larger ones; alone, a write commits at once. Nothing waits in
//! SQLite's busy handler (which sleeps up to 100 ms between tries).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::sql::{self, parse_status, to_i64, unsigned};
use super::{DbError, StatusCounts};
use crate::domain::{Checksum, FractalId, FractalRecord, ListQuery, Timestamp};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 32;

/// Page cache of a reader or the checkpointer, in KiB (SQLite's default,
/// 2 MiB, is kept for the writer). In WAL mode a reader's cache is emptied
/// whenever another connection has committed, so a big one buys little
/// while the API is writing, yet SQLite keeps the pages allocated: eight
/// readers at 2 MiB each would hold 16 MiB once the database outgrows
/// them. The kernel's page cache serves the misses.
const SMALL_CACHE_KIB: i64 = 256;

/// Most writes committed together.
pub const MAX_BATCH: usize = 64;

/// Where the database is.
#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Memory,
}

/// A SQLite database.
pub struct SqliteStore {
    location: Location,
    readers: Mutex<Vec<Connection>>,
    max_readers: usize,
    /// The writer thread's queue; taken by [`SqliteStore::close`].
    writes: Mutex<Option<mpsc::Sender<Box<dyn Pending>>>>,
    /// The checkpoint and writer threads, joined by [`SqliteStore::close`]
    /// (in any order: the checkpointer ends after the writer anyway).
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The location named by a `sqlite:` URL (`sqlite:///abs/path`,
/// `sqlite://relative/path`, `sqlite::memory:`), without its query string.
fn location(url: &str) -> Location {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        Location::Memory
    } else {
        Location::File(PathBuf::from(path))
    }
}

impl SqliteStore {
    /// Opens (creating the file and its directory when missing) and migrates.
    pub async fn open(url: &str, redacted: &str, max_readers: u32) -> Result<Self, DbError> {
        let open_error = |reason: String| DbError::Open {
            url: redacted.to_string(),
            reason,
        };
        let location = location(url);
        if let Location::File(path) = &location
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_error(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let writer = connect(&location).map_err(|e| open_error(e.to_string()))?;
        if let Location::File(_) = location {
            let mode: String = writer
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(|e| open_error(e.to_string()))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(open_error(format!(
                    "cannot use WAL mode (journal mode is {mode})"
                )));
            }
        }
        let mut writer = writer;
        migrate(&mut writer).map_err(|e| DbError::Migrate {
            url: redacted.to_string(),
            reason: e.to_string(),
        })?;
        let (writes, queue) = mpsc::channel();
        let (stop_checkpoints, stopped) = mpsc::channel::<()>();
        let rewind = Arc::new(AtomicBool::new(false));
        let rewind_now = Arc::clone(&rewind);
        let mut threads = Vec::new();
        if let Location::File(_) = location {
            // Checkpoints (copying the WAL into the database file, with an
            // fsync) run on a thread of their own, so commits never wait
            // for one.
            writer.pragma_update(None, "wal_autocheckpoint", 0)?;
            let checkpointer = connect(&location).map_err(|e| open_error(e.to_string()))?;
            checkpointer.pragma_update(None, "cache_size", -SMALL_CACHE_KIB)?;
            threads.push(
                std::thread::Builder::new()
                    .name("faafo-sqlite-checkpoint".into())
                    .spawn(move || checkpoint_loop(checkpointer, stopped, rewind_now))
                    .map_err(|e| open_error(format!("cannot start the checkpoint thread: {e}")))?,
            );
        }
        threads.push(
            std::thread::Builder::new()
                .name("faafo-sqlite-writer".into())
                .spawn(move || write_loop(writer, queue, stop_checkpoints, rewind))
                .map_err(|e| open_error(format!("cannot start the writer thread: {e}")))?,
        );
        Ok(Self {
            location,
            readers: Mutex::new(Vec::new()),
            max_readers: usize::try_from(max_readers).unwrap_or(usize::MAX),
            writes: Mutex::new(Some(writes)),
            threads: Mutex::new(threads),
        })
    }

    /// Runs `f` with a reader connection, on this thread.
    fn read_here<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.location)?;
                conn.pragma_update(None, "query_only", true)?;
                conn.pragma_update(None, "cache_size", -SMALL_CACHE_KIB)?;
                conn
            }
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < self.max_readers {
            readers.push(conn);
        }
        result
    }

    /// Runs `f` with a reader connection on a blocking thread (the writer
    /// for an in-memory database, which is one connection).
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        if let Location::Memory = self.location {
            return self.write(move |conn| f(conn)).await;
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.read_here(f))
            .await
            .map_err(task_failed)?
    }

    /// Runs `f` on the writer thread, in a savepoint of the next group
    /// commit, and answers once that commit is done.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Some(Box::new(f)),
            result: None,
            reply,
        };
        let gone = || DbError::Unavailable("the SQLite writer thread has stopped".into());
        let writes = self
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| DbError::Unavailable("the database is closed".into()))?;
        writes.send(Box::new(job)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// `SELECT 1`.
    pub async fn ping(self: &Arc<Self>) -> Result<(), DbError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(drop)?)
        })
        .await
    }

    /// Closes the idle readers, lets the writer commit what is queued, and
    /// waits for the writer and checkpoint threads to close their
    /// connections: the last one to close checkpoints the WAL into the
    /// database file and removes it, so a stopped API leaves one
    /// self-contained `faafo.db`. Later writes are refused (503). Blocking.
    pub fn close(&self) {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        drop(
            self.writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a SQLite thread panicked");
            }
        }
    }

    /// See [`super::Database::insert`].
    pub async fn insert(&self, r: FractalRecord) -> Result<(), DbError> {
        self.write(move |conn| {
            conn.prepare_cached(sql::INSERT)?.execute(params![
                r.uuid.to_string(),
                i64::from(r.width),
                i64::from(r.height),
                i64::from(r.iterations),
                r.xa,
                r.xb,
                r.ya,
                r.yb,
                r.seed.map(|s| s as i64),
                r.c_re,
                r.c_im,
                r.status.as_str(),
                r.error,
                i64::from(r.attempts),
                r.duration,
                r.checksum.as_ref().map(Checksum::as_str),
                r.size.map(to_i64),
                r.generated_by,
                r.has_image,
                r.created_at,
                r.updated_at,
                r.revision,
            ])?;
            Ok(())
        })
        .await
    }

    /// See [`super::Database::get`]: on this thread for a file.
    pub async fn get(self: &Arc<Self>, id: FractalId) -> Result<Option<FractalRecord>, DbError> {
        match self.location {
            Location::Memory => self.read(move |conn| get(conn, id)).await,
            Location::File(_) => self.read_here(|conn| get(conn, id)),
        }
    }

    /// See [`super::Database::list`].
    pub async fn list(
        self: &Arc<Self>,
        query: ListQuery,
    ) -> Result<(u64, Vec<FractalRecord>), DbError> {
        self.read(move |conn| {
            let (count_sql, page_sql) = sql::list(&query);
            let mut filters: Vec<Box<dyn ToSql + Send>> = Vec::new();
            if let Some(status) = query.status {
                filters.push(Box::new(status.as_str()));
            }
            if let Some(before) = query.updated_before {
                filters.push(Box::new(before));
            }
            if let Some(after) = &query.uuid_after {
                filters.push(Box::new(after.to_string()));
            }
            let filter_params: Vec<&dyn ToSql> =
                filters.iter().map(|b| b.as_ref() as &dyn ToSql).collect();
            let total: i64 = conn
                .prepare_cached(&count_sql)?
                .query_row(filter_params.as_slice(), |row| row.get(0))?;
            let total = unsigned::<u64>(total, "COUNT(*)")?;
            let Some(offset) = query.offset().filter(|&o| o.unsigned_abs() < total) else {
                return Ok((total, Vec::new()));
            };
            let limit = i64::from(query.per_page);
            let mut page_params = filter_params;
            page_params.push(&limit);
            page_params.push(&offset);
            let mut statement = conn.prepare_cached(&page_sql)?;
            let raws = statement
                .query_map(page_params.as_slice(), RawRecord::read)?
                .collect::<Result<Vec<_>, _>>()?;
            let records = raws
                .into_iter()
                .map(RawRecord::parse)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((total, records))
        })
        .await
    }

    /// See [`super::Database::count_by_status`].
    pub async fn count_by_status(self: &Arc<Self>) -> Result<StatusCounts, DbError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(sql::COUNT_BY_STATUS)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            sql::status_counts(rows)
        })
        .await
    }

    /// See [`super::Database::replace_with_image`].
    pub async fn replace_with_image(
        &self,
        before: FractalRecord,
        after: FractalRecord,
        image: Option<Bytes>,
    ) -> Result<bool, DbError> {
        self.write(move |tx| {
            let uuid = before.uuid.to_string();
            let applied = tx.prepare_cached(sql::UPDATE)?.execute(params![
                after.c_re,
                after.c_im,
                after.status.as_str(),
                after.error,
                i64::from(after.attempts),
                after.duration,
                after.checksum.as_ref().map(Checksum::as_str),
                after.size.map(to_i64),
                after.generated_by,
                after.has_image,
                after.updated_at,
                after.revision,
                uuid,
                before.revision,
            ])? == 1;
            if applied && let Some(data) = &image {
                if before.has_image {
                    tx.prepare_cached(sql::DELETE_IMAGE)?
                        .execute(params![uuid])?;
                }
                tx.prepare_cached(sql::INSERT_IMAGE)?
                    .execute(params![uuid, data.as_ref()])?;
            }
            Ok(applied)
        })
        .await
    }

    /// See [`super::Database::image`].
    pub async fn image(
        self: &Arc<Self>,
        id: FractalId,
        checksum: String,
    ) -> Result<Option<Vec<u8>>, DbError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(sql::SELECT_IMAGE)?
                .query_row(params![id.to_string(), checksum], |row| {
                    row.get::<_, Vec<u8>>(0)
                })
                .optional()?)
        })
        .await
    }

    /// See [`super::Database::delete`].
    pub async fn delete(&self, id: FractalId, revision: i64) -> Result<bool, DbError> {
        self.write(move |tx| {
            let uuid = id.to_string();
            let deleted = tx
                .prepare_cached(sql::DELETE)?
                .execute(params![uuid, revision])?
                == 1;
            if deleted {
                tx.prepare_cached(sql::DELETE_IMAGE)?
                    .execute(params![uuid])?;
            }
            Ok(deleted)
        })
        .await
    }
}

/// A write waiting for the writer thread, whatever its result type.
trait Pending: Send {
    /// Runs the write (in the open transaction).
    fn run(&mut self, conn: &Connection);
    /// Answers, once the transaction is committed (`Ok`) or not (`Err`).
    fn finish(self: Box<Self>, commit: Result<(), &str>);
}

type Work<T> = Box<dyn FnOnce(&Connection) -> Result<T, DbError> + Send>;

struct Job<T> {
    work: Option<Work<T>>,
    result: Option<Result<T, DbError>>,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T: Send> Pending for Job<T> {
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(in_savepoint(conn, work));
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), &str>) {
        let answer = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(reason)) => Err(DbError::Unavailable(format!(
                "the write was not committed: {reason}"
            ))),
            (None, Ok(())) => Err(DbError::Unavailable("the write was not run".into())),
        };
        // The requester may have gone (client disconnected): nothing to do.
        let _ = self.reply.send(answer);
    }
}

/// Runs `work` in a savepoint: on error only its own changes are undone.
fn in_savepoint<T>(conn: &Connection, work: Work<T>) -> Result<T, DbError> {
    conn.prepare_cached("SAVEPOINT faafo_write")?.execute([])?;
    match work(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE faafo_write")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            let undone = conn
                .prepare_cached("ROLLBACK TO faafo_write")
                .and_then(|mut s| s.execute([]))
                .and_then(|_| conn.prepare_cached("RELEASE faafo_write")?.execute([]));
            if let Err(undo) = undone {
                tracing::error!("cannot undo a failed write: {undo}");
            }
            Err(e)
        }
    }
}

/// Time between two checkpoints.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// WAL frames (pages) past which the WAL is rewound (4 MiB with 4 KiB
/// pages). Measured: a WAL allowed to reach 256 MiB made the 99th
/// percentile of a write ten times longer; one kept to 4 MiB instead of
/// 64 MiB is rewritten in place, its blocks already allocated and in the
/// page cache, where a growing one costs the file system a new block for
/// every page: 7-8% less API CPU with images (docs/benchmarks.md).
const REWIND_FRAMES: i64 = 1024;

/// Passes the checkpoint thread makes back to back once the WAL is past
/// [`REWIND_FRAMES`], before it asks the writer to rewind.
const CATCH_UP_PASSES: usize = 4;

/// A batch of at least this many writes means writers are waiting on each
/// other: the next batch waits up to [`COMMIT_DELAY`] for company.
const BUSY_BATCH: usize = 4;

/// A writer that waited this long for a write is no longer busy.
const IDLE: Duration = Duration::from_millis(5);

/// How long, under load, a group commit waits for more writes before it
/// begins (PostgreSQL's `commit_delay`). Fewer, larger commits write fewer
/// WAL pages per row (a commit rewrites the last, partly filled page of
/// the table and of each index), so less data for the disk and shorter
/// checkpoints: at 64 connections it took the 99th percentile of a POST
/// from 13-26 ms to 8-15 ms (docs/benchmarks.md). A lone write never waits.
const COMMIT_DELAY: Duration = Duration::from_micros(500);

/// The checkpoint thread: a passive checkpoint (which waits for nobody)
/// every [`CHECKPOINT_INTERVAL`], until the writer thread ends.
///
/// A passive checkpoint copies the WAL into the database file but, while
/// writes keep coming, never finds the WAL wholly copied, and SQLite only
/// starts a WAL over (at the next commit) once it is. So when the WAL is
/// past [`REWIND_FRAMES`], this thread makes [`CATCH_UP_PASSES`] passes
/// back to back: each copies (and fsyncs) only what came in during the
/// one before, so they get shorter, and after the last little is left.
/// Then it sets `rewind`: the writer copies that little itself between
/// two commits, and its next commit starts the WAL over. Measured at 64
/// connections: with one pass before the rewind the 99th percentile of a
/// POST was 20-21 ms, with four 8.4 ms (docs/benchmarks.md).
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>, rewind: Arc<AtomicBool>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_INTERVAL) {
        for pass in 1..=CATCH_UP_PASSES {
            match passive_checkpoint(&conn) {
                Ok(frames) if frames >= REWIND_FRAMES && !rewind.load(Ordering::Relaxed) => {
                    if pass == CATCH_UP_PASSES {
                        rewind.store(true, Ordering::Relaxed);
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("SQLite checkpoint failed: {e}");
                    break;
                }
            }
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: the WAL's length in frames.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(1)
    })
}

/// The next group of writes: `first` and whatever else is queued, up to
/// [`MAX_BATCH`]; when `busy`, after sleeping [`COMMIT_DELAY`] so that more
/// can come (one sleep, not a wake-up per arriving write).
fn next_batch(
    first: Box<dyn Pending>,
    queue: &mpsc::Receiver<Box<dyn Pending>>,
    busy: bool,
) -> Vec<Box<dyn Pending>> {
    if busy {
        std::thread::sleep(COMMIT_DELAY);
    }
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

/// The writer thread: group commits until every sender is gone (then the
/// checkpoint thread stops too, as `_stop_checkpoints` drops).
fn write_loop(
    conn: Connection,
    queue: mpsc::Receiver<Box<dyn Pending>>,
    stop_checkpoints: mpsc::Sender<()>,
    rewind: Arc<AtomicBool>,
) {
    let mut busy = false;
    loop {
        let first = match queue.try_recv() {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                let waiting = Instant::now();
                let Ok(job) = queue.recv() else { break };
                // After a pause, a write comes alone and commits at once.
                // (Under load the queue is often empty for a moment while
                // the answered requests send their next writes.)
                if waiting.elapsed() >= IDLE {
                    busy = false;
                }
                job
            }
        };
        let mut batch = next_batch(first, &queue, busy);
        busy = batch.len() >= BUSY_BATCH;
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let reason = e.to_string();
            for job in batch {
                job.finish(Err(&reason));
            }
            continue;
        }
        let mut rolled_back = false;
        for job in &mut batch {
            job.run(&conn);
            // On a full disk, an I/O error or no memory SQLite may roll the
            // whole transaction back: the jobs run so far are undone, and a
            // later job's savepoint would commit on its own. None of them
            // is answered as committed; the rest do not run.
            if conn.is_autocommit() {
                rolled_back = true;
                break;
            }
        }
        if rolled_back {
            tracing::error!(
                "SQLite rolled back a group commit of {} write(s)",
                batch.len()
            );
            for job in batch {
                job.finish(Err("SQLite rolled the transaction back"));
            }
            continue;
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                for job in batch {
                    job.finish(Ok(()));
                }
                if rewind.swap(false, Ordering::Relaxed)
                    && let Err(e) = passive_checkpoint(&conn)
                {
                    tracing::warn!("SQLite checkpoint failed: {e}");
                }
            }
            Err(e) => {
                let reason = e.to_string();
                if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                    tracing::error!("cannot roll back a failed commit: {rollback}");
                }
                for job in batch {
                    job.finish(Err(&reason));
                }
            }
        }
    }
    // This connection closes before the checkpointer is told to stop, so
    // that the checkpointer's is the last one and removes the WAL (two
    // connections closing at once may each see the other and keep it).
    drop(conn);
    drop(stop_checkpoints);
}

fn task_failed(e: tokio::task::JoinError) -> DbError {
    DbError::Unavailable(format!("the database task failed: {e}"))
}

/// A new connection with faafo's settings.
fn connect(location: &Location) -> Result<Connection, DbError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match location {
        Location::File(path) => Connection::open_with_flags(path, flags)?,
        Location::Memory => Connection::open_in_memory_with_flags(flags)?,
    };
    // SQLite's own busy handler sleeps up to 100 ms between tries: far
    // longer than what it waits for. Retry every millisecond, for 10 s.
    conn.busy_handler(Some(retry_every_millisecond))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // The WAL file is cut back to this size after a checkpoint resets it.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Busy handler: wait a millisecond and try again, for at most ~10 s
/// (a lock held longer is another process's doing: the caller gets a 503).
fn retry_every_millisecond(attempts: i32) -> bool {
    std::thread::sleep(Duration::from_millis(1));
    attempts < 10_000
}

/// Applies the migrations newer than the file's `user_version`, each in a
/// transaction that also bumps it (two processes starting at once take
/// turns: the second finds nothing to do).
fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    const MIGRATIONS: [&str; 1] = [include_str!(
        "../../migrations/sqlite/0001_create_fractal.sql"
    )];
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if current < version {
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", version)?;
        }
        tx.commit()?;
    }
    Ok(())
}

fn get(conn: &Connection, id: FractalId) -> Result<Option<FractalRecord>, DbError> {
    conn.prepare_cached(sql::SELECT_ONE)?
        .query_row(params![id.to_string()], RawRecord::read)
        .optional()?
        .map(RawRecord::parse)
        .transpose()
}

/// A row as SQLite types, before parsing into a record.
struct RawRecord {
    uuid: String,
    ints: [i64; 3],
    bounds: [f64; 4],
    seed: Option<i64>,
    c: (Option<f64>, Option<f64>),
    status: String,
    error: Option<String>,
    attempts: i64,
    duration: Option<f64>,
    checksum: Option<String>,
    size: Option<i64>,
    generated_by: Option<String>,
    has_image: bool,
    times: (Timestamp, Timestamp),
    revision: i64,
}

impl RawRecord {
    /// Reads a row of `SELECT {COLUMNS}` by position, in
    /// [`sql::COLUMNS`]' order. (By name, rusqlite compares the name with
    /// each column's in turn: measured, 5% of the CPU of a `GET`.)
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            uuid: row.get(0)?,
            ints: [row.get(1)?, row.get(2)?, row.get(3)?],
            bounds: [row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?],
            seed: row.get(8)?,
            c: (row.get(9)?, row.get(10)?),
            status: row.get(11)?,
            error: row.get(12)?,
            attempts: row.get(13)?,
            duration: row.get(14)?,
            checksum: row.get(15)?,
            size: row.get(16)?,
            generated_by: row.get(17)?,
            has_image: row.get(18)?,
            times: (row.get(19)?, row.get(20)?),
            revision: row.get(21)?,
        })
    }

    fn parse(self) -> Result<FractalRecord, DbError> {
        let [width, height, iterations] = self.ints;
        let [xa, xb, ya, yb] = self.bounds;
        Ok(FractalRecord {
            uuid: FractalId::parse(&self.uuid).map_err(|e| DbError::Corrupt(e.0))?,
            width: unsigned(width, "width")?,
            height: unsigned(height, "height")?,
            iterations: unsigned(iterations, "iterations")?,
            xa,
            xb,
            ya,
            yb,
            // A u64 seed is stored as the i64 of the same bits.
            seed: self.seed.map(|s| s as u64),
            c_re: self.c.0,
            c_im: self.c.1,
            status: parse_status(&self.status)?,
            error: self.error,
            attempts: unsigned(self.attempts, "attempts")?,
            duration: self.duration,
            checksum: self
                .checksum
                .map(|c| Checksum::parse(&c).map_err(|e| DbError::Corrupt(e.0)))
                .transpose()?,
            size: self.size.map(|s| unsigned(s, "size")).transpose()?,
            generated_by: self.generated_by,
            has_image: self.has_image,
            created_at: self.times.0,
            updated_at: self.times.1,
            revision: self.revision,
        })
    }
}

/// Times are stored as fixed-width RFC 3339 text, so text order is time order.
impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Timestamp::parse_rfc3339(text).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_file_url(url: &str) -> Option<PathBuf> {
        match location(url) {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            is_file_url("sqlite:///var/lib/faafo/faafo.db"),
            Some(PathBuf::from("/var/lib/faafo/faafo.db"))
        );
        assert_eq!(
            is_file_url("sqlite://faafo.db?mode=rwc"),
            Some(PathBuf::from("faafo.db"))
        );
        assert_eq!(is_file_url("sqlite::memory:"), None);
        assert_eq!(is_file_url("sqlite://x.db?mode=memory"), None);
    }

    #[tokio::test]
    async fn in_memory_databases_work() {
        let db = Arc::new(
            SqliteStore::open("sqlite::memory:", "sqlite::memory:", 4)
                .await
                .expect("open"),
        );
        db.ping().await.expect("ping");
        assert_eq!(
            db.count_by_status()
                .await
                .expect("count")
                .iter()
                .map(|c| c.1)
                .sum::<u64>(),
            0
        );
    }

    /// A closed database is one file: what was committed is in it, the WAL
    /// is gone (a copy of faafo.db after a stop has everything).
    #[tokio::test]
    async fn a_closed_database_is_one_self_contained_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("faafo.db");
        let url = format!("sqlite://{}", path.display());
        let db = Arc::new(SqliteStore::open(&url, &url, 4).await.expect("open"));
        for n in 0..20 {
            db.insert(record(n)).await.expect("insert");
        }
        assert!(dir.path().join("faafo.db-wal").exists(), "WAL mode");
        let closing = Arc::clone(&db);
        tokio::task::spawn_blocking(move || closing.close())
            .await
            .expect("close");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["faafo.db"]);
        assert!(matches!(
            db.insert(record(99)).await,
            Err(DbError::Unavailable(_))
        ));
        let conn = Connection::open(&path).expect("reopen");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM fractal", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 20);
    }

    #[test]
    fn rows_are_read_in_the_order_of_the_columns() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        let statement = conn.prepare(sql::SELECT_ONE).expect("prepare");
        // The order RawRecord::read assumes when it reads by position.
        let read_order = "uuid width height iterations xa xb ya yb seed c_re c_im status error \
                          attempts duration checksum size generated_by has_image created_at \
                          updated_at revision";
        assert_eq!(
            statement.column_names(),
            read_order.split_whitespace().collect::<Vec<_>>(),
            "RawRecord::read takes the columns by position"
        );
    }

    fn record(n: u32) -> FractalRecord {
        let body = faafo_common::fractal::NewFractal {
            uuid: None,
            width: 2 + n,
            height: 2,
            iterations: 12,
            xa: 0.0,
            xb: 1.0,
            ya: 0.0,
            yb: 1.0,
            seed: None,
            c_re: None,
            c_im: None,
            status: None,
            attempts: None,
        };
        let limits = crate::domain::Limits {
            pixel_limit: 1 << 30,
            iteration_limit: 100,
        };
        let create = crate::domain::CreateFractal::parse(body, limits).expect("valid");
        FractalRecord::new(&create, Timestamp::now())
    }

    /// An image is read under its fractal's checksum only: a record read
    /// before the uuid was deleted and created again with another image
    /// does not get that image under its own checksum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_image_is_read_only_under_its_fractals_checksum() {
        let db = Arc::new(
            SqliteStore::open("sqlite::memory:", "sqlite::memory:", 2)
                .await
                .expect("open"),
        );
        let before = record(1);
        db.insert(before.clone()).await.expect("insert");
        let png = b"\x89PNG (not really)".to_vec();
        let checksum = crate::domain::Checksum::of(&png);
        let after = FractalRecord {
            checksum: Some(checksum.clone()),
            has_image: true,
            revision: before.revision + 1,
            ..before.clone()
        };
        let stored = db
            .replace_with_image(before.clone(), after, Some(png.clone().into()))
            .await
            .expect("stored");
        assert!(stored);
        let read = |checksum: String| db.image(before.uuid, checksum);
        assert_eq!(read(checksum.to_string()).await.expect("read"), Some(png));
        let other = crate::domain::Checksum::of(b"another image");
        assert_eq!(read(other.to_string()).await.expect("read"), None);
    }

    /// Writes committed together: a duplicate fails alone, the others land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commits_isolate_failing_writes() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!(
            "sqlite://{}",
            dir.path().join("db").join("faafo.db").display()
        );
        let db = Arc::new(SqliteStore::open(&url, &url, 2).await.expect("open"));
        let records: Vec<FractalRecord> = (0..200).map(record).collect();
        let mut tasks = Vec::new();
        for (i, r) in records.iter().enumerate() {
            // Every tenth write repeats the previous uuid.
            let mut r = r.clone();
            if i % 10 == 9 {
                r.uuid = records[i - 1].uuid;
            }
            let db = Arc::clone(&db);
            tasks.push(tokio::spawn(async move { db.insert(r).await }));
        }
        let mut duplicates = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(()) => {}
                Err(DbError::Duplicate) => duplicates += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(duplicates, 20);
        let counts = db.count_by_status().await.expect("count");
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 180);
        for (i, r) in records.iter().enumerate().filter(|(i, _)| i % 10 != 9) {
            let got = db.get(r.uuid).await.expect("get").expect("stored");
            // Of a pair with one uuid, whichever came first is stored, whole.
            let twin = (i % 10 == 8).then(|| FractalRecord {
                uuid: r.uuid,
                ..records[i + 1].clone()
            });
            assert!(
                got == *r || Some(&got) == twin.as_ref(),
                "record {i}: {got:?}"
            );
        }
    }

    /// A write during which SQLite rolls the whole transaction back (as it
    /// may on a full disk): no write of that group commit is answered as
    /// committed unless it is in the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rolled_back_group_commit_is_answered_as_not_committed() {
        let db = Arc::new(
            SqliteStore::open("sqlite::memory:", "sqlite::memory:", 4)
                .await
                .expect("open"),
        );
        for round in 0..5u32 {
            let records: Vec<FractalRecord> = (0..40).map(|n| record(round * 100 + n)).collect();
            let writes = records.iter().enumerate().map(|(i, r)| {
                let (db, r) = (db.clone(), r.clone());
                async move {
                    if i == 20 {
                        db.write(|conn| -> Result<(), DbError> {
                            conn.execute_batch("ROLLBACK")?;
                            Err(DbError::Unavailable("disk full (simulated)".into()))
                        })
                        .await
                        .map(drop)
                    } else {
                        db.insert(r).await.map(drop)
                    }
                }
            });
            let answers = futures_util::future::join_all(writes).await;
            for (i, (answer, r)) in answers.iter().zip(&records).enumerate() {
                if i == 20 {
                    continue;
                }
                let stored = db.get(r.uuid).await.expect("get").is_some();
                assert_eq!(
                    answer.is_ok(),
                    stored,
                    "round {round}, write {i}: answered {answer:?}, stored: {stored}"
                );
            }
        }
    }

    #[tokio::test]
    async fn in_memory_databases_keep_their_data() {
        let db = Arc::new(
            SqliteStore::open("sqlite::memory:", "sqlite::memory:", 4)
                .await
                .expect("open"),
        );
        let r = record(1);
        db.insert(r.clone()).await.expect("insert");
        assert_eq!(db.get(r.uuid).await.expect("get"), Some(r));
    }
}
