//! A rollout through real sandbox deployments: two workers on one store tick the fleet
//! scheduler on a manual clock; each operator is deployed once, inside its window, with the
//! release's infra.toml (a bigger `small` size, visible in the recorded state).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use fediversity_engine::clock::{Clock, ManualClock};
use fediversity_engine::store::StateStore as _;
use fediversity_fleet::rollout::{ItemStatus, Policy, State, waves};
use fediversity_fleet::schedule::Severity;
use fediversity_fleet::windows;
use fediversity_model::OperatorConfig;
use fediversity_model::names::OperatorId;
use fediversity_panel::fleet::Deployments as _;
use fediversity_panel::fleet::instant;
use fediversity_panel::fleet_jobs::{JobDeployments, Ticks};
use fediversity_panel::fleet_summary::summarize;
use fediversity_panel::worker::{Worker, enqueue_deployment};
use fediversity_store::{
    ConfigurationVersion, DeploymentStatus, NewRelease, NotificationKind, Store,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::harness::platform_in;

/// The release's infra.toml: the sandbox's, with 6 GiB instead of 4 for `small`.
pub(crate) const RELEASE_INFRA: &str = r#"
version = 1

[sizes.small]
cores = 2
memory_mib = 6144
disk_gib = 40
bucket_quota_gib = 100

[limits.default]
vms = 8
vcpus = 32
memory_mib = 65536
disk_gib = 1000
buckets = 16
"#;

/// (operator, time zone, daily window start): all of them within a few hours of the start.
const OPERATORS: [(&str, &str, &str); 4] = [
    ("canary", "UTC", "01:00"),
    ("amsterdam", "Europe/Amsterdam", "04:00"),
    ("new-york", "America/New_York", "22:00"),
    ("kolkata", "Asia/Kolkata", "09:30"),
];

fn config(id: &str, zone: &str, start: &str) -> Value {
    json!({
        "version": 1,
        "operator": {"id": id, "name": id},
        "domain": format!("{id}.example.org"),
        "services": {"mastodon": {"enable": true, "size": "small"}},
        "admin": {"username": "admin", "email": format!("admin@{id}.example.org")},
        "maintenance": {
            "time_zone": zone,
            "windows": [{
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": start,
                "duration_minutes": 90
            }]
        }
    })
}

fn op(id: &str) -> OperatorId {
    OperatorId::try_from(id).unwrap()
}

/// The first of [`OPERATORS`], signed up with its configuration saved: its id and version.
async fn canary_configured(store: &Store) -> (OperatorId, ConfigurationVersion) {
    let (id, zone, start) = OPERATORS[0];
    let operator = op(id);
    store.create_operator(&operator, 0).await.unwrap();
    let version = store
        .save_configuration(&operator, &config(id, zone, start), 0)
        .await
        .unwrap();
    (operator, version)
}

/// A routine release of `infra`, without a deadline, expected to take 30 minutes.
fn routine(title: &str, infra: &str, policy: Policy) -> NewRelease {
    NewRelease {
        title: title.to_owned(),
        severity: Severity::Routine,
        deadline: None,
        infra: infra.to_owned(),
        policy,
        expected_minutes: 30,
    }
}

/// Waits until none of `operators` has a deployment queued or running.
async fn settle(store: &Store, operators: &[OperatorId]) {
    for _ in 0..1200 {
        let mut busy = false;
        for operator in operators {
            busy |= store.deployments(operator).await.unwrap().iter().any(|d| {
                matches!(
                    d.status,
                    DeploymentStatus::Queued | DeploymentStatus::Running
                )
            });
        }
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deployments still running after a minute");
}

/// The memory of every VM in the operator's recorded state.
async fn vm_memory(store: &Store, operator: &OperatorId) -> Vec<i64> {
    let state = store.load_state(operator).await.unwrap();
    state
        .resources
        .values()
        .filter_map(|record| record.inputs.get("memory_mib").and_then(Value::as_i64))
        .collect()
}

#[tokio::test]
async fn a_release_rolls_out_through_real_deployments_with_its_infra_inside_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, platform) = platform_in(dir.path()).await;
    let operators: Vec<_> = OPERATORS.iter().map(|(id, _, _)| op(id)).collect();
    for (id, zone, start) in OPERATORS {
        let operator = op(id);
        store.create_operator(&operator, 0).await.unwrap();
        let version = store
            .save_configuration(&operator, &config(id, zone, start), 0)
            .await
            .unwrap();
        enqueue_deployment(&store, &operator, version, false)
            .await
            .unwrap();
    }
    let start = DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap();
    let clock = Arc::new(ManualClock::at(start.timestamp_millis()));
    let ticks = Ticks {
        every: Duration::from_millis(10),
        clock: clock.clone(),
    };
    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let worker =
                Worker::new(store.clone(), platform.clone()).with_fleet_ticks(ticks.clone());
            tokio::spawn(worker.run(stopped.clone()))
        })
        .collect();
    settle(&store, &operators).await;
    for operator in &operators {
        assert_eq!(vm_memory(&store, operator).await, [4096], "{operator}");
    }

    let release = routine(
        "Bigger small VMs",
        RELEASE_INFRA,
        Policy::new(2, 2, 0.5).unwrap(),
    );
    let id = store
        .create_release(
            &release,
            &waves(&operators, &[op("canary")], 2),
            clock.now(),
        )
        .await
        .unwrap();
    // Time stands still while deployments run: each tick sees them finish in its window.
    let mut state = State::Running;
    for _ in 0..(2 * 24 * 60) {
        tokio::time::sleep(Duration::from_millis(30)).await;
        settle(&store, &operators).await;
        state = store.release(id).await.unwrap().state;
        if state == State::Done {
            break;
        }
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(state, State::Done);

    let rollout = store.rollout(id).await.unwrap();
    let mut deployed = BTreeMap::new();
    for item in &rollout {
        let operator = &item.item.operator;
        assert_eq!(item.item.status, ItemStatus::Succeeded, "{operator}");
        assert_eq!(item.attempts, 1, "{operator} was started once");
        let deployments = store.deployments(operator).await.unwrap();
        assert_eq!(
            deployments.len(),
            2,
            "{operator}: the first one and the release's"
        );
        assert_eq!(item.deployment, Some(deployments[0].id));
        assert_eq!(vm_memory(&store, operator).await, [6144], "{operator}");

        let told = store.notifications(operator, 20).await.unwrap();
        let started = told
            .iter()
            .find(|n| n.kind == NotificationKind::Started)
            .unwrap();
        let versions = store.configurations(operator).await.unwrap();
        let config: OperatorConfig = serde_json::from_value(versions[0].config.clone()).unwrap();
        let at = instant(started.created_at);
        assert!(
            windows::is_inside(&config.maintenance, at).unwrap(),
            "{operator} started at {at}, outside its window"
        );
        deployed.insert(operator.to_string(), at);
    }
    assert!(
        deployed
            .iter()
            .all(|(op, at)| op == "canary" || *at > deployed["canary"]),
        "the canary first: {deployed:?}"
    );

    // The operator's own next deployment keeps what the release gave it, though the workers'
    // infra.toml still has the old size.
    let canary = op("canary");
    let version = store.configurations(&canary).await.unwrap()[0].version;
    enqueue_deployment(&store, &canary, version, false)
        .await
        .unwrap();
    settle(&store, std::slice::from_ref(&canary)).await;
    let last = &store.deployments(&canary).await.unwrap()[0];
    assert_eq!(last.status, DeploymentStatus::Succeeded);
    assert_eq!(vm_memory(&store, &canary).await, [6144], "not undone");

    stop.send_replace(true);
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_release_whose_infra_no_longer_parses_fails_its_deployments_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (store, platform) = platform_in(dir.path()).await;
    let (operator, version) = canary_configured(&store).await;
    let broken = "version = 1\n[sizes.small]\ncores = \"two\"\n";
    let release = routine("Broken", broken, Policy::new(1, 1, 0.5).unwrap());
    let release = store
        .create_release(&release, &waves(std::slice::from_ref(&operator), &[], 1), 0)
        .await
        .unwrap();
    fediversity_panel::worker::enqueue_release_deployment(&store, &operator, version, release)
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(Worker::new(store.clone(), platform).run(stopped));
    settle(&store, std::slice::from_ref(&operator)).await;
    let [deployment] = store
        .deployments(&operator)
        .await
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(deployment.status, DeploymentStatus::Failed);
    let error = deployment.report.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains(&format!(
            "the infra.toml of fleet release {} is no longer valid",
            release.0
        )),
        "{error}"
    );
    assert!(error.contains("sizes.small"), "{error}");
    stop.send_replace(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn the_summary_lists_what_a_release_changes_for_each_deployed_operator() {
    let dir = tempfile::tempdir().unwrap();
    let (store, platform) = platform_in(dir.path()).await;
    let (deployed, version) = canary_configured(&store).await;
    enqueue_deployment(&store, &deployed, version, false)
        .await
        .unwrap();
    let unconfigured = op("unconfigured");
    store.create_operator(&unconfigured, 0).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(Worker::new(store.clone(), platform.clone()).run(stopped));
    settle(&store, std::slice::from_ref(&deployed)).await;
    stop.send_replace(true);
    worker.await.unwrap();

    let operators = [deployed.clone(), unconfigured];
    let same = summarize(&store, &platform, &platform.infra, &operators)
        .await
        .unwrap();
    assert_eq!(
        same.operators, 1,
        "the operator without a configuration is not counted"
    );
    assert!(same.affected.is_empty(), "{same:?}");

    let infra = fediversity_model::parse_infra(RELEASE_INFRA).unwrap();
    let bigger = summarize(&store, &platform, &infra, &operators)
        .await
        .unwrap();
    assert_eq!(bigger.operators, 1);
    let [changes] = bigger.affected.as_slice() else {
        panic!("{bigger:?}")
    };
    assert_eq!(changes.operator, deployed);
    assert_eq!(changes.problem, None);
    assert!(
        changes.changes.iter().any(|c| c.ends_with(" vm.mastodon")),
        "{changes:?}"
    );
    assert_eq!(
        changes.changes,
        ["update vm.mastodon"],
        "more memory is changed in place"
    );
    assert!(
        changes.restarts.is_empty() && changes.replaces.is_empty(),
        "{changes:?}"
    );
    let tiny =
        fediversity_model::parse_infra(&RELEASE_INFRA.replace("[sizes.small]", "[sizes.tiny]"))
            .unwrap();
    let missing = summarize(&store, &platform, &tiny, &operators)
        .await
        .unwrap();
    let problem = missing.affected[0].problem.as_deref().unwrap();
    assert!(problem.contains("does not fit the release"), "{problem}");
}

/// A worker that stopped between marking an operator running and queueing its deployment:
/// the next look at the item queues it (once) instead of failing an operator never deployed.
#[tokio::test]
async fn an_item_marked_running_without_its_deployment_is_deployed_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _platform) = platform_in(dir.path()).await;
    let (operator, _) = canary_configured(&store).await;
    let release = routine("Rekeying", RELEASE_INFRA, Policy::new(10, 2, 0.2).unwrap());
    let waves = BTreeMap::from([(operator.clone(), 0)]);
    let id = store.create_release(&release, &waves, 0).await.unwrap();
    let mut item = store.rollout(id).await.unwrap().remove(0).item;
    item.status = ItemStatus::Running;
    store.record_rollout_item(id, &item, 1).await.unwrap();
    let release = store.release(id).await.unwrap();
    let deployments = JobDeployments::new((*store).clone());

    assert_eq!(
        deployments.outcome(&release, &operator).await.unwrap(),
        None,
        "still to run"
    );
    let queued = store.deployments(&operator).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].status, DeploymentStatus::Queued);
    let recorded = store.rollout(id).await.unwrap().remove(0).deployment;
    assert_eq!(recorded, Some(queued[0].id));

    assert_eq!(
        deployments.outcome(&release, &operator).await.unwrap(),
        None
    );
    assert_eq!(
        store.deployments(&operator).await.unwrap().len(),
        1,
        "queued once"
    );
}
