//! `fediversity refresh`: reads every recorded resource from the world and reports what was
//! changed outside the platform; the next apply repairs it.

use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use fediversity_engine::clock::SystemClock;
use fediversity_engine::{Engine, EngineOptions};
use fediversity_model::names::OperatorId;

use crate::app::StoreOpts;
use crate::cmd::destroy::parse_operator;
use crate::input::InfraOpts;

#[derive(Args)]
pub struct Opts {
    /// The operator whose resources are read.
    #[arg(long, value_parser = parse_operator)]
    operator: OperatorId,
    #[command(flatten)]
    infra: InfraOpts,
    #[command(flatten)]
    store: StoreOpts,
    /// Print the drift report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(opts: Opts) -> Result<()> {
    let store = opts.store.open().await?;
    crate::app::known_operator(&store, &opts.operator).await?;
    let (infra, _) = opts.infra.load()?;
    let providers = crate::app::providers(&opts.store, &store, &infra)?;
    let engine = Engine::new(
        providers,
        store,
        Arc::new(SystemClock),
        EngineOptions::default(),
    );
    let drift = engine.refresh(&opts.operator).await?;
    if opts.json {
        anstream::println!("{}", serde_json::to_string_pretty(&drift)?);
    } else {
        anstream::println!("Read {} resources of `{}`.", drift.checked, drift.operator);
        for (address, changes) in &drift.drifted {
            anstream::println!("  changed outside the platform: {address}");
            for change in changes {
                anstream::println!(
                    "      {}: {} (recorded) → {} (found)",
                    change.path,
                    change
                        .before
                        .as_ref()
                        .map_or("(none)".to_owned(), ToString::to_string),
                    change
                        .after
                        .as_ref()
                        .map_or("(none)".to_owned(), ToString::to_string)
                );
            }
        }
        for address in &drift.missing {
            anstream::println!("  gone: {address} (the next apply makes it again)");
        }
        if drift.drifted.is_empty() && drift.missing.is_empty() && drift.errors.is_empty() {
            anstream::println!("Everything is as recorded.");
        } else if drift.errors.is_empty() {
            anstream::println!(
                "Run `fediversity apply` with the operator's configuration to repair it."
            );
        }
    }
    if !drift.errors.is_empty() {
        let list: Vec<String> = drift
            .errors
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect();
        bail!("some resources could not be read: {}", list.join("; "));
    }
    Ok(())
}
