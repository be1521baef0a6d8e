//! `fediversity apply`: brings an operator's resources to its configuration, showing the plan
//! first and asking on a terminal.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_model::graph::ResourceAddress;

use crate::app::{self, DeployOpts, StoreOpts};
use crate::input::{Configured, InfraOpts, configured};
use crate::render;

#[derive(Args)]
pub struct Opts {
    /// The operator configuration (JSON), or - for standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    infra: InfraOpts,
    #[command(flatten)]
    store: StoreOpts,
    #[command(flatten)]
    deploy: DeployOpts,
    /// Replace this resource even if it is unchanged, e.g. `secret.mastodon-admin` to rotate a
    /// secret or `sshkey.deploy` to rotate the deploy key; may be given several times. What
    /// uses it is updated with the new value.
    #[arg(long = "replace", value_name = "ADDRESS")]
    replace: Vec<ResourceAddress>,
}

pub async fn run(opts: Opts) -> Result<()> {
    let Configured {
        config,
        graph,
        infra,
        ..
    } = configured(&opts.file, &opts.infra)?;
    let replace = opts.replace.into_iter().collect();
    fediversity_engine::plan::check_replacements(&graph, &replace)?;
    let store = opts.store.open().await?;
    let providers = app::providers_for(&opts.store, &store, &infra, &graph)?;
    store
        .claim_domain(&config.operator.id, &config.domain, SystemClock.now())
        .await?;
    let config_json = serde_json::to_value(&config)?;
    let report = app::deploy(
        store,
        providers,
        &graph,
        Some(&config_json),
        &opts.deploy,
        replace,
    )
    .await?;
    finish(report, opts.deploy.json)
}

/// Prints the report and fails the command when the deployment failed.
pub fn finish(report: Option<fediversity_engine::report::Report>, json: bool) -> Result<()> {
    let Some(report) = report else {
        anstream::println!("Nothing was changed.");
        return Ok(());
    };
    if !json {
        render::report(&mut anstream::stdout().lock(), &report)?;
    }
    if !report.succeeded() {
        bail!(
            "the deployment of `{}` failed: {} resource(s) failed, {} not attempted; run the same command again once the cause is fixed",
            report.operator,
            report.failed.len(),
            report.skipped.len()
        );
    }
    Ok(())
}
