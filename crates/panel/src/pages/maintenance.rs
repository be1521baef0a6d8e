//! The fleet on an operator's dashboard: the platform releases coming to it (when, in its own
//! time zone, and whether a deadline forced them outside its windows) and what it was told.

use fediversity_fleet::rollout::ItemStatus;
use fediversity_model::names::OperatorId;
use fediversity_model::operator::Maintenance;
use fediversity_store::Store;

use crate::error::PanelError;
use crate::fleet::instant;
use crate::mail::{in_utc, in_zone};

/// How many notifications the dashboard shows.
const NOTIFICATIONS: u32 = 10;

/// A release coming to the operator, or being applied now.
pub struct UpcomingRow {
    /// The release's title.
    pub title: String,
    /// `routine` or `security`.
    pub severity: &'static str,
    /// When, in the operator's time zone (or UTC when it has none that is known).
    pub when: String,
    /// When, in UTC.
    pub when_utc: String,
    /// A deadline forced it outside the operator's windows (or the operator applied it now).
    pub outside_windows: bool,
    /// It is being applied now.
    pub running: bool,
}

/// A notification, as the dashboard lists it.
pub struct NoticeRow {
    /// Its heading.
    pub subject: String,
    /// What it says.
    pub body: String,
    /// When it was written, in UTC.
    pub at: String,
}

/// The operator's scheduled and running maintenance, soonest first.
pub async fn upcoming(
    store: &Store,
    operator: &OperatorId,
    maintenance: Option<&Maintenance>,
) -> Result<Vec<UpcomingRow>, PanelError> {
    let mut rows = Vec::new();
    for rollout in store.operator_rollouts(operator).await? {
        let item = rollout.item;
        let running = match item.status {
            ItemStatus::Running => true,
            ItemStatus::Scheduled => false,
            _ => continue,
        };
        let Some(slot) = item.slot else { continue };
        let release = store.release(rollout.release).await?;
        rows.push((
            slot.start,
            UpcomingRow {
                title: release.release.title,
                severity: release.release.severity.as_str(),
                when: maintenance
                    .and_then(|m| in_zone(slot.start, m))
                    .unwrap_or_else(|| in_utc(slot.start)),
                when_utc: in_utc(slot.start),
                outside_windows: slot.outside_windows,
                running,
            },
        ));
    }
    rows.sort_by_key(|(start, _)| *start);
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// The operator's latest notifications, newest first.
pub async fn notices(store: &Store, operator: &OperatorId) -> Result<Vec<NoticeRow>, PanelError> {
    Ok(store
        .notifications(operator, NOTIFICATIONS)
        .await?
        .into_iter()
        .map(|n| NoticeRow {
            subject: n.subject,
            body: n.body,
            at: in_utc(instant(n.created_at)),
        })
        .collect())
}
