//! Planning: `DesiredGraph × RecordedState → Plan`, a pure diff.
//!
//! Every desired resource is compared with its record (references resolved with the recorded
//! outputs of what stays, "known after apply" for what is made anew), and every record no
//! longer desired is removed — or, for data under retention `keep`, detached and kept. No
//! provider is called: an unchanged resource costs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fediversity_model::Retention;
use fediversity_model::graph::{DesiredGraph, Reference, ResourceAddress, ResourceKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::diff::{self, FieldChange};
use crate::error::{EngineError, EngineResult};
use crate::provider::{ChangeKind, Provider};
use crate::state::{RecordStatus, RecordedState, ResourceRecord};
use crate::value::{Resolution, Resolved, resolve};

/// The providers of a run, by name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// What a run does to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Make it.
    Create,
    /// Change it in place.
    Update,
    /// Remove it and make it anew (a changed field cannot be changed in place).
    Replace,
    /// Remove it.
    Delete,
    /// Remove it from the deployment but keep its data (retention `keep`).
    Keep,
    /// Nothing: it is as desired.
    Unchanged,
}

impl Action {
    /// The verb shown to people.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
            Self::Keep => "keep data of",
            Self::Unchanged => "leave",
        }
    }
}

/// One resource's part of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What will be done.
    pub action: Action,
    /// The provider that does it.
    pub provider: String,
    /// Why, in words for people.
    pub reasons: Vec<String>,
    /// The fields that change (secrets still wrapped: show [`FieldChange::masked`]).
    pub changes: Vec<FieldChange>,
    /// Steps that must be done before this one.
    pub after: BTreeSet<ResourceAddress>,
}

/// Everything a run will do: one step per desired or recorded resource. It refers to the
/// desired graph and the recorded state it was made from without holding copies of them.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Whose plan.
    pub operator: fediversity_model::names::OperatorId,
    /// One step per desired or recorded resource.
    pub steps: BTreeMap<ResourceAddress, Step>,
}

impl Plan {
    /// Whether the run would change anything.
    pub fn is_empty(&self) -> bool {
        self.steps.values().all(|s| s.action == Action::Unchanged)
    }

    /// The plan as shown to people and scripts: secrets masked, unchanged resources counted.
    pub fn summary(&self) -> PlanSummary {
        let mut counts = BTreeMap::new();
        for step in self.steps.values() {
            *counts.entry(step.action).or_insert(0) += 1;
        }
        PlanSummary {
            operator: self.operator.to_string(),
            counts,
            steps: self
                .steps
                .iter()
                .filter(|(_, s)| s.action != Action::Unchanged)
                .map(|(address, step)| {
                    let summary = StepSummary {
                        action: step.action,
                        provider: step.provider.clone(),
                        reasons: step.reasons.clone(),
                        changes: step.changes.iter().map(FieldChange::masked).collect(),
                    };
                    (address.clone(), summary)
                })
                .collect(),
        }
    }
}

/// A plan with every secret masked: for events, the CLI and the panel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Whose plan.
    pub operator: String,
    /// How many resources each action concerns.
    pub counts: BTreeMap<Action, usize>,
    /// The steps that change something.
    pub steps: BTreeMap<ResourceAddress, StepSummary>,
}

/// One step, masked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// What will be done.
    pub action: Action,
    /// The provider that does it.
    pub provider: String,
    /// Why.
    pub reasons: Vec<String>,
    /// The fields that change, secrets masked.
    pub changes: Vec<FieldChange>,
}

/// The reason shown for a replacement asked for by name (`--replace`).
pub const REPLACEMENT_REQUESTED: &str = "replacement requested";

/// The plan that brings `state` to `desired`, replacing the resources in `replace` even if
/// they are as desired (like Terraform's `-replace`: rotating a secret or a key). Every address
/// in `replace` must be a resource of `desired`, else nothing is planned.
pub fn plan(
    desired: &DesiredGraph,
    state: &RecordedState,
    providers: &Providers,
    replace: &BTreeSet<ResourceAddress>,
) -> EngineResult<Plan> {
    check_replacements(desired, replace)?;
    let order = desired
        .topological_order()
        .ok_or_else(|| EngineError::Graph("the desired graph has a cycle".to_owned()))?;
    let mut steps: BTreeMap<ResourceAddress, Step> = BTreeMap::new();
    for address in order {
        let requested = replace.contains(address);
        let step = plan_desired(desired, state, providers, &steps, address, requested)?;
        steps.insert(address.clone(), step);
    }
    for (address, record) in &state.resources {
        if desired.resources.contains_key(address) {
            continue;
        }
        if let Some(step) = plan_removal(desired, state, &steps, address, record) {
            steps.insert(address.clone(), step);
        }
    }
    Ok(Plan {
        operator: desired.operator.clone(),
        steps,
    })
}

/// Refuses replacements of resources `desired` does not have: callers check before they start
/// anything (the CLI before it records a deployment), and [`plan`] checks again.
pub fn check_replacements(
    desired: &DesiredGraph,
    replace: &BTreeSet<ResourceAddress>,
) -> EngineResult<()> {
    let unknown: Vec<String> = replace
        .iter()
        .filter(|address| !desired.resources.contains_key(*address))
        .map(ToString::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(EngineError::UnknownReplacement {
            operator: desired.operator.to_string(),
            addresses: unknown.join(", "),
        });
    }
    Ok(())
}

/// Looks up a reference's value at plan time: outputs of resources that stay are known; those of
/// resources made anew are known only after apply.
pub fn planned_output(
    state: &RecordedState,
    steps: &BTreeMap<ResourceAddress, Step>,
    reference: &Reference,
) -> Resolution {
    if matches!(
        steps.get(&reference.address).map(|s| s.action),
        Some(Action::Create | Action::Replace)
    ) {
        return Resolution::Unknown;
    }
    recorded_output(state.resources.get(&reference.address), reference)
}

/// A reference's value from a record, if there is one.
pub fn recorded_output(record: Option<&ResourceRecord>, reference: &Reference) -> Resolution {
    match record {
        None => Resolution::Unknown,
        Some(record) => record
            .outputs
            .get(&reference.output)
            .cloned()
            .map_or(Resolution::Missing, Resolution::Known),
    }
}

fn plan_desired(
    desired: &DesiredGraph,
    state: &RecordedState,
    providers: &Providers,
    steps: &BTreeMap<ResourceAddress, Step>,
    address: &ResourceAddress,
    requested: bool,
) -> EngineResult<Step> {
    let resource = &desired.resources[address];
    let provider =
        providers
            .get(&resource.provider)
            .ok_or_else(|| EngineError::UnknownProvider {
                provider: resource.provider.clone(),
                address: address.clone(),
            })?;
    let lookup = |reference: &Reference| planned_output(state, steps, reference);
    let inputs = match resolve(&resource.inputs, &lookup)
        .map_err(|e| EngineError::Graph(format!("{address}: {e}")))?
    {
        Resolved::Complete(value) | Resolved::Partial(value) => value,
    };
    let after = resource.dependencies();
    let step = |action, reasons: Vec<String>, changes| Step {
        action,
        provider: resource.provider.clone(),
        reasons,
        changes,
        after: after.clone(),
    };
    let record = match state.resources.get(address) {
        Some(record) if record.status != RecordStatus::Missing => record,
        missing => {
            let reason = if missing.is_some() {
                "gone when last refreshed"
            } else {
                "new in the configuration"
            };
            let changes = diff::changes(&json!({}), &inputs);
            return Ok(step(Action::Create, vec![reason.to_owned()], changes));
        }
    };
    if record.provider != resource.provider {
        let why = format!(
            "moves from provider `{}` to `{}`",
            record.provider, resource.provider
        );
        refuse_data_loss(desired, address, record, &why)?;
        let changes = diff::changes(&record.inputs, &inputs);
        return Ok(step(Action::Replace, vec![why], changes));
    }
    let changes = provider.diff(address, &record.inputs, &inputs);
    let mut reasons: Vec<String> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Replace)
        .map(|c| format!("`{}` cannot be changed in place", c.path))
        .collect();
    if !reasons.is_empty() {
        refuse_data_loss(desired, address, record, &reasons.join(", "))?;
    }
    if requested {
        // A secret's or a key's value is what rotating it replaces: asked for by name, that
        // is the point. Anything else holding data (a bucket, say) stays protected.
        if !rotatable(address) {
            refuse_data_loss(desired, address, record, REPLACEMENT_REQUESTED)?;
        }
        reasons.insert(0, REPLACEMENT_REQUESTED.to_owned());
    }
    let replace = !reasons.is_empty();
    if let RecordStatus::Retained { note } = &record.status {
        reasons.insert(0, format!("reuses the data kept earlier ({note})"));
        let action = if replace {
            Action::Replace
        } else {
            Action::Update
        };
        return Ok(step(action, reasons, changes));
    }
    let action = match (changes.is_empty(), replace) {
        (_, true) => Action::Replace,
        (true, false) if metadata_changed(record, resource, desired) => {
            reasons.push("records its service, retention and dependencies anew".to_owned());
            Action::Update
        }
        (true, false) => Action::Unchanged,
        (false, false) => {
            reasons.push(format!("{} field(s) changed", changes.len()));
            Action::Update
        }
    };
    Ok(step(action, reasons, changes))
}

/// Whether replacing the resource on request only gives it a new value (secrets and keys)
/// rather than deleting data kept under retention `keep`. Rotating a key that encrypts stored
/// data still makes that data unreadable: the operator asks for it by name.
fn rotatable(address: &ResourceAddress) -> bool {
    matches!(address.kind(), ResourceKind::Secret | ResourceKind::Sshkey)
}

/// The retention that applies to a recorded resource: its service's choice in the desired
/// graph, else the choice recorded with it, else keep.
fn retention_of(desired: &DesiredGraph, record: &ResourceRecord) -> Retention {
    record
        .service
        .and_then(|service| desired.retention.get(&service).copied())
        .or(record.retention)
        .unwrap_or(Retention::Keep)
}

/// Replacing a resource deletes it first: refused for data the operator chose to keep.
pub(crate) fn refuse_data_loss(
    desired: &DesiredGraph,
    address: &ResourceAddress,
    record: &ResourceRecord,
    why: &str,
) -> EngineResult<()> {
    if record.holds_data && retention_of(desired, record) == Retention::Keep {
        return Err(EngineError::DataLoss {
            address: address.clone(),
            why: why.to_owned(),
        });
    }
    Ok(())
}

/// Whether what the record says about a resource (service, data, retention, dependencies)
/// differs from the desired graph's, so the record must be written anew.
pub fn metadata_changed(
    record: &ResourceRecord,
    resource: &fediversity_model::graph::Resource,
    desired: &DesiredGraph,
) -> bool {
    let retention = resource
        .service
        .and_then(|s| desired.retention.get(&s).copied());
    record.service != resource.service
        || record.holds_data != resource.holds_data
        || record.retention != retention
        || record.depends_on != resource.dependencies()
}

fn plan_removal(
    desired: &DesiredGraph,
    state: &RecordedState,
    steps: &BTreeMap<ResourceAddress, Step>,
    address: &ResourceAddress,
    record: &ResourceRecord,
) -> Option<Step> {
    let retention = retention_of(desired, record);
    if let RecordStatus::Retained { note } = &record.status {
        // Kept data stays kept until the operator's choice becomes delete.
        return (retention == Retention::Delete).then(|| Step {
            action: Action::Delete,
            provider: record.provider.clone(),
            reasons: vec![format!(
                "the data kept earlier ({note}) is deleted now (retention: delete)"
            )],
            changes: diff::changes(&record.inputs, &Value::Null),
            after: BTreeSet::new(),
        });
    }
    let (action, reason) = if record.holds_data && retention == Retention::Keep {
        (
            Action::Keep,
            "no longer in the configuration; its data is kept (retention: keep)",
        )
    } else if record.holds_data {
        (
            Action::Delete,
            "no longer in the configuration; its data is deleted (retention: delete)",
        )
    } else {
        (Action::Delete, "no longer in the configuration")
    };
    // Whatever used this resource lets go of it first: removed dependents are removed, and
    // changed dependents are changed, before it goes.
    let after = state
        .resources
        .iter()
        .filter(|(other, other_record)| {
            other_record.depends_on.contains(address)
                && (!desired.resources.contains_key(*other)
                    || steps
                        .get(*other)
                        .is_some_and(|s| s.action != Action::Unchanged))
        })
        .map(|(other, _)| other.clone())
        .collect();
    Some(Step {
        action,
        provider: record.provider.clone(),
        reasons: vec![reason.to_owned()],
        changes: diff::changes(&record.inputs, &Value::Null),
        after,
    })
}
