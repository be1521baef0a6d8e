//! Secrets at rest: sealed in every table, and a store with the wrong key refuses to start.

use fediversity_engine::store::{Outcome, StateChange, StateStore as _};
use fediversity_engine::value::secret;
use fediversity_store::{Error, NewJob, SealingKey, Store};
use serde_json::json;

use crate::harness::{TestDb, addr, intent, op, record};

/// Plants a secret wherever the store takes JSON, then reads the database's raw contents and
/// finds each planted value only sealed. A plain marker written beside each proves the raw
/// contents are really read.
pub async fn secrets_are_never_stored_in_plaintext(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let record_secret = record(
        json!({"visible": "marker-record-input", "password": secret("POISON-record-input")}),
        json!({"key": secret(json!({"nested": "POISON-record-output"}))}),
        1,
    );
    store
        .put_record(&uni, &addr("vm.a"), &record_secret)
        .await
        .unwrap();
    let id = store
        .begin_intent(&intent(
            &uni,
            "vm.b",
            json!({"token": secret("POISON-intent-input"), "visible": "marker-intent"}),
            2,
        ))
        .await
        .unwrap();
    let finished = record(json!({}), json!({"s": secret("POISON-finished-output")}), 3);
    store
        .finish_intent(
            &uni,
            id,
            &Outcome::Succeeded,
            &StateChange::Upsert(finished.clone()),
        )
        .await
        .unwrap();
    store
        .begin_intent(&intent(
            &uni,
            "vm.c",
            json!({"token": secret("POISON-open-intent")}),
            4,
        ))
        .await
        .unwrap();
    store.create_operator(&uni, 5).await.unwrap();
    store
        .save_configuration(
            &uni,
            &json!({"visible": "marker-config", "k": secret("POISON-config")}),
            6,
        )
        .await
        .unwrap();
    let job = NewJob {
        kind: "deploy".to_owned(),
        operator: Some(uni.clone()),
        payload: json!({"visible": "marker-job", "k": secret("POISON-job")}),
        run_after: 0,
    };
    store.enqueue_job(&job, 7).await.unwrap();
    store.close().await;

    let raw = db.raw_contents().await;
    for marker in [
        "marker-record-input",
        "marker-intent",
        "marker-config",
        "marker-job",
    ] {
        assert!(
            raw.contains(marker),
            "the raw contents miss {marker}: not what was written?"
        );
    }
    assert!(
        raw.contains("sealed"),
        "no sealed value in the raw contents"
    );
    assert!(!raw.contains("POISON"), "a secret is stored in plaintext");

    // And they all open again.
    let store = db.store().await;
    let state = store.load_state(&uni).await.unwrap();
    assert_eq!(state.resources[&addr("vm.a")], record_secret);
    assert_eq!(state.resources[&addr("vm.b")], finished);
    let open = store.open_intents(&uni).await.unwrap();
    assert_eq!(
        open[0].1.inputs,
        json!({"token": secret("POISON-open-intent")})
    );
    let claimed = store
        .claim_job("w", 0, std::time::Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.payload, job.payload);
}

pub async fn a_store_opened_with_another_key_refuses_clearly(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let written = record(json!({"p": secret("s")}), json!({}), 1);
    store
        .put_record(&uni, &addr("vm.a"), &written)
        .await
        .unwrap();
    store.close().await;

    let error = Store::connect(&db.url, SealingKey::generate().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::KeyMismatch), "{error}");
    assert!(
        error
            .to_string()
            .contains("the platform key does not match the one this state was written with"),
        "{error}"
    );

    // The right key still opens it.
    let store = db.store().await;
    assert_eq!(
        store.load_state(&uni).await.unwrap().resources[&addr("vm.a")],
        written
    );
}
