//! Fleet state: releases with their rollout, each operator's slot and status, and
//! notifications written once per key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fediversity_fleet::rollout::{Item, ItemStatus, Policy, State};
use fediversity_fleet::schedule::{Severity, Slot};
use std::time::Duration;

use fediversity_store::{
    DeploymentId, Error, FleetLease, NewNotification, NewRelease, NotificationKind, ReleaseId,
};

use crate::harness::{TestDb, op};

fn release(title: &str) -> NewRelease {
    NewRelease {
        title: title.to_owned(),
        severity: Severity::Security,
        deadline: Some(1_800_000_000_000),
        infra: "[platform]\nflake = \"github:example/fediversity/v2\"\n".to_owned(),
        policy: Policy::new(10, 3, 0.2).unwrap(),
        expected_minutes: 30,
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

pub async fn releases_keep_their_rollout_and_state(db: TestDb) {
    let store = db.store().await;
    let waves = BTreeMap::from([(op("canary"), 0), (op("second"), 1), (op("first"), 1)]);
    let id = store
        .create_release(&release("v2"), &waves, 10)
        .await
        .unwrap();
    let other = store
        .create_release(&release("v3"), &BTreeMap::new(), 11)
        .await
        .unwrap();

    let stored = store.release(id).await.unwrap();
    assert_eq!(stored.release, release("v2"));
    assert_eq!((stored.state, stored.created_at), (State::Running, 10));
    let titles: Vec<_> = store
        .releases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.release.title)
        .collect();
    assert_eq!(titles, ["v3", "v2"], "newest first");

    let rollout = store.rollout(id).await.unwrap();
    let order: Vec<_> = rollout
        .iter()
        .map(|r| (r.item.operator.as_str(), r.item.wave, r.attempts))
        .collect();
    assert_eq!(order, [("canary", 0, 0), ("first", 1, 0), ("second", 1, 0)]);
    assert!(
        rollout
            .iter()
            .all(|r| r.item.status == ItemStatus::Scheduled
                && r.item.slot.is_none()
                && r.release == id)
    );
    assert!(store.rollout(other).await.unwrap().is_empty());

    store
        .set_release_state(id, State::Halted, Some("wave 0: 3 of 5 failed".into()), 20)
        .await
        .unwrap();
    let halted = store.release(id).await.unwrap();
    assert_eq!(halted.state, State::Halted);
    assert_eq!(halted.halt_reason.as_deref(), Some("wave 0: 3 of 5 failed"));
    assert_eq!(halted.updated_at, 20);
    assert!(matches!(
        store.release(ReleaseId(999)).await,
        Err(Error::UnknownRelease(999))
    ));
    assert!(matches!(
        store
            .set_release_state(ReleaseId(999), State::Paused, None, 21)
            .await,
        Err(Error::UnknownRelease(999))
    ));
}

pub async fn rollout_items_record_slots_statuses_reasons_and_attempts(db: TestDb) {
    let store = db.store().await;
    let canary = op("canary");
    let waves = BTreeMap::from([(canary.clone(), 0)]);
    let id = store
        .create_release(&release("v2"), &waves, 10)
        .await
        .unwrap();
    let slot = Slot {
        start: at("2026-11-03T02:00:00Z"),
        latest_start: Some(at("2026-11-03T02:30:00Z")),
        outside_windows: false,
    };
    let mut item = Item {
        operator: canary.clone(),
        wave: 0,
        slot: Some(slot),
        status: ItemStatus::Running,
    };
    store.record_rollout_item(id, &item, 11).await.unwrap();
    store.record_rollout_item(id, &item, 12).await.unwrap();
    item.status = ItemStatus::Failed("the health check of mastodon timed out".into());
    store.record_rollout_item(id, &item, 13).await.unwrap();
    item.status = ItemStatus::Running;
    store.record_rollout_item(id, &item, 14).await.unwrap();

    let [stored] = store.rollout(id).await.unwrap().try_into().unwrap();
    assert_eq!(stored.item, item);
    assert_eq!(
        stored.attempts, 2,
        "two starts; a repeated `running` is not a start"
    );

    item.status = ItemStatus::Failed("rolled back: mastodon did not answer".into());
    store.record_rollout_item(id, &item, 15).await.unwrap();
    let mine = store.operator_rollouts(&canary).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].item.status, item.status, "the reason is kept");
    assert!(
        store
            .operator_rollouts(&op("nobody"))
            .await
            .unwrap()
            .is_empty()
    );

    let stranger = Item {
        operator: op("stranger"),
        ..item
    };
    assert!(matches!(
        store.record_rollout_item(id, &stranger, 16).await,
        Err(Error::UnknownRolloutItem { .. })
    ));
}

pub async fn a_notification_is_written_and_emailed_once(db: TestDb) {
    let store = db.store().await;
    let (uni, other) = (op("uni"), op("other"));
    let waves = BTreeMap::from([(uni.clone(), 0), (other.clone(), 1)]);
    let id = store
        .create_release(&release("v2"), &waves, 10)
        .await
        .unwrap();
    let note = |operator, kind, occasion: &str| NewNotification {
        release: id,
        operator,
        kind,
        occasion: occasion.to_owned(),
        subject: "Maintenance on 3 November".into(),
        body: "Your services will be updated.".into(),
    };
    let scheduled = note(uni.clone(), NotificationKind::Scheduled, "slot-1");
    assert!(store.notify(&scheduled, 11).await.unwrap());
    assert!(
        !store.notify(&scheduled, 12).await.unwrap(),
        "the same key again is ignored"
    );
    let rescheduled = note(uni.clone(), NotificationKind::Scheduled, "slot-2");
    assert!(store.notify(&rescheduled, 13).await.unwrap());
    assert!(
        store
            .notify(
                &note(other.clone(), NotificationKind::DayBefore, "slot-1"),
                14
            )
            .await
            .unwrap()
    );

    let mine = store.notifications(&uni, 10).await.unwrap();
    let occasions: Vec<_> = mine.iter().map(|n| n.occasion.as_str()).collect();
    assert_eq!(occasions, ["slot-2", "slot-1"], "newest first, only mine");
    assert_eq!(mine[1].created_at, 11);
    assert_eq!(mine[1].kind, NotificationKind::Scheduled);

    let unsent = store.unsent_notifications(10).await.unwrap();
    assert_eq!(unsent.len(), 3);
    assert_eq!(unsent[0].occasion, "slot-1", "oldest first");
    assert!(store.mark_emailed(unsent[0].id, 20).await.unwrap());
    assert!(
        !store.mark_emailed(unsent[0].id, 21).await.unwrap(),
        "only once"
    );
    let left = store.unsent_notifications(10).await.unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(
        store.notifications(&uni, 10).await.unwrap()[1].emailed_at,
        Some(20)
    );
}

pub async fn a_rollout_item_keeps_the_deployment_started_for_it(db: TestDb) {
    let store = db.store().await;
    let waves = BTreeMap::from([(op("canary"), 0), (op("later"), 1)]);
    let id = store
        .create_release(&release("v2"), &waves, 10)
        .await
        .unwrap();
    let unstarted = store.rollout(id).await.unwrap();
    assert!(unstarted.iter().all(|item| item.deployment.is_none()));

    store
        .set_rollout_deployment(id, &op("canary"), DeploymentId(41))
        .await
        .unwrap();
    let item = Item {
        operator: op("canary"),
        wave: 0,
        slot: None,
        status: ItemStatus::Running,
    };
    store.record_rollout_item(id, &item, 11).await.unwrap();
    let rollout = store.rollout(id).await.unwrap();
    let deployments: Vec<_> = rollout
        .iter()
        .map(|r| (r.item.operator.as_str(), r.deployment))
        .collect();
    assert_eq!(
        deployments,
        [("canary", Some(DeploymentId(41))), ("later", None)],
        "recording a step keeps the deployment"
    );
    let mine = store.operator_rollouts(&op("canary")).await.unwrap();
    assert_eq!(mine[0].deployment, Some(DeploymentId(41)));
    assert!(matches!(
        store
            .set_rollout_deployment(id, &op("stranger"), DeploymentId(42))
            .await,
        Err(Error::UnknownRolloutItem { .. })
    ));
}

pub async fn one_holder_at_a_time_has_each_fleet_lease(db: TestDb) {
    let store = db.store().await;
    let ttl = Duration::from_secs(60);
    assert!(
        store
            .try_fleet_lease(FleetLease::Scheduler, "worker a", 1_000, ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_fleet_lease(FleetLease::Scheduler, "worker b", 2_000, ttl)
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        store
            .try_fleet_lease(FleetLease::Scheduler, "worker a", 30_000, ttl)
            .await
            .unwrap(),
        "a renews its own"
    );
    assert!(
        !store
            .try_fleet_lease(FleetLease::Scheduler, "worker b", 61_000, ttl)
            .await
            .unwrap(),
        "the renewal moved the expiry to 90 s"
    );
    assert!(
        store
            .try_fleet_lease(FleetLease::Scheduler, "worker b", 90_001, ttl)
            .await
            .unwrap(),
        "lapsed: b takes it over"
    );
    assert!(
        !store
            .try_fleet_lease(FleetLease::Scheduler, "worker a", 90_002, ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_fleet_lease(FleetLease::Outbox, "worker a", 90_003, ttl)
            .await
            .unwrap(),
        "the outbox's lease is another lease"
    );
    assert!(
        !store
            .try_fleet_lease(FleetLease::Outbox, "worker b", 90_004, ttl)
            .await
            .unwrap(),
        "and it too has one holder"
    );
}

pub async fn a_guarded_replace_applies_only_to_the_item_as_it_was_read(db: TestDb) {
    let store = db.store().await;
    let operator = op("uni");
    let id = store
        .create_release(&release("v2"), &BTreeMap::from([(operator.clone(), 0)]), 10)
        .await
        .unwrap();
    let slot = |start: &str| Slot {
        start: at(start),
        latest_start: None,
        outside_windows: false,
    };
    let read = Item {
        operator: operator.clone(),
        wave: 0,
        slot: Some(slot("2026-11-03T02:00:00Z")),
        status: ItemStatus::Scheduled,
    };
    store.record_rollout_item(id, &read, 11).await.unwrap();

    // The scheduler starts the item it read…
    let started = Item {
        status: ItemStatus::Running,
        ..read.clone()
    };
    assert!(
        store
            .replace_rollout_item(id, &read, &started, 12)
            .await
            .unwrap()
    );
    // …so the operator's move, made from the same read, changes nothing.
    let moved = Item {
        slot: Some(slot("2026-11-10T02:00:00Z")),
        ..read.clone()
    };
    assert!(
        !store
            .replace_rollout_item(id, &read, &moved, 13)
            .await
            .unwrap()
    );
    let [stored] = store.rollout(id).await.unwrap().try_into().unwrap();
    assert_eq!(stored.item, started, "a started item is never put back");
    assert_eq!(stored.attempts, 1);

    // The other way round: a move, then a start from the stale read, which must not apply.
    let other = store
        .create_release(&release("v3"), &BTreeMap::from([(operator.clone(), 0)]), 14)
        .await
        .unwrap();
    let unplanned = Item {
        slot: None,
        ..read.clone()
    };
    store.record_rollout_item(other, &read, 15).await.unwrap();
    assert!(
        !store
            .replace_rollout_item(other, &unplanned, &moved, 16)
            .await
            .unwrap(),
        "a slot that differs from the read one is a change"
    );
    assert!(
        store
            .replace_rollout_item(other, &read, &moved, 16)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_rollout_item(other, &read, &started, 17)
            .await
            .unwrap()
    );
    let [stored] = store.rollout(other).await.unwrap().try_into().unwrap();
    assert_eq!(
        stored.item, moved,
        "a moved item is not started at its old slot"
    );
    assert_eq!(stored.attempts, 0);
}
