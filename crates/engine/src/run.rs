//! Runs: apply a plan as a DAG walk, reconcile a crashed run's journal, refresh from the world.
//!
//! A run holds its operator's lease from start to end. Before each provider call it records an
//! intent; after it, the outcome and the record change in one transaction. A run that finds
//! open intents asks the providers what became of them before planning, so killing a run at
//! any point and starting again converges: nothing leaked, nothing made twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// How long one provider call may take before it counts as a transient failure whose
    /// outcome is unknown.
    pub call_timeout: Duration,
    /// Resources to replace even if they are as desired (`--replace`: rotating a secret or a
    /// key); their dependents see the new outputs and are updated as usual.
    pub replace: BTreeSet<ResourceAddress>,
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
            call_timeout: Duration::from_secs(30 * 60),
            replace: BTreeSet::new(),
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

/// Whether a run may go ahead with its plan.
pub enum Approval<'a> {
    /// Go ahead with whatever the plan is: `--auto-approve`, scripts, workers.
    Automatic,
    /// Show the plan to someone first, and go ahead only if they say yes (and the plan made
    /// under the lease is still the same).
    Ask(Box<dyn FnOnce(&Plan) -> bool + Send + 'a>),
}

/// Stops a lease's renewal when the run ends, however it ends (a cancelled or failed run
/// included): the lease then runs out instead of being renewed forever.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        Ok((
            plan::plan(
                desired,
                &state,
                &self.inner.providers,
                &self.inner.options.replace,
            )?,
            open,
        ))
    }

    /// Brings the operator's resources to `desired`: takes the lease, settles interrupted
    /// calls, plans and walks the plan. With [`Approval::Ask`], the plan is made and asked about
    /// before the lease is taken (a person deciding must not block other runs), then made again
    /// under the lease and carried out only if it is the same. `None` when it was declined.
    pub async fn apply(
        &self,
        desired: &DesiredGraph,
        sink: Arc<dyn EventSink>,
        approval: Approval<'_>,
    ) -> EngineResult<Option<Report>> {
        let approved = match approval {
            Approval::Automatic => None,
            Approval::Ask(ask) => {
                let (preview, _) = self.preview(desired).await?;
                if !preview.is_empty() && !ask(&preview) {
                    return Ok(None);
                }
                Some(preview.summary())
            }
        };
        let operator = &desired.operator;
        self.with_lease(operator, |lease| async move {
            let started = Instant::now();
            self.reconcile(operator, desired).await?;
            let state = self.inner.store.load_state(operator).await?;
            let plan = plan::plan(
                desired,
                &state,
                &self.inner.providers,
                &self.inner.options.replace,
            )?;
            if approved.is_some_and(|approved| approved != plan.summary()) {
                return Err(EngineError::PlanChanged);
            }
            sink.emit(&Event::Planned {
                plan: plan.summary(),
            });
            let mut report = self
                .execute(plan, desired.clone(), state, sink.clone(), lease)
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
    /// the platform, and reports it; the next apply repairs it. Resources with an interrupted
    /// change are left to the next apply, which settles them knowing the desired graph.
    pub async fn refresh(&self, operator: &OperatorId) -> EngineResult<DriftReport> {
        self.with_lease(operator, |_| async {
            let interrupted: BTreeSet<ResourceAddress> = self
                .inner
                .store
                .open_intents(operator)
                .await?
                .into_iter()
                .map(|(_, intent)| intent.address)
                .collect();
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
                if interrupted.contains(&address) {
                    let why = "a change to it was interrupted: the next apply settles it";
                    report.errors.insert(address, why.to_owned());
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
                match joined {
                    Ok((address, record, observed)) => {
                        report.checked += 1;
                        self.record_drift(operator, address, record, observed, &mut report)
                            .await?;
                    }
                    Err(error) => tracing::error!(%error, "a refresh read ended abnormally"),
                }
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
                let missing = ResourceRecord {
                    status: RecordStatus::Missing,
                    updated_at: self.inner.clock.now(),
                    ..record
                };
                store.put_record(operator, &address, &missing).await?;
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
    /// `work` is handed a flag that goes up if the lease is lost: a run must then start no new
    /// provider call, since another run may have taken over.
    async fn with_lease<T, F, Fut>(&self, operator: &OperatorId, work: F) -> EngineResult<T>
    where
        F: FnOnce(Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = EngineResult<T>>,
    {
        self.acquire(operator).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = Renewal(self.spawn_renewer(operator.clone(), lost.clone()));
        let result = work(lost).await;
        drop(renewal);
        let released = self
            .inner
            .store
            .release_lease(operator, &self.inner.options.holder)
            .await;
        if let Err(error) = released {
            // The lease runs out by itself; the run's own outcome is what matters.
            tracing::warn!(%operator, %error, "could not release the operator's lease");
        }
        result
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

    /// Renews the lease every third of its lifetime; raises `lost` when another run holds it,
    /// or when renewing has failed for longer than the lease lasts.
    fn spawn_renewer(
        &self,
        operator: OperatorId,
        lost: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let ttl = i64::try_from(inner.options.lease_ttl.as_millis()).unwrap_or(i64::MAX);
            let mut renewed_at = inner.clock.now();
            loop {
                inner.clock.sleep(inner.options.lease_ttl / 3).await;
                let now = inner.clock.now();
                match inner
                    .store
                    .acquire_lease(
                        &operator,
                        &inner.options.holder,
                        now,
                        inner.options.lease_ttl,
                    )
                    .await
                {
                    Ok(LeaseOutcome::Acquired { .. }) => renewed_at = now,
                    Ok(LeaseOutcome::Held { holder, .. }) => {
                        tracing::error!(%operator, %holder, "lost the operator's lease to another run: starting no new change");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(error) if now - renewed_at > ttl => {
                        tracing::error!(%operator, %error, "could not renew the operator's lease before it ran out: starting no new change");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%operator, %error, "could not renew the operator's lease; trying again")
                    }
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

    /// Settles every intent a dead run (or a call whose outcome is unknown) left open: asks the
    /// provider whether the resource exists, adopts what was made, forgets what was removed.
    async fn reconcile(&self, operator: &OperatorId, desired: &DesiredGraph) -> EngineResult<()> {
        let store = &self.inner.store;
        let open = store.open_intents(operator).await?;
        if open.is_empty() {
            return Ok(());
        }
        let mut state = store.load_state(operator).await?;
        for (id, intent) in open {
            let unsettled = |message: String| EngineError::Unsettled {
                address: intent.address.clone(),
                message,
            };
            let provider = self
                .provider(&intent.provider, &intent.address)
                .map_err(|e| unsettled(e.to_string()))?;
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
            let found =
                found.map_err(|e| unsettled(crate::value::scrub(&e.message, &intent.inputs)))?;
            let change = self.settle(&intent, record, desired, found.as_ref());
            tracing::info!(address = %intent.address, operation = ?intent.operation, found = found.is_some(), "settled an interrupted call");
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

    /// What an interrupted call left behind, as a record change. A create that happened is
    /// adopted as made; an update is never taken as done: what the provider observes is laid
    /// over the old record, so the plan makes the update again unless it visibly happened.
    fn settle(
        &self,
        intent: &Intent,
        record: Option<ResourceRecord>,
        desired: &DesiredGraph,
        found: Option<&Observed>,
    ) -> StateChange {
        let observed = match (intent.operation, found) {
            (Operation::Delete, None) => return StateChange::Remove,
            (Operation::Delete, Some(_)) | (Operation::Create | Operation::Update, None) => {
                return StateChange::Unchanged;
            }
            (Operation::Create | Operation::Update, Some(observed)) => observed,
        };
        let base = match (&record, intent.operation) {
            (Some(record), Operation::Update) => &record.inputs,
            _ => &intent.inputs,
        };
        let resource = desired.resources.get(&intent.address);
        let service = resource
            .and_then(|r| r.service)
            .or(record.as_ref().and_then(|r| r.service));
        StateChange::Upsert(ResourceRecord {
            provider: intent.provider.clone(),
            service,
            holds_data: resource.map_or(record.as_ref().is_some_and(|r| r.holds_data), |r| {
                r.holds_data
            }),
            retention: service
                .and_then(|s| desired.retention.get(&s).copied())
                .or(record.as_ref().and_then(|r| r.retention)),
            inputs: observed_inputs(base, &observed.inputs),
            outputs: wrap_outputs(&observed.outputs),
            depends_on: resource
                .map(|r| r.dependencies())
                .or(record.as_ref().map(|r| r.depends_on.clone()))
                .unwrap_or_default(),
            status: RecordStatus::Active,
            updated_at: self.inner.clock.now(),
        })
    }

    /// Walks the plan: every step once its prerequisites are done, independent steps at once
    /// (bounded per provider), a failure stopping only what depends on it.
    async fn execute(
        &self,
        plan: Plan,
        desired: DesiredGraph,
        state: RecordedState,
        sink: Arc<dyn EventSink>,
        lease_lost: Arc<AtomicBool>,
    ) -> Report {
        Walk::new(self.clone(), plan, desired, state, sink, lease_lost)
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
    /// Raised when the run lost its lease: no new provider call may start.
    lease_lost: Arc<AtomicBool>,
}

impl Walk {
    fn new(
        engine: Engine,
        plan: Plan,
        desired: DesiredGraph,
        state: RecordedState,
        sink: Arc<dyn EventSink>,
        lease_lost: Arc<AtomicBool>,
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
            lease_lost,
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
            tracing::info!(%error, "step failed");
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
        Some(record) if record.status == RecordStatus::Missing => Action::Create,
        Some(record) if planned == Action::Replace || record.provider != resource.provider => {
            Action::Replace
        }
        Some(record) => {
            let changes = provider.diff(address, &record.inputs, &inputs);
            let replaced: Vec<&str> = changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Replace)
                .map(|c| c.path.as_str())
                .collect();
            if !replaced.is_empty() {
                // A prerequisite's new outputs force a replacement the plan could not foresee:
                // the same refusal to lose kept data applies.
                let why = format!("`{}` cannot be changed in place", replaced.join("`, `"));
                if let Err(error) = plan::refuse_data_loss(&shared.desired, address, record, &why) {
                    return StepEnd::Failed(Action::Replace, error.to_string());
                }
                Action::Replace
            } else if changes.is_empty() && record.status == RecordStatus::Active {
                return rewrite_metadata(engine, shared, address, record).await;
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

/// Writes a record's service, retention and dependencies anew when they changed, with no
/// provider call: nothing in the world changes.
async fn rewrite_metadata(
    engine: &Engine,
    shared: &Shared,
    address: &ResourceAddress,
    record: &ResourceRecord,
) -> StepEnd {
    let resource = &shared.desired.resources[address];
    if !plan::metadata_changed(record, resource, &shared.desired) {
        return StepEnd::Done(Action::Unchanged);
    }
    let updated = ResourceRecord {
        service: resource.service,
        holds_data: resource.holds_data,
        retention: resource
            .service
            .and_then(|s| shared.desired.retention.get(&s).copied()),
        depends_on: resource.dependencies(),
        updated_at: engine.inner.clock.now(),
        ..record.clone()
    };
    match engine
        .inner
        .store
        .put_record(&shared.operator, address, &updated)
        .await
    {
        Ok(()) => StepEnd::Done(Action::Update),
        Err(error) => StepEnd::Failed(Action::Update, format!("the state store failed: {error}")),
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
/// One provider call, with its intent recorded first (and the permit of the provider's
/// concurrency bound taken first, so that waiting calls leave no open intent), bounded in time,
/// retried when transient. A permanent failure is recorded as the intent's outcome; a transient
/// one that outlasts the retries leaves the intent open, because the provider may have acted:
/// the next run asks it what became of the resource. Secrets are scrubbed from error messages.
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
    if shared.lease_lost.load(Ordering::SeqCst) {
        return Err(
            "not attempted: this run lost the operator's lease, so another run may be at work"
                .to_owned(),
        );
    }
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
    let (clock, timeout) = (inner.clock.as_ref(), inner.options.call_timeout);
    let (result, attempts) = with_retry(&inner.options.retry, clock, || {
        let call = make_call(ctx.clone());
        async move {
            tokio::select! {
                result = call => result,
                () = clock.sleep(timeout) => Err(ProviderError::transient(format!(
                    "provider `{}` did not answer within {} s",
                    provider.name(),
                    timeout.as_secs()
                ))),
            }
        }
    })
    .await;
    shared.calls.fetch_add(attempts as usize, Ordering::SeqCst);
    let error = match result {
        Ok(value) => return Ok((value, id)),
        Err(error) => error,
    };
    let attempts = if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    };
    let message = crate::value::scrub(&format!("{}{attempts}", error.message), inputs);
    if error.kind == crate::provider::ErrorKind::Transient {
        return Err(format!(
            "{message}; whether it took effect is unknown, so the next run checks before going on"
        ));
    }
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
