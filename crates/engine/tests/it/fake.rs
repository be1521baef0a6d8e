//! A provider whose world is a map in memory, and helpers to build graphs and engines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fediversity_engine::clock::{Clock, ManualClock, SystemClock};
use fediversity_engine::events::{Event, EventSink};
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::provider::{
    CallContext, Deletion, Observed, Outputs, Provider, ProviderError, ProviderResult,
};
use fediversity_engine::retry::RetryPolicy;
use fediversity_engine::{Engine, EngineOptions, Providers};
use fediversity_model::graph::{DesiredGraph, GRAPH_VERSION, Resource, ResourceAddress};
use fediversity_model::names::OperatorId;
use fediversity_model::{Retention, ServiceKind};
use serde_json::{Value, json};

/// How the fake fails for one resource.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Every call fails for good.
    Permanent,
    /// The next `n` calls fail transiently.
    Transient(usize),
}

/// One object in the fake world.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub inputs: Value,
    pub kept: bool,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub world: Mutex<BTreeMap<String, Object>>,
    pub log: Mutex<Vec<String>>,
    pub calls: AtomicUsize,
    pub failures: Mutex<BTreeMap<String, Failure>>,
    pub delay: Duration,
    pub concurrency: usize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

/// The secret every object's `token` output carries: tests look for it where it must not be.
pub const TOKEN: &str = "tok-s3cr3t-never-shown";

fn key(ctx: &CallContext) -> String {
    format!("{}/{}", ctx.operator, ctx.address)
}

impl Fake {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            concurrency: 8,
            ..Self::default()
        })
    }

    pub fn slow(delay: Duration, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            delay,
            concurrency,
            ..Self::default()
        })
    }

    pub fn fail(&self, address: &str, failure: Failure) {
        self.failures
            .lock()
            .unwrap()
            .insert(format!("uni/{address}"), failure);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn objects(&self) -> BTreeMap<String, Object> {
        self.world.lock().unwrap().clone()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn outputs(ctx: &CallContext, inputs: &Value) -> Outputs {
        Outputs {
            values: BTreeMap::from([
                ("id".to_owned(), json!(key(ctx))),
                (
                    "echo".to_owned(),
                    inputs.get("value").cloned().unwrap_or(Value::Null),
                ),
                ("token".to_owned(), json!(TOKEN)),
            ]),
            sensitive: BTreeSet::from(["token".to_owned()]),
        }
    }

    async fn enter(&self, ctx: &CallContext, operation: &str) -> ProviderResult<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push(format!("{operation} {}", ctx.address));
        let mut failures = self.failures.lock().unwrap();
        match failures.get_mut(&key(ctx)) {
            Some(Failure::Permanent) => Err(ProviderError::permanent(format!(
                "{} refused by the fake",
                ctx.address
            ))),
            Some(Failure::Transient(n)) if *n > 0 => {
                *n -= 1;
                Err(ProviderError::transient("the fake is briefly unavailable"))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Provider for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn replace_on(&self, _address: &ResourceAddress) -> &[&str] {
        &["name"]
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        self.enter(ctx, "create").await?;
        self.world.lock().unwrap().insert(
            key(ctx),
            Object {
                inputs: inputs.clone(),
                kept: false,
            },
        );
        Ok(Self::outputs(ctx, inputs))
    }

    async fn read(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let world = self.world.lock().unwrap();
        Ok(world
            .get(&key(ctx))
            .filter(|o| !o.kept)
            .map(|object| Observed {
                inputs: object.inputs.clone(),
                outputs: Self::outputs(ctx, &object.inputs),
            }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.enter(ctx, "update").await?;
        self.world.lock().unwrap().insert(
            key(ctx),
            Object {
                inputs: inputs.clone(),
                kept: false,
            },
        );
        Ok(Self::outputs(ctx, inputs))
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        self.enter(ctx, "delete").await?;
        let mut world = self.world.lock().unwrap();
        if retention == Retention::Keep {
            if let Some(object) = world.get_mut(&key(ctx)) {
                object.kept = true;
            }
            return Ok(Deletion::Kept {
                note: format!("kept as {}", key(ctx)),
            });
        }
        world.remove(&key(ctx));
        Ok(Deletion::Removed)
    }
}

/// Collects every event, for assertions.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Collect {
    pub fn json(&self) -> String {
        serde_json::to_string(&*self.0.lock().unwrap()).unwrap()
    }
}

/// One resource of a test graph: address, inputs, and (service, holds_data).
pub fn resource(inputs: Value) -> Resource {
    Resource {
        provider: "fake".to_owned(),
        service: None,
        holds_data: false,
        inputs,
        depends_on: BTreeSet::new(),
    }
}

pub fn data(service: ServiceKind, inputs: Value) -> Resource {
    Resource {
        service: Some(service),
        holds_data: true,
        ..resource(inputs)
    }
}

pub fn graph(
    resources: Vec<(&str, Resource)>,
    retention: &[(ServiceKind, Retention)],
) -> DesiredGraph {
    DesiredGraph {
        version: GRAPH_VERSION,
        operator: OperatorId::try_from("uni").unwrap(),
        retention: retention.iter().copied().collect(),
        resources: resources
            .into_iter()
            .map(|(a, r)| (a.parse().unwrap(), r))
            .collect(),
    }
}

pub fn operator() -> OperatorId {
    OperatorId::try_from("uni").unwrap()
}

pub struct Harness {
    pub fake: Arc<Fake>,
    pub store: Arc<MemoryStore>,
    pub engine: Engine,
    pub events: Arc<Collect>,
}

pub fn options(holder: &str) -> EngineOptions {
    EngineOptions {
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        lease_ttl: Duration::from_secs(30),
        lease_wait: Duration::ZERO,
        holder: holder.to_owned(),
        call_timeout: Duration::from_secs(10),
        replace: std::collections::BTreeSet::new(),
    }
}

pub fn engine_for(
    fake: &Arc<Fake>,
    store: &Arc<MemoryStore>,
    clock: Arc<dyn Clock>,
    holder: &str,
) -> Engine {
    Engine::new(providers(fake), store.clone(), clock, options(holder))
}

/// The providers of a run on the fake alone.
pub fn providers(fake: &Arc<Fake>) -> Providers {
    BTreeMap::from([("fake".to_owned(), fake.clone() as Arc<dyn Provider>)])
}

/// `graph` with one input of one resource set to `value`.
pub fn with_input(
    mut graph: DesiredGraph,
    address: &str,
    input: &str,
    value: Value,
) -> DesiredGraph {
    let resource = graph.resources.get_mut(&address.parse().unwrap()).unwrap();
    resource.inputs[input] = value;
    graph
}

impl Harness {
    pub fn new() -> Self {
        Self::with_fake(Fake::new())
    }

    pub fn with_fake(fake: Arc<Fake>) -> Self {
        let store = Arc::new(MemoryStore::default());
        let engine = engine_for(&fake, &store, Arc::new(SystemClock), "test run");
        Self {
            fake,
            store,
            engine,
            events: Arc::new(Collect::default()),
        }
    }

    pub fn manual_clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::at(1_000_000))
    }

    pub async fn apply(&self, graph: &DesiredGraph) -> fediversity_engine::report::Report {
        self.engine
            .apply(
                graph,
                self.events.clone(),
                fediversity_engine::Approval::Automatic,
            )
            .await
            .unwrap()
            .unwrap()
    }
}
