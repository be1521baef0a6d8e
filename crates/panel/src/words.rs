//! Plans, events and reports in words a non-specialist understands.

use fediversity_engine::Action;
use fediversity_engine::events::Event;
use fediversity_engine::plan::PlanSummary;
use fediversity_engine::report::Report;
use fediversity_model::graph::{ResourceAddress, ResourceKind};

/// What a kind of resource is, for people.
fn noun(address: &ResourceAddress) -> &'static str {
    match address.kind() {
        ResourceKind::Sshkey => "deployment key",
        ResourceKind::Secret => "generated secret",
        ResourceKind::Vm => "virtual machine",
        ResourceKind::Dns => "DNS record",
        ResourceKind::Bucket => "media storage",
        ResourceKind::S3key => "storage access key",
        ResourceKind::S3cluster => "storage cluster",
        ResourceKind::Nixos => "server system",
        ResourceKind::Identity => "sign-in directory check",
        ResourceKind::OidcClient => "single sign-on client",
    }
}

/// One line of a plan: `Create the virtual machine vm.mastodon`, with why when it is not new.
pub struct PlanLine {
    /// The action, for styling: `create`, `update`, `delete`, …
    pub action: &'static str,
    /// The sentence.
    pub text: String,
}

/// The CSS class of a plan line.
fn class(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "delete",
        Action::Keep => "keep",
        Action::Unchanged => "unchanged",
    }
}

/// The sentence for `action` on `address`.
fn sentence(action: Action, address: &ResourceAddress) -> String {
    let what = format!("the {} {address}", noun(address));
    match action {
        Action::Create => format!("Create {what}"),
        Action::Update => format!("Change {what} in place"),
        Action::Replace => format!("Replace {what} (it is removed and made anew)"),
        Action::Delete => format!("Delete {what}"),
        Action::Keep => format!("Take {what} out of service but keep its data"),
        Action::Unchanged => format!("Leave {what} as it is"),
    }
}

/// What is under way on `address`: `Creating the virtual machine vm.mastodon`.
fn doing(action: Action, address: &ResourceAddress) -> String {
    let verb = match action {
        Action::Create => "Creating",
        Action::Update => "Changing",
        Action::Replace => "Replacing",
        Action::Delete => "Deleting",
        Action::Keep => "Taking out of service",
        Action::Unchanged => "Checking",
    };
    format!("{verb} the {} {address}", noun(address))
}

/// The plan, one line per change, and a one-line summary.
pub fn plan(summary: &PlanSummary) -> (String, Vec<PlanLine>) {
    let count = |action| summary.counts.get(&action).copied().unwrap_or(0);
    let headline = if summary.steps.is_empty() {
        "Everything is already as configured: deploying changes nothing.".to_owned()
    } else {
        format!(
            "{} to create, {} to change, {} to replace, {} to delete, {} to keep the data of; {} left as they are.",
            count(Action::Create),
            count(Action::Update),
            count(Action::Replace),
            count(Action::Delete),
            count(Action::Keep),
            count(Action::Unchanged),
        )
    };
    let lines = summary
        .steps
        .iter()
        .map(|(address, step)| {
            let mut text = sentence(step.action, address);
            if step.action != Action::Create && !step.reasons.is_empty() {
                text = format!("{text}: {}", step.reasons.join("; "));
            }
            PlanLine {
                action: class(step.action),
                text,
            }
        })
        .collect();
    (headline, lines)
}

/// One line of a deployment's progress.
pub struct ProgressLine {
    /// `started`, `progress`, `succeeded`, `failed` or `planned`, for styling.
    pub class: &'static str,
    /// What happened.
    pub text: String,
    /// Seconds since the deployment started, `12.3 s`.
    pub elapsed: String,
}

/// The progress line of an event (none for `Finished`: the report shows it), `elapsed_ms`
/// after the deployment started and, for a finished step, `took_ms` after the step started.
pub fn progress(event: &Event, elapsed_ms: i64, took_ms: Option<i64>) -> Option<ProgressLine> {
    let took = took_ms.map_or_else(String::new, |ms| format!(" in {}", seconds(ms)));
    let (class, text) = match event {
        Event::Planned { plan: summary } => ("planned", format!("Plan: {}", plan(summary).0)),
        Event::Started { address, action } => ("started", format!("{}…", doing(*action, address))),
        Event::Progress {
            address, message, ..
        } => ("progress", format!("{address}: {message}")),
        Event::Succeeded {
            address, action, ..
        } => (
            "succeeded",
            format!("Done{took}: {}", sentence(*action, address)),
        ),
        Event::Failed {
            address,
            action,
            error,
        } => (
            "failed",
            format!("Failed{took}: {}: {error}", sentence(*action, address)),
        ),
        Event::Finished { .. } => return None,
    };
    Some(ProgressLine {
        class,
        text,
        elapsed: seconds(elapsed_ms),
    })
}

/// Milliseconds as `12.3 s`.
pub fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms.max(0) as f64 / 1000.0)
}

/// The end of a deployment, for people.
pub struct ReportView {
    /// Whether it succeeded.
    pub succeeded: bool,
    /// One line: what happened overall.
    pub headline: String,
    /// What was kept, what failed and what was not attempted, one line each.
    pub details: Vec<String>,
}

/// The report of a finished run.
pub fn report(report: &Report) -> ReportView {
    let succeeded = report.succeeded();
    let headline = format!(
        "{} in {}: {} changed, {} kept, {} already as configured, {} failed, {} not attempted.",
        if succeeded { "Succeeded" } else { "Failed" },
        seconds(i64::try_from(report.elapsed_ms).unwrap_or(i64::MAX)),
        report.done.len(),
        report.kept.len(),
        report.unchanged,
        report.failed.len(),
        report.skipped.len(),
    );
    let details = report
        .kept
        .iter()
        .map(|(address, note)| format!("Kept {address}: {note}"))
        .chain(
            report
                .failed
                .iter()
                .map(|(address, error)| format!("Failed {address}: {error}")),
        )
        .chain(
            report
                .skipped
                .iter()
                .map(|(address, why)| format!("Not attempted {address}: {why}")),
        )
        .collect();
    ReportView {
        succeeded,
        headline,
        details,
    }
}
