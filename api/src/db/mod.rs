//! The database: SQLite, MariaDB/MySQL or PostgreSQL, chosen by the URL's
//! scheme, with the schema created and migrated at start-up.
//!
//! The SQL is written once ([`sql`]). SQLite runs through rusqlite
//! (`sqlite`): a lookup by uuid is answered on the calling thread, in
//! microseconds, and the rest on tokio's blocking threads, with one writer
//! connection and a pool of readers (WAL). MariaDB/MySQL and PostgreSQL run
//! through sqlx (`server`), where each query is expanded for both
//! drivers by `on_pool!`, so every statement is type-checked against both.

mod server;
pub mod sql;

pub use server::ClosesConnectionsIfAbandoned;
mod sqlite;
mod timestamp;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use faafo_common::configuration::DatabaseSection;
use faafo_common::fractal::FractalStatus;
use faafo_common::messaging::redact_url;

use crate::domain::{Checksum, FractalId, FractalRecord, ListQuery};

/// Number of fractals in each status (every status present, zero or not).
pub type StatusCounts = Vec<(FractalStatus, u64)>;

/// The kinds of database faafo speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file, WAL mode).
    Sqlite,
    /// MariaDB or MySQL.
    MySql,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend of a database URL, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "mysql" | "mariadb" => Some(Self::MySql),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// Its name for people: what `/readyz` says of the database, which
    /// anyone may ask (the URL, even without its password, names the host
    /// and the user; the log has it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::MySql => "MariaDB/MySQL",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Start-up: the database could not be opened (URL, server, credentials).
    #[error("cannot open the database {url}: {reason}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Start-up: the schema could not be created or migrated.
    #[error("cannot migrate the database {url}: {reason}")]
    Migrate {
        /// The URL, without its password.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No connection could be had in time, or the server went away: worth
    /// retrying later (a 503).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A row with this key exists already.
    #[error("a row with this key exists already")]
    Duplicate,
    /// A statement larger than the server takes (MariaDB/MySQL's
    /// `max_allowed_packet`): the client sent too much (a 413).
    #[error(
        "the data is larger than the database accepts (raise max_allowed_packet on the MariaDB/MySQL server)"
    )]
    TooLarge,
    /// A stored value that faafo could not have written.
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// A write that faafo's own code got wrong (a 500), refused before
    /// it reached the database.
    #[error("refused a write: {0}")]
    Bug(String),
    /// Any other error of MariaDB/MySQL or PostgreSQL.
    #[error("database error: {}", server::server_message(.0))]
    Server(sqlx::Error),
    /// Any other error of SQLite.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

/// MySQL's "Got a packet bigger than 'max_allowed_packet' bytes".
const ER_NET_PACKET_TOO_LARGE: u16 = 1153;

/// A statement stopped by the server's limit of its time (`[database]
/// query_timeout`): MariaDB 1969 (`max_statement_time`), MySQL 3024
/// (`max_execution_time`), PostgreSQL 57014 (`statement_timeout`).
fn is_statement_timeout(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1969 | 3024);
    }
    db.code().as_deref() == Some("57014")
}

/// Server errors that a later try may not meet: MySQL 1213 (deadlock),
/// 1205 (lock wait timeout), 1053 (server shutdown); PostgreSQL 40P01
/// (deadlock), 40001 (serialization failure), 57P01 (admin shutdown).
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1213 | 1205 | 1053);
    }
    matches!(db.code().as_deref(), Some("40P01" | "40001" | "57P01"))
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                DbError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref db) if db.is_unique_violation() => DbError::Duplicate,
            sqlx::Error::Database(ref db) if is_statement_timeout(db.as_ref()) => {
                DbError::Unavailable(format!(
                    "a statement took longer than [database] query_timeout allows: {}",
                    server::server_message(&e)
                ))
            }
            // Worth retrying: a deadlock, a lock wait or serialization
            // failure, a server shutting down.
            sqlx::Error::Database(ref db) if is_transient(db.as_ref()) => {
                DbError::Unavailable(server::server_message(&e))
            }
            sqlx::Error::Database(ref db)
                if db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|e| e.number() == ER_NET_PACKET_TOO_LARGE) =>
            {
                DbError::TooLarge
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                DbError::Corrupt(e.to_string())
            }
            other => DbError::Server(other),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match e {
            rusqlite::Error::SqliteFailure(ref failure, _) => match failure.code {
                ErrorCode::ConstraintViolation
                    if matches!(
                        failure.extended_code,
                        rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                            | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    ) =>
                {
                    DbError::Duplicate
                }
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory => DbError::Unavailable(e.to_string()),
                ErrorCode::TooBig => DbError::TooLarge,
                _ => DbError::Sqlite(e),
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => DbError::Corrupt(e.to_string()),
            other => DbError::Sqlite(other),
        }
    }
}

#[derive(Debug, Clone)]
enum Inner {
    Sqlite(Arc<sqlite::SqliteStore>),
    Server(server::ServerPool),
}

/// faafo's database (cheap to clone).
#[derive(Debug, Clone)]
pub struct Database {
    inner: Inner,
    url: String,
}

impl Database {
    /// Opens `url` (`sqlite://PATH` or `sqlite::memory:`, `mysql://` or
    /// `mariadb://`, `postgres://` or `postgresql://`) and brings its
    /// schema up to date. A SQLite file and its directory are created when
    /// missing.
    pub async fn connect(url: &str, options: &DatabaseSection) -> Result<Self, DbError> {
        let redacted = redact_url(url);
        let backend = Backend::of_url(url).ok_or_else(|| DbError::Open {
            url: redacted.clone(),
            reason: "expected a sqlite://, mysql:// or postgresql:// URL".into(),
        })?;
        let timeout = Duration::from_secs(options.connect_timeout.max(1));
        let max = options.max_connections.max(1);
        let inner = match backend {
            Backend::Sqlite => Inner::Sqlite(Arc::new(
                sqlite::SqliteStore::open(url, &redacted, max).await?,
            )),
            _ => Inner::Server(
                server::ServerPool::connect(
                    url,
                    &redacted,
                    backend,
                    max,
                    timeout,
                    Duration::from_secs(options.query_timeout.max(1)),
                )
                .await?,
            ),
        };
        Ok(Self {
            inner,
            url: redacted,
        })
    }

    /// Which kind of database this is.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Server(pool) => pool.backend(),
        }
    }

    /// The URL, without its password (for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `SELECT 1`: whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.ping().await,
            Inner::Server(pool) => pool.bounded(1, pool.ping()).await,
        }
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        match &self.inner {
            Inner::Sqlite(db) => {
                let db = Arc::clone(db);
                if let Err(e) = tokio::task::spawn_blocking(move || db.close()).await {
                    tracing::error!("closing the database failed: {e}");
                }
            }
            Inner::Server(pool) => pool.close().await,
        }
    }

    /// Stores a new fractal; [`DbError::Duplicate`] when its uuid exists.
    pub async fn insert(&self, record: &FractalRecord) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.insert(record.clone()).await,
            Inner::Server(pool) => pool.bounded(1, pool.insert(record)).await,
        }
    }

    /// The fractal `id`, if it exists.
    pub async fn get(&self, id: FractalId) -> Result<Option<FractalRecord>, DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.get(id).await,
            Inner::Server(pool) => pool.bounded(1, pool.get(id)).await,
        }
    }

    /// The fractals matching `query` on its page, and how many match in all.
    pub async fn list(&self, query: &ListQuery) -> Result<(u64, Vec<FractalRecord>), DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.list(query.clone()).await,
            Inner::Server(pool) => pool.bounded(2, pool.list(query)).await,
        }
    }

    /// How many fractals are in each status.
    pub async fn count_by_status(&self) -> Result<StatusCounts, DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.count_by_status().await,
            Inner::Server(pool) => pool.bounded(1, pool.count_by_status()).await,
        }
    }

    /// Replaces `before` by `after` if nobody changed it in between (same
    /// revision); `Ok(false)` when somebody did (or it was deleted).
    /// `after` is one revision on ([`FractalRecord::changed`]): the
    /// answer a client gets names the revision stored.
    pub async fn replace(
        &self,
        before: &FractalRecord,
        after: &FractalRecord,
    ) -> Result<bool, DbError> {
        self.replace_with_image(before, after, None).await
    }

    /// [`Self::replace`], storing `image` as the fractal's PNG in the same
    /// transaction when given.
    pub async fn replace_with_image(
        &self,
        before: &FractalRecord,
        after: &FractalRecord,
        image: Option<&Bytes>,
    ) -> Result<bool, DbError> {
        if after.revision != before.revision + 1 {
            // A writer that did not go through FractalRecord::changed:
            // stored, its answer's ETag would name a revision that is not.
            return Err(DbError::Bug(format!(
                "a change of fractal {} from revision {} to {} (one write is one revision)",
                before.uuid, before.revision, after.revision
            )));
        }
        match &self.inner {
            Inner::Sqlite(db) => {
                db.replace_with_image(before.clone(), after.clone(), image.cloned())
                    .await
            }
            Inner::Server(pool) => {
                pool.bounded(
                    if image.is_some() { 5 } else { 3 },
                    pool.replace_with_image(before, after, image),
                )
                .await
            }
        }
    }

    /// The stored PNG of `id`, if the database holds one and the fractal
    /// still names `checksum` as its image's: read in one statement with
    /// the record, so that a fractal deleted and created again with
    /// another image since the record was read is not answered with that
    /// image under the old checksum (cached for good under its URL).
    pub async fn image(
        &self,
        id: FractalId,
        checksum: &Checksum,
    ) -> Result<Option<Vec<u8>>, DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.image(id, checksum.to_string()).await,
            Inner::Server(pool) => pool.bounded(1, pool.image(id, checksum.to_string())).await,
        }
    }

    /// Deletes `record` and its stored image, if it is still at the
    /// revision read (compare and delete: a request's precondition held
    /// for what it deletes); whether it was.
    pub async fn delete(&self, record: &FractalRecord) -> Result<bool, DbError> {
        match &self.inner {
            Inner::Sqlite(db) => db.delete(record.uuid, record.revision).await,
            Inner::Server(pool) => {
                pool.bounded(1, pool.delete(record.uuid, record.revision))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of_url("sqlite:///tmp/x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("mariadb://u@h/db"), Some(Backend::MySql));
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("oracle://u@h/db"), None);
    }
}
