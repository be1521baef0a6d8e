//! `fediversity destroy`: removes every resource of an operator (account deletion). Data under
//! retention `keep` is kept and listed in the report.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use fediversity_model::graph::{DesiredGraph, GRAPH_VERSION};
use fediversity_model::names::OperatorId;
use fediversity_model::{OperatorConfig, Retention, ServiceKind};

use crate::app::{self, DeployOpts, StoreOpts};
use crate::input::InfraOpts;

#[derive(Args)]
pub struct Opts {
    /// The operator whose resources are removed.
    #[arg(long, value_parser = parse_operator)]
    operator: OperatorId,
    #[command(flatten)]
    infra: InfraOpts,
    #[command(flatten)]
    store: StoreOpts,
    #[command(flatten)]
    deploy: DeployOpts,
}

pub fn parse_operator(text: &str) -> Result<OperatorId, String> {
    OperatorId::try_from(text)
}

pub async fn run(opts: Opts) -> Result<()> {
    let store = opts.store.open().await?;
    app::known_operator(&store, &opts.operator).await?;
    let desired = DesiredGraph {
        version: GRAPH_VERSION,
        operator: opts.operator.clone(),
        retention: last_retention(&store, &opts.operator).await?,
        resources: BTreeMap::new(),
    };
    let (infra, _) = opts.infra.load()?;
    let providers = crate::app::providers(&opts.store, &store, &infra)?;
    let report = app::deploy(
        store.clone(),
        providers,
        &desired,
        None,
        &opts.deploy,
        Default::default(),
    )
    .await?;
    // Its names are free for others once nothing of the operator is left under them.
    if report.as_ref().is_some_and(|r| r.succeeded()) {
        store.release_domain(&opts.operator).await?;
    }
    super::apply::finish(report, opts.deploy.json)
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
