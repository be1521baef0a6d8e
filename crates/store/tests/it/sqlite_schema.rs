//! SQLite's own schema: migration 0002 finishes an intent in one statement through a trigger on
//! the journal, and brings databases made before it up to date.

use fediversity_engine::store::{Outcome, StateChange, StateStore as _};
use fediversity_engine::value::secret;
use fediversity_store::SealingKey;
use serde_json::json;
use sqlx::Row as _;

use crate::harness::{TestDb, addr, intent, op, record};

/// The journal rows whose `pending_*` columns are not all NULL.
async fn pending_rows(url: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let count = sqlx::query(
        "SELECT count(*) FROM journal WHERE pending_change IS NOT NULL \
         OR pending_record IS NOT NULL OR pending_updated_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
    pool.close().await;
    count
}

#[tokio::test]
async fn finishing_leaves_the_record_in_resources_only() {
    let db = TestDb::sqlite("finishing_leaves_the_record_in_resources_only");
    let store = db.store().await;
    let uni = op("uni");
    let made = record(json!({}), json!({"token": secret("s")}), 7);
    for change in [
        StateChange::Upsert(made.clone()),
        StateChange::Upsert(record(json!({"size": 2}), json!({}), 8)),
        StateChange::Unchanged,
        StateChange::Remove,
        StateChange::Upsert(made.clone()),
    ] {
        let id = store
            .begin_intent(&intent(&uni, "vm.a", json!({}), 1))
            .await
            .unwrap();
        store
            .finish_intent(&uni, id, &Outcome::Succeeded, &change)
            .await
            .unwrap();
        let state = store.load_state(&uni).await.unwrap();
        match change {
            StateChange::Upsert(expected) => assert_eq!(state.resources[&addr("vm.a")], expected),
            StateChange::Remove => assert!(state.resources.is_empty()),
            StateChange::Unchanged => assert_eq!(state.resources.len(), 1),
        }
    }
    store.close().await;
    assert_eq!(pending_rows(&db.url).await, 0);
}

#[tokio::test]
async fn a_database_from_before_migration_2_is_upgraded_and_finishes_its_open_intents() {
    let db = TestDb::sqlite("a_database_from_before_migration_2");

    // The schema as the first release made it: migration 0001 alone.
    let only_first = tempfile::tempdir().unwrap();
    std::fs::copy(
        fediversity_testkit::workspace_root()
            .join("crates/store/migrations/sqlite/0001_initial.sql"),
        only_first.path().join("0001_initial.sql"),
    )
    .unwrap();
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::migrate::Migrator::new(only_first.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // An intent a run opened then and never finished.
    let id: i64 = sqlx::query(
        "INSERT INTO journal (operator, address, provider, operation, idempotency_key, inputs, at) \
         VALUES ('uni', 'vm.a', 'local', 'create', 'uni/vm.a/1', '{}', 1) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
    pool.close().await;

    // Opened now: 0002 is applied, and the intent finishes with its record.
    let store = fediversity_store::Store::connect(&db.url, SealingKey::generate().unwrap())
        .await
        .unwrap();
    let uni = op("uni");
    assert_eq!(store.open_intents(&uni).await.unwrap().len(), 1);
    let made = record(json!({}), json!({"id": 1}), 2);
    store
        .finish_intent(
            &uni,
            id,
            &Outcome::Succeeded,
            &StateChange::Upsert(made.clone()),
        )
        .await
        .unwrap();
    assert!(store.open_intents(&uni).await.unwrap().is_empty());
    assert_eq!(
        store.load_state(&uni).await.unwrap().resources[&addr("vm.a")],
        made
    );
    store.close().await;
    assert_eq!(pending_rows(&db.url).await, 0);
}
