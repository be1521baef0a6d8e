//! Opening the store: URLs, missing files, the in-memory database.

use fediversity_engine::store::StateStore as _;
use fediversity_store::{Error, SealingKey, Store};
use serde_json::json;

use crate::harness::{addr, op, record};

#[tokio::test]
async fn an_in_memory_database_keeps_its_state_for_the_stores_life() {
    let store = Store::connect("sqlite::memory:", SealingKey::generate().unwrap())
        .await
        .unwrap();
    let uni = op("uni");
    let written = record(json!({"a": 1}), json!({}), 5);
    store
        .put_record(&uni, &addr("vm.a"), &written)
        .await
        .unwrap();
    let state = store.load_state(&uni).await.unwrap();
    assert_eq!(state.resources[&addr("vm.a")], written);
}

#[tokio::test]
async fn a_database_in_a_missing_directory_is_refused_with_advice() {
    let error = Store::connect(
        "sqlite:///nonexistent-fediversity-dir/state.db?mode=rwc",
        SealingKey::generate().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("cannot open the database at sqlite:///nonexistent"),
        "{message}"
    );
    assert!(message.contains("directory exists"), "{message}");
}

#[tokio::test]
async fn other_databases_are_refused_and_passwords_are_not_shown() {
    let error = Store::connect(
        "mysql://root:hunter2@db/fedi",
        SealingKey::generate().unwrap(),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::UnsupportedUrl(_)), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("sqlite://PATH?mode=rwc"), "{message}");
}
