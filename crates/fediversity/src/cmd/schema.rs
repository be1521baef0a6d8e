//! `fediversity schema`: the published JSON Schemas, generated from the types the code reads.

use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct Opts {
    /// Which document format.
    document: Document,
}

#[derive(Clone, Copy, ValueEnum)]
enum Document {
    /// The operator configuration (JSON).
    Operator,
    /// The hosting provider's infra.toml, as the JSON value it reads to.
    Infra,
}

pub fn run(opts: Opts) -> Result<()> {
    let schema = match opts.document {
        Document::Operator => fediversity_model::schema::operator_schema(),
        Document::Infra => fediversity_model::schema::infra_schema(),
    };
    anstream::println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
