//! An operator's weekly maintenance windows as concrete instants.
//!
//! Windows are written in the operator's time zone (`Maintenance::time_zone`) as a weekday, a
//! wall-clock start and a duration. This module turns them into UTC intervals
//! ([`Occurrence`]s), which is all the scheduler compares.
//!
//! Rules, chosen so that a window is never silently dropped or doubled:
//! - **Duration is elapsed time.** A window of 180 minutes lasts 180 real minutes, also across
//!   a daylight-saving change; a window crossing midnight simply ends on the next day.
//! - **A start inside a DST gap** (a wall-clock time that does not exist, e.g. 02:30 in
//!   Amsterdam on the last Sunday of March) is read with the UTC offset in force *before* the
//!   gap, as iCalendar (RFC 5545 §3.3.5) does: 02:30 CET becomes 03:30 CEST. The window still
//!   happens that day, as long as it was written.
//! - **A start inside a DST overlap** (a wall-clock time that happens twice, e.g. 02:30 in
//!   Amsterdam on the last Sunday of October) is the *first* of the two instants, so the window
//!   happens once.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use fediversity_model::operator::{Maintenance, MaintenanceWindow, Weekday};

use crate::error::{Error, Result};

/// How far back a search for occurrences starts: a window lasts at most a week, so one that
/// started more than eight days ago has ended.
const LOOK_BACK_DAYS: i64 = 8;

/// One occurrence of a weekly window, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occurrence {
    /// When the window opens.
    pub start: DateTime<Utc>,
    /// When the window closes (`start` plus the window's duration).
    pub end: DateTime<Utc>,
    /// Which of the operator's windows this is (its index in `Maintenance::windows`).
    pub window: usize,
}

impl Occurrence {
    /// Whether `instant` lies in the window (start included, end excluded).
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.start <= instant && instant < self.end
    }
}

/// The operator's time zone, parsed.
pub fn time_zone(maintenance: &Maintenance) -> Result<Tz> {
    let name = maintenance.time_zone.as_str();
    name.parse::<Tz>()
        .map_err(|_| Error::UnknownTimeZone(name.to_owned()))
}

/// Every occurrence of the operator's windows that is still open at `from` or opens before
/// `until`, ordered by start (then by window). An occurrence open at `from` is included.
pub fn occurrences(
    maintenance: &Maintenance,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Occurrence>> {
    let tz = time_zone(maintenance)?;
    let first_day = from.with_timezone(&tz).date_naive() - Duration::days(LOOK_BACK_DAYS);
    let last_day = until.with_timezone(&tz).date_naive() + Duration::days(1);
    let mut found = Vec::new();
    for day in first_day.iter_days().take_while(|day| *day <= last_day) {
        for (index, window) in maintenance.windows.iter().enumerate() {
            if !window.days.contains(&weekday(day)) {
                continue;
            }
            let occurrence = occurrence_on(tz, day, index, window);
            if occurrence.end > from && occurrence.start < until {
                found.push(occurrence);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Whether `instant` lies inside one of the operator's windows.
pub fn is_inside(maintenance: &Maintenance, instant: DateTime<Utc>) -> Result<bool> {
    let around = occurrences(maintenance, instant, instant + Duration::minutes(1))?;
    Ok(around.iter().any(|o| o.contains(instant)))
}

/// The window `window` on the local date `day`.
fn occurrence_on(tz: Tz, day: NaiveDate, index: usize, window: &MaintenanceWindow) -> Occurrence {
    let minutes = window.start.minutes_after_midnight();
    let wall = NaiveTime::from_num_seconds_from_midnight_opt(minutes * 60, 0).unwrap_or_default();
    let start = resolve(tz, day.and_time(wall));
    Occurrence {
        start,
        end: start + Duration::minutes(i64::from(window.duration_minutes)),
        window: index,
    }
}

/// The instant a local wall-clock time names, by the rules in the module documentation.
fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(at) => at.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => in_gap(tz, local),
    }
}

/// A wall-clock time skipped by a forward change, read with the offset before the change.
fn in_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // Walk back to a wall-clock time that exists: gaps are an hour or less nowadays, but a
    // zone has skipped a whole day (Pacific/Apia, 30 December 2011).
    let before = (1..=48)
        .map(|hours| local - Duration::hours(hours))
        .find_map(|earlier| tz.from_local_datetime(&earlier).earliest());
    let offset_seconds = before.map_or(0, |at| {
        use chrono::Offset as _;
        at.offset().fix().local_minus_utc()
    });
    Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset_seconds))))
}

fn weekday(day: NaiveDate) -> Weekday {
    match day.weekday() {
        chrono::Weekday::Mon => Weekday::Mon,
        chrono::Weekday::Tue => Weekday::Tue,
        chrono::Weekday::Wed => Weekday::Wed,
        chrono::Weekday::Thu => Weekday::Thu,
        chrono::Weekday::Fri => Weekday::Fri,
        chrono::Weekday::Sat => Weekday::Sat,
        chrono::Weekday::Sun => Weekday::Sun,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// A `Maintenance` in `zone` with one window per `(days, start, minutes)`.
    pub(crate) fn maintenance(zone: &str, windows: &[(&[Weekday], &str, u32)]) -> Maintenance {
        Maintenance {
            time_zone: zone.try_into().unwrap(),
            windows: windows
                .iter()
                .map(|(days, start, minutes)| MaintenanceWindow {
                    days: days.to_vec(),
                    start: (*start).try_into().unwrap(),
                    duration_minutes: *minutes,
                })
                .collect(),
        }
    }

    pub(crate) fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn starts(m: &Maintenance, from: &str, until: &str) -> Vec<(String, String)> {
        occurrences(m, utc(from), utc(until))
            .unwrap()
            .into_iter()
            .map(|o| (o.start.to_rfc3339(), o.end.to_rfc3339()))
            .collect()
    }

    #[test]
    fn amsterdam_spring_forward_moves_a_start_in_the_gap_an_hour_later() {
        // 29 March 2026: clocks go from 02:00 CET to 03:00 CEST.
        let m = maintenance("Europe/Amsterdam", &[(&[Weekday::Sun], "02:30", 60)]);
        assert_eq!(
            starts(&m, "2026-03-21T00:00:00Z", "2026-04-06T00:00:00Z"),
            [
                // 22 March, CET (+01:00).
                (
                    "2026-03-22T01:30:00+00:00".into(),
                    "2026-03-22T02:30:00+00:00".into()
                ),
                // 29 March: 02:30 does not exist; read as CET, it is 03:30 CEST.
                (
                    "2026-03-29T01:30:00+00:00".into(),
                    "2026-03-29T02:30:00+00:00".into()
                ),
                // 5 April, CEST (+02:00).
                (
                    "2026-04-05T00:30:00+00:00".into(),
                    "2026-04-05T01:30:00+00:00".into()
                ),
            ]
        );
    }

    #[test]
    fn amsterdam_fall_back_keeps_one_window_at_the_first_of_two_instants() {
        // 25 October 2026: clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
        let m = maintenance("Europe/Amsterdam", &[(&[Weekday::Sun], "02:30", 120)]);
        assert_eq!(
            starts(&m, "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"),
            [(
                "2026-10-25T00:30:00+00:00".into(),
                // 120 elapsed minutes, although the wall clock shows 03:30 at the end.
                "2026-10-25T02:30:00+00:00".into()
            )]
        );
        // The week after, 02:30 CET is 01:30 UTC.
        assert_eq!(
            starts(&m, "2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z")[0].0,
            "2026-11-01T01:30:00+00:00"
        );
    }

    #[test]
    fn new_york_kolkata_and_auckland_place_the_same_wall_clock_differently() {
        let at = |zone| {
            let m = maintenance(zone, &[(&[Weekday::Wed], "22:00", 60)]);
            starts(&m, "2026-07-01T00:00:00Z", "2026-07-03T00:00:00Z")
                .into_iter()
                .map(|(start, _)| start)
                .collect::<Vec<_>>()
        };
        // 1 July 2026 is a Wednesday. New York is on EDT (-04:00): Thursday 02:00 UTC.
        assert_eq!(at("America/New_York"), ["2026-07-02T02:00:00+00:00"]);
        // Kolkata is +05:30 all year.
        assert_eq!(at("Asia/Kolkata"), ["2026-07-01T16:30:00+00:00"]);
        // Auckland is on NZST (+12:00) in July.
        assert_eq!(at("Pacific/Auckland"), ["2026-07-01T10:00:00+00:00"]);
    }

    #[test]
    fn auckland_and_new_york_change_clocks_on_their_own_dates() {
        // Auckland starts daylight saving (NZDT, +13:00) on 27 September 2026 at 02:00.
        let m = maintenance("Pacific/Auckland", &[(&[Weekday::Sat], "23:00", 240)]);
        let windows =
            occurrences(&m, utc("2026-09-26T00:00:00Z"), utc("2026-09-27T00:00:00Z")).unwrap();
        // Saturday 23:00 NZST is 11:00 UTC; the window crosses midnight and the change, and
        // still lasts four hours of real time (it ends at 04:00 NZDT).
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].start, utc("2026-09-26T11:00:00Z"));
        assert_eq!(windows[0].end, utc("2026-09-26T15:00:00Z"));

        // New York gains an hour on 1 November 2026; 01:30 happens twice: the first is EDT.
        let m = maintenance("America/New_York", &[(&[Weekday::Sun], "01:30", 30)]);
        let windows =
            occurrences(&m, utc("2026-11-01T00:00:00Z"), utc("2026-11-02T00:00:00Z")).unwrap();
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].start, utc("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn a_window_across_midnight_contains_the_small_hours_of_the_next_day() {
        let m = maintenance("Europe/Amsterdam", &[(&[Weekday::Fri], "23:00", 180)]);
        // Friday 6 November 2026, 23:00 CET = 22:00 UTC, until Saturday 02:00 CET.
        assert!(!is_inside(&m, utc("2026-11-06T21:59:00Z")).unwrap());
        assert!(is_inside(&m, utc("2026-11-06T22:00:00Z")).unwrap());
        assert!(is_inside(&m, utc("2026-11-07T00:30:00Z")).unwrap());
        assert!(!is_inside(&m, utc("2026-11-07T01:00:00Z")).unwrap());
        // Saturday itself is not a window day, but the Friday window is still open then.
        let open = occurrences(&m, utc("2026-11-07T00:30:00Z"), utc("2026-11-07T00:31:00Z"));
        assert_eq!(
            open.unwrap()[0].start,
            utc("2026-11-06T22:00:00Z"),
            "an occurrence open at `from` is listed"
        );
    }

    #[test]
    fn several_windows_are_merged_in_start_order() {
        let m = maintenance(
            "UTC",
            &[
                (&[Weekday::Tue, Weekday::Thu], "04:00", 60),
                (&[Weekday::Wed], "01:00", 30),
            ],
        );
        let windows: Vec<_> =
            occurrences(&m, utc("2026-11-02T00:00:00Z"), utc("2026-11-06T00:00:00Z"))
                .unwrap()
                .into_iter()
                .map(|o| (o.start, o.window))
                .collect();
        assert_eq!(
            windows,
            [
                (utc("2026-11-03T04:00:00Z"), 0),
                (utc("2026-11-04T01:00:00Z"), 1),
                (utc("2026-11-05T04:00:00Z"), 0),
            ]
        );
    }
}
