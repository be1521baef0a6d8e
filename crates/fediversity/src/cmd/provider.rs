//! `fediversity provider …`: tools for provider authors.
//!
//! `fediversity provider test <exe> [-- ARGS…]` runs the conformance checks of the external
//! provider protocol (`docs/provider-protocol.md`) against an executable and prints one line
//! per check, PASS, FAIL or SKIP, with what was seen (or the report as JSON with `--json`). It
//! exits 1 when a check fails. The provider's own log lines (its standard error) are shown as
//! they come.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use fediversity_providers::external::{
    ConformanceOptions, ConformanceReport, ExternalOptions, Outcome, conformance_with,
};

/// Options of `fediversity provider`.
#[derive(Args)]
pub struct Opts {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that an external provider speaks the provider protocol: handshake, create, read
    /// (found, missing, after a crash), update, delete (twice), errors and the JSON Schema.
    Test(TestOpts),
}

#[derive(Args)]
struct TestOpts {
    /// The provider executable.
    #[arg(value_name = "EXE")]
    exe: PathBuf,
    /// Arguments for the executable, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<OsString>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// How long one call may take, in seconds, before the provider is stopped.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        env = "FEDIVERSITY_PROVIDER_TIMEOUT"
    )]
    timeout: u64,
}

/// Runs `fediversity provider …`. Async: the checks talk to the provider process.
pub async fn run(opts: Opts) -> Result<()> {
    match opts.command {
        Command::Test(opts) => test(opts).await,
    }
}

async fn test(opts: TestOpts) -> Result<()> {
    let options = ConformanceOptions {
        external: ExternalOptions {
            args: opts.args,
            call_timeout: Duration::from_secs(opts.timeout.max(1)),
            inherit_stderr: true,
            ..ExternalOptions::default()
        },
    };
    let report = conformance_with(&opts.exe, options).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !report.passed() {
        bail!(
            "{} does not conform to the provider protocol: {} of {} checks failed",
            opts.exe.display(),
            report.count(Outcome::Fail),
            report.checks.len()
        );
    }
    Ok(())
}

/// The report as a table, PASS in green, FAIL in red, SKIP in yellow (plain when not a
/// terminal).
fn print_table(report: &ConformanceReport) {
    let bold = Style::new().bold();
    match &report.provider {
        Some(name) => anstream::println!(
            "{bold}conformance of external provider `{name}`{bold:#} ({})",
            report.executable.display()
        ),
        None => anstream::println!(
            "{bold}conformance of {}{bold:#}",
            report.executable.display()
        ),
    }
    anstream::println!();
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        let (mark, color) = match check.outcome {
            Outcome::Pass => ("PASS", AnsiColor::Green),
            Outcome::Fail => ("FAIL", AnsiColor::Red),
            Outcome::Skip => ("SKIP", AnsiColor::Yellow),
        };
        let style = Style::new().fg_color(Some(color.into())).bold();
        anstream::println!(
            "  {style}{mark}{style:#}  {:width$}  {}",
            check.name,
            check.detail
        );
    }
    anstream::println!();
    anstream::println!(
        "conformance: {} checks passed, {} failed, {} skipped",
        report.count(Outcome::Pass),
        report.count(Outcome::Fail),
        report.count(Outcome::Skip)
    );
}
