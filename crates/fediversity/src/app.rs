//! What the state-backed commands share: where the data lives (database, platform key,
//! sandbox), the providers for an infrastructure, and one deployment flow that records the
//! configuration, the deployment and its events in the store.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_engine::events::{Event, EventSink};
use fediversity_engine::report::Report;
use fediversity_engine::{Approval, Engine, EngineOptions, Plan, Providers};
use fediversity_model::Infra;
use fediversity_model::graph::{DesiredGraph, ResourceAddress};
use fediversity_model::names::OperatorId;
use fediversity_store::{
    DeploymentId, DeploymentOutcome, EventWriter as StoreSink, SealingKey, Store,
};
use serde_json::Value;

use crate::address_pool::StoreAddressPool;
use crate::progress::{Display, Printer};
use crate::render;

/// Where fediversity keeps its state.
#[derive(Args, Clone)]
pub struct StoreOpts {
    /// The state database: `sqlite://FILE` or `postgres://…` [default: fediversity.db in the data directory]
    #[arg(long, env = "FEDIVERSITY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// The platform key that encrypts secrets in the state; made on first use [default: platform.key in the data directory]
    #[arg(long, env = "FEDIVERSITY_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Where fediversity keeps its data: database, platform key, sandbox [default: $XDG_DATA_HOME/fediversity]
    #[arg(long, env = "FEDIVERSITY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl StoreOpts {
    fn data_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })
            .ok_or_else(|| {
                anyhow!("cannot tell where to keep data: set --data-dir or FEDIVERSITY_DATA_DIR")
            })?;
        Ok(base.join("fediversity"))
    }

    /// The directory the local sandbox keeps its VMs, buckets and zone files in.
    pub fn sandbox_dir(&self) -> Result<PathBuf> {
        Ok(self.data_dir()?.join("sandbox"))
    }

    /// Opens (and on first use creates) the state database and the platform key.
    pub async fn open(&self) -> Result<Arc<Store>> {
        let dir = self.data_dir()?;
        create_private_dir(&dir)?;
        let key = match &self.key_file {
            // A key named on purpose must exist: a typo must not start a new, empty state.
            Some(key_file) if !key_file.exists() => bail!(
                "the platform key {} does not exist: give the path of the existing key, or leave out --key-file to use the data directory's",
                key_file.display()
            ),
            Some(key_file) => SealingKey::from_file(key_file)?,
            None if dir.join("platform.key").exists() => {
                SealingKey::from_file(dir.join("platform.key"))?
            }
            None => SealingKey::write_new(dir.join("platform.key"))?,
        };
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", dir.join("fediversity.db").display()),
        };
        let store = Store::connect(&url, key).await?;
        Ok(Arc::new(store))
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Fails unless `operator` is recorded in `store`: a mistyped id must not pass for one with
/// nothing deployed.
pub async fn known_operator(store: &Store, operator: &OperatorId) -> Result<()> {
    if store.operators().await?.contains(operator) {
        Ok(())
    } else {
        bail!(
            "no operator `{operator}` is recorded here: see `fediversity state list` for the operators there are"
        )
    }
}

/// The providers for `infra`, with their sandbox under the data directory and VM addresses
/// allocated in `store`; with `[panel]`, also the panel's OpenID Connect clients (`oidc`).
pub fn providers(opts: &StoreOpts, store: &Store, infra: &Infra) -> Result<Providers> {
    let addresses = Arc::new(StoreAddressPool::new(store.clone(), Arc::new(SystemClock)));
    let mut providers =
        fediversity_providers::infra_providers(infra, &opts.sandbox_dir()?, addresses)?;
    // The panel's OpenID Connect clients live in the store, beside the panel that serves them.
    if let Some(panel) = &infra.panel {
        let oidc = fediversity_panel::oidc_client_provider(
            Arc::new(store.clone()),
            panel.public_url.as_str(),
        );
        providers.insert(oidc.name().to_owned(), oidc);
    }
    Ok(providers)
}

/// The providers `graph` needs on `infra`; a graph naming a provider this build lacks is
/// refused before anything starts.
pub fn providers_for(
    opts: &StoreOpts,
    store: &Store,
    infra: &Infra,
    graph: &DesiredGraph,
) -> Result<Providers> {
    let providers = providers(opts, store, infra)?;
    let missing: std::collections::BTreeSet<&str> = graph
        .resources
        .values()
        .map(|r| r.provider.as_str())
        .filter(|p| !providers.contains_key(*p))
        .collect();
    if !missing.is_empty() {
        bail!(
            "this build has no provider {} (named by the resource graph)",
            missing
                .into_iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(providers)
}

/// How a deployment is asked for: the options `apply` and `destroy` share.
#[derive(Args)]
pub struct DeployOpts {
    /// Go ahead without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Print events as JSON lines instead of progress bars.
    #[arg(long)]
    pub json: bool,
    /// Wait up to this many seconds for another deployment of the same operator to end.
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = seconds)]
    pub wait: Duration,
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{text}` is not a whole number of seconds"))
}

/// Runs one deployment of `desired`: records it, shows the plan, asks (or not), applies,
/// records events and the report. Returns the report, or `None` when nothing was applied.
/// The resources in `replace` are made anew even if unchanged (rotating a secret or a key).
pub async fn deploy(
    store: Arc<Store>,
    providers: Providers,
    desired: &DesiredGraph,
    config: Option<&Value>,
    opts: &DeployOpts,
    replace: BTreeSet<ResourceAddress>,
) -> Result<Option<Report>> {
    let clock = SystemClock;
    let operator = &desired.operator;
    let deployment = record_deployment(&store, operator, config, clock.now()).await?;
    let (persist, writer) = StoreSink::start(store.clone(), operator.clone(), deployment);
    let printer = match (opts.json, opts.auto_approve) {
        (true, _) => Printer::new(Display::Json),
        // Asked runs show the plan when asking; automatic ones when it is made.
        (false, true) => Printer::new(Display::Human).showing_plans_of(desired.clone()),
        (false, false) => Printer::new(Display::Human),
    };
    let sink: Arc<dyn EventSink> = Arc::new(Tee(vec![Box::new(printer), Box::new(persist)]));
    let options = EngineOptions {
        lease_wait: opts.wait,
        holder: holder(),
        replace,
        ..EngineOptions::default()
    };
    let engine = Engine::new(providers, store.clone(), Arc::new(clock), options);
    let refusal = std::sync::Mutex::new(None);
    let approval = if opts.auto_approve {
        Approval::Automatic
    } else {
        Approval::Ask(Box::new(|plan: &Plan| {
            approve(plan, desired, opts, &refusal)
        }))
    };
    let result = engine.apply(desired, sink.clone(), approval).await;
    drop(sink);
    writer.await.ok();
    let (outcome, report_json) = match &result {
        Ok(Some(report)) if report.succeeded() => {
            (DeploymentOutcome::Succeeded, serde_json::to_value(report)?)
        }
        Ok(Some(report)) => (DeploymentOutcome::Failed, serde_json::to_value(report)?),
        Ok(None) => (
            DeploymentOutcome::Failed,
            serde_json::json!({"declined": true}),
        ),
        Err(error) => (
            DeploymentOutcome::Failed,
            serde_json::json!({"error": error.to_string()}),
        ),
    };
    store
        .finish_deployment(operator, deployment, outcome, &report_json, clock.now())
        .await?;
    if let Some(why) = refusal.lock().ok().and_then(|r| r.clone()) {
        bail!(why);
    }
    Ok(result?)
}

/// Saves the configuration as a new version when it changed, and opens a deployment record.
async fn record_deployment(
    store: &Store,
    operator: &OperatorId,
    config: Option<&Value>,
    now: i64,
) -> Result<DeploymentId> {
    match store.create_operator(operator, now).await {
        // Registered before, perhaps by a run that started at the same time.
        Ok(()) | Err(fediversity_store::Error::OperatorExists(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let versions = store.configurations(operator).await?;
    let latest = versions.last();
    let version = match (config, latest) {
        (Some(config), Some(latest)) if &latest.config == config => latest.version,
        (Some(config), _) => store.save_configuration(operator, config, now).await?,
        (None, Some(latest)) => latest.version,
        (None, None) => {
            store
                .save_configuration(operator, &serde_json::json!({"destroyed": true}), now)
                .await?
        }
    };
    let deployment = store.create_deployment(operator, version, now).await?;
    store.start_deployment(operator, deployment, now).await?;
    Ok(deployment)
}

/// Shows the plan and asks whether to go on; records why not.
fn approve(
    plan: &Plan,
    desired: &DesiredGraph,
    opts: &DeployOpts,
    refusal: &std::sync::Mutex<Option<String>>,
) -> bool {
    if !opts.json {
        let mut out = anstream::stdout().lock();
        render::plan(&mut out, &plan.summary(), desired).ok();
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !interactive || opts.json {
        if let Ok(mut slot) = refusal.lock() {
            *slot = Some(
                "not applied: without a terminal to ask, pass --auto-approve to apply this plan"
                    .to_owned(),
            );
        }
        return false;
    }
    let yes = tokio::task::block_in_place(|| {
        print!("\nApply this plan? Only `yes` goes on: ");
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        answer.trim() == "yes"
    });
    if !yes && let Ok(mut slot) = refusal.lock() {
        *slot = Some("not applied: the plan was declined".to_owned());
    }
    yes
}

/// Who this run is, for another run that finds the operator busy.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "fediversity on {} ({})",
        host.trim(),
        EngineOptions::default().holder
    )
}

/// Sends every event to several sinks.
struct Tee(Vec<Box<dyn EventSink>>);

impl EventSink for Tee {
    fn emit(&self, event: &Event) {
        self.0.iter().for_each(|sink| sink.emit(event));
    }
}
