//! The fleet summary of a release: what its infra.toml would change for every operator, from
//! the configurator and the engine's pure `plan` against each operator's recorded state.
//! Nothing is deployed or written: the provider sees it before publishing (and with
//! `--dry-run` instead of publishing).

use std::collections::BTreeSet;

use fediversity_engine::plan::{Action, plan};
use fediversity_engine::store::StateStore as _;
use fediversity_model::graph::ResourceKind;
use fediversity_model::names::OperatorId;
use fediversity_model::{Infra, OperatorConfig};
use fediversity_store::Store;
use serde::Serialize;

use crate::Platform;

/// Why a summary could not be made: the store failed.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The operators' configurations could not be read.
    #[error(transparent)]
    Store(#[from] fediversity_store::Error),
    /// An operator's recorded state could not be read.
    #[error("reading the recorded state: {0}")]
    State(#[from] fediversity_engine::store::StoreError),
}

/// What a release changes across the fleet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many operators have a configuration (the release's rollout covers them).
    pub operators: usize,
    /// The operators the release changes something for, or cannot be planned for.
    pub affected: Vec<OperatorChanges>,
}

/// What a release changes for one operator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperatorChanges {
    /// The operator.
    pub operator: OperatorId,
    /// Every resource that changes, as `verb address` (`update nixos.mastodon`).
    pub changes: Vec<String>,
    /// The NixOS hosts updated in place: their services restart.
    pub restarts: Vec<String>,
    /// The VMs replaced: made anew (data on separate volumes and buckets is kept).
    pub replaces: Vec<String>,
    /// Why the operator cannot be planned for under the release (its configuration does
    /// not fit the new infrastructure), if so: its deployment would fail.
    pub problem: Option<String>,
}

impl Summary {
    /// How many operators' services restart, and how many have a VM replaced.
    pub fn counts(&self) -> (usize, usize) {
        let restart = self
            .affected
            .iter()
            .filter(|o| !o.restarts.is_empty())
            .count();
        let replace = self
            .affected
            .iter()
            .filter(|o| !o.replaces.is_empty())
            .count();
        (restart, replace)
    }
}

/// The summary of deploying `infra` to every operator of `operators` that has a
/// configuration.
pub async fn summarize(
    store: &Store,
    platform: &Platform,
    infra: &Infra,
    operators: &[OperatorId],
) -> Result<Summary, SummaryError> {
    let mut summary = Summary {
        operators: 0,
        affected: Vec::new(),
    };
    for operator in operators {
        let Some(latest) = store.configurations(operator).await?.pop() else {
            continue;
        };
        summary.operators += 1;
        let changes = match serde_json::from_value::<OperatorConfig>(latest.config) {
            Ok(config) => changes_for(store, platform, infra, &config).await?,
            Err(error) => unplannable(
                operator,
                format!("its configuration cannot be read: {error}"),
            ),
        };
        if changes.problem.is_some() || !changes.changes.is_empty() {
            summary.affected.push(changes);
        }
    }
    Ok(summary)
}

async fn changes_for(
    store: &Store,
    platform: &Platform,
    infra: &Infra,
    config: &OperatorConfig,
) -> Result<OperatorChanges, SummaryError> {
    let operator = &config.operator.id;
    let graph = match fediversity_configurator::configure(config, infra) {
        Ok(graph) => graph,
        Err(problems) => {
            return Ok(unplannable(
                operator,
                format!("its configuration does not fit the release: {problems}"),
            ));
        }
    };
    let state = store.load_state(operator).await?;
    let planned = (platform.providers)(&graph).and_then(|providers| {
        plan(&graph, &state, &providers, &BTreeSet::new()).map_err(|e| e.to_string())
    });
    let planned = match planned {
        Ok(planned) => planned,
        Err(error) => return Ok(unplannable(operator, error)),
    };
    let mut changes = OperatorChanges {
        operator: operator.clone(),
        changes: Vec::new(),
        restarts: Vec::new(),
        replaces: Vec::new(),
        problem: None,
    };
    for (address, step) in &planned.steps {
        if step.action == Action::Unchanged {
            continue;
        }
        changes
            .changes
            .push(format!("{} {address}", step.action.verb()));
        match (address.kind(), step.action) {
            (ResourceKind::Nixos, Action::Update) => changes.restarts.push(address.to_string()),
            (ResourceKind::Vm, Action::Replace) => changes.replaces.push(address.to_string()),
            _ => {}
        }
    }
    Ok(changes)
}

fn unplannable(operator: &OperatorId, problem: String) -> OperatorChanges {
    OperatorChanges {
        operator: operator.clone(),
        changes: Vec::new(),
        restarts: Vec::new(),
        replaces: Vec::new(),
        problem: Some(problem),
    }
}
