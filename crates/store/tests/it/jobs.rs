//! The job queue: claims, retries and lapsed claims.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fediversity_store::{Error, JobId, NewJob};
use serde_json::json;
use tokio::sync::Barrier;

use crate::harness::{TestDb, op};

const LEASE: Duration = Duration::from_secs(30);

fn job(n: i64, run_after: i64) -> NewJob {
    NewJob {
        kind: "deploy".to_owned(),
        operator: Some(op("uni")),
        payload: json!({"deployment": n}),
        run_after,
    }
}

pub async fn concurrent_claimers_never_get_the_same_job(db: TestDb) {
    let store = db.store().await;
    const JOBS: i64 = 40;
    let mut queued = BTreeSet::new();
    for n in 0..JOBS {
        queued.insert(store.enqueue_job(&job(n, 0), 0).await.unwrap());
    }
    let barrier = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let worker = format!("worker-{w}");
                let mut claimed = Vec::new();
                while let Some(job) = store.claim_job(&worker, 1_000, LEASE).await.unwrap() {
                    assert_eq!(job.attempts, 1);
                    claimed.push(job.id);
                }
                claimed
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap());
    }
    let unique: BTreeSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(
        claimed.len(),
        unique.len(),
        "a job was claimed twice: {claimed:?}"
    );
    assert_eq!(unique, queued);
}

pub async fn a_failed_job_is_claimable_again_after_run_after(db: TestDb) {
    let store = db.store().await;
    assert_eq!(store.claim_job("w1", 0, LEASE).await.unwrap(), None);
    let id = store.enqueue_job(&job(1, 1_000), 0).await.unwrap();
    assert_eq!(
        store.claim_job("w1", 999, LEASE).await.unwrap(),
        None,
        "claimed before run_after"
    );

    let claimed = store.claim_job("w1", 1_000, LEASE).await.unwrap().unwrap();
    assert_eq!(
        (claimed.id, claimed.attempts, claimed.locked_until),
        (id, 1, 31_000)
    );
    assert_eq!(
        (claimed.kind.as_str(), claimed.operator),
        ("deploy", Some(op("uni")))
    );
    assert_eq!(claimed.payload, json!({"deployment": 1}));
    assert_eq!(
        store.claim_job("w2", 1_001, LEASE).await.unwrap(),
        None,
        "claimed twice"
    );

    store
        .fail_job(id, "w1", "proxmox timed out", Some(10_000), 2_000)
        .await
        .unwrap();
    assert_eq!(
        store.claim_job("w2", 9_999, LEASE).await.unwrap(),
        None,
        "retried early"
    );
    let retried = store.claim_job("w2", 10_000, LEASE).await.unwrap().unwrap();
    assert_eq!((retried.id, retried.attempts), (id, 2));

    // Giving up for good: never claimable again.
    store
        .fail_job(id, "w2", "quota exceeded", None, 11_000)
        .await
        .unwrap();
    assert_eq!(store.claim_job("w3", 1_000_000, LEASE).await.unwrap(), None);
    assert!(store.complete_job(id, "w2", 12_000).await.is_err());
}

pub async fn a_lapsed_claim_is_taken_over_and_the_old_worker_cannot_report(db: TestDb) {
    let store = db.store().await;
    let id = store.enqueue_job(&job(1, 0), 0).await.unwrap();
    store
        .claim_job("dead-worker", 0, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.claim_job("w2", 30_000, LEASE).await.unwrap(),
        None,
        "lease still running"
    );
    let taken = store.claim_job("w2", 30_001, LEASE).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.attempts), (id, 2));

    let error = store
        .complete_job(id, "dead-worker", 30_002)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::JobNotHeld { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("another worker may have taken it over"),
        "{error}"
    );
    assert!(
        store
            .fail_job(id, "dead-worker", "late", Some(0), 30_003)
            .await
            .is_err()
    );

    store.complete_job(id, "w2", 30_004).await.unwrap();
    assert_eq!(
        store.claim_job("w3", 10_000_000, LEASE).await.unwrap(),
        None
    );
}
