//! [`Store`]: the one handle the panel, the worker and the engine persist through.
//!
//! It turns the public types into rows and back, seals every secret before a row is written and
//! opens it after it is read; the backend behind it runs the SQL.

use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::clock::{Clock, Millis, SystemClock};
use fediversity_model::names::OperatorId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::instrument;

use crate::backend::postgres::PostgresBackend;
use crate::backend::sqlite::SqliteBackend;
use crate::backend::{ConfigurationRow, DeploymentRow, EventRow, JobRow, Queries};
use crate::error::{Error, Result, corrupt};
use crate::records::{
    ConfigurationVersion, Deployment, DeploymentId, DeploymentOutcome, DeploymentStatus,
    EventRecord, Job, JobId, NewJob, StoredConfiguration, StoredEvent,
};
use crate::sealing::{Sealer, SealingKey};

/// What the key check seals: opening it proves the key is the one the database was made with.
const KEY_CHECK: &[u8] = b"fediversity platform key check";

/// The associated data of the key check (no operator's).
const KEY_CHECK_CONTEXT: &str = "platform-key-check";

/// The associated data of values that belong to no operator.
const NO_OPERATOR: &str = "";

/// Which database a [`Store`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or memory).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Persistent state on SQLite or PostgreSQL, with secrets sealed under the platform key.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) queries: Arc<dyn Queries>,
    backend: Backend,
    pub(crate) sealer: Sealer,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `url`, brings its schema up to date and checks that `key` is the
    /// key its secrets were sealed with.
    ///
    /// `url` is `sqlite://PATH?mode=rwc` (created when missing), `sqlite://PATH` (must exist),
    /// `sqlite::memory:` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    #[instrument(skip_all, fields(url = %redact(url)))]
    pub async fn connect(url: &str, key: SealingKey) -> Result<Store> {
        let (queries, backend): (Arc<dyn Queries>, Backend) = if url.starts_with("sqlite:") {
            (
                Arc::new(SqliteBackend::connect(url).await?),
                Backend::Sqlite,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let backend = PostgresBackend::connect(url, &redact(url)).await?;
            (Arc::new(backend), Backend::Postgres)
        } else {
            return Err(Error::UnsupportedUrl(redact(url)));
        };
        let store = Store {
            queries,
            backend,
            sealer: Sealer::new(&key),
            clock: Arc::new(SystemClock),
        };
        store.check_key().await?;
        tracing::debug!(backend = store.queries.name(), "store open");
        Ok(store)
    }

    /// The same store, reading the time from `clock` where a call takes no `now` (the
    /// engine's [`finish_intent`](fediversity_engine::store::StateStore::finish_intent)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Store {
        self.clock = clock;
        self
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; calls after this fail.
    pub async fn close(&self) {
        self.queries.close().await;
    }

    /// Seals a known value on first use and opens it ever after: a store started with another
    /// key stops here, before it reads or writes anything.
    async fn check_key(&self) -> Result<()> {
        let candidate = self.sealer.seal_bytes(KEY_CHECK_CONTEXT, KEY_CHECK)?;
        let stored = self.queries.key_check(&candidate).await?;
        match self.sealer.open_bytes(KEY_CHECK_CONTEXT, &stored)? {
            opened if opened == KEY_CHECK => Ok(()),
            _ => Err(Error::KeyMismatch),
        }
    }

    pub(crate) fn queries(&self) -> &dyn Queries {
        self.queries.as_ref()
    }

    /// Runs a write transaction in a task of its own, so that it runs to its end (commit or
    /// rollback) even when the caller's future is dropped (a timeout, a client that went away).
    ///
    /// Why: sqlx 0.9 on PostgreSQL returns a connection to the pool still inside a transaction
    /// when the future is dropped while its `BEGIN` is in flight (sqlx issues 2054 and 4393,
    /// fixed upstream after 0.9.0). Every later statement on that connection then runs in
    /// that transaction and is never committed: a journal entry or a record would silently
    /// vanish. A transaction nobody can cancel never leaves one behind.
    pub(crate) async fn in_own_task<T, F>(
        &self,
        work: impl FnOnce(Arc<dyn Queries>) -> F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(work(Arc::clone(&self.queries)))
            .await
            .map_err(|e| Error::Interrupted(e.to_string()))?
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now()
    }

    /// `value` as JSON with its secrets sealed for `operator`.
    pub(crate) fn seal<T: Serialize>(
        &self,
        operator: &str,
        what: &'static str,
        value: &T,
    ) -> Result<Value> {
        let json =
            serde_json::to_value(value).map_err(|source| Error::Serialise { what, source })?;
        self.sealer.seal(operator, json)
    }

    /// A `T` from stored JSON, its secrets opened for `operator`.
    pub(crate) fn open<T: DeserializeOwned>(
        &self,
        operator: &str,
        what: &'static str,
        value: Value,
    ) -> Result<T> {
        let json = self.sealer.open(operator, value)?;
        serde_json::from_value(json).map_err(|e| corrupt(what, e))
    }
}

/// The panel's persistence: operators, configuration versions, deployments, events and jobs.
impl Store {
    /// Registers a new operator.
    pub async fn create_operator(&self, operator: &OperatorId, now: Millis) -> Result<()> {
        if self.queries.create_operator(operator.as_str(), now).await? {
            Ok(())
        } else {
            Err(Error::OperatorExists(operator.clone()))
        }
    }

    /// Every registered operator, by id.
    pub async fn operators(&self) -> Result<Vec<OperatorId>> {
        self.queries
            .operators()
            .await?
            .into_iter()
            .map(|id| OperatorId::try_from(id).map_err(|e| corrupt("operator id", e)))
            .collect()
    }

    /// Saves `config` as the operator's next configuration version and returns its number
    /// (1 for the first). Earlier versions are kept.
    pub async fn save_configuration(
        &self,
        operator: &OperatorId,
        config: &Value,
        now: Millis,
    ) -> Result<ConfigurationVersion> {
        let sealed = self.seal(operator.as_str(), "a configuration", config)?;
        let id = operator.to_string();
        self.in_own_task(
            |queries| async move { queries.save_configuration(&id, &sealed, now).await },
        )
        .await?
        .ok_or_else(|| Error::UnknownOperator(operator.clone()))
    }

    /// Every configuration version of the operator, oldest first.
    pub async fn configurations(&self, operator: &OperatorId) -> Result<Vec<StoredConfiguration>> {
        let rows = self.queries.configurations(operator.as_str()).await?;
        rows.into_iter()
            .map(|row| self.configuration_from_row(operator, row))
            .collect()
    }

    fn configuration_from_row(
        &self,
        operator: &OperatorId,
        row: ConfigurationRow,
    ) -> Result<StoredConfiguration> {
        Ok(StoredConfiguration {
            version: row.version,
            config: self.open(operator.as_str(), "configuration", row.config)?,
            created_at: row.created_at,
        })
    }

    /// Queues a deployment of one of the operator's configuration versions.
    pub async fn create_deployment(
        &self,
        operator: &OperatorId,
        version: ConfigurationVersion,
        now: Millis,
    ) -> Result<DeploymentId> {
        self.queries
            .create_deployment(operator.as_str(), version, now)
            .await?
            .map(DeploymentId)
            .ok_or_else(|| Error::UnknownConfiguration {
                operator: operator.clone(),
                version,
            })
    }

    /// Marks a queued deployment as running.
    pub async fn start_deployment(
        &self,
        operator: &OperatorId,
        deployment: DeploymentId,
        now: Millis,
    ) -> Result<()> {
        if self
            .queries
            .start_deployment(operator.as_str(), deployment.0, now)
            .await?
        {
            Ok(())
        } else {
            Err(Error::UnknownDeployment {
                operator: operator.clone(),
                deployment,
                expected: "that is queued",
            })
        }
    }

    /// Ends a queued or running deployment with its report.
    pub async fn finish_deployment(
        &self,
        operator: &OperatorId,
        deployment: DeploymentId,
        outcome: DeploymentOutcome,
        report: &Value,
        now: Millis,
    ) -> Result<()> {
        let status = DeploymentStatus::from(outcome).as_str();
        let report = self.seal(operator.as_str(), "a deployment report", report)?;
        if self
            .queries
            .finish_deployment(operator.as_str(), deployment.0, status, &report, now)
            .await?
        {
            Ok(())
        } else {
            Err(Error::UnknownDeployment {
                operator: operator.clone(),
                deployment,
                expected: "that is queued or running",
            })
        }
    }

    /// The operator's deployments, newest first.
    pub async fn deployments(&self, operator: &OperatorId) -> Result<Vec<Deployment>> {
        let rows = self.queries.deployments(operator.as_str()).await?;
        rows.into_iter()
            .map(|row| self.deployment_from_row(operator, row))
            .collect()
    }

    fn deployment_from_row(&self, operator: &OperatorId, row: DeploymentRow) -> Result<Deployment> {
        let status = DeploymentStatus::parse(&row.status)
            .ok_or_else(|| corrupt("deployment status", &row.status))?;
        let report = row
            .report
            .map(|report| self.open(operator.as_str(), "deployment report", report))
            .transpose()?;
        Ok(Deployment {
            id: DeploymentId(row.id),
            operator: operator.clone(),
            configuration_version: row.configuration_version,
            status,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            report,
        })
    }

    /// Appends events to a deployment's log, all or none, numbering them after the ones there;
    /// returns the number of the last one.
    pub async fn append_events(
        &self,
        operator: &OperatorId,
        deployment: DeploymentId,
        events: &[EventRecord],
    ) -> Result<i64> {
        let rows = events
            .iter()
            .map(|record| {
                Ok((
                    record.at,
                    self.seal(operator.as_str(), "an event", &record.event)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let id = operator.to_string();
        self.in_own_task(
            |queries| async move { queries.append_events(&id, deployment.0, &rows).await },
        )
        .await?
        .ok_or_else(|| Error::UnknownDeployment {
            operator: operator.clone(),
            deployment,
            expected: "",
        })
    }

    /// The deployment's events numbered after `after` (0 for all), in order.
    pub async fn events_since(
        &self,
        operator: &OperatorId,
        deployment: DeploymentId,
        after: i64,
    ) -> Result<Vec<StoredEvent>> {
        let rows = self
            .queries
            .events_since(operator.as_str(), deployment.0, after)
            .await?;
        rows.into_iter()
            .map(|row| self.event_from_row(operator, row))
            .collect()
    }

    fn event_from_row(&self, operator: &OperatorId, row: EventRow) -> Result<StoredEvent> {
        Ok(StoredEvent {
            seq: row.seq,
            at: row.at,
            event: self.open(operator.as_str(), "event", row.event)?,
        })
    }

    /// Queues a job for a worker.
    pub async fn enqueue_job(&self, job: &NewJob, now: Millis) -> Result<JobId> {
        let context = job
            .operator
            .as_ref()
            .map_or(NO_OPERATOR, OperatorId::as_str);
        let payload = self.seal(context, "a job payload", &job.payload)?;
        let operator = job.operator.as_ref().map(OperatorId::as_str);
        let id = self
            .queries
            .enqueue_job(&job.kind, operator, &payload, job.run_after, now)
            .await?;
        Ok(JobId(id))
    }

    /// Claims the job that has waited longest among those due, for `worker`, until
    /// `now + lease`. A job whose worker's claim lapsed (the worker died) is claimable again.
    /// No two concurrent claims get the same job.
    pub async fn claim_job(
        &self,
        worker: &str,
        now: Millis,
        lease: Duration,
    ) -> Result<Option<Job>> {
        let locked_until = now.saturating_add(millis(lease));
        let row = self.queries.claim_job(worker, now, locked_until).await?;
        row.map(|row| self.job_from_row(row)).transpose()
    }

    fn job_from_row(&self, row: JobRow) -> Result<Job> {
        let operator = row
            .operator
            .map(|id| OperatorId::try_from(id).map_err(|e| corrupt("operator id", e)))
            .transpose()?;
        let context = operator.as_ref().map_or(NO_OPERATOR, OperatorId::as_str);
        Ok(Job {
            id: JobId(row.id),
            kind: row.kind,
            payload: self.open(context, "job payload", row.payload)?,
            operator,
            attempts: row.attempts,
            locked_until: row.locked_until,
        })
    }

    /// Marks a job `worker` holds as done.
    pub async fn complete_job(&self, job: JobId, worker: &str, now: Millis) -> Result<()> {
        if self.queries.complete_job(job.0, worker, now).await? {
            Ok(())
        } else {
            Err(job_not_held(job, worker))
        }
    }

    /// Records that a job `worker` holds failed with `error`: it is claimable again from
    /// `retry_at`, or failed for good when `retry_at` is `None`.
    pub async fn fail_job(
        &self,
        job: JobId,
        worker: &str,
        error: &str,
        retry_at: Option<Millis>,
        now: Millis,
    ) -> Result<()> {
        if self
            .queries
            .fail_job(job.0, worker, error, retry_at, now)
            .await?
        {
            Ok(())
        } else {
            Err(job_not_held(job, worker))
        }
    }
}

fn job_not_held(job: JobId, worker: &str) -> Error {
    Error::JobNotHeld {
        job,
        worker: worker.to_owned(),
    }
}

/// A duration in the store's unit, saturating.
pub(crate) fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// `url` without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// A URL's path and query with the value of any `password` parameter hidden (libpq and sqlx
/// accept the password there too).
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{path}?{}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://fedi:s3cr%40t@db.example:5432/fedi"),
            "postgres://fedi:***@db.example:5432/fedi"
        );
        assert_eq!(redact("postgres://fedi@db/fedi"), "postgres://fedi@db/fedi");
        assert_eq!(
            redact("postgres://fedi@db/fedi?sslmode=require&password=s3cr3t"),
            "postgres://fedi@db/fedi?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://fedi:p@ss@db/fedi?application_name=a@b"),
            "postgres://fedi:***@db/fedi?application_name=a@b"
        );
        assert_eq!(
            redact("sqlite:///var/lib/fedi.db?mode=rwc"),
            "sqlite:///var/lib/fedi.db?mode=rwc"
        );
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
    }
}
