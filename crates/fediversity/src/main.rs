//! `fediversity`: the one binary of the platform.
//!
//! Thin by design: each subcommand is a module with its own options and `run`; the work happens
//! in the library crates. A user's mistake (a bad file, an invalid configuration) ends with a
//! clear message on stderr and exit code 1, never a panic or a backtrace; a wrong command line
//! ends with clap's usage message and exit code 2.

mod address_pool;
mod app;
mod cmd;
mod input;
mod progress;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fediverse services for your operators, deployed and kept up to date.
#[derive(Parser)]
#[command(name = "fediversity", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web panel, with a worker that runs the deployments it queues.
    Serve(cmd::serve::Opts),
    /// Run queued deployments (alongside `serve` processes sharing a PostgreSQL store).
    Worker(cmd::worker::Opts),
    /// Manage the panel's administrators.
    #[command(subcommand)]
    Admin(cmd::admin::Command),
    /// Show the resources an operator configuration needs.
    Plan(cmd::plan::Opts),
    /// Deploy an operator configuration: plan, ask, apply.
    Apply(cmd::apply::Opts),
    /// Remove every resource of an operator, keeping data whose retention says keep.
    Destroy(cmd::destroy::Opts),
    /// Read an operator's resources and report what changed outside the platform.
    Refresh(cmd::refresh::Opts),
    /// Show what the platform has recorded.
    #[command(subcommand)]
    State(cmd::state::Command),
    /// Work with external providers.
    Provider(cmd::provider::Opts),
    /// Check an operator configuration and report every problem.
    Validate(cmd::validate::Opts),
    /// Print the JSON Schema of a document format.
    Schema(cmd::schema::Opts),
    /// Work with the hosting provider's infra.toml.
    #[command(subcommand)]
    Infra(cmd::infra::Command),
    /// Publish platform releases to the fleet and follow their rollout.
    #[command(subcommand)]
    Fleet(cmd::fleet::Command),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEDIVERSITY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(opts) => cmd::serve::run(opts).await,
        Command::Worker(opts) => cmd::worker::run(opts).await,
        Command::Admin(command) => cmd::admin::run(command).await,
        Command::Plan(opts) => cmd::plan::run(opts),
        Command::Apply(opts) => cmd::apply::run(opts).await,
        Command::Destroy(opts) => cmd::destroy::run(opts).await,
        Command::Refresh(opts) => cmd::refresh::run(opts).await,
        Command::State(command) => cmd::state::run(command).await,
        Command::Provider(opts) => cmd::provider::run(opts).await,
        Command::Validate(opts) => cmd::validate::run(opts),
        Command::Schema(opts) => cmd::schema::run(opts),
        Command::Infra(command) => cmd::infra::run(command),
        Command::Fleet(command) => cmd::fleet::run(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = message(&error);
            anstream::eprintln!(
                "{}error:{} {}",
                render::ERROR.render(),
                render::ERROR.render_reset(),
                message.trim_end()
            );
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: library errors often quote their cause in their
/// own message already.
fn message(error: &anyhow::Error) -> String {
    error
        .chain()
        .skip(1)
        .fold(error.to_string(), |mut text, cause| {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
            text
        })
}
