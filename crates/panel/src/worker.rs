//! The worker: claims queued deployments from the store and applies them with the engine,
//! recording their events for the panel's live progress.
//!
//! Any number of workers (in `fediversity serve` or `fediversity worker` processes) share one
//! store: a job is claimed for a lease, and a worker that dies leaves it to be claimed again
//! once the lease lapses; the engine's journal then resumes the interrupted run. A run that
//! outlasts its lease is stopped and its deployment marked failed with a clear message,
//! never left spinning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_engine::events::EventSink;
use fediversity_engine::report::Report;
use fediversity_engine::{Approval, Engine, EngineOptions};
use fediversity_model::OperatorConfig;
use fediversity_model::graph::{DesiredGraph, GRAPH_VERSION};
use fediversity_model::names::OperatorId;
use fediversity_store::{
    ConfigurationVersion, DeploymentId, DeploymentOutcome, DeploymentStatus, EventWriter, Job,
    NewJob, ReleaseId, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::identity::SyncSchedule;
use crate::{Metrics, Platform};

/// The kind of job that deploys a configuration version.
pub const DEPLOY: &str = "deploy";

/// How long a worker holds a job: a deployment still running after this is stopped and
/// marked failed.
const LEASE: Duration = Duration::from_secs(60 * 60);

/// How long an idle worker waits before asking for work again.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// What a deploy job carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployJob {
    /// The deployment record the panel opened.
    pub deployment: i64,
    /// The configuration version it deploys (for an account deletion, the one whose
    /// retention choices it honours).
    pub version: ConfigurationVersion,
    /// Remove every resource of the operator (account deletion): data whose retention is
    /// `keep` is kept; once done, the operator's users are removed.
    #[serde(default)]
    pub destroy: bool,
    /// The fleet release whose infra.toml it deploys with, instead of the platform's.
    #[serde(default)]
    pub release: Option<i64>,
}

/// Opens a deployment of `version` (or, with `destroy`, the removal of everything, honouring
/// `version`'s retention choices) and queues it for a worker.
pub async fn enqueue_deployment(
    store: &Store,
    operator: &OperatorId,
    version: ConfigurationVersion,
    destroy: bool,
) -> fediversity_store::Result<DeploymentId> {
    enqueue(store, operator, version, destroy, None).await
}

/// Opens a deployment of `version` with the infra.toml of the fleet release `release` and
/// queues it for a worker.
pub async fn enqueue_release_deployment(
    store: &Store,
    operator: &OperatorId,
    version: ConfigurationVersion,
    release: ReleaseId,
) -> fediversity_store::Result<DeploymentId> {
    enqueue(store, operator, version, false, Some(release.0)).await
}

async fn enqueue(
    store: &Store,
    operator: &OperatorId,
    version: ConfigurationVersion,
    destroy: bool,
    release: Option<i64>,
) -> fediversity_store::Result<DeploymentId> {
    let now = SystemClock.now();
    let deployment = store.create_deployment(operator, version, now).await?;
    let payload = json!(DeployJob {
        deployment: deployment.0,
        version,
        destroy,
        release,
    });
    let job = NewJob {
        kind: DEPLOY.to_owned(),
        operator: Some(operator.clone()),
        payload,
        run_after: now,
    };
    store.enqueue_job(&job, now).await?;
    Ok(deployment)
}

/// A worker: a name other workers see, the store it claims from and the platform it deploys on.
pub struct Worker {
    name: String,
    store: Arc<Store>,
    platform: Platform,
    metrics: Arc<Metrics>,
    identity_sync: SyncSchedule,
    fleet: crate::fleet_jobs::Ticks,
}

impl Worker {
    /// A worker named after this host and process.
    pub fn new(store: Arc<Store>, platform: Platform) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name = format!(
            "worker on {} (pid {}, {:08x})",
            host.trim(),
            std::process::id(),
            rand::random::<u32>()
        );
        Self {
            name,
            store,
            platform,
            metrics: Arc::default(),
            identity_sync: SyncSchedule::default(),
            fleet: crate::fleet_jobs::Ticks::default(),
        }
    }

    /// Syncs operators' directories on `schedule` when idle (default: hourly, system clock).
    #[must_use]
    pub fn with_identity_sync(mut self, schedule: SyncSchedule) -> Self {
        self.identity_sync = schedule;
        self
    }

    /// Ticks the fleet scheduler as `ticks` says (by default every minute, on the system
    /// clock).
    #[must_use]
    pub fn with_fleet_ticks(mut self, ticks: crate::fleet_jobs::Ticks) -> Self {
        self.fleet = ticks;
        self
    }

    /// Counts the provider errors of the runs in `metrics`: the panel's of the same process,
    /// which `/metrics` shows.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Claims and runs jobs until `stop` turns true; a job under way is finished first. The
    /// fleet scheduler and its e-mail outbox run beside it.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(worker = %self.name, "worker started");
        let (store, infra) = (self.store.clone(), self.platform.infra.clone());
        let outbox = tokio::spawn(crate::mail::run_outbox(
            store,
            infra,
            self.name.clone(),
            stop.clone(),
        ));
        let ticker = tokio::spawn(crate::fleet_jobs::tick_every(
            self.store.clone(),
            self.name.clone(),
            self.fleet.clone(),
            stop.clone(),
        ));
        while !*stop.borrow() {
            match self
                .store
                .claim_job(&self.name, SystemClock.now(), LEASE)
                .await
            {
                Ok(Some(job)) => self.handle(job).await,
                Ok(None) => {
                    let (store, platform) = (&self.store, &self.platform);
                    self.identity_sync.tick(store, platform, &self.name).await;
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "could not claim a job");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL * 20) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        outbox.await.ok();
        ticker.await.ok();
        tracing::info!(worker = %self.name, "worker stopped");
    }

    #[tracing::instrument(skip_all, fields(job = %job.id, kind = %job.kind))]
    async fn handle(&self, job: Job) {
        let outcome = match (job.kind.as_str(), &job.operator) {
            (DEPLOY, Some(operator)) => self.deploy(&job, operator).await,
            _ => Err(format!(
                "job kind `{}` is not one this worker runs",
                job.kind
            )),
        };
        let now = SystemClock.now();
        let reported = match outcome {
            Ok(()) => self.store.complete_job(job.id, &self.name, now).await,
            Err(error) => {
                tracing::error!(%error, "job failed");
                self.store
                    .fail_job(job.id, &self.name, &error, None, now)
                    .await
            }
        };
        if let Err(error) = reported {
            tracing::error!(%error, "could not report on a job");
        }
    }

    /// Runs a deployment to its end and records how it ended. An error is returned only when
    /// the deployment could not even be recorded as failed.
    async fn deploy(&self, job: &Job, operator: &OperatorId) -> Result<(), String> {
        let request: DeployJob =
            serde_json::from_value(job.payload.clone()).map_err(|e| format!("bad payload: {e}"))?;
        let deployment = DeploymentId(request.deployment);
        let start = self
            .store
            .start_deployment(operator, deployment, SystemClock.now())
            .await;
        // A second attempt finds it running: the worker before died, and this run resumes
        // (the engine's journal settles what it left half done). If it had finished the
        // deployment and died before completing the job, there is nothing left to do.
        if let Err(error) = start {
            if job.attempts <= 1 {
                return Err(error.to_string());
            }
            if self.finished(operator, deployment).await? {
                return Ok(());
            }
        }
        let result = tokio::time::timeout(
            LEASE.saturating_sub(Duration::from_secs(60)),
            self.apply(operator, deployment, &request),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the deployment was stopped after {} minutes without finishing; deploy again to resume it",
                LEASE.as_secs() / 60
            ))
        });
        let result = match result {
            Ok(report) if request.destroy && report.succeeded() => {
                self.remove_users(operator).await.map(|()| report)
            }
            other => other,
        };
        let (outcome, report) = match result {
            Ok(report) if report.succeeded() => (DeploymentOutcome::Succeeded, json!(report)),
            Ok(report) => (DeploymentOutcome::Failed, json!(report)),
            Err(error) => (DeploymentOutcome::Failed, json!({ "error": error })),
        };
        self.store
            .finish_deployment(operator, deployment, outcome, &report, SystemClock.now())
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether the deployment has ended.
    async fn finished(
        &self,
        operator: &OperatorId,
        deployment: DeploymentId,
    ) -> Result<bool, String> {
        let deployments = self
            .store
            .deployments(operator)
            .await
            .map_err(|e| e.to_string())?;
        Ok(deployments.iter().any(|d| {
            d.id == deployment
                && matches!(
                    d.status,
                    DeploymentStatus::Succeeded | DeploymentStatus::Failed
                )
        }))
    }

    /// The end of an account deletion, once its resources are gone.
    async fn remove_users(&self, operator: &OperatorId) -> Result<(), String> {
        let removed = match self.store.delete_users(operator).await {
            Ok(removed) => self.store.release_domain(operator).await.map(|()| removed),
            Err(error) => Err(error),
        };
        match removed {
            Ok(removed) => {
                tracing::info!(%operator, removed, "account deleted");
                Ok(())
            }
            Err(error) => Err(format!(
                "every resource was removed, but the account's users could not be: {error}; delete the account again"
            )),
        }
    }

    /// Applies the configuration version `request` names (or removes everything, for an
    /// account deletion), its events recorded under `deployment`.
    async fn apply(
        &self,
        operator: &OperatorId,
        deployment: DeploymentId,
        request: &DeployJob,
    ) -> Result<Report, String> {
        let version = request.version;
        let stored = self
            .store
            .configurations(operator)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|c| c.version == version)
            .ok_or_else(|| format!("configuration version {version} is missing"))?;
        let config: OperatorConfig = serde_json::from_value(stored.config)
            .map_err(|e| format!("configuration version {version} cannot be read: {e}"))?;
        let graph = if request.destroy {
            nothing_for(&config)
        } else {
            let infra =
                crate::fleet_jobs::infra_for(&self.store, &self.platform, operator, request)
                    .await?;
            fediversity_configurator::configure(&config, &infra).map_err(|problems| {
                format!("the configuration cannot be deployed here: {problems}")
            })?
        };
        let providers = (self.platform.providers)(&graph)?;
        let (writer, written) =
            EventWriter::start(self.store.clone(), operator.clone(), deployment);
        let sink: Arc<dyn EventSink> = Arc::new(writer);
        let options = EngineOptions {
            holder: self.name.clone(),
            lease_wait: Duration::from_secs(30),
            ..EngineOptions::default()
        };
        let engine = Engine::new(
            providers,
            self.store.clone(),
            Arc::new(SystemClock),
            options,
        );
        let result = engine
            .apply(&graph, sink.clone(), Approval::Automatic)
            .await;
        drop(sink);
        written.await.ok();
        match result {
            Ok(Some(report)) => {
                self.metrics.count_failures(&graph, &report);
                Ok(report)
            }
            Ok(None) => Err("the run was declined".to_owned()),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// The graph of an account deletion: no resources, and the retention choices of `config`,
/// which decide what data is kept.
pub fn nothing_for(config: &OperatorConfig) -> DesiredGraph {
    DesiredGraph {
        version: GRAPH_VERSION,
        operator: config.operator.id.clone(),
        retention: config
            .services
            .iter()
            .map(|(kind, service)| (kind, service.retention))
            .collect(),
        resources: BTreeMap::new(),
    }
}

/// The error a failed deployment's report records, if it ended before the engine reported.
pub fn report_error(report: &Value) -> Option<&str> {
    report.get("error").and_then(Value::as_str)
}
