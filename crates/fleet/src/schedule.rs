//! When a release is applied for one operator: its [`Slot`].
//!
//! - A release without a deadline goes in the operator's next window that is long enough.
//! - A **security** release with a deadline goes in the *last* window that ends before the
//!   deadline (the operator keeps its planned windows as long as possible and has the most
//!   notice); a routine release with a deadline in the *first* such window.
//! - When no window fits before the deadline, the slot is forced: the deployment starts early
//!   enough to be done by the deadline (or now, when that is already past), and the slot says
//!   it is outside the operator's windows, so that the panel and the e-mail can say so in
//!   advance.
//!
//! An operator can move a slot to another of its windows, or apply it now, before it starts.

use chrono::{DateTime, Duration, Utc};
use fediversity_model::operator::Maintenance;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::windows::{self, Occurrence};

/// How far ahead a release without a deadline looks for a window: two weeks holds every
/// weekly window at least once, daylight-saving changes included.
const HORIZON_DAYS: i64 = 15;

/// How urgent a release is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Improvements: applied in the operators' windows.
    Routine,
    /// A security fix: with a deadline, it is applied by then, inside a window if one fits.
    Security,
}

impl Severity {
    /// The lower-case name used in the CLI, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routine => "routine",
            Self::Security => "security",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "routine" => Ok(Self::Routine),
            "security" => Ok(Self::Security),
            other => Err(format!(
                "`{other}` is not a severity: use routine or security"
            )),
        }
    }
}

/// What a release asks of every operator's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    /// How urgent the release is.
    pub severity: Severity,
    /// When it must have been applied, if ever.
    pub deadline: Option<DateTime<Utc>>,
    /// How long one operator's deployment is expected to take: a window must leave this much
    /// time after the deployment starts.
    pub expected: Duration,
}

/// When the release is applied for one operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The earliest instant the deployment may start.
    pub start: DateTime<Utc>,
    /// The last instant it may start and still end inside the window; `None` for a slot
    /// outside the windows, which starts as soon as it can.
    pub latest_start: Option<DateTime<Utc>>,
    /// Whether the slot is outside the operator's windows (forced by a deadline, or applied
    /// now at the operator's request).
    pub outside_windows: bool,
}

impl Slot {
    /// The slot inside a window occurrence, starting no earlier than `now`.
    fn inside(occurrence: &Occurrence, now: DateTime<Utc>, expected: Duration) -> Slot {
        Slot {
            start: occurrence.start.max(now),
            latest_start: Some(occurrence.end - expected),
            outside_windows: false,
        }
    }

    /// Whether the slot can no longer be kept at `now`: its window closed (or will before the
    /// deployment could end) without the deployment having started.
    pub fn missed(&self, now: DateTime<Utc>) -> bool {
        self.latest_start.is_some_and(|latest| now > latest)
    }
}

/// The slot of a release for an operator with `maintenance`, as of `now`.
pub fn slot(maintenance: &Maintenance, now: DateTime<Utc>, demand: &Demand) -> Result<Slot> {
    let Some(deadline) = demand.deadline else {
        let candidates = usable(maintenance, now, now + Duration::days(HORIZON_DAYS), demand)?;
        return candidates
            .first()
            .map(|o| Slot::inside(o, now, demand.expected))
            .ok_or(Error::NoWindowFits {
                needed_minutes: demand.expected.num_minutes(),
            });
    };
    let candidates = usable(maintenance, now, deadline, demand)?;
    let chosen = match demand.severity {
        Severity::Security => candidates.last(),
        Severity::Routine => candidates.first(),
    };
    Ok(chosen.map_or_else(
        || forced(now, deadline, demand.expected),
        |o| Slot::inside(o, now, demand.expected),
    ))
}

/// The windows an operator may move its slot to: the coming occurrences that are long enough
/// (and end before the deadline, if any), at most `count` of them.
pub fn choices(
    maintenance: &Maintenance,
    now: DateTime<Utc>,
    demand: &Demand,
    count: usize,
) -> Result<Vec<Occurrence>> {
    let until = demand
        .deadline
        .unwrap_or(now + Duration::days(HORIZON_DAYS));
    let mut found = usable(maintenance, now, until, demand)?;
    found.retain(|o| o.start > now);
    found.truncate(count);
    Ok(found)
}

/// Moves `current` to the window occurrence that starts at `to`, at the operator's request.
pub fn move_to(
    maintenance: &Maintenance,
    now: DateTime<Utc>,
    current: &Slot,
    to: DateTime<Utc>,
    demand: &Demand,
) -> Result<Slot> {
    if now >= current.start {
        return Err(Error::AlreadyStarted);
    }
    if let Some(deadline) = demand.deadline
        && to + demand.expected > deadline
    {
        return Err(Error::PastDeadline(deadline.to_rfc3339()));
    }
    choices(maintenance, now, demand, usize::MAX)?
        .iter()
        .find(|o| o.start == to)
        .map(|o| Slot::inside(o, now, demand.expected))
        .ok_or_else(|| Error::NotAWindow(to.to_rfc3339()))
}

/// Applies `current` now, at the operator's request, whether or not a window is open.
pub fn apply_now(maintenance: &Maintenance, now: DateTime<Utc>, current: &Slot) -> Result<Slot> {
    if now >= current.start {
        return Err(Error::AlreadyStarted);
    }
    Ok(Slot {
        start: now,
        latest_start: None,
        outside_windows: !windows::is_inside(maintenance, now)?,
    })
}

/// The occurrences between `from` and `until` in which a deployment starting no earlier than
/// `from` can run to its end, and end by `until`.
fn usable(
    maintenance: &Maintenance,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    demand: &Demand,
) -> Result<Vec<Occurrence>> {
    let mut found = windows::occurrences(maintenance, from, until)?;
    found.retain(|o| {
        let start = o.start.max(from);
        start + demand.expected <= o.end && start + demand.expected <= until
    });
    Ok(found)
}

/// The slot when no window fits before the deadline: early enough to be done by then.
fn forced(now: DateTime<Utc>, deadline: DateTime<Utc>, expected: Duration) -> Slot {
    Slot {
        start: (deadline - expected).max(now),
        latest_start: None,
        outside_windows: true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use fediversity_model::operator::Weekday;

    use super::*;
    use crate::windows::tests::{maintenance, utc};

    fn demand(severity: Severity, deadline: Option<&str>) -> Demand {
        Demand {
            severity,
            deadline: deadline.map(utc),
            expected: Duration::minutes(30),
        }
    }

    /// Amsterdam, Tuesdays and Thursdays 03:00–04:00.
    fn amsterdam() -> Maintenance {
        maintenance(
            "Europe/Amsterdam",
            &[(&[Weekday::Tue, Weekday::Thu], "03:00", 60)],
        )
    }

    #[test]
    fn a_routine_release_goes_in_the_next_window() {
        // Monday 2 November 2026, noon UTC; the next window is Tuesday 03:00 CET = 02:00 UTC.
        let slot = slot(
            &amsterdam(),
            utc("2026-11-02T12:00:00Z"),
            &demand(Severity::Routine, None),
        )
        .unwrap();
        assert_eq!(slot.start, utc("2026-11-03T02:00:00Z"));
        assert_eq!(slot.latest_start, Some(utc("2026-11-03T02:30:00Z")));
        assert!(!slot.outside_windows);
    }

    #[test]
    fn inside_an_open_window_the_release_starts_now_if_it_still_fits() {
        let now = utc("2026-11-03T02:10:00Z");
        let fits = slot(&amsterdam(), now, &demand(Severity::Routine, None)).unwrap();
        assert_eq!(fits.start, now);
        let late = utc("2026-11-03T02:45:00Z");
        let next = slot(&amsterdam(), late, &demand(Severity::Routine, None)).unwrap();
        assert_eq!(
            next.start,
            utc("2026-11-05T02:00:00Z"),
            "15 minutes left is too short: Thursday's window"
        );
    }

    #[test]
    fn a_security_release_goes_in_the_last_window_before_its_deadline() {
        let slot = slot(
            &amsterdam(),
            utc("2026-11-02T12:00:00Z"),
            &demand(Severity::Security, Some("2026-11-10T00:00:00Z")),
        )
        .unwrap();
        // Tuesday 3, Thursday 5 and Tuesday 10 (after the deadline): Thursday 5.
        assert_eq!(slot.start, utc("2026-11-05T02:00:00Z"));
        assert!(!slot.outside_windows);
    }

    #[test]
    fn a_deadline_before_any_window_forces_a_slot_outside_the_windows() {
        let now = utc("2026-11-03T12:00:00Z");
        let slot = slot(
            &amsterdam(),
            now,
            &demand(Severity::Security, Some("2026-11-04T18:00:00Z")),
        )
        .unwrap();
        assert!(slot.outside_windows);
        assert_eq!(
            slot.start,
            utc("2026-11-04T17:30:00Z"),
            "done by the deadline"
        );
        assert_eq!(slot.latest_start, None, "a forced slot is never missed");

        let overdue = super::slot(
            &amsterdam(),
            now,
            &demand(Severity::Security, Some("2026-11-01T00:00:00Z")),
        )
        .unwrap();
        assert_eq!(overdue.start, now, "a deadline already past: at once");
    }

    #[test]
    fn windows_too_short_for_the_deployment_are_refused_clearly() {
        let short = maintenance("UTC", &[(&[Weekday::Mon], "01:00", 15)]);
        let error = slot(
            &short,
            utc("2026-11-02T12:00:00Z"),
            &demand(Severity::Routine, None),
        )
        .unwrap_err();
        assert_eq!(error, Error::NoWindowFits { needed_minutes: 30 });
    }

    #[test]
    fn an_operator_moves_its_maintenance_to_another_window_before_it_starts() {
        let m = amsterdam();
        let now = utc("2026-11-02T12:00:00Z");
        let routine = demand(Severity::Routine, None);
        let current = slot(&m, now, &routine).unwrap();
        let offered: Vec<_> = choices(&m, now, &routine, 3)
            .unwrap()
            .iter()
            .map(|o| o.start)
            .collect();
        assert_eq!(
            offered,
            [
                utc("2026-11-03T02:00:00Z"),
                utc("2026-11-05T02:00:00Z"),
                utc("2026-11-10T02:00:00Z"),
            ]
        );

        let moved = move_to(&m, now, &current, offered[2], &routine).unwrap();
        assert_eq!(moved.start, utc("2026-11-10T02:00:00Z"));
        assert!(moved.missed(utc("2026-11-10T02:31:00Z")));
        assert!(!moved.missed(utc("2026-11-10T02:30:00Z")));

        assert_eq!(
            move_to(&m, now, &current, utc("2026-11-10T09:00:00Z"), &routine),
            Err(Error::NotAWindow("2026-11-10T09:00:00+00:00".into()))
        );
        let started = utc("2026-11-03T02:05:00Z");
        assert_eq!(
            move_to(&m, started, &current, offered[2], &routine),
            Err(Error::AlreadyStarted)
        );
        let security = demand(Severity::Security, Some("2026-11-08T00:00:00Z"));
        assert!(matches!(
            move_to(&m, now, &current, offered[2], &security),
            Err(Error::PastDeadline(_))
        ));
    }

    #[test]
    fn applying_now_says_whether_it_is_outside_the_windows() {
        let m = amsterdam();
        let current = slot(
            &m,
            utc("2026-11-02T12:00:00Z"),
            &demand(Severity::Routine, None),
        )
        .unwrap();
        let now = utc("2026-11-02T13:00:00Z");
        let slot = apply_now(&m, now, &current).unwrap();
        assert_eq!(slot.start, now);
        assert!(slot.outside_windows);
        assert!(!slot.missed(now + Duration::days(3)));
    }

    #[test]
    fn severities_round_trip_through_their_names() {
        for severity in [Severity::Routine, Severity::Security] {
            assert_eq!(severity.as_str().parse::<Severity>(), Ok(severity));
        }
        assert!("urgent".parse::<Severity>().is_err());
    }
}
