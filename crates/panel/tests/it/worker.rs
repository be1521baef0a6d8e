//! The worker on its own: a deployment whose worker died mid-run is taken over once the dead
//! worker's lease lapses, and finished.

use std::time::Duration;

use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_model::names::OperatorId;
use fediversity_panel::worker::{Worker, enqueue_deployment};
use fediversity_store::DeploymentStatus;
use serde_json::json;
use tokio::sync::watch;

use crate::harness::platform_in;

#[tokio::test]
async fn a_dead_workers_deployment_is_taken_over_and_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (store, platform) = platform_in(dir.path()).await;
    let uni = OperatorId::try_from("uni").unwrap();
    store.create_operator(&uni, 1).await.unwrap();
    let config = json!({
        "version": 1,
        "operator": {"id": "uni", "name": "Uni"},
        "domain": "uni.example.org",
        "services": {"mastodon": {"enable": true, "size": "small"}},
        "admin": {"username": "boss", "email": "boss@example.org"},
        "maintenance": {"time_zone": "UTC", "windows": [{"days": ["sun"], "start": "02:00", "duration_minutes": 60}]}
    });
    let version = store.save_configuration(&uni, &config, 2).await.unwrap();
    let deployment = enqueue_deployment(&store, &uni, version, false)
        .await
        .unwrap();

    // A worker claims the job for a moment, starts the deployment and dies.
    let now = SystemClock.now();
    let claimed = store
        .claim_job("dead worker", now, Duration::from_millis(1))
        .await
        .unwrap();
    assert!(claimed.is_some());
    store.start_deployment(&uni, deployment, now).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(Worker::new(store.clone(), platform).run(stopped));
    let mut status = DeploymentStatus::Running;
    for _ in 0..600 {
        let deployments = store.deployments(&uni).await.unwrap();
        status = deployments[0].status;
        if status != DeploymentStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, DeploymentStatus::Succeeded);
    // The job is done: nothing is left to claim.
    let left = store
        .claim_job("another", SystemClock.now(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(left.is_none(), "{left:?}");
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
}
