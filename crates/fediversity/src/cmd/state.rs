//! `fediversity state`: what the platform has recorded, secrets masked.

use anyhow::{Result, anyhow};
use clap::Subcommand;
use fediversity_engine::state::RecordStatus;
use fediversity_engine::store::StateStore;
use fediversity_engine::value::mask;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;

use crate::app::StoreOpts;
use crate::cmd::destroy::parse_operator;

#[derive(Subcommand)]
pub enum Command {
    /// List the operators, or one operator's resources.
    List {
        /// The operator whose resources to list.
        #[arg(long, value_parser = parse_operator)]
        operator: Option<OperatorId>,
        #[command(flatten)]
        store: StoreOpts,
    },
    /// Show one resource's record.
    Show {
        /// The operator that owns it.
        #[arg(long, value_parser = parse_operator)]
        operator: OperatorId,
        /// Its address, such as vm.mastodon.
        address: ResourceAddress,
        #[command(flatten)]
        store: StoreOpts,
    },
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::List {
            operator: None,
            store,
        } => {
            let store = store.open().await?;
            for operator in store.operators().await? {
                let state = store.load_state(&operator).await?;
                anstream::println!("{operator}\t{} resources", state.resources.len());
            }
        }
        Command::List {
            operator: Some(operator),
            store,
        } => {
            let state = store.open().await?.load_state(&operator).await?;
            for (address, record) in &state.resources {
                let status = match &record.status {
                    RecordStatus::Active => "active".to_owned(),
                    RecordStatus::Retained { note } => format!("kept: {note}"),
                    RecordStatus::Missing => "missing: the next apply makes it again".to_owned(),
                };
                anstream::println!("{address}\t{}\t{status}", record.provider);
            }
        }
        Command::Show {
            operator,
            address,
            store,
        } => {
            let state = store.open().await?.load_state(&operator).await?;
            let record = state
                .resources
                .get(&address)
                .ok_or_else(|| anyhow!("operator `{operator}` has no resource {address}: see `fediversity state list --operator {operator}`"))?;
            let mut shown = serde_json::to_value(record)?;
            shown["inputs"] = mask(&record.inputs);
            shown["outputs"] = mask(&record.outputs);
            anstream::println!("{}", serde_json::to_string_pretty(&shown)?);
        }
    }
    Ok(())
}
