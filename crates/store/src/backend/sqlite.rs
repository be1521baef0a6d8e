//! SQLite: the embedded default, one file next to the platform.
//!
//! The database runs in WAL mode (readers never wait for the writer), with foreign keys on and
//! a busy timeout, so that concurrent writers from one process queue up instead of failing.
//! Write transactions begin `IMMEDIATE`: they take the write lock first, so they wait for it
//! through the busy timeout instead of failing when another writer got there in between.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::error::{Error, Result};

/// The schema, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Claims the job that waited longest among those due or whose claim lapsed (`$1` worker,
/// `$2` now, `$3` locked until).
///
/// One statement holds SQLite's write lock from choosing the job to claiming it, so two
/// workers never claim the same job.
const CLAIM_JOB: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
     locked_by = $1, locked_until = $3 \
     WHERE id = (SELECT id FROM jobs \
         WHERE (status = 'queued' AND run_after <= $2) \
            OR (status = 'running' AND locked_until < $2) \
         ORDER BY run_after, id LIMIT 1) \
     RETURNING id, kind, operator, payload, attempts, locked_until";

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections per pool for a database file: one writer at a time, more readers.
const MAX_CONNECTIONS: u32 = 1;

/// A SQLite database.
#[derive(Debug)]
pub(crate) struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    /// Opens (or, with `mode=rwc`, creates) the database at `url` and brings its schema up to
    /// date.
    pub(crate) async fn connect(url: &str) -> Result<SqliteBackend> {
        let connect_error = |source| Error::Connect {
            url: url.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect_error)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = pool_options(url)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        MIGRATOR.run(&pool).await.map_err(Error::Migrate)?;
        Ok(SqliteBackend { pool })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// An in-memory database lives as long as its connections: keep exactly one, forever.
fn pool_options(url: &str) -> SqlitePoolOptions {
    if url.contains(":memory:") || url.contains("mode=memory") {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
    }
}

shared_queries!(SqliteBackend, Sqlite {
    fn name(&self) -> &'static str {
        "SQLite"
    }
});
