//! The fleet on an operator's dashboard: the platform releases coming to it (when, in its own
//! time zone, and whether a deadline forced them outside its windows), the form that moves one
//! to another of its windows or applies it now, and what it was told; on the administrators'
//! page, every release with its operators counted, paused or resumed.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use fediversity_fleet::rollout::{ItemStatus, State as State_};
use fediversity_fleet::schedule::{self, Slot};
use fediversity_model::names::OperatorId;
use fediversity_model::operator::Maintenance;
use fediversity_store::{Release, ReleaseId, Role, Store};

use crate::AppState;
use crate::auth::{Posted, SignedIn};
use crate::error::PanelError;
use crate::fleet::{FleetError, demand, instant};
use crate::mail::{in_utc, in_zone};

/// How many notifications the dashboard shows.
const NOTIFICATIONS: u32 = 10;

/// How many windows the form offers to move a maintenance to.
const CHOICES: usize = 6;

/// A release coming to the operator, or being applied now.
pub struct UpcomingRow {
    /// The release's id, which the form posts to.
    pub release: i64,
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
    /// It has not started, so the operator may move it or apply it now.
    pub movable: bool,
    /// The windows it may be moved to (other than its own), soonest first.
    pub choices: Vec<Choice>,
}

/// A window occurrence the form offers.
pub struct Choice {
    /// Its start in RFC 3339 (UTC), as posted back.
    pub value: String,
    /// Its start in the operator's time zone and in UTC.
    pub label: String,
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

/// The operator's scheduled and running maintenance as of `now`, soonest first.
pub async fn upcoming(
    store: &Store,
    operator: &OperatorId,
    maintenance: Option<&Maintenance>,
    now: DateTime<Utc>,
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
        // The form needs the windows; a slot whose start has come is being started.
        let windows = maintenance.filter(|_| !running && now < slot.start);
        let choices = match windows {
            Some(windows) => choices(windows, now, &release, &slot)?,
            None => Vec::new(),
        };
        rows.push((
            slot.start,
            UpcomingRow {
                release: release.id.0,
                title: release.release.title,
                severity: release.release.severity.as_str(),
                when: local(slot.start, maintenance),
                when_utc: in_utc(slot.start),
                outside_windows: slot.outside_windows,
                running,
                movable: windows.is_some(),
                choices,
            },
        ));
    }
    rows.sort_by_key(|(start, _)| *start);
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// The coming windows `release` may be moved to from `current`, as the scheduler will accept
/// them ([`schedule::choices`]: long enough, before the deadline).
fn choices(
    maintenance: &Maintenance,
    now: DateTime<Utc>,
    release: &Release,
    current: &Slot,
) -> Result<Vec<Choice>, PanelError> {
    let found = schedule::choices(maintenance, now, &demand(release), CHOICES + 1)
        .map_err(|e| PanelError::internal(format!("windows of release {}: {e}", release.id)))?;
    Ok(found
        .into_iter()
        .filter(|o| o.start != current.start)
        .take(CHOICES)
        .map(|o| Choice {
            value: o.start.to_rfc3339_opts(SecondsFormat::Secs, true),
            label: format!(
                "{} · {}",
                local(o.start, Some(maintenance)),
                in_utc(o.start)
            ),
        })
        .collect())
}

/// An instant in the operator's time zone, or in UTC when it has none that is known.
fn local(at: DateTime<Utc>, maintenance: Option<&Maintenance>) -> String {
    maintenance
        .and_then(|m| in_zone(at, m))
        .unwrap_or_else(|| in_utc(at))
}

/// What the maintenance section says after the operator sent its form.
pub enum Outcome {
    /// The release was moved to another window (the dashboard's `?moved=`).
    Moved(i64),
    /// The release is applied now (`?applying=`).
    Applying(i64),
    /// The scheduler refused the request, and said why.
    Refused(String),
}

/// Where the dashboard came from: the form's redirect says which release it moved.
#[derive(serde::Deserialize)]
pub struct DashboardQuery {
    moved: Option<i64>,
    applying: Option<i64>,
}

impl DashboardQuery {
    /// The outcome the redirect reports, if any.
    pub fn outcome(&self) -> Option<Outcome> {
        self.moved
            .map(Outcome::Moved)
            .or(self.applying.map(Outcome::Applying))
    }
}

/// The sentence the maintenance section shows for `outcome`: a notice, or the refusal (`true`).
/// A redirect that names a release not on the dashboard (any more) says nothing.
pub fn describe(outcome: Option<Outcome>, rows: &[UpcomingRow]) -> Option<(String, bool)> {
    let row = |id: i64| rows.iter().find(|r| r.release == id);
    match outcome? {
        Outcome::Moved(id) => row(id).map(|r| {
            let text = format!("“{}” moved to {} ({}).", r.title, r.when, r.when_utc);
            (text, false)
        }),
        Outcome::Applying(id) => row(id).map(|r| {
            let text = format!(
                "“{}” is applied now: it starts at the scheduler's next round.",
                r.title
            );
            (text, false)
        }),
        Outcome::Refused(reason) => Some((reason, true)),
    }
}

/// What the operator's form sends: `action` `move` with a window's start in `to`, or `now`.
/// Both are optional here, so that a request for another operator is 404 before its form is
/// read.
#[derive(serde::Deserialize)]
pub struct MoveForm {
    action: Option<String>,
    to: Option<String>,
}

impl MoveForm {
    /// The window start to move to, or `None` to apply now.
    fn target(&self) -> Result<Option<DateTime<Utc>>, PanelError> {
        match (self.action.as_deref(), self.to.as_deref()) {
            (Some("now"), _) => Ok(None),
            (Some("move"), Some(to)) => DateTime::parse_from_rfc3339(to)
                .map(|to| Some(to.to_utc()))
                .map_err(|_| PanelError::BadRequest(format!("`{to}` is not a time"))),
            (Some("move"), None) => Err(PanelError::BadRequest("choose a window".to_owned())),
            (_, _) => Err(PanelError::BadRequest(
                "the form says neither move nor now".to_owned(),
            )),
        }
    }
}

/// Moves the signed-in operator's maintenance for a release to another of its windows, or
/// applies it now, then goes back to the dashboard; a refusal (started, not a window, past the
/// deadline) is shown there. A release the operator has no maintenance for is 404.
pub async fn reschedule(
    State(state): State<AppState>,
    user: SignedIn,
    Path((operator, release)): Path<(String, i64)>,
    Posted(form): Posted<MoveForm>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let id = ReleaseId(release);
    let ours = state.store().operator_rollouts(&operator).await?;
    if !ours.iter().any(|r| r.release == id) {
        return Err(PanelError::NotFound);
    }
    let to = form.target()?;
    let scheduler = crate::fleet_jobs::scheduler(state.store().clone(), state.clock());
    match scheduler.reschedule(id, &operator, to).await {
        Ok(slot) => {
            tracing::info!(%id, %operator, start = %slot.start, "maintenance moved at the operator's request");
            let key = if to.is_some() { "moved" } else { "applying" };
            let back = format!("/operators/{operator}?{key}={release}#maintenance");
            Ok(Redirect::to(&back).into_response())
        }
        Err(error) => {
            let title = state.store().release(id).await?.release.title;
            let reason = format!("“{title}” was not moved: {}", refusal(error)?);
            let view = super::operators::dashboard_view(
                &state,
                &user,
                &operator,
                Some(Outcome::Refused(reason)),
            )
            .await?;
            super::operators::page(StatusCode::CONFLICT, &view)
        }
    }
}

/// Why the scheduler refused, in the operator's words; a store failure is not a refusal.
fn refusal(error: FleetError) -> Result<String, PanelError> {
    match error {
        FleetError::Store(error) => Err(error.into()),
        FleetError::Refused(error) => Ok(error.to_string()),
        FleetError::Deployment { message, .. } => Ok(message),
    }
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
    crate::fleet::set_rollout_state(state.store(), id, new_state, state.now())
        .await
        .map_err(|e| PanelError::internal(e.to_string()))?;
    Ok(Redirect::to("/operators").into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn form(action: &str, to: Option<&str>) -> MoveForm {
        MoveForm {
            action: Some(action.to_owned()),
            to: to.map(str::to_owned),
        }
    }

    #[test]
    fn the_form_names_a_window_start_or_now() {
        let start = "2027-03-28T01:00:00Z";
        assert_eq!(
            form("move", Some(start)).target().unwrap(),
            Some(DateTime::parse_from_rfc3339(start).unwrap().to_utc())
        );
        assert_eq!(form("now", Some(start)).target().unwrap(), None);
        for bad in [
            form("move", None),
            form("move", Some("next sunday")),
            form("later", None),
            MoveForm {
                action: None,
                to: None,
            },
        ] {
            assert!(matches!(bad.target(), Err(PanelError::BadRequest(_))));
        }
    }

    fn row(release: i64) -> UpcomingRow {
        UpcomingRow {
            release,
            title: "OpenSSL".to_owned(),
            severity: "security",
            when: "Sunday 28 March 2027, 03:00 (Europe/Amsterdam)".to_owned(),
            when_utc: "Sunday 28 March 2027, 01:00 UTC".to_owned(),
            outside_windows: false,
            running: false,
            movable: true,
            choices: Vec::new(),
        }
    }

    #[test]
    fn the_outcome_is_told_for_a_release_on_the_dashboard_only() {
        let rows = [row(3)];
        assert_eq!(
            describe(Some(Outcome::Moved(3)), &rows),
            Some((
                "“OpenSSL” moved to Sunday 28 March 2027, 03:00 (Europe/Amsterdam) \
                 (Sunday 28 March 2027, 01:00 UTC)."
                    .to_owned(),
                false
            ))
        );
        assert!(describe(Some(Outcome::Applying(3)), &rows).is_some_and(|(_, refused)| !refused));
        assert_eq!(describe(Some(Outcome::Moved(4)), &rows), None);
        assert_eq!(
            describe(Some(Outcome::Refused("no".to_owned())), &[]),
            Some(("no".to_owned(), true))
        );
        assert_eq!(describe(None, &rows), None);
    }
}
