//! The panel's persistence: operators, configuration versions, deployments and their events.

use std::collections::BTreeSet;

use fediversity_engine::clock::Millis;
use fediversity_engine::events::Event;
use fediversity_engine::plan::Action;
use fediversity_store::{DeploymentOutcome, DeploymentStatus, Error, EventRecord};
use serde_json::json;

use crate::harness::{TestDb, addr, op};

/// A progress event at `at`.
pub fn progress(at: Millis, message: &str) -> EventRecord {
    EventRecord {
        at,
        event: Event::Progress {
            address: addr("vm.web"),
            message: message.to_owned(),
            fraction: Some(0.5),
        },
    }
}

pub async fn configurations_keep_every_version(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    store.create_operator(&uni, 1).await.unwrap();
    assert!(matches!(
        store.create_operator(&uni, 2).await,
        Err(Error::OperatorExists(_))
    ));
    store.create_operator(&op("newsroom"), 3).await.unwrap();
    assert_eq!(
        store.operators().await.unwrap(),
        [op("newsroom"), uni.clone()]
    );

    for (n, services) in [
        ["mastodon"].as_slice(),
        &["mastodon", "peertube"],
        &["pixelfed"],
    ]
    .into_iter()
    .enumerate()
    {
        let version = store
            .save_configuration(&uni, &json!({"services": services}), 10 * n as i64)
            .await
            .unwrap();
        assert_eq!(version, n as i64 + 1);
    }
    let saved = store.configurations(&uni).await.unwrap();
    assert_eq!(
        saved.iter().map(|c| c.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        saved[1].config,
        json!({"services": ["mastodon", "peertube"]})
    );
    assert_eq!(saved[2].created_at, 20);

    // Concurrent saves for one operator get distinct, consecutive versions.
    let tasks: Vec<_> = (0..6)
        .map(|n| {
            let (store, uni) = (store.clone(), uni.clone());
            tokio::spawn(async move { store.save_configuration(&uni, &json!({"n": n}), 100).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for task in tasks {
        versions.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(versions, (4..=9).collect());

    let error = store
        .save_configuration(&op("nobody"), &json!({}), 1)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not exist: create it first"),
        "{error}"
    );
}

pub async fn deployments_go_from_queued_to_finished(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    store.create_operator(&uni, 1).await.unwrap();
    let v1 = store
        .save_configuration(&uni, &json!({"v": 1}), 2)
        .await
        .unwrap();
    let v2 = store
        .save_configuration(&uni, &json!({"v": 2}), 3)
        .await
        .unwrap();

    let first = store.create_deployment(&uni, v1, 10).await.unwrap();
    store.start_deployment(&uni, first, 11).await.unwrap();
    assert!(
        store.start_deployment(&uni, first, 12).await.is_err(),
        "started twice"
    );
    let report = json!({"created": 3, "failed": 0});
    store
        .finish_deployment(&uni, first, DeploymentOutcome::Succeeded, &report, 20)
        .await
        .unwrap();
    assert!(
        store
            .finish_deployment(&uni, first, DeploymentOutcome::Failed, &report, 21)
            .await
            .is_err(),
        "finished twice"
    );
    let second = store.create_deployment(&uni, v2, 30).await.unwrap();

    let deployments = store.deployments(&uni).await.unwrap();
    assert_eq!(
        deployments.iter().map(|d| d.id).collect::<Vec<_>>(),
        [second, first]
    );
    let (queued, done) = (&deployments[0], &deployments[1]);
    assert_eq!(queued.status, DeploymentStatus::Queued);
    assert_eq!(
        (
            queued.configuration_version,
            queued.started_at,
            queued.report.as_ref()
        ),
        (v2, None, None)
    );
    assert_eq!(done.status, DeploymentStatus::Succeeded);
    assert_eq!(done.operator, uni);
    assert_eq!(
        (done.created_at, done.started_at, done.finished_at),
        (10, Some(11), Some(20))
    );
    assert_eq!(done.report, Some(report));

    let error = store.create_deployment(&uni, 99, 40).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("has no configuration version 99"),
        "{error}"
    );
}

pub async fn events_are_appended_in_order_and_read_since_a_seq(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    store.create_operator(&uni, 1).await.unwrap();
    let version = store.save_configuration(&uni, &json!({}), 1).await.unwrap();
    let deployment = store.create_deployment(&uni, version, 2).await.unwrap();

    let started = EventRecord {
        at: 10,
        event: Event::Started {
            address: addr("vm.web"),
            action: Action::Create,
        },
    };
    let first = [started, progress(11, "cloning"), progress(12, "booting")];
    assert_eq!(
        store.append_events(&uni, deployment, &first).await.unwrap(),
        3
    );
    let second = [progress(13, "ready"), progress(14, "done")];
    assert_eq!(
        store
            .append_events(&uni, deployment, &second)
            .await
            .unwrap(),
        5
    );
    assert_eq!(store.append_events(&uni, deployment, &[]).await.unwrap(), 5);

    let all = store.events_since(&uni, deployment, 0).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let expected: Vec<_> = first.iter().chain(&second).cloned().collect();
    for (stored, written) in all.iter().zip(&expected) {
        assert_eq!((stored.at, &stored.event), (written.at, &written.event));
    }
    let later = store.events_since(&uni, deployment, 3).await.unwrap();
    assert_eq!(later.iter().map(|e| e.at).collect::<Vec<_>>(), [13, 14]);
    assert!(
        store
            .events_since(&uni, deployment, 5)
            .await
            .unwrap()
            .is_empty()
    );

    // Concurrent appends interleave as whole batches with no gaps or duplicates.
    let tasks: Vec<_> = (0..4)
        .map(|writer| {
            let (store, uni) = (store.clone(), uni.clone());
            tokio::spawn(async move {
                let batch: Vec<_> = (0..5).map(|n| progress(100 * writer + n, "step")).collect();
                store.append_events(&uni, deployment, &batch).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = store.events_since(&uni, deployment, 5).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (6..=25).collect::<Vec<_>>()
    );
    for batch in all.chunks(5) {
        let writer = batch[0].at / 100;
        assert!(
            batch.iter().all(|e| e.at / 100 == writer),
            "a batch was split: {batch:?}"
        );
    }
}
