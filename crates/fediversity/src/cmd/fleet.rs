//! `fediversity fleet`: the hosting provider publishes a release to every operator (after
//! seeing what it changes), follows its rollout, and pauses or resumes it. The workers do the
//! rollout itself, in each operator's maintenance windows.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use chrono::DateTime;
use clap::{Args, Subcommand};
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_fleet::rollout::State;
use fediversity_fleet::schedule::Severity;
use fediversity_panel::fleet_release::{
    DEFAULT_BATCH, DEFAULT_CONCURRENCY, DEFAULT_EXPECTED_MINUTES, DEFAULT_MAX_FAILURE_RATE,
    ReleaseRequest, publish,
};
use fediversity_panel::fleet_summary::Summary;
use fediversity_store::{Release, ReleaseId, Store};

use crate::app::StoreOpts;
use crate::input::{InfraOpts, read_text};

#[derive(Subcommand)]
pub enum Command {
    /// Publish a release: print its fleet summary, then schedule its rollout.
    Release(ReleaseOpts),
    /// The rollout of a release (the newest without RELEASE).
    Status {
        /// The release's id.
        release: Option<i64>,
        #[command(flatten)]
        store: StoreOpts,
    },
    /// Pause a rollout: running deployments finish, nobody new starts.
    Pause {
        /// The release's id.
        release: i64,
        #[command(flatten)]
        store: StoreOpts,
    },
    /// Resume a paused or halted rollout.
    Resume {
        /// The release's id.
        release: i64,
        #[command(flatten)]
        store: StoreOpts,
    },
}

#[derive(Args)]
pub struct ReleaseOpts {
    /// The release's infra.toml (new flake revision, template, sizes or limits).
    #[arg(long, value_name = "FILE")]
    infra: PathBuf,
    /// What the release is, as operators are told.
    #[arg(long)]
    title: String,
    /// `routine` or `security`.
    #[arg(long)]
    severity: Severity,
    /// For a security release: applied by then (RFC 3339), outside windows if need be.
    #[arg(long)]
    deadline: Option<String>,
    /// An operator deployed first, in the canary wave (repeatable).
    #[arg(long = "canary", value_name = "OPERATOR")]
    canaries: Vec<String>,
    /// How many operators deploy at once, at most.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// How many operators a wave after the canaries has.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch: usize,
    /// The share of a wave's operators that may fail before the rollout halts.
    #[arg(long, default_value_t = DEFAULT_MAX_FAILURE_RATE)]
    max_failure_rate: f64,
    /// How long one operator's deployment is expected to take, in minutes.
    #[arg(long, default_value_t = DEFAULT_EXPECTED_MINUTES)]
    expected_minutes: u32,
    /// Print the fleet summary only; publish nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreOpts,
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Release(opts) => release(opts).await,
        Command::Status { release, store } => status(&*store.open().await?, release).await,
        Command::Pause { release, store } => {
            set_state(&*store.open().await?, release, State::Paused).await
        }
        Command::Resume { release, store } => {
            set_state(&*store.open().await?, release, State::Running).await
        }
    }
}

async fn release(opts: ReleaseOpts) -> Result<()> {
    let deadline = opts
        .deadline
        .as_deref()
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|d| d.to_utc())
                .map_err(|e| anyhow!("--deadline `{text}` is not an RFC 3339 time: {e}"))
        })
        .transpose()?;
    let store = opts.store.open().await?;
    let infra_opts = InfraOpts {
        infra: Some(opts.infra.clone()),
    };
    let platform = crate::cmd::worker::platform(&infra_opts, &opts.store, &store)?;
    let request = ReleaseRequest {
        infra_toml: read_text(&opts.infra)?,
        title: opts.title,
        severity: opts.severity,
        deadline,
        canaries: opts.canaries,
        batch: opts.batch,
        concurrency: opts.concurrency,
        max_failure_rate: opts.max_failure_rate,
        expected_minutes: opts.expected_minutes,
        dry_run: opts.dry_run,
    };
    let published = publish(&store, &platform, &request, SystemClock.now()).await?;
    print_summary(&published.summary);
    if let Some(id) = published.id {
        anstream::println!(
            "Release {} published: the workers roll it out in each operator's maintenance windows (`fediversity fleet status {}`)",
            id.0,
            id.0
        );
    }
    Ok(())
}

fn print_summary(summary: &Summary) {
    let (restart, replace) = summary.counts();
    anstream::println!(
        "{} of {} operators affected; services restart for {restart}, VMs are replaced for {replace}",
        summary.affected.len(),
        summary.operators
    );
    for operator in &summary.affected {
        match &operator.problem {
            Some(problem) => {
                anstream::println!("  {}: cannot be planned: {problem}", operator.operator)
            }
            None => anstream::println!("  {}: {}", operator.operator, operator.changes.join(", ")),
        }
    }
}

async fn status(store: &Store, release: Option<i64>) -> Result<()> {
    let release = match release {
        Some(id) => store.release(ReleaseId(id)).await?,
        None => match store.releases().await?.into_iter().next() {
            Some(release) => release,
            None => bail!("no release has been published"),
        },
    };
    print_release(&release);
    anstream::println!(
        "{:<24} {:>4}  {:<22} STATUS",
        "OPERATOR",
        "WAVE",
        "SLOT (UTC)"
    );
    for item in store.rollout(release.id).await? {
        let item = item.item;
        let slot = item.slot.map_or_else(
            || "-".to_owned(),
            |slot| {
                let outside = if slot.outside_windows {
                    " (forced)"
                } else {
                    ""
                };
                format!("{}{outside}", slot.start.format("%Y-%m-%d %H:%M"))
            },
        );
        let status = match &item.status {
            fediversity_fleet::rollout::ItemStatus::Failed(reason) => format!("failed: {reason}"),
            other => other.as_str().to_owned(),
        };
        anstream::println!(
            "{:<24} {:>4}  {slot:<22} {status}",
            item.operator.as_str(),
            item.wave
        );
    }
    Ok(())
}

fn print_release(release: &Release) {
    anstream::println!(
        "Release {}: {} ({}) — {}",
        release.id.0,
        release.release.title,
        release.release.severity.as_str(),
        release.state.as_str()
    );
    if let Some(reason) = &release.halt_reason {
        anstream::println!("Halted: {reason}");
    }
}

async fn set_state(store: &Store, id: i64, state: State) -> Result<()> {
    let id = ReleaseId(id);
    store.release(id).await?;
    store
        .set_release_state(id, state, None, SystemClock.now())
        .await?;
    anstream::println!("Release {}: {}", id.0, state.as_str());
    Ok(())
}
