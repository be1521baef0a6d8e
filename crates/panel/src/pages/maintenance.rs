//! The fleet on an operator's dashboard: the platform releases coming to it (when, in its own
//! time zone, and whether a deadline forced them outside its windows) and what it was told;
//! on the administrators' page, every release with its operators counted, paused or resumed.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_fleet::rollout::{ItemStatus, State as State_};
use fediversity_model::names::OperatorId;
use fediversity_model::operator::Maintenance;
use fediversity_store::{ReleaseId, Role, Store};

use crate::AppState;
use crate::auth::{Posted, SignedIn};
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

/// A release on the administrators' page, with where its operators are.
pub struct ReleaseRow {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// `routine` or `security`.
    pub severity: &'static str,
    /// Where its rollout is: running, paused, halted or done.
    pub state: &'static str,
    /// Why it halted, when it did.
    pub halt_reason: String,
    /// How many operators are scheduled, running, succeeded and failed.
    pub scheduled: usize,
    /// See `scheduled`.
    pub running: usize,
    /// See `scheduled`.
    pub succeeded: usize,
    /// See `scheduled`.
    pub failed: usize,
}

/// Every release, newest first, with its operators counted by status.
pub async fn releases(store: &Store) -> Result<Vec<ReleaseRow>, PanelError> {
    let mut rows = Vec::new();
    for release in store.releases().await? {
        let items = store.rollout(release.id).await?;
        let count = |wanted: fn(&ItemStatus) -> bool| {
            items.iter().filter(|r| wanted(&r.item.status)).count()
        };
        rows.push(ReleaseRow {
            id: release.id.0,
            title: release.release.title,
            severity: release.release.severity.as_str(),
            state: release.state.as_str(),
            halt_reason: release.halt_reason.unwrap_or_default(),
            scheduled: count(|s| *s == ItemStatus::Scheduled),
            running: count(|s| *s == ItemStatus::Running),
            succeeded: count(|s| *s == ItemStatus::Succeeded),
            failed: count(|s| matches!(s, ItemStatus::Failed(_))),
        });
    }
    Ok(rows)
}

/// Pauses (`pause`) or resumes (`resume`) a rollout from the administrators' page; 404 for
/// anybody else.
pub async fn pause_or_resume(
    State(state): State<AppState>,
    user: SignedIn,
    Path((release, action)): Path<(i64, String)>,
    Posted(_form): Posted<BTreeMap<String, String>>,
) -> Result<Response, PanelError> {
    if user.0.user.role != Role::Admin {
        return Err(PanelError::NotFound);
    }
    let new_state = match action.as_str() {
        "pause" => State_::Paused,
        "resume" => State_::Running,
        _ => return Err(PanelError::NotFound),
    };
    let id = ReleaseId(release);
    if let Err(fediversity_store::Error::UnknownRelease(_)) = state.store().release(id).await {
        return Err(PanelError::NotFound);
    }
    crate::fleet::set_rollout_state(state.store(), id, new_state, SystemClock.now())
        .await
        .map_err(|e| PanelError::internal(e.to_string()))?;
    Ok(Redirect::to("/operators").into_response())
}
