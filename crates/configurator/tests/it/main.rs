//! The configurator's integration tests: golden graphs for each service alone, all three,
//! turning one off, and the three kinds of infrastructure; properties every graph keeps; and the
//! NixOS modules in `nix/` against the host specs in those graphs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod golden;
mod nix_modules;
mod properties;

use std::path::PathBuf;

use fediversity_model::{Infra, OperatorConfig, parse_infra, parse_operator_config};

/// `crates/configurator/tests/golden`.
fn golden_dir() -> PathBuf {
    fediversity_testkit::workspace_root().join("crates/configurator/tests/golden")
}

fn read_operator(name: &str) -> OperatorConfig {
    let path = golden_dir().join("inputs").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_operator_config(&text).unwrap_or_else(|p| panic!("{}: {p}", path.display()))
}

/// The infrastructures the tests run on, by name.
fn infra(name: &str) -> Infra {
    let path = match name {
        "sandbox" => return Infra::sandbox(),
        "example" => fediversity_testkit::workspace_root().join("examples/infra.toml"),
        other => golden_dir().join("inputs").join(format!("{other}.toml")),
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_infra(&text).unwrap_or_else(|p| panic!("{}: {p}", path.display()))
}
