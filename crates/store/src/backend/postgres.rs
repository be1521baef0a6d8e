//! PostgreSQL: for several `serve` and `worker` processes sharing one store.
//!
//! Row locks do the serialising that SQLite's single writer does: a claim skips jobs other
//! workers are claiming (`FOR UPDATE SKIP LOCKED`), and counters on the operator and deployment
//! rows order configuration versions and events.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Postgres, Transaction};

use crate::error::{Error, Result, query_failed};

/// The schema, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Claims the job that waited longest among those due or whose claim lapsed (`$1` worker,
/// `$2` now, `$3` locked until).
///
/// SKIP LOCKED: a worker passes over the job another worker is claiming at this moment
/// and takes the next one, instead of waiting and then finding it taken.
const CLAIM_JOB: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
     locked_by = $1, locked_until = $3 \
     WHERE id = (SELECT id FROM jobs \
         WHERE (status = 'queued' AND run_after <= $2) \
            OR (status = 'running' AND locked_until < $2) \
         ORDER BY run_after, id LIMIT 1 \
         FOR UPDATE SKIP LOCKED) \
     RETURNING id, kind, operator, payload, attempts, locked_until";

/// Records an open intent's outcome (`$1` operator, `$2` id, `$3` outcome, `$4` finished at)
/// and changes its resource's record (`$5` `'upsert'`, `'remove'` or NULL; `$6` the sealed
/// record and `$7` its time, for an upsert); returns the id, or no row if the operator has no
/// such open intent (and then nothing changed).
///
/// One statement, so one round trip instead of four (BEGIN, UPDATE, UPSERT or DELETE, COMMIT)
/// and no transaction a cancelled caller could leave open: the record changes only for the
/// journal row the update returns. The sub-statements run whether or not the final `SELECT`
/// reads them, and at most one of the two on `resources` matches.
const FINISH_INTENT: &str = "WITH finished AS ( \
         UPDATE journal SET outcome = $3, finished_at = $4 \
         WHERE operator = $1 AND id = $2 AND finished_at IS NULL \
         RETURNING id, operator, address), \
     upserted AS ( \
         INSERT INTO resources (operator, address, record, updated_at) \
         SELECT operator, address, $6, $7 FROM finished WHERE $5 = 'upsert' \
         ON CONFLICT (operator, address) DO UPDATE \
         SET record = excluded.record, updated_at = excluded.updated_at), \
     removed AS ( \
         DELETE FROM resources USING finished \
         WHERE $5 = 'remove' AND resources.operator = finished.operator \
         AND resources.address = finished.address) \
     SELECT id FROM finished";

/// Connections per pool; each process has its own pool.
const MAX_CONNECTIONS: u32 = 16;

/// How long a query waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL database.
#[derive(Debug)]
pub(crate) struct PostgresBackend {
    pool: PgPool,
}

impl PostgresBackend {
    /// Connects to the database at `url` and brings its schema up to date (migrations take an
    /// advisory lock, so several processes starting at once do not collide).
    pub(crate) async fn connect(url: &str, shown_url: &str) -> Result<PostgresBackend> {
        let connect_error = |source| Error::Connect {
            url: shown_url.to_owned(),
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
        // One connection first: an unreachable server or a refused login then fails at once
        // with the driver's own reason, where the pool would retry until its timeout and say
        // only that it timed out.
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                connect_error(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", ACQUIRE_TIMEOUT.as_secs()),
                )))
            })?
            .map_err(connect_error)?;
        probe.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        MIGRATOR.run(&pool).await.map_err(Error::Migrate)?;
        Ok(PostgresBackend { pool })
    }

    /// A connection from the pool; `context` says what for, in errors.
    async fn connection(&self, context: &'static str) -> Result<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(query_failed(context))
    }

    /// Turns a query's error into the store's (the pool replaces broken connections itself).
    fn failed(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> Error + use<> {
        query_failed(context)
    }
}

/// Serialises domain claims for the length of their transaction (the number is arbitrary,
/// the store's own): PostgreSQL lets two transactions read before either writes.
const SERIALIZE_DOMAIN_CLAIMS: &str = "SELECT pg_advisory_xact_lock(7304512691)";

/// Begins a write transaction on `connection`.
async fn begin_write(
    connection: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    connection.begin().await
}

account_queries!(PostgresBackend);

oidc_queries!(PostgresBackend, Postgres);
fleet_queries!(PostgresBackend);

shared_queries!(PostgresBackend, PgConnection {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    async fn begin_intent(&self, intent: crate::backend::NewIntentRow) -> Result<i64> {
        const FAILED: &str = "recording an intent";
        let mut connection = self.connection(FAILED).await?;
        insert_intent(&mut connection, &intent)
            .await
            .map_err(self.failed(FAILED))
    }

    async fn finish_intent(&self, finish: crate::backend::FinishIntentRow) -> Result<bool> {
        const FAILED: &str = "recording an intent's outcome";
        let mut connection = self.connection(FAILED).await?;
        update_intent(&mut connection, &finish)
            .await
            .map_err(self.failed(FAILED))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
});
