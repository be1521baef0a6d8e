//! Reading the documents a command is given: files (or `-` for standard input), checked with
//! every problem reported at once.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use fediversity_model::graph::DesiredGraph;
use fediversity_model::{Infra, OperatorConfig, parse_infra, parse_operator_config};

/// Documents larger than this are refused rather than read into memory.
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// Where the infrastructure description comes from.
#[derive(Args)]
pub struct InfraOpts {
    /// The hosting provider's infra.toml; without it, everything runs in the local sandbox.
    #[arg(long, env = "FEDIVERSITY_INFRA", value_name = "FILE")]
    pub infra: Option<PathBuf>,
}

impl InfraOpts {
    /// The infrastructure, and a name for it in messages.
    pub fn load(&self) -> Result<(Infra, String)> {
        match &self.infra {
            None => Ok((Infra::sandbox(), "the local sandbox".to_owned())),
            Some(path) => Ok((read_infra(path)?, path.display().to_string())),
        }
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_text(path: &Path) -> Result<String> {
    let mut text = String::new();
    let what = display_name(path);
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {what}"))?
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {what} (is it UTF-8 text?)"))?;
    }
    if text.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(anyhow!(
            "{what} is larger than {} MiB: this is not a configuration file",
            MAX_DOCUMENT_BYTES >> 20
        ));
    }
    Ok(text)
}

/// How messages name a file given on the command line.
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads and checks an operator configuration.
pub fn read_operator_config(path: &Path) -> Result<OperatorConfig> {
    parse_operator_config(&read_text(path)?).map_err(|problems| {
        anyhow!(
            "{} is not a valid operator configuration: {problems}",
            display_name(path)
        )
    })
}

/// An operator configuration read from `file`, and the resource graph it needs on the
/// infrastructure `infra` names (with that infrastructure's name, for messages).
pub struct Configured {
    pub config: OperatorConfig,
    pub graph: DesiredGraph,
    pub infra: Infra,
    pub infra_name: String,
}

/// Reads `file`, loads the infrastructure and runs the configurator: every problem of either
/// step is reported with the file's name.
pub fn configured(file: &Path, infra: &InfraOpts) -> Result<Configured> {
    let config = read_operator_config(file)?;
    let (infra, infra_name) = infra.load()?;
    let graph = fediversity_configurator::configure(&config, &infra).map_err(|problems| {
        anyhow!(
            "{} cannot be deployed on {infra_name}: {problems}",
            display_name(file)
        )
    })?;
    Ok(Configured {
        config,
        graph,
        infra,
        infra_name,
    })
}

/// Reads and checks an infra.toml.
pub fn read_infra(path: &Path) -> Result<Infra> {
    parse_infra(&read_text(path)?).map_err(|problems| {
        anyhow!(
            "{} is not a valid infra.toml: {problems}",
            display_name(path)
        )
    })
}
