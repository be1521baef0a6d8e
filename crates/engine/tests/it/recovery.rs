//! Crashes and drift: interrupted calls are settled through the provider before planning, and
//! changes made behind the platform's back are found by refresh and repaired by apply.

use std::sync::Arc;

use fediversity_engine::Action;
use fediversity_engine::events::{Discard, ProgressReporter};
use fediversity_engine::provider::{CallContext, Provider};
use fediversity_engine::store::{Intent, Operation, Outcome, StateStore};
use fediversity_model::graph::ResourceAddress;
use serde_json::{Value, json};

use crate::fake::{Harness, graph, operator, resource, with_input};

fn single() -> fediversity_model::graph::DesiredGraph {
    graph(
        vec![("vm.a", resource(json!({"name": "a", "value": 1})))],
        &[],
    )
}

fn context(address: &ResourceAddress) -> CallContext {
    CallContext {
        operator: operator(),
        address: address.clone(),
        idempotency_key: "k".to_owned(),
        progress: ProgressReporter::new(Arc::new(Discard), address.clone()),
    }
}

/// What a run that died between the provider call and recording its outcome leaves behind.
async fn interrupted(h: &Harness, operation: Operation, act: bool) {
    let address: ResourceAddress = "vm.a".parse().unwrap();
    let inputs = json!({"name": "a", "value": 1});
    let intent = Intent {
        operator: operator(),
        address: address.clone(),
        provider: "fake".to_owned(),
        operation,
        idempotency_key: "k".to_owned(),
        inputs: inputs.clone(),
        at: 0,
    };
    h.store.begin_intent(&intent).await.unwrap();
    if act {
        let ctx = context(&address);
        match operation {
            Operation::Create | Operation::Update => {
                h.fake.create(&ctx, &inputs).await.unwrap();
            }
            Operation::Delete => {
                let outputs = fediversity_engine::provider::Outputs::default();
                h.fake
                    .delete(
                        &ctx,
                        &inputs,
                        &outputs,
                        fediversity_model::Retention::Delete,
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_create_that_happened_is_adopted_not_repeated() {
    let h = Harness::new();
    interrupted(&h, Operation::Create, true).await;
    let report = h.apply(&single()).await;
    assert_eq!(
        (report.provider_calls, report.unchanged),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(h.fake.calls(), 1, "only the interrupted run's create");
    let journal = h.store.journal().unwrap();
    assert_eq!(journal[0].1, Some(Outcome::Reconciled { found: true }));
    let state = h.store.load_state(&operator()).await.unwrap();
    assert_eq!(
        state.resources[&"vm.a".parse().unwrap()].outputs["id"],
        "uni/vm.a"
    );
}

#[tokio::test]
async fn a_create_that_never_happened_is_made_once() {
    let h = Harness::new();
    interrupted(&h, Operation::Create, false).await;
    let report = h.apply(&single()).await;
    assert_eq!(report.done[&"vm.a".parse().unwrap()], Action::Create);
    assert_eq!(h.fake.objects().len(), 1);
    assert_eq!(
        h.store.journal().unwrap()[0].1,
        Some(Outcome::Reconciled { found: false })
    );
}

#[tokio::test]
async fn a_delete_that_happened_is_forgotten() {
    let h = Harness::new();
    h.apply(&single()).await;
    interrupted(&h, Operation::Delete, true).await;
    let report = h.apply(&graph(vec![], &[])).await;
    assert_eq!(
        (report.provider_calls, report.done.len()),
        (0, 0),
        "{report:?}"
    );
    assert!(
        h.store
            .load_state(&operator())
            .await
            .unwrap()
            .resources
            .is_empty()
    );
    assert!(h.fake.objects().is_empty());
}

#[tokio::test]
async fn refresh_reports_drift_and_apply_repairs_it() {
    let h = Harness::new();
    h.apply(&single()).await;
    h.fake
        .world
        .lock()
        .unwrap()
        .get_mut("uni/vm.a")
        .unwrap()
        .inputs["value"] = json!(99);
    let drift = h.engine.refresh(&operator()).await.unwrap();
    assert_eq!(drift.checked, 1);
    let change = &drift.drifted[&"vm.a".parse().unwrap()][0];
    assert_eq!(
        (
            change.path.as_str(),
            change.before.clone(),
            change.after.clone()
        ),
        ("value", Some(json!(1)), Some(json!(99)))
    );
    let report = h.apply(&single()).await;
    assert_eq!(report.done[&"vm.a".parse().unwrap()], Action::Update);
    assert_eq!(h.fake.objects()["uni/vm.a"].inputs["value"], 1);

    h.fake.world.lock().unwrap().clear();
    let drift = h.engine.refresh(&operator()).await.unwrap();
    assert_eq!(
        drift
            .missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["vm.a"]
    );
    let report = h.apply(&single()).await;
    assert_eq!(report.done[&"vm.a".parse().unwrap()], Action::Create);
    assert_eq!(
        h.fake.objects()["uni/vm.a"].inputs,
        json!({"name": "a", "value": 1}) as Value
    );
}

#[tokio::test]
async fn an_interrupted_update_that_did_not_happen_is_made_again() {
    let h = Harness::new();
    h.apply(&single()).await;
    let changed = with_input(single(), "vm.a", "value", json!(2));
    // The dead run recorded its intent to update, and died before the provider acted.
    let intent = Intent {
        operator: operator(),
        address: "vm.a".parse().unwrap(),
        provider: "fake".to_owned(),
        operation: Operation::Update,
        idempotency_key: "k".to_owned(),
        inputs: json!({"name": "a", "value": 2}),
        at: 0,
    };
    h.store.begin_intent(&intent).await.unwrap();
    let report = h.apply(&changed).await;
    assert_eq!(
        report.done[&"vm.a".parse().unwrap()],
        Action::Update,
        "{report:?}"
    );
    assert_eq!(h.fake.objects()["uni/vm.a"].inputs["value"], 2);
}

#[tokio::test]
async fn a_call_whose_outcome_is_unknown_is_settled_by_the_next_run() {
    let h = Harness::new();
    h.fake.fail("vm.a", crate::fake::Failure::Transient(100));
    let report = h.apply(&single()).await;
    assert!(
        report.failed[&"vm.a".parse().unwrap()].contains("the next run checks"),
        "{report:?}"
    );
    assert_eq!(
        h.store.open_intents(&operator()).await.unwrap().len(),
        1,
        "left open, not marked failed"
    );
    h.fake.failures.lock().unwrap().clear();
    let report = h.apply(&single()).await;
    assert_eq!(report.done[&"vm.a".parse().unwrap()], Action::Create);
    assert!(h.store.open_intents(&operator()).await.unwrap().is_empty());
    assert_eq!(h.fake.objects().len(), 1);
}
