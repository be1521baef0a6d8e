//! A [`StateStore`] in memory: for the engine's tests and benchmarks, where a database would
//! measure the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;

use crate::clock::Millis;
use crate::state::{RecordedState, ResourceRecord};
use crate::store::{
    Intent, IntentId, LeaseOutcome, Outcome, StateChange, StateStore, StoreError, StoreResult,
};

#[derive(Default)]
struct Inner {
    states: HashMap<OperatorId, BTreeMap<ResourceAddress, ResourceRecord>>,
    intents: BTreeMap<IntentId, (Intent, Option<Outcome>)>,
    leases: HashMap<OperatorId, (String, Millis)>,
}

/// State, journal and leases in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> StoreResult<T> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError("the in-memory store was poisoned by a panic".to_owned()))?;
        Ok(f(&mut inner))
    }

    /// Every intent with its outcome, in order: for tests of the journal.
    pub fn journal(&self) -> StoreResult<Vec<(Intent, Option<Outcome>)>> {
        self.with(|inner| inner.intents.values().cloned().collect())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn load_state(&self, operator: &OperatorId) -> StoreResult<RecordedState> {
        self.with(|inner| RecordedState {
            operator: operator.clone(),
            resources: inner.states.get(operator).cloned().unwrap_or_default(),
        })
    }

    async fn begin_intent(&self, intent: &Intent) -> StoreResult<IntentId> {
        self.with(|inner| {
            let id = inner.intents.keys().next_back().map_or(1, |last| last + 1);
            inner.intents.insert(id, (intent.clone(), None));
            id
        })
    }

    async fn finish_intent(
        &self,
        operator: &OperatorId,
        id: IntentId,
        outcome: &Outcome,
        change: &StateChange,
    ) -> StoreResult<()> {
        self.with(|inner| {
            let Some((intent, slot)) = inner.intents.get_mut(&id) else {
                return Err(StoreError(format!("no intent {id}")));
            };
            // As strict as the SQL stores: one outcome per intent, and only its operator's.
            if slot.is_some() || &intent.operator != operator {
                return Err(StoreError(format!(
                    "intent {id} is not open for operator `{operator}`"
                )));
            }
            *slot = Some(outcome.clone());
            let address = intent.address.clone();
            let records = inner.states.entry(operator.clone()).or_default();
            match change {
                StateChange::Upsert(record) => {
                    records.insert(address, record.clone());
                }
                StateChange::Remove => {
                    records.remove(&address);
                }
                StateChange::Unchanged => {}
            }
            Ok(())
        })?
    }

    async fn open_intents(&self, operator: &OperatorId) -> StoreResult<Vec<(IntentId, Intent)>> {
        self.with(|inner| {
            inner
                .intents
                .iter()
                .filter(|(_, (intent, outcome))| outcome.is_none() && &intent.operator == operator)
                .map(|(id, (intent, _))| (*id, intent.clone()))
                .collect()
        })
    }

    async fn put_record(
        &self,
        operator: &OperatorId,
        address: &ResourceAddress,
        record: &ResourceRecord,
    ) -> StoreResult<()> {
        self.with(|inner| {
            inner
                .states
                .entry(operator.clone())
                .or_default()
                .insert(address.clone(), record.clone());
        })
    }

    async fn acquire_lease(
        &self,
        operator: &OperatorId,
        holder: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<LeaseOutcome> {
        let expires_at = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.with(|inner| match inner.leases.get(operator) {
            Some((other, until)) if other != holder && *until >= now => LeaseOutcome::Held {
                holder: other.clone(),
                expires_at: *until,
            },
            _ => {
                inner
                    .leases
                    .insert(operator.clone(), (holder.to_owned(), expires_at));
                LeaseOutcome::Acquired { expires_at }
            }
        })
    }

    async fn release_lease(&self, operator: &OperatorId, holder: &str) -> StoreResult<()> {
        self.with(|inner| {
            if inner.leases.get(operator).is_some_and(|(h, _)| h == holder) {
                inner.leases.remove(operator);
            }
        })
    }
}
