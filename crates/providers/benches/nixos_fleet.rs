//! The `nixos` provider's fan-out: one small system (a 5 MB closure, like the fleet baseline's
//! `payload.nix`) deployed to 20 test hosts at the default parallelism, then re-deployed
//! unchanged; and, on fresh hosts of the same kind, the bare commands (`nix copy` over
//! `ssh-ng` and one `ssh` to activate, all hosts in parallel, as /work/shared/bench/bare.sh
//! does) for a baseline measured on the same machine at the same moment. The provider runs
//! with OpenSSH's default key exchange and with `curve25519-sha256` (see
//! `NixosOptions::ssh_kex_algorithms`).
//!
//! Run as root: `cargo bench -p fediversity-providers --bench nixos_fleet`. Each figure is the
//! median of three runs after a warm-up build; hosts are made anew for every run and their
//! set-up is not timed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark: a failure ends it"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fediversity_engine::clock::SystemClock;
use fediversity_engine::events::{Discard, ProgressReporter};
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::provider::{CallContext, Outputs, Provider};
use fediversity_engine::{Approval, Engine, EngineOptions};
use fediversity_model::graph::{DesiredGraph, GRAPH_VERSION, Resource, ResourceAddress};
use fediversity_model::names::OperatorId;
use fediversity_providers::{NixosOptions, NixosProvider};
use fediversity_testkit::hosts::{TestHosts, test_system_flake};
use serde_json::{Value, json};

const HOSTS: usize = 20;
const RUNS: usize = 3;
/// About the size of the baseline's payload (5,000,000 random bytes).
const BLOB_KIB: u32 = 4883;

fn spec() -> Value {
    json!({"service": "bench", "test": {"label": "bench", "blob_kib": BLOB_KIB}})
}

fn inputs(hosts: &TestHosts, i: usize) -> Value {
    let host = &hosts.hosts()[i];
    json!({
        "build_on": "deployer",
        "flake": test_system_flake(),
        "host": host.address().to_string(),
        "host_key": host.host_key(),
        "secrets": {"admin-password": format!("bench-password-{i}")},
        "spec": spec(),
        "ssh_private_key": hosts.client_private_key(),
    })
}

fn ctx(i: usize) -> CallContext {
    let address: ResourceAddress = format!("nixos.host-{i}").parse().unwrap();
    CallContext {
        operator: OperatorId::try_from("bench").unwrap(),
        progress: ProgressReporter::new(Arc::new(Discard), address.clone()),
        idempotency_key: format!("bench-{i}"),
        address,
    }
}

fn nix_options() -> BTreeMap<String, String> {
    [("substituters".to_owned(), String::new())].into()
}

/// Every host at once, bounded by the provider's own concurrency, as the engine would.
async fn deploy_all(
    nixos: &Arc<NixosProvider>,
    hosts: &TestHosts,
    recorded: Option<&[Outputs]>,
) -> Vec<Outputs> {
    let limit = Arc::new(tokio::sync::Semaphore::new(nixos.concurrency()));
    let mut tasks = Vec::new();
    for i in 0..hosts.hosts().len() {
        let (nixos, limit, inputs) = (nixos.clone(), limit.clone(), inputs(hosts, i));
        let recorded = recorded.map(|r| r[i].clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            match recorded {
                None => nixos.create(&ctx(i), &inputs).await,
                Some(recorded) => nixos.update(&ctx(i), &inputs, &recorded).await,
            }
        }));
    }
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap().unwrap());
    }
    outputs
}

/// The warm-up every figure starts from: one host deployed (untimed), which builds the
/// system; its store path.
fn warm_up(runtime: &tokio::runtime::Runtime) -> String {
    let hosts = TestHosts::start(1);
    let nixos = Arc::new(NixosProvider::new(NixosOptions {
        hosts_root: Some(hosts.roots()),
        nix_options: nix_options(),
        ..NixosOptions::default()
    }));
    let deployed = runtime.block_on(deploy_all(&nixos, &hosts, None));
    deployed[0].values["system"].as_str().unwrap().to_owned()
}

/// The bare commands on every host in parallel: `nix copy`, then `ssh … switch`.
fn bare(hosts: &TestHosts, system: &str) -> Duration {
    let dir = hosts.dir();
    let key = dir.join("bench-key");
    std::fs::write(&key, hosts.client_private_key()).unwrap();
    let known: String = hosts
        .hosts()
        .iter()
        .map(|h| format!("{} {}\n", h.address(), h.host_key()))
        .collect();
    std::fs::write(dir.join("bench-known-hosts"), known).unwrap();
    Command::new("chmod").arg("600").arg(&key).status().unwrap();
    let ssh_opts = format!(
        "-i {} -o UserKnownHostsFile={} -o BatchMode=yes",
        key.display(),
        dir.join("bench-known-hosts").display()
    );
    let started = Instant::now();
    let children: Vec<_> = hosts
        .hosts()
        .iter()
        .map(|h| {
            let (address, root) = (h.address(), h.root().display().to_string());
            let script = format!(
                "nix --extra-experimental-features nix-command --option substituters '' copy \
                 --no-check-sigs --to 'ssh-ng://root@{address}?remote-store=local?root={root}' {system} \
                 && ssh $NIX_SSHOPTS root@{address} {root}{system}/bin/switch-to-configuration switch"
            );
            Command::new("sh")
                .args(["-c", &script])
                .env("NIX_SSHOPTS", &ssh_opts)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a bare deployment failed");
    }
    started.elapsed()
}

fn median(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    runs[runs.len() / 2].as_secs_f64()
}

/// One provider run on fresh hosts: the first deploy and the unchanged re-deploy.
fn provider_run(
    runtime: &tokio::runtime::Runtime,
    system: &str,
    kex: Option<&str>,
) -> (Duration, Duration) {
    let hosts = TestHosts::start(HOSTS);
    let nixos = Arc::new(NixosProvider::new(NixosOptions {
        hosts_root: Some(hosts.roots()),
        nix_options: nix_options(),
        ssh_kex_algorithms: kex.map(str::to_owned),
        ..NixosOptions::default()
    }));
    let started = Instant::now();
    let deployed = runtime.block_on(deploy_all(&nixos, &hosts, None));
    let first = started.elapsed();
    assert!(deployed.iter().all(|o| o.values["system"] == json!(system)));
    let started = Instant::now();
    let again = runtime.block_on(deploy_all(&nixos, &hosts, Some(&deployed)));
    let unchanged = started.elapsed();
    assert_eq!(again, deployed, "an unchanged re-deploy changes nothing");
    (first, unchanged)
}

/// Through the engine, as `fediversity apply` runs: the 20 hosts applied, then the same graph
/// applied again. Returns both walls and the second run's provider calls.
fn engine_runs(
    runtime: &tokio::runtime::Runtime,
    kex: Option<&str>,
) -> (Duration, Duration, usize) {
    let hosts = TestHosts::start(HOSTS);
    let nixos: Arc<dyn Provider> = Arc::new(NixosProvider::new(NixosOptions {
        hosts_root: Some(hosts.roots()),
        nix_options: nix_options(),
        ssh_kex_algorithms: kex.map(str::to_owned),
        ..NixosOptions::default()
    }));
    let engine = Engine::new(
        [("nixos".to_owned(), nixos)].into(),
        Arc::new(MemoryStore::default()),
        Arc::new(SystemClock),
        EngineOptions::default(),
    );
    let graph = DesiredGraph {
        version: GRAPH_VERSION,
        operator: OperatorId::try_from("bench").unwrap(),
        retention: BTreeMap::new(),
        resources: (0..HOSTS)
            .map(|i| {
                let resource = Resource {
                    provider: "nixos".to_owned(),
                    service: None,
                    holds_data: false,
                    inputs: inputs(&hosts, i),
                    depends_on: BTreeSet::new(),
                };
                (ctx(i).address, resource)
            })
            .collect(),
    };
    let apply = || async {
        let report = engine
            .apply(&graph, Arc::new(Discard), Approval::Automatic)
            .await
            .unwrap()
            .unwrap();
        assert!(report.succeeded(), "{:?}", report.failed);
        report
    };
    let started = Instant::now();
    runtime.block_on(apply());
    let first = started.elapsed();
    let started = Instant::now();
    let again = runtime.block_on(apply());
    (first, started.elapsed(), again.provider_calls)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let system = warm_up(&runtime);
    let mut bare_runs = Vec::new();
    let mut default_runs = (Vec::new(), Vec::new());
    let mut curve_runs = (Vec::new(), Vec::new());
    let mut engine = (Vec::new(), Vec::new(), 0);
    for run in 1..=RUNS {
        let hosts = TestHosts::start(HOSTS);
        bare_runs.push(bare(&hosts, &system));
        drop(hosts);
        let (first, unchanged) = provider_run(&runtime, &system, None);
        default_runs.0.push(first);
        default_runs.1.push(unchanged);
        let (first, unchanged) = provider_run(&runtime, &system, Some("curve25519-sha256"));
        curve_runs.0.push(first);
        curve_runs.1.push(unchanged);
        let (first, again, calls) = engine_runs(&runtime, None);
        engine.0.push(first);
        engine.1.push(again);
        engine.2 = engine.2.max(calls);
        eprintln!("run {run} done");
    }
    let parallelism = NixosOptions::default().parallelism;
    let bare = median(bare_runs);
    let rows = [
        (
            "provider: build, copy, secrets, activate, health",
            median(default_runs.0),
        ),
        (
            "provider: unchanged re-deploy (no copy, no switch)",
            median(default_runs.1),
        ),
        (
            "provider, KexAlgorithms=curve25519-sha256: first deploy",
            median(curve_runs.0),
        ),
        (
            "provider, KexAlgorithms=curve25519-sha256: unchanged re-deploy",
            median(curve_runs.1),
        ),
        (
            "engine apply of the 20 hosts (`fediversity apply`)",
            median(engine.0),
        ),
        ("engine apply again, nothing changed", median(engine.1)),
    ];
    println!(
        "nixos provider, {HOSTS} hosts, a {BLOB_KIB} KiB closure, median of {RUNS} runs \
         (parallelism {parallelism})"
    );
    println!("| scenario | wall | vs bare here |");
    println!("|---|---|---|");
    println!(
        "| bare `nix copy` + `ssh`, all hosts in parallel (measured here) | {bare:.2} s | 1.00 |"
    );
    for (scenario, wall) in rows {
        println!("| {scenario} | {wall:.2} s | {:.2} |", wall / bare);
    }
    println!("| reference: the fleet baseline's bare.sh (an idle machine) | 6.8 s | |");
    println!(
        "| reference: the fleet baseline's ansible.sh, forks=20 (an idle machine) | 66.3 s | |"
    );
    println!(
        "(the engine's second apply made {} provider calls)",
        engine.2
    );
}
