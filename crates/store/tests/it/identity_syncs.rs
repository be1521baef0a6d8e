//! Identity syncs: the latest per operator, replacing the one before, never another's.

use std::time::Duration;

use serde_json::json;

use fediversity_engine::store::{LeaseOutcome, StateStore as _};

use crate::harness::{TestDb, op};

pub async fn the_latest_sync_replaces_the_one_before_per_operator(db: TestDb) {
    let store = db.store().await;
    let (uni, other) = (op("uni"), op("other"));
    assert_eq!(store.identity_sync(&uni).await.unwrap(), None);

    let first = json!({"users": {"id-alice": {"username": "alice", "email": "alice@uni.example", "admin": true}}});
    let report = json!({"report": {"added": ["alice"], "removed": []}, "held_back": null});
    store
        .record_identity_sync(&uni, &first, &report, 10)
        .await
        .unwrap();
    let found = store.identity_sync(&uni).await.unwrap().unwrap();
    assert_eq!(
        (found.snapshot, found.report, found.synced_at),
        (first, report, 10)
    );

    let second = json!({"users": {}});
    let held =
        json!({"report": {"removed": ["alice"]}, "held_back": "1 of 1 users would be removed"});
    store
        .record_identity_sync(&uni, &second, &held, 20)
        .await
        .unwrap();
    let found = store.identity_sync(&uni).await.unwrap().unwrap();
    assert_eq!(
        (found.snapshot, found.report, found.synced_at),
        (second, held, 20)
    );
    assert_eq!(store.identity_sync(&other).await.unwrap(), None);
}

pub async fn one_worker_at_a_time_may_sync_an_operator(db: TestDb) {
    let store = db.store().await;
    let (uni, other) = (op("uni"), op("other"));
    let ttl = Duration::from_secs(60);
    assert!(
        store
            .claim_identity_sync(&uni, "w1", 1_000, ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_identity_sync(&uni, "w2", 2_000, ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_identity_sync(&other, "w2", 2_000, ttl)
            .await
            .unwrap()
    );
    // The sync's claim is not the operator's deployment lease, nor the reverse.
    assert!(matches!(
        store
            .acquire_lease(&uni, "deploy", 2_000, ttl)
            .await
            .unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    store.release_identity_sync(&uni, "w2").await.unwrap();
    assert!(
        !store
            .claim_identity_sync(&uni, "w2", 3_000, ttl)
            .await
            .unwrap()
    );
    store.release_identity_sync(&uni, "w1").await.unwrap();
    assert!(
        store
            .claim_identity_sync(&uni, "w2", 3_000, ttl)
            .await
            .unwrap()
    );
    // A claim whose worker died lapses.
    assert!(
        store
            .claim_identity_sync(&uni, "w3", 3_000 + 61_000, ttl)
            .await
            .unwrap()
    );
}
