//! The database behind the store: the queries the store runs, as one object-safe trait with
//! one implementation per database.
//!
//! The backends see JSON already sealed and rows as the database holds them; sealing, parsing
//! and the public types live in [`crate::store`], once. Most SQL is the same on both databases
//! (`$1` parameters, `RETURNING`, `ON CONFLICT`), so it is written once in
//! `shared.rs` (the `shared_queries!` macro) and each backend module adds what differs:
//! connecting, migrations, how a write transaction begins, how a job is claimed, and how an
//! intent's outcome and its record change are written in one statement.

use async_trait::async_trait;
use fediversity_engine::clock::Millis;
use serde_json::Value;

use crate::error::Result;

#[macro_use]
pub(crate) mod accounts;
#[macro_use]
pub(crate) mod oidc;
#[macro_use]
pub(crate) mod fleet;
#[macro_use]
mod shared;
pub(crate) mod postgres;
pub(crate) mod sqlite;

/// An intent as stored (inputs sealed).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IntentRow {
    pub id: i64,
    pub address: String,
    pub provider: String,
    pub operation: String,
    pub idempotency_key: String,
    #[sqlx(json)]
    pub inputs: Value,
    pub at: i64,
}

/// An intent to store.
#[derive(Debug)]
pub(crate) struct NewIntentRow {
    pub operator: String,
    pub address: String,
    pub provider: String,
    pub operation: String,
    pub idempotency_key: String,
    pub inputs: Value,
    pub at: Millis,
}

/// An open intent's outcome to record, with what it does to the resource's record.
#[derive(Debug)]
pub(crate) struct FinishIntentRow {
    pub operator: String,
    pub id: i64,
    pub outcome: Value,
    pub finished_at: Millis,
    pub change: RecordChangeRow,
}

/// What finishing an intent does to the resource's record (already sealed).
#[derive(Debug)]
pub(crate) enum RecordChangeRow {
    Upsert { record: Value, updated_at: Millis },
    Remove,
    Unchanged,
}

impl RecordChangeRow {
    /// As the `FINISH_INTENT` statements take it: the kind (`upsert`, `remove` or none), the
    /// record and its time.
    pub(crate) fn as_columns(&self) -> (Option<&'static str>, Option<&Value>, Option<Millis>) {
        match self {
            RecordChangeRow::Upsert { record, updated_at } => {
                (Some("upsert"), Some(record), Some(*updated_at))
            }
            RecordChangeRow::Remove => (Some("remove"), None, None),
            RecordChangeRow::Unchanged => (None, None, None),
        }
    }
}

/// A resource record as stored (secrets sealed).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ResourceRow {
    pub address: String,
    #[sqlx(json)]
    pub record: Value,
}

/// A configuration version as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConfigurationRow {
    pub version: i64,
    #[sqlx(json)]
    pub config: Value,
    pub created_at: i64,
}

/// An operator's latest identity sync as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IdentitySyncRow {
    #[sqlx(json)]
    pub snapshot: Value,
    #[sqlx(json)]
    pub report: Value,
    pub synced_at: i64,
}

/// A deployment as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    pub id: i64,
    pub configuration_version: i64,
    pub status: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    #[sqlx(json(nullable))]
    pub report: Option<Value>,
}

/// An event as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub seq: i64,
    pub at: i64,
    #[sqlx(json)]
    pub event: Value,
}

/// A claimed job as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: i64,
    pub kind: String,
    pub operator: Option<String>,
    #[sqlx(json)]
    pub payload: Value,
    pub attempts: i64,
    pub locked_until: i64,
}

/// The queries the store runs. Every operator-scoped query takes the operator id and filters
/// on it, so no call can reach another operator's rows.
#[async_trait]
pub(crate) trait Queries:
    accounts::AccountQueries + oidc::OidcQueries + fleet::FleetQueries + Send + Sync
{
    /// Which database this is, for messages.
    fn name(&self) -> &'static str;

    /// Stores `candidate` as the key check if there is none yet; returns the stored one.
    async fn key_check(&self, candidate: &str) -> Result<String>;

    /// Registers an operator; false if it exists.
    async fn create_operator(&self, operator: &str, now: Millis) -> Result<bool>;
    /// Every registered operator, by id.
    async fn operators(&self) -> Result<Vec<String>>;

    /// Saves the next configuration version; `None` if the operator does not exist.
    async fn save_configuration(
        &self,
        operator: &str,
        config: &Value,
        now: Millis,
    ) -> Result<Option<i64>>;
    /// Every configuration version of the operator, oldest first.
    async fn configurations(&self, operator: &str) -> Result<Vec<ConfigurationRow>>;

    /// Queues a deployment of a configuration version; `None` if the operator has no such
    /// version.
    async fn create_deployment(
        &self,
        operator: &str,
        version: i64,
        now: Millis,
    ) -> Result<Option<i64>>;
    /// Marks a queued deployment running; false if there is no such queued deployment.
    async fn start_deployment(&self, operator: &str, id: i64, now: Millis) -> Result<bool>;
    /// Ends a running deployment; false if there is no such running deployment.
    async fn finish_deployment(
        &self,
        operator: &str,
        id: i64,
        status: &str,
        report: &Value,
        now: Millis,
    ) -> Result<bool>;
    /// The operator's deployments, newest first.
    async fn deployments(&self, operator: &str) -> Result<Vec<DeploymentRow>>;

    /// Appends events to a deployment in one transaction; returns the last sequence number,
    /// or `None` if the operator has no such deployment.
    async fn append_events(
        &self,
        operator: &str,
        deployment: i64,
        events: &[(Millis, Value)],
    ) -> Result<Option<i64>>;
    /// The deployment's events after `after`, in order.
    async fn events_since(
        &self,
        operator: &str,
        deployment: i64,
        after: i64,
    ) -> Result<Vec<EventRow>>;

    /// Queues a job; returns its id.
    async fn enqueue_job(
        &self,
        kind: &str,
        operator: Option<&str>,
        payload: &Value,
        run_after: Millis,
        now: Millis,
    ) -> Result<i64>;
    /// Claims the job that has waited longest among those due (or whose worker's lock
    /// lapsed), for `worker` until `locked_until`.
    async fn claim_job(
        &self,
        worker: &str,
        now: Millis,
        locked_until: Millis,
    ) -> Result<Option<JobRow>>;
    /// Marks a job `worker` holds done; false if it does not hold it.
    async fn complete_job(&self, id: i64, worker: &str, now: Millis) -> Result<bool>;
    /// Returns a job `worker` holds to the queue until `retry_at`, or fails it for good when
    /// `retry_at` is `None`; false if it does not hold it.
    async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_at: Option<Millis>,
        now: Millis,
    ) -> Result<bool>;

    /// The operator's resource records, by address.
    async fn load_state(&self, operator: &str) -> Result<Vec<ResourceRow>>;
    /// Writes a record.
    async fn put_record(
        &self,
        operator: &str,
        address: &str,
        record: &Value,
        updated_at: Millis,
    ) -> Result<()>;

    /// Records an intent; returns its id.
    async fn begin_intent(&self, intent: NewIntentRow) -> Result<i64>;
    /// Records an open intent's outcome and changes its resource's record, atomically (one
    /// statement); false (and nothing changed) if it is not an open intent of the operator.
    async fn finish_intent(&self, finish: FinishIntentRow) -> Result<bool>;
    /// The operator's open intents, oldest first.
    async fn open_intents(&self, operator: &str) -> Result<Vec<IntentRow>>;

    /// Takes the lease for `holder` if it is free, lapsed (`expires_at < now`) or `holder`'s
    /// own; returns `Some(expires_at)` if taken, `None` if someone else holds it.
    async fn try_lease(
        &self,
        operator: &str,
        holder: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Option<Millis>>;
    /// Who holds the lease now, and until when.
    async fn lease_holder(&self, operator: &str) -> Result<Option<(String, Millis)>>;
    /// Gives up the lease if `holder` holds it.
    async fn release_lease(&self, operator: &str, holder: &str) -> Result<()>;

    /// Records `domain` as `operator`'s, replacing its earlier claim; false (and nothing
    /// written) when another operator holds `domain`, a name above it or a name under it.
    async fn claim_domain(&self, operator: &str, domain: &str, now: Millis) -> Result<bool>;
    /// Forgets `operator`'s domain claim.
    async fn release_domain(&self, operator: &str) -> Result<()>;

    /// Replaces `operator`'s latest identity sync.
    async fn record_identity_sync(
        &self,
        operator: &str,
        snapshot: &Value,
        report: &Value,
        at: Millis,
    ) -> Result<()>;
    /// `operator`'s latest identity sync.
    async fn identity_sync(&self, operator: &str) -> Result<Option<IdentitySyncRow>>;

    /// The address `resource` of `operator` holds in `pool`.
    async fn held_address(
        &self,
        pool: &str,
        operator: &str,
        resource: &str,
    ) -> Result<Option<String>>;
    /// Every address held in `pool`.
    async fn taken_addresses(&self, pool: &str) -> Result<Vec<String>>;
    /// Records `address` of `pool` as `resource`'s; false (and nothing written) when the
    /// address is taken or the resource already holds one in the pool.
    async fn claim_address(
        &self,
        pool: &str,
        address: &str,
        operator: &str,
        resource: &str,
        now: Millis,
    ) -> Result<bool>;
    /// Frees every address `resource` of `operator` holds; returns how many.
    async fn release_addresses(&self, operator: &str, resource: &str) -> Result<u64>;

    /// Closes every connection.
    async fn close(&self);
}
