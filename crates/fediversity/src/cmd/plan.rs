//! `fediversity plan`: the resources an operator configuration needs, for a person or as JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::input::{Configured, InfraOpts, configured};
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
    let Configured {
        config,
        graph,
        infra_name,
        ..
    } = configured(&opts.file, &opts.infra)?;
    let mut out = anstream::stdout().lock();
    if opts.json {
        serde_json::to_writer_pretty(&mut out, &graph)?;
        writeln!(out)?;
    } else {
        render::graph(&mut out, &config, &graph, &infra_name)?;
    }
    Ok(())
}
