//! `fediversity infra`: the hosting provider's side: a documented example infra.toml to start
//! from, and a check of one.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::input::{display_name, read_infra};

#[derive(Subcommand)]
pub enum Command {
    /// Print a complete infra.toml with every field explained.
    Example,
    /// Check an infra.toml and report every problem.
    Check {
        /// The infra.toml to check.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Example => {
            let example =
                fediversity_model::infra::annotated_example().map_err(anyhow::Error::msg)?;
            anstream::print!("{example}");
        }
        Command::Check { file } => {
            read_infra(&file)?;
            anstream::println!("{} is valid", display_name(&file));
        }
    }
    Ok(())
}
