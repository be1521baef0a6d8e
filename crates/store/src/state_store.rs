//! The engine's [`StateStore`] on the database: resource records, the journal and leases.
//!
//! Records and intent inputs have their secrets sealed for their operator before they are
//! written, and opened when read; every query is filtered on the operator it is given.

use std::time::Duration;

use async_trait::async_trait;
use fediversity_engine::clock::Millis;
use fediversity_engine::state::{RecordedState, ResourceRecord};
use fediversity_engine::store::{
    Intent, IntentId, LeaseOutcome, Operation, Outcome, StateChange, StateStore, StoreError,
    StoreResult,
};
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use serde_json::Value;
use tracing::instrument;

use crate::backend::{FinishIntentRow, IntentRow, NewIntentRow, RecordChangeRow};
use crate::error::{Error, Result, corrupt};
use crate::store::{Store, millis};

/// How often to try for a lease that was released between trying and asking who holds it.
const LEASE_ATTEMPTS: u32 = 3;

#[async_trait]
impl StateStore for Store {
    #[instrument(skip(self), fields(operator = %operator))]
    async fn load_state(&self, operator: &OperatorId) -> StoreResult<RecordedState> {
        Ok(self.recorded_state(operator).await?)
    }

    #[instrument(skip_all, fields(operator = %intent.operator, address = %intent.address))]
    async fn begin_intent(&self, intent: &Intent) -> StoreResult<IntentId> {
        let operator = intent.operator.as_str();
        let row = NewIntentRow {
            operator: operator.to_owned(),
            address: intent.address.to_string(),
            provider: intent.provider.clone(),
            operation: operation_name(intent.operation)?,
            idempotency_key: intent.idempotency_key.clone(),
            inputs: self.seal(operator, "intent inputs", &intent.inputs)?,
            at: intent.at,
        };
        Ok(self.queries().begin_intent(row).await?)
    }

    #[instrument(skip(self, outcome, change), fields(operator = %operator))]
    async fn finish_intent(
        &self,
        operator: &OperatorId,
        id: IntentId,
        outcome: &Outcome,
        change: &StateChange,
    ) -> StoreResult<()> {
        let outcome = serde_json::to_value(outcome).map_err(|source| Error::Serialise {
            what: "an outcome",
            source,
        })?;
        let change = match change {
            StateChange::Upsert(record) => RecordChangeRow::Upsert {
                record: self.seal(operator.as_str(), "a resource record", record)?,
                updated_at: record.updated_at,
            },
            StateChange::Remove => RecordChangeRow::Remove,
            StateChange::Unchanged => RecordChangeRow::Unchanged,
        };
        let row = FinishIntentRow {
            operator: operator.to_string(),
            id,
            outcome,
            finished_at: self.now(),
            change,
        };
        let finished = self
            .in_own_task(|queries| async move { queries.finish_intent(row).await })
            .await?;
        if finished {
            Ok(())
        } else {
            Err(Error::IntentNotOpen {
                operator: operator.clone(),
                id,
            }
            .into())
        }
    }

    #[instrument(skip(self), fields(operator = %operator))]
    async fn open_intents(&self, operator: &OperatorId) -> StoreResult<Vec<(IntentId, Intent)>> {
        let rows = self.queries().open_intents(operator.as_str()).await?;
        Ok(rows
            .into_iter()
            .map(|row| Ok((row.id, self.intent_from_row(operator, row)?)))
            .collect::<Result<Vec<_>>>()?)
    }

    #[instrument(skip(self, record), fields(operator = %operator, address = %address))]
    async fn put_record(
        &self,
        operator: &OperatorId,
        address: &ResourceAddress,
        record: &ResourceRecord,
    ) -> StoreResult<()> {
        let sealed = self.seal(operator.as_str(), "a resource record", record)?;
        let address = address.to_string();
        Ok(self
            .queries()
            .put_record(operator.as_str(), &address, &sealed, record.updated_at)
            .await?)
    }

    #[instrument(skip(self), fields(operator = %operator))]
    async fn acquire_lease(
        &self,
        operator: &OperatorId,
        holder: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<LeaseOutcome> {
        let expires_at = now.saturating_add(millis(ttl));
        for _ in 0..LEASE_ATTEMPTS {
            let queries = self.queries();
            if let Some(expires_at) = queries
                .try_lease(operator.as_str(), holder, now, expires_at)
                .await?
            {
                return Ok(LeaseOutcome::Acquired { expires_at });
            }
            if let Some((holder, expires_at)) = queries.lease_holder(operator.as_str()).await? {
                return Ok(LeaseOutcome::Held { holder, expires_at });
            }
            // Released between the two queries: try again.
        }
        Err(StoreError(format!(
            "the lease of operator `{operator}` changed hands {LEASE_ATTEMPTS} times while \
             taking it: another run is starting and stopping; try again"
        )))
    }

    #[instrument(skip(self), fields(operator = %operator))]
    async fn release_lease(&self, operator: &OperatorId, holder: &str) -> StoreResult<()> {
        Ok(self
            .queries()
            .release_lease(operator.as_str(), holder)
            .await?)
    }
}

impl Store {
    async fn recorded_state(&self, operator: &OperatorId) -> Result<RecordedState> {
        let mut state = RecordedState::empty(operator.clone());
        for row in self.queries().load_state(operator.as_str()).await? {
            let address: ResourceAddress = row
                .address
                .parse()
                .map_err(|e: String| corrupt("resource address", e))?;
            let record = self.open(operator.as_str(), "resource record", row.record)?;
            state.resources.insert(address, record);
        }
        Ok(state)
    }

    fn intent_from_row(&self, operator: &OperatorId, row: IntentRow) -> Result<Intent> {
        Ok(Intent {
            operator: operator.clone(),
            address: row
                .address
                .parse()
                .map_err(|e: String| corrupt("intent address", e))?,
            provider: row.provider,
            operation: serde_json::from_value(Value::String(row.operation))
                .map_err(|e| corrupt("intent operation", e))?,
            idempotency_key: row.idempotency_key,
            inputs: self.open(operator.as_str(), "intent inputs", row.inputs)?,
            at: row.at,
        })
    }
}

/// The name an operation is stored under (its JSON name: `create`, `update`, `delete`).
fn operation_name(operation: Operation) -> Result<String> {
    match serde_json::to_value(operation) {
        Ok(Value::String(name)) => Ok(name),
        Ok(other) => Err(corrupt("operation", other)),
        Err(source) => Err(Error::Serialise {
            what: "an operation",
            source,
        }),
    }
}
