//! Runs: apply a plan as a DAG walk, reconcile a crashed run's journal, refresh from the world.
//!
//! A run holds its operator's lease from start to end. Before each provider call it records an
//! intent; after it, the outcome and the record change in one transaction. A run that finds
//! open intents asks the providers what became of them before planning, so killing a run at
//! any point and starting again converges: nothing leaked, nothing made twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fediversity_model::Retention;
use fediversity_model::graph::{DesiredGraph, Reference, ResourceAddress};
use fediversity_model::names::OperatorId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::clock::Clock;
use crate::diff::FieldChange;
use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventSink, ProgressReporter};
use crate::plan::{self, Action, Plan, Providers, recorded_output};
use crate::provider::{
    CallContext, ChangeKind, Deletion, Observed, Outputs, Provider, ProviderError,
};
use crate::report::Report;
use crate::retry::{RetryPolicy, with_retry};
use crate::state::{RecordStatus, RecordedState, ResourceRecord};
use crate::store::{Intent, LeaseOutcome, Operation, Outcome, StateChange, StateStore};
use crate::value::{Resolved, as_secret, resolve, reveal, secret};

/// How runs behave.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Retrying transient provider failures.
    pub retry: RetryPolicy,
    /// How long a lease lasts unless renewed; a dead run's lease is free after this.
    pub lease_ttl: Duration,
    /// How long to wait for another run's lease before giving up.
    pub lease_wait: Duration,
    /// Who this run is, as other runs will see it: host, process and a random id.
    pub holder: String,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            lease_ttl: Duration::from_secs(60),
            lease_wait: Duration::ZERO,
            holder: format!(
                "pid {}, run {:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
        }
    }
}

/// Plans and applies resource graphs against providers, persisting through a store.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    providers: Providers,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    options: EngineOptions,
}

/// What refresh found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Whose resources.
    pub operator: String,
    /// How many recorded resources were read.
    pub checked: usize,
    /// Resources changed outside the platform, field by field (secrets masked).
    pub drifted: BTreeMap<ResourceAddress, Vec<FieldChange>>,
    /// Resources that no longer exist; the next apply makes them again.
    pub missing: BTreeSet<ResourceAddress>,
    /// Resources that could not be read, with why.
    pub errors: BTreeMap<ResourceAddress, String>,
}

impl Engine {
    /// An engine over `providers`, persisting in `store`, telling time by `clock`.
    pub fn new(
        providers: Providers,
        store: Arc<dyn StateStore>,
        clock: Arc<dyn Clock>,
        options: EngineOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                providers,
                store,
                clock,
                options,
            }),
        }
    }

    /// The plan for `desired` from the recorded state, without changing anything, and how many
    /// interrupted calls a run would reconcile first (the plan may change once they are).
    pub async fn preview(&self, desired: &DesiredGraph) -> EngineResult<(Plan, usize)> {
        let store = &self.inner.store;
        let open = store.open_intents(&desired.operator).await?.len();
        let state = store.load_state(&desired.operator).await?;
        Ok((plan::plan(desired, &state, &self.inner.providers)?, open))
    }

    /// Brings the operator's resources to `desired`: takes the lease, reconciles interrupted
    /// calls, plans, asks `approve` (not asked when nothing changes), and walks the plan.
    /// `None` when `approve` declined.
    pub async fn apply(
        &self,
        desired: &DesiredGraph,
        sink: Arc<dyn EventSink>,
        approve: impl FnOnce(&Plan) -> bool + Send,
    ) -> EngineResult<Option<Report>> {
        let operator = desired.operator.clone();
        self.with_lease(&operator, async {
            let started = Instant::now();
            self.reconcile(&operator, Some(desired)).await?;
            let state = self.inner.store.load_state(&operator).await?;
            let plan = plan::plan(desired, &state, &self.inner.providers)?;
            if !plan.is_empty() && !approve(&plan) {
                return Ok(None);
            }
            sink.emit(&Event::Planned {
                plan: plan.summary(),
            });
            let mut report = self
                .execute(plan, desired.clone(), state, sink.clone())
                .await;
            report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            sink.emit(&Event::Finished {
                report: report.clone(),
            });
            Ok(Some(report))
        })
        .await
    }

    /// Reads every recorded resource of `operator` from the world, records what changed outside
    /// the platform, and reports it; the next apply repairs it.
    pub async fn refresh(&self, operator: &OperatorId) -> EngineResult<DriftReport> {
        self.with_lease(operator, async {
            self.reconcile(operator, None).await?;
            let state = self.inner.store.load_state(operator).await?;
            let mut report = DriftReport {
                operator: operator.to_string(),
                ..DriftReport::default()
            };
            let mut reads = JoinSet::new();
            for (address, record) in state.resources {
                if record.status != RecordStatus::Active {
                    continue;
                }
                let engine = self.clone();
                let operator = operator.clone();
                reads.spawn(async move {
                    let observed = engine.read(&operator, &address, &record).await;
                    (address, record, observed)
                });
            }
            while let Some(joined) = reads.join_next().await {
                let Ok((address, record, observed)) = joined else {
                    continue;
                };
                report.checked += 1;
                self.record_drift(operator, address, record, observed, &mut report)
                    .await?;
            }
            Ok(report)
        })
        .await
    }

    async fn read(
        &self,
        operator: &OperatorId,
        address: &ResourceAddress,
        record: &ResourceRecord,
    ) -> Result<Option<Observed>, ProviderError> {
        let provider = self
            .provider(&record.provider, address)
            .map_err(|e| ProviderError::permanent(e.to_string()))?;
        let ctx = self.context(
            operator,
            address,
            "refresh".to_owned(),
            Arc::new(crate::events::Discard),
        );
        let recorded = outputs_of(&record.outputs);
        let inputs = reveal(&record.inputs);
        let (result, _) = with_retry(&self.inner.options.retry, self.inner.clock.as_ref(), || {
            provider.read(&ctx, &inputs, Some(&recorded))
        })
        .await;
        result
    }

    async fn record_drift(
        &self,
        operator: &OperatorId,
        address: ResourceAddress,
        record: ResourceRecord,
        observed: Result<Option<Observed>, ProviderError>,
        report: &mut DriftReport,
    ) -> EngineResult<()> {
        let store = &self.inner.store;
        match observed {
            Err(error) => {
                report.errors.insert(address, error.message);
            }
            Ok(None) => {
                store.remove_record(operator, &address).await?;
                report.missing.insert(address);
            }
            Ok(Some(observed)) => {
                let observed_inputs = observed_inputs(&record.inputs, &observed.inputs);
                let changes: Vec<FieldChange> =
                    crate::diff::changes(&record.inputs, &observed_inputs)
                        .iter()
                        .map(FieldChange::masked)
                        .collect();
                let outputs = wrap_outputs(&observed.outputs);
                if !changes.is_empty() || outputs != record.outputs {
                    let updated = ResourceRecord {
                        inputs: observed_inputs,
                        outputs,
                        updated_at: self.inner.clock.now(),
                        ..record
                    };
                    store.put_record(operator, &address, &updated).await?;
                }
                if !changes.is_empty() {
                    report.drifted.insert(address, changes);
                }
            }
        }
        Ok(())
    }

    /// Runs `work` holding `operator`'s lease, renewing it meanwhile, and releases it after.
    async fn with_lease<T>(
        &self,
        operator: &OperatorId,
        work: impl Future<Output = EngineResult<T>>,
    ) -> EngineResult<T> {
        self.acquire(operator).await?;
        let renewer = self.spawn_renewer(operator.clone());
        let result = work.await;
        renewer.abort();
        let released = self
            .inner
            .store
            .release_lease(operator, &self.inner.options.holder)
            .await;
        let value = result?;
        released?;
        Ok(value)
    }

    async fn acquire(&self, operator: &OperatorId) -> EngineResult<()> {
        let Inner {
            store,
            clock,
            options,
            ..
        } = self.inner.as_ref();
        let deadline =
            clock.now() + i64::try_from(options.lease_wait.as_millis()).unwrap_or(i64::MAX);
        loop {
            match store
                .acquire_lease(operator, &options.holder, clock.now(), options.lease_ttl)
                .await?
            {
                LeaseOutcome::Acquired { .. } => return Ok(()),
                LeaseOutcome::Held { holder, expires_at } if clock.now() >= deadline => {
                    return Err(EngineError::Locked {
                        operator: operator.to_string(),
                        holder,
                        expires_in_ms: u64::try_from(expires_at - clock.now()).unwrap_or(0),
                    });
                }
                LeaseOutcome::Held { .. } => {
                    clock
                        .sleep((options.lease_ttl / 4).min(Duration::from_millis(500)))
                        .await;
                }
            }
        }
    }

    /// Renews the lease every third of its lifetime until aborted.
    fn spawn_renewer(&self, operator: OperatorId) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                inner.clock.sleep(inner.options.lease_ttl / 3).await;
                let renewed = inner
                    .store
                    .acquire_lease(
                        &operator,
                        &inner.options.holder,
                        inner.clock.now(),
                        inner.options.lease_ttl,
                    )
                    .await;
                if !matches!(renewed, Ok(LeaseOutcome::Acquired { .. })) {
                    tracing::error!(%operator, "lost the operator's lease: another run may take over");
                }
            }
        })
    }

    fn provider(&self, name: &str, address: &ResourceAddress) -> EngineResult<Arc<dyn Provider>> {
        self.inner
            .providers
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownProvider {
                provider: name.to_owned(),
                address: address.clone(),
            })
    }

    fn context(
        &self,
        operator: &OperatorId,
        address: &ResourceAddress,
        idempotency_key: String,
        sink: Arc<dyn EventSink>,
    ) -> CallContext {
        CallContext {
            operator: operator.clone(),
            address: address.clone(),
            idempotency_key,
            progress: ProgressReporter::new(sink, address.clone()),
        }
    }

    /// Settles every intent a dead run left open: asks the provider whether the resource
    /// exists, adopts what was made, forgets what was removed.
    async fn reconcile(
        &self,
        operator: &OperatorId,
        desired: Option<&DesiredGraph>,
    ) -> EngineResult<()> {
        let store = &self.inner.store;
        let open = store.open_intents(operator).await?;
        if open.is_empty() {
            return Ok(());
        }
        let mut state = store.load_state(operator).await?;
        for (id, intent) in open {
            let provider = self.provider(&intent.provider, &intent.address)?;
            let record = state.resources.get(&intent.address).cloned();
            let ctx = self.context(
                operator,
                &intent.address,
                intent.idempotency_key.clone(),
                Arc::new(crate::events::Discard),
            );
            let recorded = record.as_ref().map(|r| outputs_of(&r.outputs));
            let inputs = reveal(&intent.inputs);
            let (found, _) =
                with_retry(&self.inner.options.retry, self.inner.clock.as_ref(), || {
                    provider.read(&ctx, &inputs, recorded.as_ref())
                })
                .await;
            let found = found.map_err(|e| {
                EngineError::Graph(format!(
                    "cannot settle an interrupted {:?} of {}: {}",
                    intent.operation, intent.address, e.message
                ))
            })?;
            let change = self.settle(&intent, record, desired, found.as_ref());
            tracing::info!(address = %intent.address, operation = ?intent.operation, found = found.is_some(), "reconciled an interrupted call");
            let outcome = Outcome::Reconciled {
                found: found.is_some(),
            };
            store.finish_intent(operator, id, &outcome, &change).await?;
            match change {
                StateChange::Upsert(record) => {
                    state.resources.insert(intent.address.clone(), record);
                }
                StateChange::Remove => {
                    state.resources.remove(&intent.address);
                }
                StateChange::Unchanged => {}
            }
        }
        Ok(())
    }

    /// What an interrupted call left behind, as a record change.
    fn settle(
        &self,
        intent: &Intent,
        record: Option<ResourceRecord>,
        desired: Option<&DesiredGraph>,
        found: Option<&Observed>,
    ) -> StateChange {
        match (intent.operation, found) {
            (Operation::Delete, None) => StateChange::Remove,
            (Operation::Delete, Some(_)) | (Operation::Create | Operation::Update, None) => {
                StateChange::Unchanged
            }
            (Operation::Create | Operation::Update, Some(observed)) => {
                let resource = desired.and_then(|d| d.resources.get(&intent.address));
                let retention = resource
                    .and_then(|r| r.service)
                    .and_then(|s| desired.and_then(|d| d.retention.get(&s)).copied());
                StateChange::Upsert(ResourceRecord {
                    provider: intent.provider.clone(),
                    service: resource
                        .and_then(|r| r.service)
                        .or(record.as_ref().and_then(|r| r.service)),
                    holds_data: resource
                        .map_or(record.as_ref().is_some_and(|r| r.holds_data), |r| {
                            r.holds_data
                        }),
                    retention: retention.or(record.as_ref().and_then(|r| r.retention)),
                    inputs: observed_inputs(&intent.inputs, &observed.inputs),
                    outputs: wrap_outputs(&observed.outputs),
                    depends_on: resource.map(|r| r.dependencies()).unwrap_or_default(),
                    status: RecordStatus::Active,
                    updated_at: self.inner.clock.now(),
                })
            }
        }
    }

    /// Walks the plan: every step once its prerequisites are done, independent steps at once
    /// (bounded per provider), a failure stopping only what depends on it.
    async fn execute(
        &self,
        plan: Plan,
        desired: DesiredGraph,
        state: RecordedState,
        sink: Arc<dyn EventSink>,
    ) -> Report {
        Walk::new(self.clone(), plan, desired, state, sink)
            .run()
            .await
    }
}

/// The recorded inputs with the fields the provider observed put over them. Wherever the
/// record holds a secret, the observed value is wrapped as one too: a provider sees secrets
/// revealed and reports them plain, and they must not leave the engine unwrapped (into a drift
/// report, or unsealed into the store).
fn observed_inputs(recorded: &Value, observed: &Value) -> Value {
    if let Some(inner) = as_secret(recorded) {
        return match as_secret(observed) {
            Some(_) => observed.clone(),
            None if observed == inner => recorded.clone(),
            None => secret(observed.clone()),
        };
    }
    match (recorded, observed) {
        (Value::Object(recorded), Value::Object(observed)) => {
            let mut merged = recorded.clone();
            for (key, value) in observed {
                let wrapped = match recorded.get(key) {
                    Some(before) => observed_inputs(before, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), wrapped);
            }
            Value::Object(merged)
        }
        _ => observed.clone(),
    }
}

/// Outputs as recorded: an object, with sensitive values wrapped as secrets.
pub fn wrap_outputs(outputs: &Outputs) -> Value {
    Value::Object(
        outputs
            .values
            .iter()
            .map(|(name, value)| {
                let value = if outputs.sensitive.contains(name) {
                    secret(value.clone())
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect::<Map<_, _>>(),
    )
}

/// Recorded outputs as a provider receives them: values revealed, sensitive names listed.
pub fn outputs_of(recorded: &Value) -> Outputs {
    let mut outputs = Outputs::default();
    for (name, value) in recorded.as_object().into_iter().flatten() {
        if let Some(inner) = as_secret(value) {
            outputs.sensitive.insert(name.clone());
            outputs.values.insert(name.clone(), inner.clone());
        } else {
            outputs.values.insert(name.clone(), value.clone());
        }
    }
    outputs
}

/// How one step ended.
enum StepEnd {
    /// It changed something (or, for `Unchanged`, it did not need to).
    Done(Action),
    /// Its data was kept.
    Kept(String),
    /// It failed.
    Failed(Action, String),
}

/// One walk over a plan.
struct Walk {
    engine: Engine,
    shared: Arc<Shared>,
    /// Prerequisites not yet done, per step.
    waiting: HashMap<ResourceAddress, usize>,
    /// Steps waiting on each step.
    dependents: HashMap<ResourceAddress, Vec<ResourceAddress>>,
    report: Report,
}

/// What the tasks of a walk share.
struct Shared {
    operator: OperatorId,
    desired: DesiredGraph,
    steps: BTreeMap<ResourceAddress, plan::Step>,
    /// Records as they are now: the plan's state, updated as steps finish.
    records: Mutex<BTreeMap<ResourceAddress, ResourceRecord>>,
    /// Steps whose outputs changed during this walk: their unchanged dependents re-check.
    changed: Mutex<BTreeSet<ResourceAddress>>,
    semaphores: BTreeMap<String, Arc<Semaphore>>,
    sink: Arc<dyn EventSink>,
    calls: AtomicUsize,
}

impl Walk {
    fn new(
        engine: Engine,
        plan: Plan,
        desired: DesiredGraph,
        state: RecordedState,
        sink: Arc<dyn EventSink>,
    ) -> Self {
        let mut waiting = HashMap::new();
        let mut dependents: HashMap<ResourceAddress, Vec<ResourceAddress>> = HashMap::new();
        for (address, step) in &plan.steps {
            let prerequisites: Vec<&ResourceAddress> = step
                .after
                .iter()
                .filter(|a| plan.steps.contains_key(*a))
                .collect();
            waiting.insert(address.clone(), prerequisites.len());
            for prerequisite in prerequisites {
                dependents
                    .entry(prerequisite.clone())
                    .or_default()
                    .push(address.clone());
            }
        }
        let semaphores = engine
            .inner
            .providers
            .iter()
            .map(|(name, provider)| {
                (
                    name.clone(),
                    Arc::new(Semaphore::new(provider.concurrency().max(1))),
                )
            })
            .collect();
        let shared = Shared {
            operator: plan.operator.clone(),
            records: Mutex::new(state.resources),
            desired,
            steps: plan.steps,
            changed: Mutex::new(BTreeSet::new()),
            semaphores,
            sink,
            calls: AtomicUsize::new(0),
        };
        let report = Report {
            operator: shared.operator.to_string(),
            ..Report::default()
        };
        Self {
            engine,
            shared: Arc::new(shared),
            waiting,
            dependents,
            report,
        }
    }

    async fn run(mut self) -> Report {
        let mut ready: Vec<ResourceAddress> = self
            .waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(a, _)| a.clone())
            .collect();
        ready.sort();
        let mut tasks = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, ResourceAddress> = HashMap::new();
        loop {
            while let Some(address) = ready.pop() {
                if self.needs_nothing(&address) {
                    self.finish(&address, StepEnd::Done(Action::Unchanged), &mut ready);
                    continue;
                }
                let (engine, shared, step_address) =
                    (self.engine.clone(), self.shared.clone(), address.clone());
                let span = tracing::info_span!("resource", address = %address);
                let handle = tasks.spawn(
                    async move { run_step(&engine, &shared, &step_address).await }.instrument(span),
                );
                running.insert(handle.id(), address);
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (address, end) = match joined {
                Ok((id, end)) => (running.remove(&id), end),
                Err(error) => {
                    let address = running.remove(&error.id());
                    let action = address
                        .as_ref()
                        .and_then(|a| self.shared.steps.get(a))
                        .map_or(Action::Update, |s| s.action);
                    (
                        address,
                        StepEnd::Failed(
                            action,
                            format!("internal error: the step's task ended abnormally: {error}"),
                        ),
                    )
                }
            };
            if let Some(address) = address {
                self.finish(&address, end, &mut ready);
            }
        }
        for (address, _) in self.waiting.iter().filter(|(_, n)| **n > 0) {
            self.report.skipped.insert(
                address.clone(),
                "not attempted: its prerequisites never finished".to_owned(),
            );
        }
        self.report.provider_calls = self.shared.calls.load(Ordering::SeqCst);
        self.report
    }

    /// An unchanged step none of whose prerequisites changed needs no work at all.
    fn needs_nothing(&self, address: &ResourceAddress) -> bool {
        let Some(step) = self.shared.steps.get(address) else {
            return true;
        };
        step.action == Action::Unchanged
            && self
                .shared
                .changed
                .lock()
                .map(|changed| step.after.iter().all(|a| !changed.contains(a)))
                .unwrap_or(false)
    }

    fn finish(
        &mut self,
        address: &ResourceAddress,
        end: StepEnd,
        ready: &mut Vec<ResourceAddress>,
    ) {
        self.waiting.remove(address);
        match end {
            StepEnd::Done(Action::Unchanged) => self.report.unchanged += 1,
            StepEnd::Done(action) => {
                self.report.done.insert(address.clone(), action);
            }
            StepEnd::Kept(note) => {
                self.report.kept.insert(address.clone(), note);
            }
            StepEnd::Failed(_, error) => {
                self.report.failed.insert(address.clone(), error);
                self.skip_dependents(address);
                return;
            }
        }
        for dependent in self.dependents.get(address).cloned().unwrap_or_default() {
            if let Some(n) = self.waiting.get_mut(&dependent) {
                *n -= 1;
                if *n == 0 {
                    ready.push(dependent);
                }
            }
        }
    }

    /// Marks everything that (transitively) waits on a failed step as not attempted.
    fn skip_dependents(&mut self, failed: &ResourceAddress) {
        let mut stack = self.dependents.get(failed).cloned().unwrap_or_default();
        while let Some(dependent) = stack.pop() {
            if self.waiting.remove(&dependent).is_none() {
                continue;
            }
            let error = format!("not attempted: {failed} failed");
            let action = self
                .shared
                .steps
                .get(&dependent)
                .map_or(Action::Update, |s| s.action);
            self.shared.sink.emit(&Event::Failed {
                address: dependent.clone(),
                action,
                error: error.clone(),
            });
            self.report.skipped.insert(dependent.clone(), error);
            stack.extend(self.dependents.get(&dependent).cloned().unwrap_or_default());
        }
    }
}

/// Carries out one step, emitting its events.
async fn run_step(engine: &Engine, shared: &Shared, address: &ResourceAddress) -> StepEnd {
    let Some(step) = shared.steps.get(address) else {
        return StepEnd::Done(Action::Unchanged);
    };
    let end = match step.action {
        Action::Delete => remove(engine, shared, address, Retention::Delete).await,
        Action::Keep => remove(engine, shared, address, Retention::Keep).await,
        Action::Create | Action::Update | Action::Replace | Action::Unchanged => {
            converge(engine, shared, address, step.action).await
        }
    };
    match &end {
        StepEnd::Failed(action, error) => {
            tracing::warn!(%error, "step failed");
            shared.sink.emit(&Event::Failed {
                address: address.clone(),
                action: *action,
                error: error.clone(),
            });
        }
        StepEnd::Done(Action::Unchanged) => {}
        StepEnd::Done(action) => {
            let outputs = shared
                .record(address)
                .map(|r| crate::value::mask(&r.outputs))
                .unwrap_or(Value::Null);
            shared.sink.emit(&Event::Succeeded {
                address: address.clone(),
                action: *action,
                outputs,
            });
        }
        StepEnd::Kept(_) => shared.sink.emit(&Event::Succeeded {
            address: address.clone(),
            action: Action::Keep,
            outputs: Value::Null,
        }),
    }
    end
}

impl Shared {
    fn record(&self, address: &ResourceAddress) -> Option<ResourceRecord> {
        self.records
            .lock()
            .ok()
            .and_then(|r| r.get(address).cloned())
    }

    fn set_record(&self, address: &ResourceAddress, record: Option<ResourceRecord>) {
        if let Ok(mut records) = self.records.lock() {
            let previous = match record {
                Some(record) => records
                    .insert(address.clone(), record.clone())
                    .map(|p| p.outputs != record.outputs),
                None => records.remove(address).map(|_| true),
            };
            if previous.unwrap_or(true)
                && let Ok(mut changed) = self.changed.lock()
            {
                changed.insert(address.clone());
            }
        }
    }

    /// The resolved inputs of a desired resource, with every prerequisite done.
    fn resolved_inputs(&self, address: &ResourceAddress) -> Result<Value, String> {
        let resource = &self.desired.resources[address];
        let records = self
            .records
            .lock()
            .map_err(|_| "internal error: poisoned state".to_owned())?;
        let lookup =
            |reference: &Reference| recorded_output(records.get(&reference.address), reference);
        match resolve(&resource.inputs, &lookup)? {
            Resolved::Complete(value) => Ok(value),
            Resolved::Partial(_) => Err(
                "internal error: an input is still unknown after its prerequisites were done"
                    .to_owned(),
            ),
        }
    }
}

/// Create, update or replace a desired resource, deciding from its inputs as resolved now:
/// a prerequisite's outputs may have changed since the plan was made.
async fn converge(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    planned: Action,
) -> StepEnd {
    let resource = &shared.desired.resources[address];
    let provider = match engine.provider(&resource.provider, address) {
        Ok(provider) => provider,
        Err(error) => return StepEnd::Failed(planned, error.to_string()),
    };
    let inputs = match shared.resolved_inputs(address) {
        Ok(inputs) => inputs,
        Err(error) => return StepEnd::Failed(planned, error),
    };
    let record = shared.record(address);
    let action = match &record {
        None => Action::Create,
        Some(record) if planned == Action::Replace || record.provider != resource.provider => {
            Action::Replace
        }
        Some(record) => {
            let changes = provider.diff(address, &record.inputs, &inputs);
            if changes.iter().any(|c| c.kind == ChangeKind::Replace) {
                Action::Replace
            } else if changes.is_empty() && record.status == RecordStatus::Active {
                return StepEnd::Done(Action::Unchanged);
            } else {
                Action::Update
            }
        }
    };
    shared.sink.emit(&Event::Started {
        address: address.clone(),
        action,
    });
    let result = match (action, record) {
        (Action::Update, Some(record)) => {
            update(engine, shared, address, provider.as_ref(), inputs, record).await
        }
        (Action::Replace, Some(record)) => {
            let old = engine
                .provider(&record.provider, address)
                .map_err(|e| e.to_string());
            match old {
                Ok(old) => match delete_call(
                    engine,
                    shared,
                    address,
                    old.as_ref(),
                    &record,
                    Retention::Delete,
                )
                .await
                {
                    Ok(_) => create(engine, shared, address, provider.as_ref(), inputs).await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            }
        }
        _ => create(engine, shared, address, provider.as_ref(), inputs).await,
    };
    match result {
        Ok(()) => StepEnd::Done(action),
        Err(error) => StepEnd::Failed(action, error),
    }
}

async fn create(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    provider: &dyn Provider,
    inputs: Value,
) -> Result<(), String> {
    let revealed = &reveal(&inputs);
    let outputs = call(
        engine,
        shared,
        address,
        provider,
        Operation::Create,
        &inputs,
        |ctx| async move { provider.create(&ctx, revealed).await },
    )
    .await?;
    finish_converge(
        engine, shared, address, provider, inputs, outputs.0, outputs.1,
    )
    .await
}

async fn update(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    provider: &dyn Provider,
    inputs: Value,
    record: ResourceRecord,
) -> Result<(), String> {
    let (revealed, recorded) = (&reveal(&inputs), &outputs_of(&record.outputs));
    let outputs = call(
        engine,
        shared,
        address,
        provider,
        Operation::Update,
        &inputs,
        |ctx| async move { provider.update(&ctx, revealed, recorded).await },
    )
    .await?;
    finish_converge(
        engine, shared, address, provider, inputs, outputs.0, outputs.1,
    )
    .await
}

/// Records the outcome and the new record of a create or update, in one transaction.
async fn finish_converge(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    provider: &dyn Provider,
    inputs: Value,
    outputs: Outputs,
    intent: crate::store::IntentId,
) -> Result<(), String> {
    let resource = &shared.desired.resources[address];
    let record = ResourceRecord {
        provider: provider.name().to_owned(),
        service: resource.service,
        holds_data: resource.holds_data,
        retention: resource
            .service
            .and_then(|s| shared.desired.retention.get(&s).copied()),
        inputs,
        outputs: wrap_outputs(&outputs),
        depends_on: resource.dependencies(),
        status: RecordStatus::Active,
        updated_at: engine.inner.clock.now(),
    };
    engine
        .inner
        .store
        .finish_intent(
            &shared.operator,
            intent,
            &Outcome::Succeeded,
            &StateChange::Upsert(record.clone()),
        )
        .await
        .map_err(|e| format!("the state store failed after the change was made: {e}"))?;
    shared.set_record(address, Some(record));
    Ok(())
}

/// Removes a recorded resource, or keeps its data.
async fn remove(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    retention: Retention,
) -> StepEnd {
    let action = if retention == Retention::Keep {
        Action::Keep
    } else {
        Action::Delete
    };
    let Some(record) = shared.record(address) else {
        return StepEnd::Done(action);
    };
    let provider = match engine.provider(&record.provider, address) {
        Ok(provider) => provider,
        Err(error) => return StepEnd::Failed(action, error.to_string()),
    };
    shared.sink.emit(&Event::Started {
        address: address.clone(),
        action,
    });
    match delete_call(
        engine,
        shared,
        address,
        provider.as_ref(),
        &record,
        retention,
    )
    .await
    {
        Ok(Deletion::Removed) => StepEnd::Done(Action::Delete),
        Ok(Deletion::Kept { note }) => StepEnd::Kept(note),
        Err(error) => StepEnd::Failed(action, error),
    }
}

/// The delete call with its journal entries; the record is removed, or marked retained.
async fn delete_call(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    provider: &dyn Provider,
    record: &ResourceRecord,
    retention: Retention,
) -> Result<Deletion, String> {
    let (revealed, recorded) = (&reveal(&record.inputs), &outputs_of(&record.outputs));
    let (deletion, intent) = call(
        engine,
        shared,
        address,
        provider,
        Operation::Delete,
        &record.inputs,
        |ctx| async move { provider.delete(&ctx, revealed, recorded, retention).await },
    )
    .await?;
    let (change, kept) = match &deletion {
        Deletion::Removed => (StateChange::Remove, None),
        Deletion::Kept { note } => {
            let kept = ResourceRecord {
                status: RecordStatus::Retained { note: note.clone() },
                updated_at: engine.inner.clock.now(),
                ..record.clone()
            };
            (StateChange::Upsert(kept.clone()), Some(kept))
        }
    };
    engine
        .inner
        .store
        .finish_intent(&shared.operator, intent, &Outcome::Succeeded, &change)
        .await
        .map_err(|e| format!("the state store failed after the change was made: {e}"))?;
    shared.set_record(address, kept);
    Ok(deletion)
}

/// One provider call with its intent recorded first, retried when transient, bounded by the
/// provider's concurrency. A failure is recorded as the intent's outcome.
async fn call<T, F, Fut>(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    provider: &dyn Provider,
    operation: Operation,
    inputs: &Value,
    mut make_call: F,
) -> Result<(T, crate::store::IntentId), String>
where
    F: FnMut(CallContext) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let inner = &engine.inner;
    let idempotency_key = format!("{}-{:016x}", shared.operator, rand::random::<u64>());
    let intent = Intent {
        operator: shared.operator.clone(),
        address: address.clone(),
        provider: provider.name().to_owned(),
        operation,
        idempotency_key: idempotency_key.clone(),
        inputs: inputs.clone(),
        at: inner.clock.now(),
    };
    let id = inner
        .store
        .begin_intent(&intent)
        .await
        .map_err(|e| format!("the state store failed before the change: {e}"))?;
    let ctx = engine.context(
        &shared.operator,
        address,
        idempotency_key,
        shared.sink.clone(),
    );
    let semaphore = shared.semaphores.get(provider.name()).cloned();
    let _permit = match semaphore {
        Some(semaphore) => Some(
            semaphore
                .acquire_owned()
                .await
                .map_err(|_| "internal error: closed semaphore".to_owned())?,
        ),
        None => None,
    };
    let (result, attempts) = with_retry(&inner.options.retry, inner.clock.as_ref(), || {
        make_call(ctx.clone())
    })
    .await;
    shared.calls.fetch_add(attempts as usize, Ordering::SeqCst);
    match result {
        Ok(value) => Ok((value, id)),
        Err(error) => {
            let message = if attempts > 1 {
                format!("{} (after {attempts} attempts)", error.message)
            } else {
                error.message
            };
            let outcome = Outcome::Failed {
                error: message.clone(),
            };
            inner
                .store
                .finish_intent(&shared.operator, id, &outcome, &StateChange::Unchanged)
                .await
                .map_err(|e| format!("{message}; and the state store failed to record it: {e}"))?;
            Err(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn observed_secrets_stay_wrapped() {
        let recorded =
            json!({"cores": 2, "secrets": {"a": secret("old"), "b": secret("same")}, "name": "x"});
        let observed = json!({"cores": 4, "secrets": {"a": "changed by hand", "b": "same"}});
        let merged = observed_inputs(&recorded, &observed);
        assert_eq!(
            merged,
            json!({"cores": 4, "secrets": {"a": secret("changed by hand"), "b": secret("same")}, "name": "x"})
        );
        let shown = crate::diff::changes(&recorded, &merged)
            .iter()
            .map(|c| serde_json::to_string(&c.masked()).unwrap_or_default())
            .collect::<String>();
        assert!(
            !shown.contains("changed by hand") && !shown.contains("old"),
            "{shown}"
        );
    }

    #[test]
    fn outputs_debug_masks_sensitive_values() {
        let outputs = Outputs {
            values: [
                ("id".to_owned(), json!("b-1")),
                ("secret_access_key".to_owned(), json!("s3cr3t")),
            ]
            .into(),
            sensitive: ["secret_access_key".to_owned()].into(),
        };
        let shown = format!("{outputs:?}");
        assert!(
            shown.contains("b-1") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
