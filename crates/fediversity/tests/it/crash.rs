//! Crash safety: the apply is killed at every provider call in turn — once just before the
//! provider acts (its intent recorded), once just after (its outcome not recorded) — and a
//! second run must converge: every resource recorded once, nothing left behind in the
//! sandbox that the state does not know, no open intent, and nothing more to do.
//!
//! The process that gets killed is this test binary itself, re-run as `crash_child`, so the
//! abort lives in test code and never in the product.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use fediversity_engine::clock::SystemClock;
use fediversity_engine::events::Discard;
use fediversity_engine::plan::plan;
use fediversity_engine::provider::{
    CallContext, Deletion, Observed, Outputs, Provider, ProviderResult,
};
use fediversity_engine::store::StateStore;
use fediversity_engine::{Engine, EngineOptions, Providers};
use fediversity_model::Retention;
use fediversity_model::graph::{DesiredGraph, ResourceAddress};
use fediversity_store::{SealingKey, Store};
use serde_json::Value;

use crate::cli::{TempDir, workspace_root};

const DIR: &str = "FEDIVERSITY_CRASH_DIR";
const AT: &str = "FEDIVERSITY_CRASH_AT";
const AFTER: &str = "FEDIVERSITY_CRASH_AFTER";

/// A provider that aborts the process on its `at`-th changing call (1-based; 0 never).
#[derive(Debug)]
struct Aborting {
    inner: Arc<dyn Provider>,
    calls: Arc<AtomicUsize>,
    at: usize,
    after: bool,
}

impl Aborting {
    fn before(&self) -> usize {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.at && !self.after {
            std::process::abort();
        }
        n
    }

    fn after(&self, n: usize) {
        if n == self.at && self.after {
            std::process::abort();
        }
    }
}

#[async_trait]
impl Provider for Aborting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    fn replace_on(&self, address: &ResourceAddress) -> &[&str] {
        self.inner.replace_on(address)
    }
    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let n = self.before();
        let result = self.inner.create(ctx, inputs).await;
        self.after(n);
        result
    }
    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        self.inner.read(ctx, inputs, recorded).await
    }
    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        let n = self.before();
        let result = self.inner.update(ctx, inputs, recorded).await;
        self.after(n);
        result
    }
    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        let n = self.before();
        let result = self.inner.delete(ctx, inputs, recorded, retention).await;
        self.after(n);
        result
    }
}

/// Mastodon and Pixelfed of the example university, on the sandbox.
fn desired() -> DesiredGraph {
    let text = std::fs::read_to_string(workspace_root().join("examples/operators/university.json"))
        .unwrap();
    let mut config = fediversity_model::parse_operator_config(&text).unwrap();
    config.services.peertube = None;
    config.identity = None;
    fediversity_configurator::configure(&config, &fediversity_model::Infra::sandbox()).unwrap()
}

async fn open(dir: &Path) -> Arc<Store> {
    let key_file = dir.join("platform.key");
    let key = if key_file.exists() {
        SealingKey::from_file(&key_file).unwrap()
    } else {
        SealingKey::write_new(&key_file).unwrap()
    };
    let url = format!("sqlite://{}?mode=rwc", dir.join("state.db").display());
    Arc::new(Store::connect(&url, key).await.unwrap())
}

fn providers(dir: &Path, calls: &Arc<AtomicUsize>, at: usize, after: bool) -> Providers {
    fediversity_providers::sandbox_providers(&dir.join("sandbox"))
        .into_iter()
        .map(|(name, inner)| {
            let wrapped = Aborting {
                inner,
                calls: calls.clone(),
                at,
                after,
            };
            (name, Arc::new(wrapped) as Arc<dyn Provider>)
        })
        .collect()
}

/// The child: applies once, aborting where told; prints how many changing calls it made.
#[test]
#[ignore = "the child process of every_provider_call_can_be_killed, which runs it"]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR).map(PathBuf::from) else {
        panic!("crash_child runs only as the child of every_provider_call_can_be_killed");
    };
    let at: usize = std::env::var(AT).unwrap().parse().unwrap();
    let after = std::env::var(AFTER).is_ok_and(|v| v == "1");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let calls = Arc::new(AtomicUsize::new(0));
        // A killed run keeps the operator's lease until it runs out: the next run waits for it.
        let options = EngineOptions {
            lease_ttl: std::time::Duration::from_millis(300),
            lease_wait: std::time::Duration::from_secs(10),
            ..EngineOptions::default()
        };
        let engine = Engine::new(
            providers(&dir, &calls, at, after),
            open(&dir).await,
            Arc::new(SystemClock),
            options,
        );
        let report = engine
            .apply(
                &desired(),
                Arc::new(Discard),
                fediversity_engine::Approval::Automatic,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(report.succeeded(), "{report:?}");
        println!("calls={}", calls.load(Ordering::SeqCst));
    });
}

/// Runs the child in `dir`; its exit status and how many calls it reported.
fn child(dir: &Path, at: usize, after: bool) -> (std::process::ExitStatus, Option<usize>) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DIR, dir)
        .env(AT, at.to_string())
        .env(AFTER, if after { "1" } else { "0" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The test harness prints `test crash::crash_child ... ` before the child's own output.
    let calls = stdout
        .lines()
        .find_map(|l| l.split_once("calls=").map(|(_, n)| n.trim()))
        .and_then(|n| n.parse().ok());
    if at == 0 && !output.status.success() {
        panic!(
            "a run without a crash failed in {}:\n{stdout}\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (output.status, calls)
}

/// The state is complete and the sandbox holds exactly what the state records.
async fn assert_converged(dir: &Path, desired: &DesiredGraph, context: &str) {
    let store = open(dir).await;
    assert!(
        store
            .open_intents(&desired.operator)
            .await
            .unwrap()
            .is_empty(),
        "{context}: open intents remain"
    );
    let state = store.load_state(&desired.operator).await.unwrap();
    let recorded: BTreeSet<&ResourceAddress> = state.resources.keys().collect();
    let wanted: BTreeSet<&ResourceAddress> = desired.resources.keys().collect();
    assert_eq!(recorded, wanted, "{context}");
    let providers = fediversity_providers::sandbox_providers(&dir.join("sandbox"));
    let again = plan(desired, &state, &providers, &Default::default()).unwrap();
    assert!(
        again.is_empty(),
        "{context}: still to do: {:?}",
        again.summary()
    );
    assert_eq!(
        crate::sandbox::objects(&dir.join("sandbox"), &desired.operator),
        crate::sandbox::expected(&state),
        "{context}: the sandbox holds something the state does not know, or lacks something it records"
    );
}

#[test]
fn every_provider_call_can_be_killed() {
    let desired = desired();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clean = TempDir::new("crash-count");
    let (_, calls) = child(clean.path(), 0, false);
    let total = calls.unwrap();
    assert!(
        total >= desired.resources.len(),
        "one changing call per resource at least: {total}"
    );
    runtime.block_on(assert_converged(
        clean.path(),
        &desired,
        "the run without a crash",
    ));
    for at in 1..=total {
        for after in [false, true] {
            let dir = TempDir::new(&format!("crash-{at}-{after}"));
            let (status, _) = child(dir.path(), at, after);
            assert!(
                !status.success(),
                "call {at} (after: {after}) should have killed the run"
            );
            child(dir.path(), 0, false);
            let context = format!(
                "killed {} call {at}",
                if after { "just after" } else { "just before" }
            );
            runtime.block_on(assert_converged(dir.path(), &desired, &context));
        }
    }
}
