//! The engine's figures, as a table: `cargo bench -p fediversity --bench engine`.
//!
//! Each scenario runs in a child process of its own, so the peak memory it reports is its
//! own. Providers here do nothing (or only wait), so that what is measured is the engine and
//! the store. The store is SQLite in a temporary directory, as `fediversity` uses by default.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops at its first failure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fediversity_engine::clock::SystemClock;
use fediversity_engine::events::Discard;
use fediversity_engine::plan::plan;
use fediversity_engine::provider::{
    CallContext, Deletion, Observed, Outputs, Provider, ProviderResult,
};
use fediversity_engine::store::StateStore;
use fediversity_engine::{Engine, EngineOptions, Providers};
use fediversity_model::graph::DesiredGraph;
use fediversity_model::{Infra, OperatorConfig, Retention};
use fediversity_store::{SealingKey, Store};
use serde_json::{Value, json};

/// A provider that answers at once (or after `delay`) with every output the configurator's
/// graphs reference.
#[derive(Debug)]
struct Immediate {
    name: &'static str,
    delay: Duration,
}

impl Immediate {
    fn outputs(ctx: &CallContext) -> Outputs {
        let id = format!("{}/{}", ctx.operator, ctx.address);
        let values: BTreeMap<String, Value> = [
            "id",
            "alias",
            "ipv4",
            "ipv6",
            "host_key",
            "public_key",
            "access_key_id",
            "generation",
        ]
        .into_iter()
        .map(|name| (name.to_owned(), json!(format!("{name}:{id}"))))
        .chain(
            ["value", "private_key", "secret_access_key"]
                .into_iter()
                .map(|n| (n.to_owned(), json!("s3cr3t"))),
        )
        .collect();
        Outputs {
            values,
            sensitive: BTreeSet::from([
                "value".into(),
                "private_key".into(),
                "secret_access_key".into(),
            ]),
        }
    }

    async fn wait(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[async_trait]
impl Provider for Immediate {
    fn name(&self) -> &str {
        self.name
    }
    fn concurrency(&self) -> usize {
        64
    }
    async fn create(&self, ctx: &CallContext, _inputs: &Value) -> ProviderResult<Outputs> {
        self.wait().await;
        Ok(Self::outputs(ctx))
    }
    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _r: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        Ok(Some(Observed {
            inputs: inputs.clone(),
            outputs: Self::outputs(ctx),
        }))
    }
    async fn update(
        &self,
        ctx: &CallContext,
        _inputs: &Value,
        _r: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.wait().await;
        Ok(Self::outputs(ctx))
    }
    async fn delete(
        &self,
        _ctx: &CallContext,
        _i: &Value,
        _r: &Outputs,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        self.wait().await;
        Ok(Deletion::Removed)
    }
}

fn providers(delay: Duration) -> Providers {
    [
        "local", "secret", "sshkey", "proxmox", "garage", "dns", "nixos",
    ]
    .into_iter()
    .map(|name| {
        (
            name.to_owned(),
            Arc::new(Immediate { name, delay }) as Arc<dyn Provider>,
        )
    })
    .collect()
}

/// The example university's graph for operator number `n` on the example infrastructure.
fn graph(n: usize) -> DesiredGraph {
    let root = fediversity_testkit::workspace_root();
    let text = std::fs::read_to_string(root.join("examples/operators/university.json"))
        .unwrap_or_default();
    let mut config: OperatorConfig = match fediversity_model::parse_operator_config(&text) {
        Ok(config) => config,
        Err(problems) => panic!("{problems}"),
    };
    config.operator.id = format!("op-{n:05}")
        .as_str()
        .try_into()
        .unwrap_or_else(|e: String| panic!("{e}"));
    let infra_text = std::fs::read_to_string(root.join("examples/infra.toml")).unwrap_or_default();
    let mut infra: Infra =
        fediversity_model::parse_infra(&infra_text).unwrap_or_else(|p| panic!("{p}"));
    infra.limits.default = infra
        .limits
        .operators
        .values()
        .next()
        .cloned()
        .unwrap_or(infra.limits.default);
    fediversity_configurator::configure(&config, &infra).unwrap_or_else(|p| panic!("{p}"))
}

async fn store(dir: &Path) -> Arc<Store> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let key = SealingKey::generate().unwrap_or_else(|e| panic!("{e}"));
    Arc::new(
        Store::connect(&url, key)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn engine(store: Arc<Store>, delay: Duration) -> Engine {
    let options = EngineOptions {
        holder: "bench".to_owned(),
        ..EngineOptions::default()
    };
    Engine::new(providers(delay), store, Arc::new(SystemClock), options)
}

/// Applies `operators` operators' graphs, 8 at a time; returns the resources made.
async fn apply_many(engine: &Engine, operators: usize) -> usize {
    let mut total = 0;
    let mut pending = tokio::task::JoinSet::new();
    for n in 0..operators {
        let engine = engine.clone();
        pending.spawn(async move {
            let report = engine
                .apply(
                    &graph(n),
                    Arc::new(Discard),
                    fediversity_engine::Approval::Automatic,
                )
                .await;
            match report {
                Ok(Some(report)) if report.succeeded() => report.done.len(),
                other => panic!("apply failed: {other:?}"),
            }
        });
        if pending.len() >= 8 {
            total += pending.join_next().await.and_then(Result::ok).unwrap_or(0);
        }
    }
    while let Some(done) = pending.join_next().await {
        total += done.unwrap_or(0);
    }
    total
}

/// Peak resident memory of this process, from /proc.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One row: scenario, measured, target, resources, provider calls, peak memory.
fn row(name: &str, took: Duration, target: &str, resources: usize, calls: usize) {
    println!(
        "| {name:<44} | {:>9.1} ms | {target:<12} | {resources:>9} | {calls:>8} | {:>7.0} MiB |",
        took.as_secs_f64() * 1000.0,
        peak_rss_mib()
    );
}

async fn scenario(name: &str) {
    let dir = std::env::temp_dir().join(format!("fediversity-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let store = store(&dir).await;
    match name {
        "plan-1000" => {
            let engine = engine(store.clone(), Duration::ZERO);
            let operators = 1000;
            apply_many(&engine, operators).await;
            let graphs: Vec<DesiredGraph> = (0..operators).map(graph).collect();
            let providers = providers(Duration::ZERO);
            let mut samples = Vec::new();
            let (mut resources, mut loading) = (0, Duration::ZERO);
            for _ in 0..3 {
                let started = Instant::now();
                (resources, loading) = (0, Duration::ZERO);
                for desired in &graphs {
                    let load = Instant::now();
                    let state = store
                        .load_state(&desired.operator)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    loading += load.elapsed();
                    let planned = plan(desired, &state, &providers, &Default::default())
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(planned.is_empty());
                    resources += planned.steps.len();
                }
                samples.push(started.elapsed());
            }
            row(
                "plan 1,000 operators from the store (no-op)",
                median(samples),
                "< 1 s, 300 MB",
                resources,
                0,
            );
            println!(
                "|   of which reading and unsealing the state: {:.0} ms",
                loading.as_secs_f64() * 1000.0
            );
        }
        "noop-apply" => {
            let engine = engine(store.clone(), Duration::ZERO);
            let desired = graph(0);
            engine
                .apply(
                    &desired,
                    Arc::new(Discard),
                    fediversity_engine::Approval::Automatic,
                )
                .await
                .ok();
            let mut samples = Vec::new();
            let mut calls = 0;
            for _ in 0..20 {
                let started = Instant::now();
                let report = engine
                    .apply(
                        &desired,
                        Arc::new(Discard),
                        fediversity_engine::Approval::Automatic,
                    )
                    .await;
                samples.push(started.elapsed());
                if let Ok(Some(report)) = report {
                    calls += report.provider_calls;
                }
            }
            row(
                "no-op apply of one operator",
                median(samples),
                "< 100 ms",
                desired.resources.len(),
                calls,
            );
        }
        "apply-25k-memory" => {
            let engine = Engine::new(
                providers(Duration::ZERO),
                Arc::new(fediversity_engine::memory::MemoryStore::default()),
                Arc::new(SystemClock),
                EngineOptions {
                    holder: "bench".to_owned(),
                    ..EngineOptions::default()
                },
            );
            let started = Instant::now();
            let made = apply_many(&engine, 800).await;
            row(
                "the same, engine alone (state in memory)",
                started.elapsed(),
                "—",
                made,
                made,
            );
        }
        "apply-25k" => {
            let engine = engine(store.clone(), Duration::ZERO);
            let operators = 800;
            let started = Instant::now();
            let made = apply_many(&engine, operators).await;
            row(
                "apply 800 operators (~25k resources)",
                started.elapsed(),
                "< 10 s",
                made,
                made,
            );
        }
        "critical-path" => {
            let delay = Duration::from_millis(50);
            let engine = engine(store.clone(), delay);
            let desired = graph(0);
            let depth = critical_path(&desired);
            let started = Instant::now();
            let report = engine
                .apply(
                    &desired,
                    Arc::new(Discard),
                    fediversity_engine::Approval::Automatic,
                )
                .await;
            let took = started.elapsed();
            let calls = report.ok().flatten().map_or(0, |r| r.provider_calls);
            row(
                "apply one operator, 50 ms per provider call",
                took,
                "≈ path",
                desired.resources.len(),
                calls,
            );
            println!(
                "|   critical path {depth} calls = {} ms; sum of all calls = {} ms",
                depth * 50,
                calls * 50
            );
        }
        other => panic!("unknown scenario {other}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The longest chain of dependencies, in resources.
fn critical_path(graph: &DesiredGraph) -> usize {
    let mut depth: BTreeMap<_, usize> = BTreeMap::new();
    for address in graph.topological_order().unwrap_or_default() {
        let deps = graph.resources[address].dependencies();
        let d = deps
            .iter()
            .filter_map(|d| depth.get(d))
            .max()
            .copied()
            .unwrap_or(0)
            + 1;
        depth.insert(address.clone(), d);
    }
    depth.values().max().copied().unwrap_or(0)
}

const SCENARIOS: [&str; 5] = [
    "noop-apply",
    "critical-path",
    "plan-1000",
    "apply-25k",
    "apply-25k-memory",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(name) = args.first().filter(|a| SCENARIOS.contains(&a.as_str())) {
        let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(scenario(name));
        return;
    }
    println!(
        "| {:<44} | {:>12} | {:<12} | {:>9} | {:>8} | {:>11} |",
        "scenario", "wall", "target", "resources", "calls", "peak RSS"
    );
    println!(
        "|{:-<46}|{:-<14}|{:-<14}|{:-<11}|{:-<10}|{:-<13}|",
        "", "", "", "", "", ""
    );
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    for name in SCENARIOS {
        let status = Command::new(&exe)
            .arg(name)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "scenario {name} failed");
    }
}
