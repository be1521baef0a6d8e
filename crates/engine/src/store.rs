//! What the engine needs from persistent storage. The `store` crate implements it on SQLite
//! and PostgreSQL; [`crate::memory::MemoryStore`] implements it in memory for tests and
//! benchmarks. The engine persists nothing any other way.

use std::time::Duration;

use async_trait::async_trait;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;
use crate::state::{RecordedState, ResourceRecord};

/// A store failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The journal's id for one intent.
pub type IntentId = i64;

/// A provider call about to be made, recorded before it is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// Whose resource.
    pub operator: OperatorId,
    /// Which resource.
    pub address: ResourceAddress,
    /// The provider called.
    pub provider: String,
    /// What is asked of it.
    pub operation: Operation,
    /// Passed to the provider, so that a repeated call does not act twice.
    pub idempotency_key: String,
    /// The resolved inputs sent (secrets wrapped; the store seals them).
    pub inputs: Value,
    /// Recorded when.
    pub at: Millis,
}

/// A provider operation that changes the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Make the resource.
    Create,
    /// Change it in place.
    Update,
    /// Remove it (or keep its data).
    Delete,
}

/// How an intent ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The call succeeded.
    Succeeded,
    /// The call failed; the world is as it was, as far as the provider can tell.
    Failed {
        /// Why.
        error: String,
    },
    /// The run that made the call died before recording its end; a later run asked the
    /// provider what became of it.
    Reconciled {
        /// Whether the provider found the resource.
        found: bool,
    },
}

/// What recording an outcome does to the resource's record, in the same transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum StateChange {
    /// Write the record.
    Upsert(ResourceRecord),
    /// Remove the record.
    Remove,
    /// Leave the record as it is.
    Unchanged,
}

/// Who holds an operator's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds it now, until the time given.
    Acquired {
        /// When it expires unless renewed.
        expires_at: Millis,
    },
    /// Someone else holds it.
    Held {
        /// Who: a host name, process id and run id.
        holder: String,
        /// When it expires unless renewed.
        expires_at: Millis,
    },
}

/// Persistent state, journal and leases, as the engine uses them.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Everything recorded for `operator` (empty when nothing is).
    async fn load_state(&self, operator: &OperatorId) -> StoreResult<RecordedState>;

    /// Records an intent before the provider is called.
    async fn begin_intent(&self, intent: &Intent) -> StoreResult<IntentId>;

    /// Records how an intent ended and changes the resource's record, atomically: a crash
    /// either leaves the intent open (and the record untouched) or does both.
    async fn finish_intent(
        &self,
        operator: &OperatorId,
        id: IntentId,
        outcome: &Outcome,
        change: &StateChange,
    ) -> StoreResult<()>;

    /// The intents of `operator` that never got an outcome, oldest first.
    async fn open_intents(&self, operator: &OperatorId) -> StoreResult<Vec<(IntentId, Intent)>>;

    /// Writes a record outside any provider call (refresh).
    async fn put_record(
        &self,
        operator: &OperatorId,
        address: &ResourceAddress,
        record: &ResourceRecord,
    ) -> StoreResult<()>;

    /// Takes `operator`'s lease for `holder` if it is free, expired, or already `holder`'s.
    async fn acquire_lease(
        &self,
        operator: &OperatorId,
        holder: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<LeaseOutcome>;

    /// Gives the lease up, if `holder` holds it.
    async fn release_lease(&self, operator: &OperatorId, holder: &str) -> StoreResult<()>;
}
