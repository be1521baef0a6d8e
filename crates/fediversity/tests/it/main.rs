//! The `fediversity` command, end to end: the built binary is run as a user would run it, and
//! its exit code, standard output and standard error are checked.
//!
//! - [`cli`]: running the binary, with a clean, stable environment;
//! - [`validate`]: the corpus of broken operator configurations under `tests/corpus/invalid`,
//!   each with the exact message it must produce under `tests/golden/invalid`, and the examples;
//! - [`plan`]: the plan as JSON and for people;
//! - [`schema`]: the published JSON Schemas;
//! - [`infra`]: the example infra.toml and its check;
//! - [`command_line`]: misuse of the command line, missing files, standard input;
//! - [`deploy`]: apply, state, refresh and destroy on the sandbox, end to end;
//! - [`crash`]: the apply killed at every provider call, and the next run converging;
//! - [`secret_grep`]: a whole operator's life at trace level, searched for every secret value;
//! - [`serve`]: the panel's server started, checked and stopped, and `admin create`.
//!
//! Golden files change only through `scripts/update-golden`; every test that compares with one
//! has `golden` in its name so that script refreshes it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers outside #[test] functions are test assertions too, and fail by panicking"
)]

mod cli;
mod command_line;
mod crash;
mod deploy;
mod fleet;
mod infra;
mod plan;
mod sandbox;
mod schema;
mod secret_grep;
mod serve;
mod validate;
