//! `fediversity validate`: checks an operator configuration, and that it fits the
//! infrastructure (its sizes exist, its limits hold), reporting every problem at once.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::input::{InfraOpts, display_name, read_operator_config};

#[derive(Args)]
pub struct Opts {
    /// The operator configuration (JSON), or - for standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    infra: InfraOpts,
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
    anstream::println!(
        "{} is valid: operator `{}` needs {} resources on {infra_name}",
        display_name(&opts.file),
        config.operator.id,
        graph.resources.len()
    );
    Ok(())
}
