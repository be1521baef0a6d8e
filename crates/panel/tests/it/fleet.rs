//! Fleet rollouts over 50 operators with a manual clock: canaries first, batches after, never
//! more deployments at once than the bound, each inside its operator's window; failing
//! canaries halt the rollout before anybody else is deployed.
//!
//! Deployments are simulated by [`Simulated`], which finishes each one 20 minutes of clock
//! time after it started and fails those of chosen operators (as the health gate would,
//! rolling them back). A new [`Scheduler`] is made for every tick: all of its state is in the
//! store, as after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use fediversity_engine::clock::{Clock, ManualClock, Millis};
use fediversity_fleet::rollout::{ItemStatus, Policy, State, waves};
use fediversity_fleet::schedule::Severity;
use fediversity_fleet::windows;
use fediversity_model::OperatorConfig;
use fediversity_model::names::OperatorId;
use fediversity_panel::fleet::{Deployments, Scheduler, instant};
use fediversity_store::{NewRelease, NotificationKind, Release, ReleaseId, Store};
use serde_json::json;

use crate::harness::platform_in;

/// How long a simulated deployment takes.
const DEPLOYMENT: Duration = Duration::from_secs(20 * 60);
/// How often the scheduler ticks.
const TICK: Duration = Duration::from_secs(5 * 60);
/// The concurrency bound of the rollouts.
const BOUND: usize = 4;

struct Simulated {
    clock: Arc<ManualClock>,
    failing: BTreeSet<OperatorId>,
    running: Mutex<BTreeMap<OperatorId, Millis>>,
    started: Mutex<Vec<(OperatorId, Millis)>>,
    most_at_once: Mutex<usize>,
}

#[async_trait]
impl Deployments for Simulated {
    async fn start(&self, _release: &Release, operator: &OperatorId) -> Result<(), String> {
        let now = self.clock.now();
        let mut running = self.running.lock().unwrap();
        assert!(
            running.insert(operator.clone(), now).is_none(),
            "{operator} deployed twice at once"
        );
        let mut most = self.most_at_once.lock().unwrap();
        *most = (*most).max(running.len());
        self.started.lock().unwrap().push((operator.clone(), now));
        Ok(())
    }

    async fn outcome(
        &self,
        _release: &Release,
        operator: &OperatorId,
    ) -> Result<Option<Result<(), String>>, String> {
        let mut running = self.running.lock().unwrap();
        let started = *running.get(operator).ok_or("not running")?;
        let took = i64::try_from(DEPLOYMENT.as_millis()).unwrap();
        if self.clock.now() - started < took {
            return Ok(None);
        }
        running.remove(operator);
        Ok(Some(if self.failing.contains(operator) {
            Err("the health check of mastodon failed; rolled back".to_owned())
        } else {
            Ok(())
        }))
    }
}

const ZONES: [&str; 5] = [
    "Europe/Amsterdam",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "UTC",
];
const STARTS: [&str; 3] = ["01:00", "03:30", "23:00"];

fn operator(i: usize) -> OperatorId {
    OperatorId::try_from(format!("op-{i:02}").as_str()).unwrap()
}

fn config(i: usize) -> serde_json::Value {
    json!({
        "version": 1,
        "operator": {"id": operator(i).as_str(), "name": format!("Operator {i}")},
        "domain": format!("op{i}.example.org"),
        "services": {"mastodon": {"enable": true, "size": "small"}},
        "admin": {"username": "admin", "email": format!("admin@op{i}.example.org")},
        "maintenance": {
            "time_zone": ZONES[i % ZONES.len()],
            "windows": [{
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": STARTS[i % STARTS.len()],
                "duration_minutes": 90
            }]
        }
    })
}

struct Fleet {
    store: Store,
    clock: Arc<ManualClock>,
    deployments: Arc<Simulated>,
    release: ReleaseId,
    _dir: tempfile::TempDir,
}

/// 50 operators with daily windows in five time zones, a release with five canaries, and
/// `failing` operators whose deployments fail.
async fn fleet(failing: &[usize]) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let (store, _platform) = platform_in(dir.path()).await;
    let store = (*store).clone();
    let start = DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap();
    let clock = Arc::new(ManualClock::at(start.timestamp_millis()));
    let operators: Vec<_> = (0..50).map(operator).collect();
    for (i, op) in operators.iter().enumerate() {
        store.create_operator(op, 0).await.unwrap();
        store.save_configuration(op, &config(i), 0).await.unwrap();
    }
    let canaries: Vec<_> = (0..5).map(operator).collect();
    let release = NewRelease {
        title: "NixOS 26.05".to_owned(),
        severity: Severity::Routine,
        deadline: None,
        infra: "# the release's infra.toml\n".to_owned(),
        policy: Policy::new(10, BOUND, 0.2).unwrap(),
        expected_minutes: 30,
    };
    let release = store
        .create_release(&release, &waves(&operators, &canaries, 10), clock.now())
        .await
        .unwrap();
    let deployments = Arc::new(Simulated {
        clock: clock.clone(),
        failing: failing.iter().map(|i| operator(*i)).collect(),
        running: Mutex::default(),
        started: Mutex::default(),
        most_at_once: Mutex::new(0),
    });
    Fleet {
        store,
        clock,
        deployments,
        release,
        _dir: dir,
    }
}

impl Fleet {
    /// Ticks every five minutes until the rollout is done or halted (at most 30 days).
    async fn run(&self) -> State {
        for _ in 0..(30 * 24 * 12) {
            let scheduler = Scheduler::new(
                self.store.clone(),
                self.deployments.clone(),
                self.clock.clone(),
            );
            scheduler.tick().await.unwrap();
            let state = self.store.release(self.release).await.unwrap().state;
            if matches!(state, State::Done | State::Halted) {
                return state;
            }
            self.clock.advance(TICK);
        }
        panic!("the rollout did not end within 30 days");
    }

    async fn maintenance(&self, op: &OperatorId) -> fediversity_model::operator::Maintenance {
        let versions = self.store.configurations(op).await.unwrap();
        let config: OperatorConfig =
            serde_json::from_value(versions.last().unwrap().config.clone()).unwrap();
        config.maintenance
    }
}

#[tokio::test]
async fn a_rollout_over_50_operators_completes_in_their_windows_within_the_bound() {
    let fleet = fleet(&[]).await;
    assert_eq!(fleet.run().await, State::Done);

    let rollout = fleet.store.rollout(fleet.release).await.unwrap();
    assert_eq!(rollout.len(), 50);
    assert!(
        rollout
            .iter()
            .all(|r| r.item.status == ItemStatus::Succeeded && r.attempts == 1),
        "{rollout:#?}"
    );
    let started = fleet.deployments.started.lock().unwrap().clone();
    assert_eq!(started.len(), 50);
    for (op, at) in &started {
        let maintenance = fleet.maintenance(op).await;
        let at = instant(*at);
        assert!(
            windows::is_inside(&maintenance, at).unwrap(),
            "{op} started at {at}, outside its windows"
        );
    }
    let most = *fleet.deployments.most_at_once.lock().unwrap();
    assert!(most <= BOUND, "{most} deployments ran at once");
    assert!(most > 1, "operators whose windows coincide deploy together");

    // Canaries first: every canary started before any other operator.
    let last_canary = started.iter().take(5).map(|(_, at)| *at).max().unwrap();
    assert!(
        started.iter().take(5).all(|(op, _)| op < &operator(5)),
        "{started:?}"
    );
    assert!(started.iter().skip(5).all(|(_, at)| *at > last_canary));

    for i in [0, 17, 49] {
        let kinds: BTreeSet<_> = fleet
            .store
            .notifications(&operator(i), 20)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
        for kind in [
            NotificationKind::Scheduled,
            NotificationKind::Started,
            NotificationKind::Succeeded,
        ] {
            assert!(kinds.contains(&kind), "operator {i} was not told {kind:?}");
        }
    }
}

#[tokio::test]
async fn three_failing_canaries_halt_the_rollout_after_the_canary_wave() {
    let fleet = fleet(&[0, 2, 4]).await;
    assert_eq!(fleet.run().await, State::Halted);

    let release = fleet.store.release(fleet.release).await.unwrap();
    let reason = release.halt_reason.unwrap();
    assert!(reason.starts_with("wave 0 failed"), "{reason}");
    assert!(
        reason.contains("op-00: the health check of mastodon failed"),
        "{reason}"
    );

    let started = fleet.deployments.started.lock().unwrap().clone();
    assert!(
        started.iter().all(|(op, _)| op < &operator(5)),
        "only canaries were deployed: {started:?}"
    );
    let rollout = fleet.store.rollout(fleet.release).await.unwrap();
    for r in rollout.iter().filter(|r| r.item.wave > 0) {
        assert_eq!(r.item.status, ItemStatus::Skipped, "{}", r.item.operator);
    }
    let failed = rollout
        .iter()
        .filter(|r| matches!(r.item.status, ItemStatus::Failed(_)))
        .count();
    assert!(failed >= 2, "{rollout:#?}");

    let told = fleet.store.notifications(&operator(0), 20).await.unwrap();
    let rolled_back = told
        .iter()
        .find(|n| n.kind == NotificationKind::RolledBack)
        .expect("the failed canary is told it was rolled back");
    assert!(rolled_back.body.contains("health check of mastodon failed"));

    // Once halted, further ticks start nobody.
    fleet.clock.advance(Duration::from_secs(3 * 24 * 3600));
    let scheduler = Scheduler::new(
        fleet.store.clone(),
        fleet.deployments.clone(),
        fleet.clock.clone(),
    );
    scheduler.tick().await.unwrap();
    assert_eq!(
        fleet.deployments.started.lock().unwrap().len(),
        started.len()
    );
}

#[tokio::test]
async fn an_operator_moves_its_maintenance_and_it_runs_in_the_chosen_window() {
    let fleet = fleet(&[]).await;
    let scheduler = Scheduler::new(
        fleet.store.clone(),
        fleet.deployments.clone(),
        fleet.clock.clone(),
    );
    scheduler.tick().await.unwrap();
    // op-01 keeps 03:30 in New York: its window opens after the rollout is published.
    let canary = operator(1);
    let planned = fleet.store.operator_rollouts(&canary).await.unwrap()[0]
        .item
        .slot
        .unwrap();
    let later = planned.start + chrono::Duration::days(2);
    let moved = scheduler
        .reschedule(fleet.release, &canary, Some(later))
        .await
        .unwrap();
    assert_eq!(moved.start, later);
    let refused = scheduler
        .reschedule(
            fleet.release,
            &canary,
            Some(later + chrono::Duration::hours(5)),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not the start of one of your"),
        "{refused}"
    );

    fleet.run().await;
    let started = fleet.deployments.started.lock().unwrap().clone();
    let (_, at) = started.iter().find(|(op, _)| op == &canary).unwrap();
    assert_eq!(
        instant(*at),
        later,
        "deployed in the window the operator chose"
    );
    let told = fleet.store.notifications(&canary, 20).await.unwrap();
    let scheduled = told
        .iter()
        .filter(|n| n.kind == NotificationKind::Scheduled)
        .count();
    assert_eq!(scheduled, 2, "told of the plan, and of the move");
}
