//! `fediversity validate`: checks an operator configuration, and that it fits the
//! infrastructure (its sizes exist, its limits hold), reporting every problem at once.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::input::{Configured, InfraOpts, configured, display_name};

#[derive(Args)]
pub struct Opts {
    /// The operator configuration (JSON), or - for standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    infra: InfraOpts,
}

pub fn run(opts: Opts) -> Result<()> {
    let Configured {
        config,
        graph,
        infra_name,
        ..
    } = configured(&opts.file, &opts.infra)?;
    anstream::println!(
        "{} is valid: operator `{}` needs {} resources on {infra_name}",
        display_name(&opts.file),
        config.operator.id,
        graph.resources.len()
    );
    Ok(())
}
