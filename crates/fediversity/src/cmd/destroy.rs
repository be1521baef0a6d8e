//! `fediversity destroy`: removes every resource of an operator (account deletion). Data under
//! retention `keep` is kept and listed in the report.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use fediversity_model::graph::{DesiredGraph, GRAPH_VERSION};
use fediversity_model::names::OperatorId;
use fediversity_model::{OperatorConfig, Retention, ServiceKind};

use crate::app::{self, DeployOpts, StoreOpts};

#[derive(Args)]
pub struct Opts {
    /// The operator whose resources are removed.
    #[arg(long, value_parser = parse_operator)]
    operator: OperatorId,
    #[command(flatten)]
    store: StoreOpts,
    /// Destroy without asking.
    #[arg(long)]
    auto_approve: bool,
    /// Print events as JSON lines instead of progress bars.
    #[arg(long)]
    json: bool,
    /// Wait up to this many seconds for another deployment of the same operator to end.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    wait: u64,
}

pub fn parse_operator(text: &str) -> Result<OperatorId, String> {
    OperatorId::try_from(text)
}

pub async fn run(opts: Opts) -> Result<()> {
    let store = opts.store.open().await?;
    let desired = DesiredGraph {
        version: GRAPH_VERSION,
        operator: opts.operator.clone(),
        retention: last_retention(&store, &opts.operator).await?,
        resources: BTreeMap::new(),
    };
    let providers = fediversity_providers::sandbox_providers(&opts.store.sandbox_dir()?);
    let deploy = DeployOpts {
        auto_approve: opts.auto_approve,
        json: opts.json,
        wait: Duration::from_secs(opts.wait),
    };
    super::apply::finish(
        app::deploy(store, providers, &desired, None, &deploy).await?,
        opts.json,
    )
}

/// The retention choices of the last configuration applied: account deletion honours them.
async fn last_retention(
    store: &fediversity_store::Store,
    operator: &OperatorId,
) -> Result<BTreeMap<ServiceKind, Retention>> {
    let configurations = store.configurations(operator).await?;
    let last = configurations
        .iter()
        .rev()
        .find_map(|c| serde_json::from_value::<OperatorConfig>(c.config.clone()).ok());
    Ok(last
        .map(|config| {
            config
                .services
                .iter()
                .map(|(kind, s)| (kind, s.retention))
                .collect()
        })
        .unwrap_or_default())
}
