//! `fediversity fleet`: the hosting provider publishes a release to every operator (after
//! seeing what it changes), follows its rollout, and pauses or resumes it. The workers do the
//! rollout itself, in each operator's maintenance windows.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use chrono::DateTime;
use clap::{Args, Subcommand};
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_fleet::rollout::{Policy, State, waves};
use fediversity_fleet::schedule::Severity;
use fediversity_model::names::OperatorId;
use fediversity_panel::fleet_summary::{Summary, summarize};
use fediversity_store::{NewRelease, Release, ReleaseId, Store};

use crate::app::{self, StoreOpts};
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
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// How many operators a wave after the canaries has.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// The share of a wave's operators that may fail before the rollout halts.
    #[arg(long, default_value_t = 0.1)]
    max_failure_rate: f64,
    /// How long one operator's deployment is expected to take, in minutes.
    #[arg(long, default_value_t = 30)]
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
    let policy = Policy::new(opts.batch, opts.concurrency, opts.max_failure_rate)?;
    let deadline = opts
        .deadline
        .as_deref()
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|d| d.timestamp_millis())
                .map_err(|e| anyhow!("--deadline `{text}` is not an RFC 3339 time: {e}"))
        })
        .transpose()?;
    let store = opts.store.open().await?;
    let infra_opts = InfraOpts {
        infra: Some(opts.infra.clone()),
    };
    let platform = crate::cmd::worker::platform(&infra_opts, &opts.store, &store)?;
    let mut canaries = Vec::new();
    for canary in &opts.canaries {
        let canary = OperatorId::try_from(canary.as_str()).map_err(anyhow::Error::msg)?;
        app::known_operator(&store, &canary).await?;
        canaries.push(canary);
    }
    let mut operators = Vec::new();
    for operator in store.operators().await? {
        if !store.configurations(&operator).await?.is_empty() {
            operators.push(operator);
        }
    }
    let summary = summarize(&store, &platform, &platform.infra, &operators).await?;
    print_summary(&summary);
    if opts.dry_run {
        return Ok(());
    }
    let release = NewRelease {
        title: opts.title,
        severity: opts.severity,
        deadline,
        infra: read_text(&opts.infra)?,
        policy,
        expected_minutes: opts.expected_minutes,
    };
    let batches = waves(&operators, &canaries, opts.batch);
    let id = store
        .create_release(&release, &batches, SystemClock.now())
        .await?;
    anstream::println!(
        "Release {} published: the workers roll it out in each operator's maintenance windows (`fediversity fleet status {}`)",
        id.0,
        id.0
    );
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
