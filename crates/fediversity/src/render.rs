//! Renders a resource graph for people: grouped by service, one line per resource saying in
//! plain words what it is. Colours go through `anstream`, which drops them when the output is
//! not a terminal (or `NO_COLOR` is set).

use std::collections::BTreeMap;
use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use fediversity_engine::Action;
use fediversity_engine::plan::PlanSummary;
use fediversity_engine::provider::ChangeKind;
use fediversity_engine::report::Report;
use fediversity_model::graph::{DesiredGraph, Reference, Resource, ResourceAddress, ResourceKind};
use fediversity_model::{OperatorConfig, Retention, ServiceKind};
use serde_json::Value;

pub const ERROR: Style = AnsiColor::Red.on_default().bold();
const HEADING: Style = Style::new().bold();
const CREATE: Style = AnsiColor::Green.on_default();
const ADDRESS: Style = AnsiColor::Cyan.on_default();
const QUIET: Style = Style::new().dimmed();

/// Writes the plan of `graph` for `config`: every resource would be created.
pub fn graph(
    out: &mut impl Write,
    config: &OperatorConfig,
    graph: &DesiredGraph,
    infra: &str,
) -> io::Result<()> {
    writeln!(
        out,
        "{HEADING}Plan for operator {} ({}), domain {}, on {infra}{HEADING:#}",
        config.operator.id, config.operator.name, config.domain
    )?;
    let mut groups: BTreeMap<Option<ServiceKind>, Vec<(&ResourceAddress, &Resource)>> =
        BTreeMap::new();
    for (address, resource) in &graph.resources {
        groups
            .entry(resource.service)
            .or_default()
            .push((address, resource));
    }
    let width = graph
        .resources
        .keys()
        .map(|a| a.to_string().len())
        .max()
        .unwrap_or(0);
    for (service, resources) in &groups {
        writeln!(out)?;
        match service {
            Some(kind) => service_heading(out, config, *kind)?,
            None => writeln!(out, "{HEADING}Shared by the operator's services{HEADING:#}")?,
        }
        for (address, resource) in resources {
            writeln!(
                out,
                "  {CREATE}+{CREATE:#} {ADDRESS}{:<width$}{ADDRESS:#}  {QUIET}{:<8}{QUIET:#} {}",
                address.to_string(),
                resource.provider,
                describe(address, resource)
            )?;
        }
    }
    let off: Vec<String> = config
        .services
        .iter()
        .filter(|(_, service)| !service.enable)
        .map(|(kind, service)| format!("{} ({})", kind.title(), retention_words(service.retention)))
        .collect();
    if !off.is_empty() {
        writeln!(out, "\n{HEADING}Turned off:{HEADING:#} {}", off.join(", "))?;
    }
    writeln!(out, "\n{}", summary(graph))
}

fn service_heading(
    out: &mut impl Write,
    config: &OperatorConfig,
    kind: ServiceKind,
) -> io::Result<()> {
    let Some(service) = config.services.get(kind) else {
        return writeln!(out, "{HEADING}{}{HEADING:#}", kind.title());
    };
    writeln!(
        out,
        "{HEADING}{}{HEADING:#} at https://{}, size {}, {} when turned off",
        kind.title(),
        config.service_fqdn(kind, service),
        service.size,
        match service.retention {
            Retention::Keep => "data kept",
            Retention::Delete => "data deleted",
        }
    )
}

fn retention_words(retention: Retention) -> &'static str {
    match retention {
        Retention::Keep => "its data is kept",
        Retention::Delete => "its data is deleted",
    }
}

/// `23 resources to create: 1 sshkey, 9 secret, …`
fn summary(graph: &DesiredGraph) -> String {
    let mut counts: BTreeMap<ResourceKind, usize> = BTreeMap::new();
    for address in graph.resources.keys() {
        *counts.entry(address.kind()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.as_str()))
        .collect();
    match graph.resources.len() {
        0 => "Nothing to deploy: no service is turned on.".to_owned(),
        total => format!("{total} resources to create: {}", parts.join(", ")),
    }
}

/// One line in plain words. Values known only after apply are shown as their reference.
fn describe(address: &ResourceAddress, resource: &Resource) -> String {
    let inputs = &resource.inputs;
    let text = |field: &str| match &inputs[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let gib = |field: &str| inputs[field].as_u64().unwrap_or(0) >> 30;
    match address.kind() {
        ResourceKind::Sshkey => format!("{} key pair for deployments", text("algorithm")),
        ResourceKind::Secret => describe_secret(inputs),
        ResourceKind::Vm => format!(
            "VM {}: {} vCPUs, {} MiB memory, {} GiB disk",
            text("name"),
            text("cores"),
            text("memory_mib"),
            text("disk_gib")
        ),
        ResourceKind::Dns => {
            let values: Vec<String> = inputs["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            format!("{} {} → {}", text("name"), text("type"), values.join(", "))
        }
        ResourceKind::Bucket => format!(
            "bucket {}, quota {} GiB, media served publicly",
            text("alias"),
            gib("quota_bytes")
        ),
        ResourceKind::S3key => {
            let buckets: Vec<String> = Reference::all_in(&inputs["grants"])
                .into_iter()
                .map(|r| r.address.to_string())
                .collect();
            format!(
                "access key {}, read/write on {}",
                text("name"),
                buckets.join(", ")
            )
        }
        ResourceKind::S3cluster => format!(
            "Garage layout over {} node(s), replication factor {}",
            inputs["nodes"].as_array().map_or(0, Vec::len),
            text("replication_factor")
        ),
        ResourceKind::Nixos => {
            let host = Reference::all_in(&inputs["host"])
                .into_iter()
                .next()
                .map_or_else(|| text("host"), |r| r.address.to_string());
            let secrets = inputs["secrets"]
                .as_object()
                .map_or(0, serde_json::Map::len);
            format!("NixOS system on {host}, {secrets} secrets uploaded as files")
        }
        ResourceKind::Identity => describe_identity_check(inputs),
        ResourceKind::OidcClient => format!(
            "single sign-on client of the panel, redirecting to {}",
            inputs["redirect_uris"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The operator's identity provider, as the check before any host changes sees it.
fn describe_identity_check(inputs: &Value) -> String {
    match (
        inputs["ldap"]["url"].as_str(),
        inputs["oidc"]["issuer"].as_str(),
    ) {
        (Some(url), _) => format!("check of the LDAP directory {url}: bind, users, admin group"),
        (None, Some(issuer)) => format!("check of the OpenID Connect provider {issuer}: discovery"),
        (None, None) => "check of the operator's identity provider".to_owned(),
    }
}

fn describe_secret(inputs: &Value) -> String {
    let number = |field: &str| inputs[field].as_u64().unwrap_or(0);
    match inputs["generate"].as_str() {
        Some("password") => format!("random password, {} characters", number("length")),
        Some("hex") => format!("random key, {} hex digits", number("length")),
        Some("base64") => format!("random key, {} bytes in base64", number("bytes")),
        Some("vapid-keypair") => "Web Push (VAPID) key pair".to_owned(),
        _ => match (inputs["operator_secret"].as_str(), inputs["file"].as_str()) {
            (Some(name), _) => format!("the operator's stored secret `{name}`"),
            (None, Some(file)) => format!("the hosting provider's secret file {file}"),
            (None, None) => "secret".to_owned(),
        },
    }
}

const UPDATE: Style = AnsiColor::Yellow.on_default();
const REMOVE: Style = AnsiColor::Red.on_default();

/// Writes a plan against the recorded state: what each step does and why, field by field for
/// changes. Values are masked already.
pub fn plan(out: &mut impl Write, summary: &PlanSummary, desired: &DesiredGraph) -> io::Result<()> {
    let count = |action| summary.counts.get(&action).copied().unwrap_or(0);
    writeln!(
        out,
        "{HEADING}Plan for operator {}:{HEADING:#} {} to create, {} to update, {} to replace, {} to delete, {} to keep the data of, {} unchanged",
        summary.operator,
        count(Action::Create),
        count(Action::Update),
        count(Action::Replace),
        count(Action::Delete),
        count(Action::Keep),
        count(Action::Unchanged),
    )?;
    for (address, step) in &summary.steps {
        let (mark, style) = match step.action {
            Action::Create => ("+", CREATE),
            Action::Update => ("~", UPDATE),
            Action::Replace => ("±", UPDATE),
            Action::Delete | Action::Keep => ("-", REMOVE),
            Action::Unchanged => (" ", QUIET),
        };
        let what = match (step.action, desired.resources.get(address)) {
            (Action::Create, Some(resource)) => describe(address, resource),
            _ => step.reasons.join("; "),
        };
        writeln!(
            out,
            "  {style}{mark}{style:#} {ADDRESS}{address}{ADDRESS:#} {QUIET}{} {}{QUIET:#}  {what}",
            step.provider,
            step.action.verb(),
        )?;
        if matches!(step.action, Action::Update | Action::Replace) {
            for change in &step.changes {
                let forces = if change.kind == ChangeKind::Replace {
                    "  (forces replacement)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "      {}: {} → {}{forces}",
                    change.path,
                    shown(change.before.as_ref()),
                    shown(change.after.as_ref())
                )?;
            }
        }
    }
    Ok(())
}

/// A value in a plan line: compact JSON, cut short when long.
fn shown(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "(none)".to_owned();
    };
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(79).collect::<String>())
    } else {
        text
    }
}

/// Writes the end of a run: what was done, kept, failed and skipped.
pub fn report(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let status = if report.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    writeln!(
        out,
        "\n{HEADING}Deployment of {} {status}{HEADING:#} in {:.1}s: {} changed, {} kept, {} unchanged, {} failed, {} not attempted ({} provider calls)",
        report.operator,
        report.elapsed_ms as f64 / 1000.0,
        report.done.len(),
        report.kept.len(),
        report.unchanged,
        report.failed.len(),
        report.skipped.len(),
        report.provider_calls,
    )?;
    for (address, note) in &report.kept {
        writeln!(out, "  kept: {address}: {note}")?;
    }
    for (address, error) in &report.failed {
        writeln!(out, "  {ERROR}failed:{ERROR:#} {address}: {error}")?;
    }
    for (address, why) in &report.skipped {
        writeln!(out, "  {QUIET}not attempted: {address}: {why}{QUIET:#}")?;
    }
    Ok(())
}
