//! PostgreSQL: for several `serve` and `worker` processes sharing one store.
//!
//! Row locks do the serialising that SQLite's single writer does: a claim skips jobs other
//! workers are claiming (`FOR UPDATE SKIP LOCKED`), and counters on the operator and deployment
//! rows order configuration versions and events.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::error::{Error, Result};

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
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        MIGRATOR.run(&pool).await.map_err(Error::Migrate)?;
        Ok(PostgresBackend { pool })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

shared_queries!(PostgresBackend, Postgres {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }
});
