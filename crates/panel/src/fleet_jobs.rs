//! The fleet scheduler on the job queue: [`JobDeployments`] deploys an operator for a release by
//! queueing an ordinary deployment that carries the release (so the worker applies it with the
//! release's infra.toml, under the engine's per-operator lease), and [`tick_every`] runs the
//! scheduler from the workers.
//!
//! Every worker runs the ticker, but a tick advances rollouts only while its worker holds the
//! store's scheduler lease: with several workers on one PostgreSQL store, one of them schedules
//! at a time, and another takes over within a few ticks when that one stops.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_engine::report::Report;
use fediversity_fleet::rollout::ItemStatus;
use fediversity_model::Infra;
use fediversity_model::names::OperatorId;
use fediversity_store::{DeploymentStatus, Release, ReleaseId, Store};
use serde_json::Value;
use tokio::sync::watch;

use crate::Platform;
use crate::fleet::{Deployments, Scheduler};
use crate::worker::{DeployJob, enqueue_release_deployment, report_error};

/// How often the workers tick the fleet scheduler, and the clock its ticks read.
#[derive(Clone)]
pub struct Ticks {
    /// The time between two ticks.
    pub every: Duration,
    /// Where the scheduler reads the time (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
}

impl Default for Ticks {
    /// Every minute, on the system clock: slots are whole minutes of maintenance windows.
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Ticks the fleet scheduler every `ticks.every` until `stop` turns true, advancing rollouts
/// only while `holder` holds the scheduler lease (taken for a few ticks, renewed at each).
pub async fn tick_every(
    store: Arc<Store>,
    holder: String,
    ticks: Ticks,
    mut stop: watch::Receiver<bool>,
) {
    let scheduler = scheduler((*store).clone(), ticks.clock.clone());
    let lease = ticks.every.saturating_mul(3);
    while !*stop.borrow() {
        match store
            .try_fleet_lease(
                fediversity_store::FleetLease::Scheduler,
                &holder,
                ticks.clock.now(),
                lease,
            )
            .await
        {
            Ok(true) => {
                if let Err(error) = scheduler.tick().await {
                    tracing::error!(%error, "fleet scheduler tick failed");
                }
            }
            Ok(false) => tracing::debug!("another worker schedules the fleet"),
            Err(error) => tracing::error!(%error, "could not take the fleet scheduler's lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ticks.every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The fleet scheduler on `store`'s job queue, reading the time from `clock`: the workers'
/// ticks and the operators' "move / apply now" form act through the same one.
pub fn scheduler(store: Store, clock: Arc<dyn Clock>) -> Scheduler {
    let deployments = Arc::new(JobDeployments::new(store.clone()));
    Scheduler::new(store, deployments, clock)
}

/// The infrastructure a deployment runs with: its release's infra.toml for a rollout's
/// deployment, otherwise the one the operator is on ([`operator_infra`]).
pub async fn infra_for<'a>(
    store: &Store,
    platform: &'a Platform,
    operator: &OperatorId,
    request: &DeployJob,
) -> Result<Cow<'a, Infra>, String> {
    match request.release {
        Some(id) => release_infra(store, ReleaseId(id)).await.map(Cow::Owned),
        None => operator_infra(store, platform, operator).await,
    }
}

/// The infrastructure the operator is on: that of the newest release rolled out to it
/// successfully, or the platform's when none was. An operator's own deployments (a changed
/// configuration, a plan) use it, so they keep what a release gave it (a new template, a size,
/// a flake revision) instead of undoing it before the hosting provider changes its own
/// infra.toml, and they never pull in a release the operator has not reached yet outside its
/// maintenance window.
pub async fn operator_infra<'a>(
    store: &Store,
    platform: &'a Platform,
    operator: &OperatorId,
) -> Result<Cow<'a, Infra>, String> {
    let rollouts = store
        .operator_rollouts(operator)
        .await
        .map_err(|e| format!("the releases of `{operator}` cannot be read: {e}"))?;
    // Newest release first: the first one it succeeded in is the one it is on.
    match rollouts
        .iter()
        .find(|rollout| rollout.item.status == ItemStatus::Succeeded)
    {
        Some(rollout) => release_infra(store, rollout.release).await.map(Cow::Owned),
        None => Ok(Cow::Borrowed(&platform.infra)),
    }
}

/// A release's infra.toml, parsed and checked as `fediversity infra check` does.
async fn release_infra(store: &Store, id: ReleaseId) -> Result<Infra, String> {
    let release = store
        .release(id)
        .await
        .map_err(|e| format!("the fleet release {id} cannot be read: {e}"))?;
    fediversity_model::parse_infra(&release.release.infra).map_err(|problems| {
        format!("the infra.toml of fleet release {id} is no longer valid: {problems}")
    })
}

/// [`Deployments`] through the job queue: each start queues a deployment of the operator's
/// latest configuration with the release's infra, and records it on the rollout item.
pub struct JobDeployments {
    store: Store,
}

impl JobDeployments {
    /// Deployments queued in `store`, for the workers sharing it.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Deployments for JobDeployments {
    async fn start(&self, release: &Release, operator: &OperatorId) -> Result<(), String> {
        let version = self
            .store
            .configurations(operator)
            .await
            .map_err(|e| e.to_string())?
            .last()
            .map(|c| c.version)
            .ok_or_else(|| format!("operator `{operator}` has no configuration to deploy"))?;
        let deployment = enqueue_release_deployment(&self.store, operator, version, release.id)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .set_rollout_deployment(release.id, operator, deployment)
            .await
            .map_err(|e| e.to_string())
    }

    async fn outcome(
        &self,
        release: &Release,
        operator: &OperatorId,
    ) -> Result<Option<Result<(), String>>, String> {
        let item = self
            .store
            .rollout(release.id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|r| &r.item.operator == operator);
        let Some(id) = item.and_then(|r| r.deployment) else {
            // Marked running, but the worker stopped before it queued the deployment: nothing
            // ran for this release yet, so queue it now rather than fail an operator that was
            // never deployed.
            tracing::warn!(release = %release.id, %operator, "no deployment was queued for a running rollout item; queueing it now");
            self.start(release, operator).await?;
            return Ok(None);
        };
        let deployment = self
            .store
            .deployments(operator)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| format!("deployment {} of `{operator}` is missing", id.0))?;
        Ok(match deployment.status {
            DeploymentStatus::Queued | DeploymentStatus::Running => None,
            DeploymentStatus::Succeeded => Some(Ok(())),
            DeploymentStatus::Failed => Some(Err(failure_reason(deployment.report.as_ref()))),
        })
    }
}

/// Why a deployment failed, from its report: the error that stopped it, or what failed.
fn failure_reason(report: Option<&Value>) -> String {
    let Some(report) = report else {
        return "the deployment failed without a report".to_owned();
    };
    if let Some(error) = report_error(report) {
        return error.to_owned();
    }
    match serde_json::from_value::<Report>(report.clone()) {
        Ok(report) if !report.failed.is_empty() => report
            .failed
            .iter()
            .map(|(address, message)| format!("{address}: {message}"))
            .collect::<Vec<_>>()
            .join("; "),
        _ => "the deployment failed; its report names no failed resource".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fediversity_engine::report::Report;
    use fediversity_model::graph::{ResourceAddress, ResourceKind};
    use serde_json::json;

    use super::failure_reason;

    #[test]
    fn the_reason_is_the_error_or_the_failed_resources() {
        assert_eq!(
            failure_reason(Some(&json!({"error": "the run was declined"}))),
            "the run was declined"
        );
        let mastodon = ResourceAddress::new(ResourceKind::Nixos, "mastodon").unwrap();
        let report = json!(Report {
            failed: BTreeMap::from([(mastodon, "health check failed; rolled back".to_owned())]),
            ..Report::default()
        });
        assert_eq!(
            failure_reason(Some(&report)),
            "nixos.mastodon: health check failed; rolled back"
        );
        assert_eq!(
            failure_reason(None),
            "the deployment failed without a report"
        );
    }
}
