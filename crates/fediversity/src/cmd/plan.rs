//! `fediversity plan`: the resources an operator configuration needs, for a person or as JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::input::{InfraOpts, display_name, read_operator_config};
use crate::render;

#[derive(Args)]
pub struct Opts {
    /// The operator configuration (JSON), or - for standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    infra: InfraOpts,
    /// Print the resource graph as JSON, in a stable order.
    #[arg(long)]
    json: bool,
}

pub fn run(opts: Opts) -> Result<()> {
    let config = read_operator_config(&opts.file)?;
    let (infra, infra_name) = opts.infra.load()?;
    let graph = fediversity_configurator::configure(&config, &infra).map_err(|problems| {
        anyhow!(
            "{} cannot be deployed on {infra_name}: {problems}",
            display_name(&opts.file)
        )
    })?;
    let mut out = anstream::stdout().lock();
    if opts.json {
        serde_json::to_writer_pretty(&mut out, &graph)?;
        writeln!(out)?;
    } else {
        render::graph(&mut out, &config, &graph, &infra_name)?;
    }
    Ok(())
}
