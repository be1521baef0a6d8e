//! A rollout in waves, as a pure state machine.
//!
//! The canaries the hosting provider chose form wave 0; every other operator follows in
//! batches (waves 1, 2, …) in a stable order. A wave opens when every wave before it has ended
//! within the failure threshold; its operators then get their slots (see
//! [`crate::schedule`]) and start when their slot has come, never more than the concurrency
//! bound at once. Once failures in a wave pass the threshold, no further operator starts: the
//! rollout halts (operators already deploying finish), and the provider is told.
//!
//! [`step`] only decides; the caller (the scheduler) records the decision in the store and
//! carries it out, so that a restart reads the same items and decides the same again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use fediversity_model::names::OperatorId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schedule::Slot;

/// How a rollout proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// How many operators form one wave after the canaries.
    pub batch_size: usize,
    /// How many operators may deploy at the same time.
    pub concurrency: usize,
    /// The share of a wave's operators (0 to 1) that may fail without halting the rollout.
    pub max_failure_rate: f64,
}

impl Policy {
    /// A policy, checked: batches and concurrency of at least one, a rate between 0 and 1.
    pub fn new(batch_size: usize, concurrency: usize, max_failure_rate: f64) -> Result<Policy> {
        if batch_size == 0 || concurrency == 0 {
            return Err(Error::InvalidPolicy(
                "the batch size and the concurrency bound must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&max_failure_rate) {
            return Err(Error::InvalidPolicy(format!(
                "the failure rate {max_failure_rate} is not between 0 and 1"
            )));
        }
        Ok(Policy {
            batch_size,
            concurrency,
            max_failure_rate,
        })
    }
}

/// Where one operator is in a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum ItemStatus {
    /// Waiting for its wave or its slot.
    Scheduled,
    /// Its deployment is running.
    Running,
    /// Deployed.
    Succeeded,
    /// The deployment failed; the health gate rolled the operator back. The reason is the
    /// deployment's error, secret-free.
    Failed(String),
    /// Not deployed because the rollout halted.
    Skipped,
}

impl ItemStatus {
    /// Whether the operator is done with this rollout, one way or the other.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed(_) | Self::Skipped)
    }

    /// The name the store and the API use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed(_) => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One operator in a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The operator.
    pub operator: OperatorId,
    /// Its wave: 0 for canaries.
    pub wave: u32,
    /// When it is to be deployed; `None` until its wave opens.
    pub slot: Option<Slot>,
    /// Where it is.
    pub status: ItemStatus,
}

/// Where a whole rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Operators are deployed as their slots come.
    Running,
    /// The provider paused it: nobody new starts until it resumes.
    Paused,
    /// A wave failed beyond the threshold: nobody new starts.
    Halted,
    /// Every operator is done.
    Done,
}

impl State {
    /// The name the store and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Halted => "halted",
            Self::Done => "done",
        }
    }
}

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        [Self::Running, Self::Paused, Self::Halted, Self::Done]
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a rollout state"))
    }
}

/// Why a rollout halted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    /// The wave that failed.
    pub wave: u32,
    /// Its failed operators.
    pub failed: usize,
    /// Its operators.
    pub total: usize,
}

/// What [`step`] decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Operators of the open wave that need a slot: their wave just opened, or they missed
    /// theirs (it closed while the concurrency bound held them back).
    pub schedule: Vec<OperatorId>,
    /// Operators to start now.
    pub start: Vec<OperatorId>,
    /// Operators that will not be deployed, because the rollout halted.
    pub skip: Vec<OperatorId>,
    /// The rollout's new state, when it changes.
    pub new_state: Option<State>,
    /// Why the rollout halts, when it halts now.
    pub halt: Option<Halt>,
}

/// Assigns waves: the canaries (those among `operators`) are wave 0, the others follow sorted,
/// `batch_size` per wave. Without canaries the first batch is wave 1 all the same, so that
/// wave 0 always means "canaries".
pub fn waves(
    operators: &[OperatorId],
    canaries: &[OperatorId],
    batch_size: usize,
) -> BTreeMap<OperatorId, u32> {
    let canaries: BTreeSet<&OperatorId> = canaries.iter().collect();
    let (first, rest): (BTreeSet<&OperatorId>, BTreeSet<&OperatorId>) =
        operators.iter().partition(|op| canaries.contains(op));
    let mut waves: BTreeMap<OperatorId, u32> =
        first.into_iter().map(|op| (op.clone(), 0)).collect();
    for (index, op) in rest.into_iter().enumerate() {
        let wave = u32::try_from(index / batch_size.max(1) + 1).unwrap_or(u32::MAX);
        waves.insert(op.clone(), wave);
    }
    waves
}

/// Decides what a rollout in `state` with `items` does at `now`.
pub fn step(items: &[Item], state: State, policy: &Policy, now: DateTime<Utc>) -> Decision {
    if state != State::Running {
        return Decision::default();
    }
    let mut decision = Decision::default();
    let open = open_wave(items);
    let checked_up_to = open.or_else(|| items.iter().map(|item| item.wave).max());
    if let Some(halt) = checked_up_to.and_then(|last| failed_beyond_threshold(items, last, policy))
    {
        decision.skip = items
            .iter()
            .filter(|item| item.status == ItemStatus::Scheduled)
            .map(|item| item.operator.clone())
            .collect();
        decision.new_state = Some(State::Halted);
        decision.halt = Some(halt);
        return decision;
    }
    let Some(wave) = open else {
        decision.new_state = Some(State::Done);
        return decision;
    };
    let waiting: Vec<&Item> = items
        .iter()
        .filter(|item| item.wave == wave && item.status == ItemStatus::Scheduled)
        .collect();
    decision.schedule = waiting
        .iter()
        .filter(|item| item.slot.is_none_or(|slot| slot.missed(now)))
        .map(|item| item.operator.clone())
        .collect();
    let running = items
        .iter()
        .filter(|item| item.status == ItemStatus::Running)
        .count();
    let mut due: Vec<(DateTime<Utc>, &OperatorId)> = waiting
        .iter()
        .filter_map(|item| {
            let slot = item.slot?;
            (slot.start <= now && !slot.missed(now)).then_some((slot.start, &item.operator))
        })
        .collect();
    due.sort();
    decision.start = due
        .into_iter()
        .take(policy.concurrency.saturating_sub(running))
        .map(|(_, op)| op.clone())
        .collect();
    decision
}

/// The first wave with an operator still to deploy or deploying; `None` when all are done.
fn open_wave(items: &[Item]) -> Option<u32> {
    items
        .iter()
        .filter(|item| !item.status.is_final())
        .map(|item| item.wave)
        .min()
}

/// Checks every wave up to the open one: failures beyond the threshold halt. A wave's rate is
/// over all its operators, so it is known to be too high as soon as enough have failed, and
/// the rollout halts without waiting for the wave's last deployments.
fn failed_beyond_threshold(items: &[Item], open: u32, policy: &Policy) -> Option<Halt> {
    (0..=open).find_map(|wave| {
        let members: Vec<&Item> = items
            .iter()
            .filter(|item| item.wave == wave && item.status != ItemStatus::Skipped)
            .collect();
        let failed = members
            .iter()
            .filter(|item| matches!(item.status, ItemStatus::Failed(_)))
            .count();
        let total = members.len();
        #[allow(clippy::cast_precision_loss, reason = "counts of operators are small")]
        let rate = failed as f64 / total.max(1) as f64;
        (rate > policy.max_failure_rate).then_some(Halt {
            wave,
            failed,
            total,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use crate::windows::tests::utc;

    fn op(name: &str) -> OperatorId {
        OperatorId::try_from(name).unwrap()
    }

    fn item(name: &str, wave: u32, slot: Option<&str>, status: ItemStatus) -> Item {
        Item {
            operator: op(name),
            wave,
            slot: slot.map(|start| Slot {
                start: utc(start),
                latest_start: Some(utc(start) + chrono::Duration::minutes(30)),
                outside_windows: false,
            }),
            status,
        }
    }

    #[test]
    fn canaries_come_first_and_the_rest_in_sorted_batches() {
        let all: Vec<_> = ["eee", "aaa", "ddd", "ccc", "bbb"]
            .into_iter()
            .map(op)
            .collect();
        let waves = waves(&all, &[op("ddd"), op("not-in-fleet")], 2);
        let as_list: Vec<_> = waves.iter().map(|(o, w)| (o.as_str(), *w)).collect();
        assert_eq!(
            as_list,
            [("aaa", 1), ("bbb", 1), ("ccc", 2), ("ddd", 0), ("eee", 2)]
        );
    }

    #[test]
    fn policies_are_checked() {
        assert!(Policy::new(0, 1, 0.1).is_err());
        assert!(Policy::new(1, 0, 0.1).is_err());
        assert!(Policy::new(1, 1, 1.5).is_err());
        assert!(Policy::new(1, 1, f64::NAN).is_err());
        assert!(Policy::new(1, 1, 0.0).is_ok());
    }

    #[test]
    fn due_operators_of_the_open_wave_start_up_to_the_bound() {
        let policy = Policy::new(10, 2, 0.2).unwrap();
        let now = utc("2026-11-03T02:10:00Z");
        let items = [
            item("aaa", 0, Some("2026-11-03T02:00:00Z"), ItemStatus::Running),
            item(
                "bbb",
                0,
                Some("2026-11-03T02:05:00Z"),
                ItemStatus::Scheduled,
            ),
            item(
                "ccc",
                0,
                Some("2026-11-03T02:00:00Z"),
                ItemStatus::Scheduled,
            ),
            item(
                "ddd",
                0,
                Some("2026-11-04T02:00:00Z"),
                ItemStatus::Scheduled,
            ),
            item("eee", 1, None, ItemStatus::Scheduled),
        ];
        let decision = step(&items, State::Running, &policy, now);
        assert_eq!(
            decision.start,
            [op("ccc")],
            "one place left, earliest slot first"
        );
        assert!(decision.schedule.is_empty(), "wave 1 is not open yet");
        assert_eq!(decision.new_state, None);

        let paused = step(&items, State::Paused, &policy, now);
        assert_eq!(paused, Decision::default());
    }

    #[test]
    fn a_wave_opens_when_the_one_before_ends_and_missed_slots_are_rescheduled() {
        let policy = Policy::new(10, 5, 0.2).unwrap();
        let items = [
            item(
                "aaa",
                0,
                Some("2026-11-03T02:00:00Z"),
                ItemStatus::Succeeded,
            ),
            item("bbb", 1, None, ItemStatus::Scheduled),
            item(
                "ccc",
                1,
                Some("2026-11-03T02:00:00Z"),
                ItemStatus::Scheduled,
            ),
        ];
        let decision = step(&items, State::Running, &policy, utc("2026-11-03T03:00:00Z"));
        assert_eq!(decision.schedule, [op("bbb"), op("ccc")]);
        assert!(decision.start.is_empty(), "ccc's window has closed");
    }

    #[test]
    fn failures_beyond_the_threshold_halt_and_skip_the_rest() {
        let policy = Policy::new(10, 5, 0.2).unwrap();
        let items = [
            item("aaa", 0, None, ItemStatus::Failed("health check".into())),
            item("bbb", 0, None, ItemStatus::Failed("health check".into())),
            item("ccc", 0, None, ItemStatus::Running),
            item("ddd", 0, None, ItemStatus::Scheduled),
            item("eee", 0, None, ItemStatus::Succeeded),
            item("fff", 1, None, ItemStatus::Scheduled),
        ];
        let decision = step(&items, State::Running, &policy, utc("2026-11-03T03:00:00Z"));
        assert_eq!(decision.new_state, Some(State::Halted));
        assert_eq!(
            decision.halt,
            Some(Halt {
                wave: 0,
                failed: 2,
                total: 5
            })
        );
        assert_eq!(decision.skip, [op("ddd"), op("fff")]);
        assert!(decision.start.is_empty());

        // One failure in five is within 20 %: the next wave opens.
        let mut within = items.clone();
        within[1].status = ItemStatus::Succeeded;
        within[2].status = ItemStatus::Succeeded;
        within[3].status = ItemStatus::Succeeded;
        let decision = step(
            &within,
            State::Running,
            &policy,
            utc("2026-11-03T03:00:00Z"),
        );
        assert_eq!(decision.halt, None);
        assert_eq!(decision.schedule, [op("fff")]);
    }

    #[test]
    fn a_rollout_with_everyone_final_is_done() {
        let policy = Policy::new(10, 5, 0.5).unwrap();
        let items = [
            item("aaa", 0, None, ItemStatus::Succeeded),
            item("bbb", 1, None, ItemStatus::Failed("x".into())),
            item("ccc", 1, None, ItemStatus::Succeeded),
        ];
        let decision = step(&items, State::Running, &policy, utc("2026-11-03T03:00:00Z"));
        assert_eq!(decision.new_state, Some(State::Done));
        assert!("done".parse::<State>() == Ok(State::Done));
    }
}
