//! What the panel keeps in the store besides the engine's state: configuration versions,
//! deployments, their events and the job queue.

use std::fmt;

use fediversity_engine::clock::Millis;
use fediversity_engine::events::Event;
use fediversity_model::names::OperatorId;
use serde_json::Value;

/// The number of one saved version of an operator's configuration: 1, 2, 3… per operator.
pub type ConfigurationVersion = i64;

/// One saved version of an operator's configuration. Versions are never changed or deleted,
/// so every deployment can say exactly what it deployed.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredConfiguration {
    /// Its number.
    pub version: ConfigurationVersion,
    /// The configuration document, as submitted.
    pub config: Value,
    /// When it was saved.
    pub created_at: Millis,
}

/// A deployment's id, unique across operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentId(pub i64);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a deployment is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is applying it.
    Running,
    /// Applied without failures.
    Succeeded,
    /// Ended with failures (its report says which).
    Failed,
}

impl DeploymentStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<DeploymentStatus> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentOutcome {
    /// Applied without failures.
    Succeeded,
    /// Ended with failures.
    Failed,
}

impl From<DeploymentOutcome> for DeploymentStatus {
    fn from(outcome: DeploymentOutcome) -> Self {
        match outcome {
            DeploymentOutcome::Succeeded => DeploymentStatus::Succeeded,
            DeploymentOutcome::Failed => DeploymentStatus::Failed,
        }
    }
}

/// One deployment of one configuration version.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    /// Its id.
    pub id: DeploymentId,
    /// Whose.
    pub operator: OperatorId,
    /// The configuration version it deploys.
    pub configuration_version: ConfigurationVersion,
    /// Where it is.
    pub status: DeploymentStatus,
    /// When it was asked for.
    pub created_at: Millis,
    /// When a worker started it.
    pub started_at: Option<Millis>,
    /// When it ended.
    pub finished_at: Option<Millis>,
    /// The run's report (the engine's `Report` as JSON), once it ended.
    pub report: Option<Value>,
}

/// An event to append to a deployment's log.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// When it happened.
    pub at: Millis,
    /// What happened (its values are masked by the engine).
    pub event: Event,
}

/// An event as stored: numbered 1, 2, 3… within its deployment, so that a reader that has
/// seen up to `seq` asks for what came after.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Its place in the deployment's log.
    pub seq: i64,
    /// When it happened.
    pub at: Millis,
    /// What happened.
    pub event: Event,
}

/// A job's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Work to queue for a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// What sort of work (`deploy`, `destroy`, …): the worker dispatches on it.
    pub kind: String,
    /// Whose work, if an operator's.
    pub operator: Option<OperatorId>,
    /// What the worker needs to know (secrets wrapped are sealed like everything else).
    pub payload: Value,
    /// Not before this instant.
    pub run_after: Millis,
}

/// A job a worker has claimed.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What sort of work.
    pub kind: String,
    /// Whose work.
    pub operator: Option<OperatorId>,
    /// What the worker needs to know.
    pub payload: Value,
    /// How many times it has been claimed, this time included.
    pub attempts: i64,
    /// When the claim lapses: another worker may take the job over after that.
    pub locked_until: Millis,
}
