//! The fleet scheduler: advances every release's rollout, one [`Scheduler::tick`] at a time.
//!
//! A tick reads each rollout from the store, records the outcomes of the deployments it
//! started, asks [`rollout::step`] what to do next, and writes that down before acting on it:
//! slots for a wave that opened (and a "scheduled" notification), a "day before" reminder,
//! starts up to the concurrency bound (and a "started" notification), a halt when a wave failed
//! beyond its threshold. All state is in the store, so a restarted worker continues where the
//! last one stopped, and notifications have unique keys, so a repeated tick sends nothing
//! twice. Deployments themselves go through [`Deployments`]: in the panel, the job queue and the
//! engine's per-operator lease, so one operator never has two deployments at once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use fediversity_engine::clock::{Clock, Millis};
use fediversity_fleet::rollout::{self, Item, ItemStatus, State};
use fediversity_fleet::schedule::{self, Demand, Slot};
use fediversity_model::OperatorConfig;
use fediversity_model::names::OperatorId;
use fediversity_model::operator::Maintenance;
use fediversity_store::{
    NewNotification, NotificationKind, Release, ReleaseId, RolloutItem, Store,
};

/// How long before a slot the operator is reminded.
const REMINDER: Duration = Duration::hours(24);

/// What went wrong in a tick.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fediversity_store::Error),
    /// The operator's request cannot be met (not a window, past the deadline, started).
    #[error(transparent)]
    Refused(#[from] fediversity_fleet::Error),
    /// A deployment could not be started or read.
    #[error("deployment of `{operator}` for release {release}: {message}")]
    Deployment {
        /// The release.
        release: ReleaseId,
        /// The operator.
        operator: OperatorId,
        /// What failed, secret-free.
        message: String,
    },
}

/// How the scheduler deploys one operator with a release's infrastructure.
#[async_trait]
pub trait Deployments: Send + Sync {
    /// Starts deploying `operator` with `release`'s infra.toml; returns once it is queued.
    async fn start(&self, release: &Release, operator: &OperatorId) -> Result<(), String>;
    /// The outcome of the deployment started for `operator`: `None` while it runs, the
    /// failure's reason (secret-free; the health gate has rolled the operator back) when it
    /// failed.
    async fn outcome(
        &self,
        release: &Release,
        operator: &OperatorId,
    ) -> Result<Option<Result<(), String>>, String>;
}

/// Advances rollouts.
pub struct Scheduler {
    store: Store,
    deployments: Arc<dyn Deployments>,
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    /// A scheduler over `store`, deploying through `deployments`, reading the time from `clock`.
    pub fn new(store: Store, deployments: Arc<dyn Deployments>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            deployments,
            clock,
        }
    }

    /// Advances every rollout that is not finished.
    pub async fn tick(&self) -> Result<(), FleetError> {
        for release in self.store.releases().await? {
            if matches!(release.state, State::Running | State::Paused) {
                self.advance(&release).await?;
            }
        }
        Ok(())
    }

    /// Pauses a rollout: deployments already running finish, nobody new starts.
    pub async fn pause(&self, id: ReleaseId) -> Result<(), FleetError> {
        self.set_state(id, State::Paused).await
    }

    /// Resumes a paused (or halted, after the provider looked into it) rollout.
    pub async fn resume(&self, id: ReleaseId) -> Result<(), FleetError> {
        self.set_state(id, State::Running).await
    }

    /// Moves an operator's maintenance to the window occurrence starting at `to`, or applies
    /// it now (`to` is `None`), at the operator's request, before it starts.
    pub async fn reschedule(
        &self,
        id: ReleaseId,
        operator: &OperatorId,
        to: Option<DateTime<Utc>>,
    ) -> Result<Slot, FleetError> {
        let release = self.store.release(id).await?;
        let before = self
            .store
            .rollout(id)
            .await?
            .into_iter()
            .map(|r| r.item)
            .find(|item| &item.operator == operator && item.status == ItemStatus::Scheduled)
            .ok_or_else(|| not_movable(&release, operator))?;
        let mut item = before.clone();
        let current = item.slot.ok_or_else(|| not_movable(&release, operator))?;
        let maintenance = self
            .maintenance(operator)
            .await?
            .ok_or_else(|| not_movable(&release, operator))?;
        let now = instant(self.clock.now());
        let slot = match to {
            Some(to) => schedule::move_to(&maintenance, now, &current, to, &demand(&release)),
            None => schedule::apply_now(&maintenance, now, &current),
        }?;
        item.slot = Some(slot);
        if !self.replace(&release, &before, &item).await? {
            // The scheduler started it (or moved it) since it was read.
            return Err(not_movable(&release, operator));
        }
        self.tell(&release, &item, NotificationKind::Scheduled)
            .await?;
        Ok(slot)
    }

    async fn set_state(&self, id: ReleaseId, state: State) -> Result<(), FleetError> {
        set_rollout_state(&self.store, id, state, self.clock.now()).await
    }

    async fn advance(&self, release: &Release) -> Result<(), FleetError> {
        let mut items: Vec<Item> = self
            .store
            .rollout(release.id)
            .await?
            .into_iter()
            .map(|r: RolloutItem| r.item)
            .collect();
        for item in items.iter_mut().filter(|i| i.status == ItemStatus::Running) {
            self.collect_outcome(release, item).await?;
        }
        let now = instant(self.clock.now());
        let decision = rollout::step(&items, release.state, &release.release.policy, now);
        if let Some(halt) = &decision.halt {
            return self.halt(release, &items, halt).await;
        }
        if let Some(state) = decision.new_state {
            self.store
                .set_release_state(release.id, state, None, self.clock.now())
                .await?;
            tracing::info!(release = %release.id, state = state.as_str(), "rollout");
        }
        for item in items.iter_mut() {
            if decision.schedule.contains(&item.operator) {
                self.schedule(release, item, now).await?;
            }
        }
        for item in items.iter().filter(|i| i.status == ItemStatus::Scheduled) {
            self.remind(release, item, now).await?;
        }
        for item in items.iter_mut() {
            if decision.start.contains(&item.operator) {
                self.start(release, item).await?;
            }
        }
        Ok(())
    }

    async fn collect_outcome(&self, release: &Release, item: &mut Item) -> Result<(), FleetError> {
        let outcome = self
            .deployments
            .outcome(release, &item.operator)
            .await
            .map_err(|message| deployment_error(release, &item.operator, message))?;
        let (status, kind) = match outcome {
            None => return Ok(()),
            Some(Ok(())) => (ItemStatus::Succeeded, NotificationKind::Succeeded),
            Some(Err(reason)) => (ItemStatus::Failed(reason), NotificationKind::RolledBack),
        };
        item.status = status;
        self.record(release, item).await?;
        self.tell(release, item, kind).await
    }

    async fn schedule(
        &self,
        release: &Release,
        item: &mut Item,
        now: DateTime<Utc>,
    ) -> Result<(), FleetError> {
        let slot = match self.maintenance(&item.operator).await? {
            Some(maintenance) => schedule::slot(&maintenance, now, &demand(release)),
            None => Err(fediversity_fleet::Error::NoWindowFits {
                needed_minutes: i64::from(release.release.expected_minutes),
            }),
        };
        match slot {
            Ok(slot) => {
                item.slot = Some(slot);
                self.record(release, item).await?;
                self.tell(release, item, NotificationKind::Scheduled).await
            }
            Err(error) => {
                item.status = ItemStatus::Failed(error.to_string());
                self.record(release, item).await
            }
        }
    }

    async fn remind(
        &self,
        release: &Release,
        item: &Item,
        now: DateTime<Utc>,
    ) -> Result<(), FleetError> {
        match item.slot {
            Some(slot) if slot.start - REMINDER <= now && now < slot.start => {
                self.tell(release, item, NotificationKind::DayBefore).await
            }
            _ => Ok(()),
        }
    }

    async fn start(&self, release: &Release, item: &mut Item) -> Result<(), FleetError> {
        let before = item.clone();
        item.status = ItemStatus::Running;
        if !self.replace(release, &before, item).await? {
            // The operator moved it since this tick read it: the next tick sees the new slot.
            tracing::info!(release = %release.id, operator = %item.operator, "maintenance moved meanwhile; not started");
            *item = before;
            return Ok(());
        }
        self.deployments
            .start(release, &item.operator)
            .await
            .map_err(|message| deployment_error(release, &item.operator, message))?;
        self.tell(release, item, NotificationKind::Started).await
    }

    async fn halt(
        &self,
        release: &Release,
        items: &[Item],
        halt: &rollout::Halt,
    ) -> Result<(), FleetError> {
        for item in items.iter().filter(|i| i.status == ItemStatus::Scheduled) {
            let skipped = Item {
                status: ItemStatus::Skipped,
                ..item.clone()
            };
            self.record(release, &skipped).await?;
        }
        let failed: Vec<String> = items
            .iter()
            .filter(|i| i.wave == halt.wave)
            .filter_map(|i| match &i.status {
                ItemStatus::Failed(reason) => Some(format!("{}: {reason}", i.operator)),
                _ => None,
            })
            .collect();
        let reason = format!(
            "wave {} failed for {} of {} operators ({})",
            halt.wave,
            halt.failed,
            halt.total,
            failed.join("; ")
        );
        tracing::warn!(release = %release.id, %reason, "rollout halted");
        self.store
            .set_release_state(release.id, State::Halted, Some(reason), self.clock.now())
            .await?;
        Ok(())
    }

    async fn record(&self, release: &Release, item: &Item) -> Result<(), FleetError> {
        let now = self.clock.now();
        Ok(self
            .store
            .record_rollout_item(release.id, item, now)
            .await?)
    }

    /// Writes `after` over `before` unless someone else changed the item first (false then).
    async fn replace(
        &self,
        release: &Release,
        before: &Item,
        after: &Item,
    ) -> Result<bool, FleetError> {
        let now = self.clock.now();
        Ok(self
            .store
            .replace_rollout_item(release.id, before, after, now)
            .await?)
    }

    /// Writes a notification for the item's current slot (once per slot and kind).
    async fn tell(
        &self,
        release: &Release,
        item: &Item,
        kind: NotificationKind,
    ) -> Result<(), FleetError> {
        let occasion = item
            .slot
            .map_or_else(String::new, |slot| slot.start.to_rfc3339());
        let (subject, body) = words(release, item, kind);
        let notification = NewNotification {
            release: release.id,
            operator: item.operator.clone(),
            kind,
            occasion,
            subject,
            body,
        };
        self.store.notify(&notification, self.clock.now()).await?;
        Ok(())
    }

    /// The maintenance windows of the operator's latest configuration.
    async fn maintenance(&self, operator: &OperatorId) -> Result<Option<Maintenance>, FleetError> {
        let versions = self.store.configurations(operator).await?;
        Ok(versions
            .last()
            .and_then(|v| serde_json::from_value::<OperatorConfig>(v.config.clone()).ok())
            .map(|config| config.maintenance))
    }
}

/// Pauses or resumes a rollout (see [`Scheduler::pause`]): the panel's buttons do it without
/// a scheduler of their own.
pub async fn set_rollout_state(
    store: &Store,
    id: ReleaseId,
    state: State,
    now: Millis,
) -> Result<(), FleetError> {
    store.release(id).await?;
    Ok(store.set_release_state(id, state, None, now).await?)
}

/// What a release demands of every operator's schedule.
pub fn demand(release: &Release) -> Demand {
    Demand {
        severity: release.release.severity,
        deadline: release.release.deadline.map(instant),
        expected: Duration::minutes(i64::from(release.release.expected_minutes)),
    }
}

/// A store instant as a date.
pub fn instant(millis: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

fn not_movable(release: &Release, operator: &OperatorId) -> FleetError {
    deployment_error(
        release,
        operator,
        "there is no scheduled maintenance to move: it has not been planned yet, or it started"
            .to_owned(),
    )
}

fn deployment_error(release: &Release, operator: &OperatorId, message: String) -> FleetError {
    FleetError::Deployment {
        release: release.id,
        operator: operator.clone(),
        message,
    }
}

/// The subject and plain-text body of a notification.
fn words(release: &Release, item: &Item, kind: NotificationKind) -> (String, String) {
    let title = &release.release.title;
    let when = item.slot.map_or_else(String::new, |slot| when(&slot));
    match kind {
        NotificationKind::Scheduled => (
            format!("Maintenance scheduled: {title}"),
            format!("The platform release \"{title}\" will be applied to your services {when}."),
        ),
        NotificationKind::DayBefore => (
            format!("Maintenance tomorrow: {title}"),
            format!("Reminder: the platform release \"{title}\" will be applied {when}."),
        ),
        NotificationKind::Started => (
            format!("Maintenance started: {title}"),
            format!("The platform release \"{title}\" is being applied to your services now."),
        ),
        NotificationKind::Succeeded => (
            format!("Maintenance done: {title}"),
            format!("The platform release \"{title}\" was applied to your services."),
        ),
        NotificationKind::RolledBack => {
            let reason = match &item.status {
                ItemStatus::Failed(reason) => reason.as_str(),
                _ => "",
            };
            (
                format!("Maintenance rolled back: {title}"),
                format!(
                    "Applying the platform release \"{title}\" failed, and your services were \
                     rolled back to what they ran before. Reason: {reason}"
                ),
            )
        }
    }
}

/// When a slot is, in words; a forced slot says it is outside the operator's windows.
fn when(slot: &Slot) -> String {
    let at = slot.start.format("%Y-%m-%d %H:%M UTC");
    if slot.outside_windows {
        format!(
            "at {at}, outside your maintenance windows (the release's deadline leaves no window \
             that fits, or you asked for it to be applied now)"
        )
    } else {
        format!("in your maintenance window starting {at}")
    }
}
