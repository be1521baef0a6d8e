//! SQLite: the embedded default, one file next to the platform.
//!
//! The database runs in WAL mode (readers never wait for the writer), with foreign keys on and
//! a busy timeout, so that concurrent writers (another process on the same file) queue up
//! instead of failing. Write transactions begin `IMMEDIATE`: they take the write lock first, so
//! they wait for it through the busy timeout instead of failing when another writer got there
//! in between.
//!
//! The store keeps one connection and takes turns on it, instead of a pool: SQLite has one
//! writer at a time anyway, and every use of a pooled connection costs up to two more round
//! trips to the connection's thread (sqlx pings it when it is handed back, and by default when
//! it is handed out). Those round trips, each a wake-up of another thread, are most of the
//! cost of a small statement; for the same reason the engine's intents and outcomes (two
//! statements per resource, from many tasks at once) are written a batch to a statement, see
//! [`batch`].

mod batch;

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection as _, Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use self::batch::Batch;
use crate::backend::{FinishIntentRow, NewIntentRow};
use crate::error::{Error, Result, query_failed};

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

/// Records an open intent's outcome (`$1` operator, `$2` id, `$3` outcome, `$4` finished at)
/// and changes its resource's record (`$5` `'upsert'`, `'remove'` or NULL; `$6` the sealed
/// record and `$7` its time, for an upsert); returns the id, or no row if the operator has no
/// such open intent (and then nothing changed).
///
/// One statement, so one round trip to the connection's thread instead of four: the trigger of
/// migration 0002 applies the `pending_*` columns to `resources` inside this statement's
/// transaction, and clears them.
const FINISH_INTENT: &str = "UPDATE journal SET outcome = $3, finished_at = $4, \
     pending_change = $5, pending_record = $6, pending_updated_at = $7 \
     WHERE operator = $1 AND id = $2 AND finished_at IS NULL \
     RETURNING id";

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept: every query, and the batched ones once per batch size.
const STATEMENT_CACHE: usize = 50 + 2 * batch::MAX_BATCH;

/// A SQLite database.
#[derive(Debug)]
pub(crate) struct SqliteBackend {
    /// The connection every query takes its turn on (fairly: first come, first served).
    connection: Arc<Mutex<Slot>>,
    /// Set when a query found the connection's thread gone: the next turn opens a new one.
    lost: Arc<AtomicBool>,
    /// How to open it again.
    options: SqliteConnectOptions,
    /// Whether the database is in memory, and so lives and dies with the connection.
    in_memory: bool,
    /// Intents waiting to be recorded, and outcomes waiting to be: the caller whose turn comes
    /// first records every one waiting, in one statement.
    begins: Batch<NewIntentRow, i64>,
    finishes: Batch<FinishIntentRow, bool>,
}

/// The connection, or why there is none.
#[derive(Debug)]
enum Slot {
    Open(SqliteConnection),
    /// Its thread stopped and opening a new one failed; the next turn tries again.
    Lost,
    /// [`SqliteBackend::close`] closed it; queries fail.
    Closed,
}

/// A turn on the connection: nobody else's queries run until it is dropped.
type Turn = OwnedMappedMutexGuard<Slot, SqliteConnection>;

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
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(STATEMENT_CACHE);
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(connect_error)?;
        MIGRATOR
            .run(&mut connection)
            .await
            .map_err(Error::Migrate)?;
        Ok(SqliteBackend {
            connection: Arc::new(Mutex::new(Slot::Open(connection))),
            lost: Arc::new(AtomicBool::new(false)),
            options,
            in_memory: url.contains(":memory:") || url.contains("mode=memory"),
            begins: Batch::default(),
            finishes: Batch::default(),
        })
    }

    /// The connection, once it is this caller's turn; `context` says what for, in errors.
    ///
    /// A connection whose thread stopped is replaced by a new one to the same file. An
    /// in-memory database is not: it went with its connection, and a new one would be empty.
    async fn connection(&self, context: &'static str) -> Result<Turn> {
        let mut slot = Arc::clone(&self.connection).lock_owned().await;
        if self.lost.swap(false, Ordering::AcqRel) && matches!(*slot, Slot::Open(_)) {
            tracing::warn!("the SQLite connection's thread stopped: opening a new connection");
            *slot = Slot::Lost;
        }
        if matches!(*slot, Slot::Lost) && !self.in_memory {
            let connection = SqliteConnection::connect_with(&self.options)
                .await
                .map_err(query_failed(context))?;
            *slot = Slot::Open(connection);
        }
        OwnedMutexGuard::try_map(slot, |slot| match slot {
            Slot::Open(connection) => Some(connection),
            Slot::Lost | Slot::Closed => None,
        })
        .map_err(|slot| {
            query_failed(context)(match *slot {
                Slot::Lost => sqlx::Error::WorkerCrashed,
                Slot::Open(_) | Slot::Closed => sqlx::Error::PoolClosed,
            })
        })
    }

    /// Turns a query's error into the store's, noting a connection whose thread is gone.
    fn failed(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        failed(&self.lost, context)
    }
}

/// Turns a query's error into the store's, setting `lost` if the connection's thread is gone.
fn failed<'a>(
    lost: &'a AtomicBool,
    context: &'static str,
) -> impl FnOnce(sqlx::Error) -> Error + 'a {
    move |source| {
        if matches!(source, sqlx::Error::WorkerCrashed) {
            lost.store(true, Ordering::Release);
        }
        query_failed(context)(source)
    }
}

/// Domain claims need nothing more: a write transaction begins `IMMEDIATE`, holding the
/// database's one write lock.
const SERIALIZE_DOMAIN_CLAIMS: &str = "SELECT 1";

/// Begins a write transaction on `connection`.
async fn begin_write(
    connection: &mut SqliteConnection,
) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
    connection.begin_with("BEGIN IMMEDIATE").await
}

account_queries!(SqliteBackend);

oidc_queries!(SqliteBackend, Sqlite);
fleet_queries!(SqliteBackend);

shared_queries!(SqliteBackend, SqliteConnection {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    async fn begin_intent(&self, intent: NewIntentRow) -> Result<i64> {
        batch::submit(self, &self.begins, intent, batch::RECORDING, batch::record_intents).await
    }

    async fn finish_intent(&self, finish: FinishIntentRow) -> Result<bool> {
        batch::submit(self, &self.finishes, finish, batch::FINISHING, batch::finish_intents).await
    }

    async fn close(&self) {
        let mut slot = self.connection.lock().await;
        if let Slot::Open(connection) = std::mem::replace(&mut *slot, Slot::Closed)
            && let Err(error) = connection.close().await
        {
            tracing::warn!(%error, "closing the SQLite connection");
        }
    }
});
