//! Fleet operations: releases, where every operator is in a release's rollout, and what
//! operators are told. The scheduler keeps all of its state here, so that a restarted worker
//! reads the rollout as the last one left it and decides the same again.
//!
//! Notifications have a unique key (release, operator, kind, occasion): writing one twice (a
//! scheduler that crashed between writing and recording its step) keeps the first, and an
//! e-mail is sent for a notification only once it is marked as sent.

use std::collections::BTreeMap;
use std::fmt;

use fediversity_engine::clock::Millis;
use fediversity_fleet::rollout::{Item, ItemStatus, Policy, State};
use fediversity_fleet::schedule::{Severity, Slot};
use fediversity_model::names::OperatorId;

use crate::backend::fleet::{
    ItemGuard, ItemRow, ItemUpdate, NewNotificationRow, NewReleaseRow, NotificationRow, ReleaseRow,
};
use crate::error::{Error, Result, corrupt};
use crate::{DeploymentId, Store};

/// A platform-wide duty that one worker at a time carries out, under a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetLease {
    /// Advancing rollouts: only its holder starts operators, so two workers never start the
    /// same operator twice nor exceed a concurrency bound between them.
    Scheduler,
    /// Sending the notification outbox: only its holder sends, so two workers never e-mail
    /// the same notification at once.
    Outbox,
}

impl FleetLease {
    /// Its name in the leases table, beside the engine's per-operator leases: no operator id
    /// can take it (ids have no `:`).
    fn name(self) -> &'static str {
        match self {
            Self::Scheduler => "fleet:scheduler",
            Self::Outbox => "fleet:outbox",
        }
    }
}

/// A release's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseId(pub i64);

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A release to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRelease {
    /// What the provider calls it, e.g. "NixOS 26.05 and PeerTube 8".
    pub title: String,
    /// How urgent it is.
    pub severity: Severity,
    /// When it must have been applied everywhere, if ever.
    pub deadline: Option<Millis>,
    /// The infra.toml the release brings, as written.
    pub infra: String,
    /// How the rollout proceeds.
    pub policy: Policy,
    /// How long one operator's deployment is expected to take, in minutes.
    pub expected_minutes: u32,
}

/// A published release and where its rollout is.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// Its id.
    pub id: ReleaseId,
    /// What it is.
    pub release: NewRelease,
    /// Where its rollout is.
    pub state: State,
    /// Why it halted, when it did.
    pub halt_reason: Option<String>,
    /// When it was published.
    pub created_at: Millis,
    /// When its state last changed.
    pub updated_at: Millis,
}

/// One operator in a release's rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutItem {
    /// The release.
    pub release: ReleaseId,
    /// The operator, its wave, slot and status.
    pub item: Item,
    /// How many times its deployment was started.
    pub attempts: u32,
    /// The deployment the scheduler started for it, once started.
    pub deployment: Option<DeploymentId>,
}

/// What a notification tells the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotificationKind {
    /// A release was scheduled (or rescheduled) for the operator.
    Scheduled,
    /// The maintenance starts in a day.
    DayBefore,
    /// The maintenance started.
    Started,
    /// The maintenance ended and the release is applied.
    Succeeded,
    /// The maintenance failed and the operator was rolled back.
    RolledBack,
}

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 5] = [
        Self::Scheduled,
        Self::DayBefore,
        Self::Started,
        Self::Succeeded,
        Self::RolledBack,
    ];

    /// The name the store uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::DayBefore => "day-before",
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled-back",
        }
    }

    fn parse(text: &str) -> Result<NotificationKind> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| corrupt("notification kind", text))
    }
}

/// A notification for an operator: shown in the panel, sent by e-mail.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// The release it is about.
    pub release: ReleaseId,
    /// Whom it is for.
    pub operator: OperatorId,
    /// What it says.
    pub kind: NotificationKind,
    /// Which occasion of that kind (e.g. the slot's start), so that a rescheduled slot gets
    /// its own notification while a repeated write of the same one is ignored.
    pub occasion: String,
    /// The e-mail's subject and the panel's heading.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// When it was written.
    pub created_at: Millis,
    /// When it was e-mailed, if it was.
    pub emailed_at: Option<Millis>,
}

/// A notification to write.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    /// The release it is about.
    pub release: ReleaseId,
    /// Whom it is for.
    pub operator: OperatorId,
    /// What it says.
    pub kind: NotificationKind,
    /// Which occasion of that kind (see [`Notification::occasion`]).
    pub occasion: String,
    /// The e-mail's subject and the panel's heading.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

impl Store {
    /// Publishes a release for the operators in `waves` (each with its wave); returns its id.
    pub async fn create_release(
        &self,
        release: &NewRelease,
        waves: &BTreeMap<OperatorId, u32>,
        now: Millis,
    ) -> Result<ReleaseId> {
        let row = NewReleaseRow {
            title: release.title.clone(),
            severity: release.severity.as_str(),
            deadline: release.deadline,
            infra: release.infra.clone(),
            policy: to_json("rollout policy", &release.policy)?,
            expected_minutes: i64::from(release.expected_minutes),
            now,
        };
        let items = waves
            .iter()
            .map(|(op, wave)| (op.as_str().to_owned(), i64::from(*wave)))
            .collect();
        self.queries.create_release(row, items).await.map(ReleaseId)
    }

    /// Every release, newest first.
    pub async fn releases(&self) -> Result<Vec<Release>> {
        let rows = self.queries.releases().await?;
        rows.into_iter().map(release_from_row).collect()
    }

    /// One release.
    pub async fn release(&self, id: ReleaseId) -> Result<Release> {
        let row = self.queries.release(id.0).await?;
        release_from_row(row.ok_or(Error::UnknownRelease(id.0))?)
    }

    /// Changes where a release's rollout is; `halt_reason` says why it halted.
    pub async fn set_release_state(
        &self,
        id: ReleaseId,
        state: State,
        halt_reason: Option<String>,
        now: Millis,
    ) -> Result<()> {
        let found = self
            .queries
            .set_release_state(id.0, state.as_str(), halt_reason, now)
            .await?;
        found.then_some(()).ok_or(Error::UnknownRelease(id.0))
    }

    /// Every operator of a release's rollout, by wave then operator.
    pub async fn rollout(&self, id: ReleaseId) -> Result<Vec<RolloutItem>> {
        let rows = self.queries.release_items(id.0).await?;
        rows.into_iter().map(item_from_row).collect()
    }

    /// The operator's place in every release, newest release first.
    pub async fn operator_rollouts(&self, operator: &OperatorId) -> Result<Vec<RolloutItem>> {
        let rows = self.queries.operator_items(operator.as_str()).await?;
        rows.into_iter().map(item_from_row).collect()
    }

    /// Records an operator's slot and status in a rollout (counting an attempt when it starts
    /// running).
    pub async fn record_rollout_item(&self, id: ReleaseId, item: &Item, now: Millis) -> Result<()> {
        let found = self
            .queries
            .update_item(id.0, item.operator.as_str(), item_update(item)?, None, now)
            .await?;
        found
            .then_some(())
            .ok_or_else(|| Error::UnknownRolloutItem {
                release: id.0,
                operator: item.operator.clone(),
            })
    }

    /// Replaces `before` with `after` only if the stored item still has `before`'s status and
    /// slot; false when another writer changed it first. The scheduler starting an item and
    /// the operator moving it both go through this, so neither undoes the other: a started
    /// item is never put back to scheduled (and started twice), and a moved one is never
    /// started at its old slot.
    pub async fn replace_rollout_item(
        &self,
        id: ReleaseId,
        before: &Item,
        after: &Item,
        now: Millis,
    ) -> Result<bool> {
        let guard = ItemGuard {
            status: before.status.as_str(),
            slot: item_update(before)?.slot,
        };
        self.queries
            .update_item(
                id.0,
                after.operator.as_str(),
                item_update(after)?,
                Some(guard),
                now,
            )
            .await
    }

    /// Records the deployment the scheduler started for an operator in a rollout.
    pub async fn set_rollout_deployment(
        &self,
        id: ReleaseId,
        operator: &OperatorId,
        deployment: DeploymentId,
    ) -> Result<()> {
        let found = self
            .queries
            .set_item_deployment(id.0, operator.as_str(), deployment.0)
            .await?;
        found
            .then_some(())
            .ok_or_else(|| Error::UnknownRolloutItem {
                release: id.0,
                operator: operator.clone(),
            })
    }

    /// Takes (or renews) `lease` for `holder` until `now + ttl`; false when another worker
    /// holds it. Every worker runs the scheduler and the outbox, but only the holder of each
    /// lease does the work.
    pub async fn try_fleet_lease(
        &self,
        lease: FleetLease,
        holder: &str,
        now: Millis,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let ttl = Millis::try_from(ttl.as_millis()).unwrap_or(Millis::MAX);
        let taken = self
            .queries
            .try_lease(lease.name(), holder, now, now.saturating_add(ttl))
            .await?;
        Ok(taken.is_some())
    }

    /// Writes a notification unless the same one (release, operator, kind, occasion) exists;
    /// true when it was written.
    pub async fn notify(&self, notification: &NewNotification, now: Millis) -> Result<bool> {
        let row = NewNotificationRow {
            release_id: notification.release.0,
            operator: notification.operator.as_str().to_owned(),
            kind: notification.kind.as_str(),
            occasion: notification.occasion.clone(),
            subject: notification.subject.clone(),
            body: notification.body.clone(),
            now,
        };
        Ok(self.queries.add_notification(row).await?.is_some())
    }

    /// The operator's notifications, newest first, at most `limit`.
    pub async fn notifications(
        &self,
        operator: &OperatorId,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let rows = self
            .queries
            .notifications(operator.as_str(), i64::from(limit))
            .await?;
        rows.into_iter().map(notification_from_row).collect()
    }

    /// Notifications not yet e-mailed, oldest first, at most `limit`.
    pub async fn unsent_notifications(&self, limit: u32) -> Result<Vec<Notification>> {
        let rows = self.queries.unsent_notifications(i64::from(limit)).await?;
        rows.into_iter().map(notification_from_row).collect()
    }

    /// Records that notification `id` was e-mailed; false if it already was.
    pub async fn mark_emailed(&self, id: i64, now: Millis) -> Result<bool> {
        self.queries.mark_emailed(id, now).await
    }
}

fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialise { what, source })
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn operator_id(text: String) -> Result<OperatorId> {
    OperatorId::try_from(text.as_str()).map_err(|e| corrupt("operator id", e))
}

fn release_from_row(row: ReleaseRow) -> Result<Release> {
    Ok(Release {
        id: ReleaseId(row.id),
        release: NewRelease {
            title: row.title,
            severity: row
                .severity
                .parse()
                .map_err(|e: String| corrupt("severity", e))?,
            deadline: row.deadline,
            infra: row.infra,
            policy: from_json("rollout policy", &row.policy)?,
            expected_minutes: u32::try_from(row.expected_minutes)
                .map_err(|e| corrupt("expected duration", e))?,
        },
        state: row.state.parse().map_err(|e: String| corrupt("state", e))?,
        halt_reason: row.halt_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn item_from_row(row: ItemRow) -> Result<RolloutItem> {
    let status = match (row.status.as_str(), row.reason) {
        ("scheduled", _) => ItemStatus::Scheduled,
        ("running", _) => ItemStatus::Running,
        ("succeeded", _) => ItemStatus::Succeeded,
        ("failed", reason) => ItemStatus::Failed(reason.unwrap_or_default()),
        ("skipped", _) => ItemStatus::Skipped,
        (other, _) => return Err(corrupt("rollout status", other)),
    };
    let slot: Option<Slot> = row
        .slot
        .as_deref()
        .map(|text| from_json("slot", text))
        .transpose()?;
    Ok(RolloutItem {
        release: ReleaseId(row.release_id),
        item: Item {
            operator: operator_id(row.operator)?,
            wave: u32::try_from(row.wave).map_err(|e| corrupt("wave", e))?,
            slot,
            status,
        },
        attempts: u32::try_from(row.attempts).map_err(|e| corrupt("attempts", e))?,
        deployment: row.deployment_id.map(DeploymentId),
    })
}

fn notification_from_row(row: NotificationRow) -> Result<Notification> {
    Ok(Notification {
        id: row.id,
        release: ReleaseId(row.release_id),
        operator: operator_id(row.operator)?,
        kind: NotificationKind::parse(&row.kind)?,
        occasion: row.occasion,
        subject: row.subject,
        body: row.body,
        created_at: row.created_at,
        emailed_at: row.emailed_at,
    })
}

/// An item as the store writes it.
fn item_update(item: &Item) -> Result<ItemUpdate> {
    let slot = item
        .slot
        .as_ref()
        .map(|slot| to_json("slot", slot))
        .transpose()?;
    let reason = match &item.status {
        ItemStatus::Failed(reason) => Some(reason.clone()),
        _ => None,
    };
    Ok(ItemUpdate {
        slot,
        status: item.status.as_str(),
        reason,
    })
}
