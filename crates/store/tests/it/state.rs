//! The engine's state through `StateStore`: records, the journal and leases.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::store::{LeaseOutcome, Outcome, StateChange, StateStore as _};
use fediversity_engine::value::secret;
use fediversity_store::Store;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::harness::{TestDb, addr, intent, op, record};

const MINUTE: Duration = Duration::from_secs(60);

pub async fn state_round_trips_with_secrets(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let vm = record(
        json!({
            "cores": 2,
            "root_password": secret("vm-root-pw"),
            "tags": [secret(json!({"k": 1}))],
        }),
        json!({"ipv4": "192.0.2.10", "key": secret("ssh-private-key")}),
        1_000,
    );
    let mut bucket = record(json!({"name": "media"}), json!({}), 2_000);
    bucket.depends_on = BTreeSet::from([addr("vm.web")]);
    bucket.status = fediversity_engine::state::RecordStatus::Retained {
        note: "kept".to_owned(),
    };
    store.put_record(&uni, &addr("vm.web"), &vm).await.unwrap();
    store
        .put_record(&uni, &addr("bucket.media"), &bucket)
        .await
        .unwrap();

    // A second store on the same database reads exactly what was written.
    let reopened = db.store().await;
    let state = reopened.load_state(&uni).await.unwrap();
    assert_eq!(state.operator, uni);
    assert_eq!(
        state
            .resources
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["vm.web", "bucket.media"]
    );
    assert_eq!(state.resources[&addr("vm.web")], vm);
    assert_eq!(state.resources[&addr("bucket.media")], bucket);

    let mut changed = vm.clone();
    changed.outputs = json!({"ipv4": "192.0.2.11"});
    store
        .put_record(&uni, &addr("vm.web"), &changed)
        .await
        .unwrap();
    let removal = store
        .begin_intent(&intent(&uni, "bucket.media", json!({}), 3_000))
        .await
        .unwrap();
    store
        .finish_intent(&uni, removal, &Outcome::Succeeded, &StateChange::Remove)
        .await
        .unwrap();
    let state = store.load_state(&uni).await.unwrap();
    assert_eq!(state.resources.len(), 1);
    assert_eq!(state.resources[&addr("vm.web")], changed);
    assert!(
        store
            .load_state(&op("nobody"))
            .await
            .unwrap()
            .resources
            .is_empty()
    );
}

pub async fn operators_never_see_each_others_rows(db: TestDb) {
    let store = db.store().await;
    let (a, b) = (op("alpha"), op("bravo"));
    store
        .put_record(&a, &addr("vm.web"), &record(json!({}), json!({}), 1))
        .await
        .unwrap();
    let id = store
        .begin_intent(&intent(&a, "vm.db", json!({"p": secret("x")}), 2))
        .await
        .unwrap();
    store.create_operator(&a, 1).await.unwrap();
    store.create_operator(&b, 1).await.unwrap();
    let version = store
        .save_configuration(&a, &json!({"id": "alpha"}), 3)
        .await
        .unwrap();
    let deployment = store.create_deployment(&a, version, 4).await.unwrap();
    store
        .append_events(
            &a,
            deployment,
            &[crate::panel::progress(5, "a's secret progress")],
        )
        .await
        .unwrap();

    // Reading as B finds nothing of A's.
    assert!(store.load_state(&b).await.unwrap().resources.is_empty());
    assert!(store.open_intents(&b).await.unwrap().is_empty());
    assert!(store.configurations(&b).await.unwrap().is_empty());
    assert!(store.deployments(&b).await.unwrap().is_empty());
    assert!(
        store
            .events_since(&b, deployment, 0)
            .await
            .unwrap()
            .is_empty()
    );

    // Writing as B cannot touch A's rows.
    let error = store
        .finish_intent(&b, id, &Outcome::Succeeded, &StateChange::Remove)
        .await
        .unwrap_err();
    assert!(
        error.0.contains("not an open intent of operator `bravo`"),
        "{error}"
    );
    assert!(store.create_deployment(&b, version, 6).await.is_err());
    assert!(store.start_deployment(&b, deployment, 6).await.is_err());
    assert!(
        store
            .append_events(&b, deployment, &[crate::panel::progress(6, "b")])
            .await
            .is_err()
    );
    store.release_lease(&b, "b-run").await.unwrap();

    // A's rows are as A left them.
    assert_eq!(store.load_state(&a).await.unwrap().resources.len(), 1);
    assert_eq!(store.open_intents(&a).await.unwrap().len(), 1);
    assert_eq!(store.configurations(&a).await.unwrap().len(), 1);
    let deployments = store.deployments(&a).await.unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(
        deployments[0].status,
        fediversity_store::DeploymentStatus::Queued
    );
    assert_eq!(
        store.events_since(&a, deployment, 0).await.unwrap().len(),
        1
    );
}

pub async fn finish_intent_writes_outcome_and_record_together(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let made = record(json!({"size": 1}), json!({"id": secret("vm-101")}), 10);

    let id = store
        .begin_intent(&intent(&uni, "vm.web", json!({"size": 1}), 10))
        .await
        .unwrap();
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
        store.load_state(&uni).await.unwrap().resources[&addr("vm.web")],
        made
    );

    // A finished intent cannot be finished again, and its refused change is not applied.
    let error = store
        .finish_intent(&uni, id, &Outcome::Succeeded, &StateChange::Remove)
        .await
        .unwrap_err();
    assert!(error.0.contains("already finished"), "{error}");
    assert_eq!(store.load_state(&uni).await.unwrap().resources.len(), 1);

    // Nor can an intent that does not exist bring a record with it.
    let ghost = record(json!({}), json!({}), 11);
    assert!(
        store
            .finish_intent(
                &uni,
                id + 1000,
                &Outcome::Succeeded,
                &StateChange::Upsert(ghost)
            )
            .await
            .is_err()
    );
    assert_eq!(store.load_state(&uni).await.unwrap().resources.len(), 1);

    // A delete's outcome removes the record in the same step; a failure leaves it.
    let failed = store
        .begin_intent(&intent(&uni, "vm.web", json!({}), 12))
        .await
        .unwrap();
    store
        .finish_intent(
            &uni,
            failed,
            &Outcome::Failed {
                error: "busy".to_owned(),
            },
            &StateChange::Unchanged,
        )
        .await
        .unwrap();
    assert_eq!(store.load_state(&uni).await.unwrap().resources.len(), 1);
    let delete = store
        .begin_intent(&intent(&uni, "vm.web", json!({}), 13))
        .await
        .unwrap();
    store
        .finish_intent(
            &uni,
            delete,
            &Outcome::Reconciled { found: false },
            &StateChange::Remove,
        )
        .await
        .unwrap();
    assert!(store.load_state(&uni).await.unwrap().resources.is_empty());
    assert!(store.open_intents(&uni).await.unwrap().is_empty());
}

/// Drops `finish_intent` after 0, 1, 2… polls (as a caller that timed out or whose client went
/// away would) and checks after each that the intent is finished exactly when its record was
/// written. On PostgreSQL this once lost later writes: a future dropped during `BEGIN` left its
/// pooled connection inside a transaction (see `Store::in_own_task`).
pub async fn a_cancelled_finish_intent_leaves_both_or_neither(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let (mut finished, mut open) = (0, 0);
    for step in 0..30 {
        let address = format!("vm.n{step}");
        let id = store
            .begin_intent(&intent(&uni, &address, json!({}), 1))
            .await
            .unwrap();
        let change = StateChange::Upsert(record(json!({}), json!({"n": step}), 2));
        poll_then_drop(
            store.finish_intent(&uni, id, &Outcome::Succeeded, &change),
            step % 15,
        )
        .await;

        let (is_open, has_record) = settled_view(&store, &uni, id, &address).await;
        assert_eq!(
            is_open, !has_record,
            "step {step}: open {is_open}, record {has_record}"
        );
        if is_open {
            open += 1;
        } else {
            finished += 1;
        }
    }
    assert!(finished > 0, "no finish_intent completed");
    assert!(open > 0, "no finish_intent was cancelled");
}

/// Polls `future` at most `polls` times, giving the database time to answer in between, then
/// drops it.
async fn poll_then_drop<F: std::future::Future>(future: F, polls: usize) {
    let mut future = std::pin::pin!(future);
    for _ in 0..polls {
        let ready =
            std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx).is_ready()))
                .await;
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether intent `id` is open and whether `address` has a record, once a cancelled
/// transaction has settled (committed or rolled back): the same answer twice running.
async fn settled_view(
    store: &Store,
    operator: &fediversity_model::names::OperatorId,
    id: i64,
    address: &str,
) -> (bool, bool) {
    let view = || async {
        let open = store.open_intents(operator).await.unwrap();
        let state = store.load_state(operator).await.unwrap();
        (
            open.iter().any(|(open, _)| *open == id),
            state.resources.contains_key(&addr(address)),
        )
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut last = view().await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = view().await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the store did not settle after a cancelled finish_intent")
}

pub async fn open_intents_are_the_unfinished_ones_oldest_first(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let first = intent(
        &uni,
        "vm.a",
        json!({"password": secret("first-secret")}),
        100,
    );
    let second = intent(&uni, "vm.b", json!({}), 200);
    let third = intent(&uni, "dns.c", json!({"ttl": 60}), 300);
    let mut ids = Vec::new();
    for each in [&first, &second, &third] {
        ids.push(store.begin_intent(each).await.unwrap());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    store
        .finish_intent(&uni, ids[1], &Outcome::Succeeded, &StateChange::Unchanged)
        .await
        .unwrap();
    let open = store.open_intents(&uni).await.unwrap();
    assert_eq!(open, vec![(ids[0], first), (ids[2], third)]);
}

pub async fn leases_are_taken_refused_renewed_and_taken_over(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let acquire = |holder: &'static str, now| {
        let store = store.clone();
        let uni = uni.clone();
        async move {
            store
                .acquire_lease(&uni, holder, now, MINUTE)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        acquire("host-a:1:run-1", 0).await,
        LeaseOutcome::Acquired { expires_at: 60_000 }
    );
    assert_eq!(
        acquire("host-b:2:run-2", 1_000).await,
        LeaseOutcome::Held {
            holder: "host-a:1:run-1".to_owned(),
            expires_at: 60_000
        }
    );
    assert_eq!(
        acquire("host-a:1:run-1", 2_000).await,
        LeaseOutcome::Acquired { expires_at: 62_000 }
    );
    // Held up to and including the instant it expires, free after.
    assert!(matches!(
        acquire("host-b:2:run-2", 62_000).await,
        LeaseOutcome::Held { .. }
    ));
    assert_eq!(
        acquire("host-b:2:run-2", 62_001).await,
        LeaseOutcome::Acquired {
            expires_at: 122_001
        }
    );
    assert_eq!(
        acquire("host-a:1:run-1", 62_002).await,
        LeaseOutcome::Held {
            holder: "host-b:2:run-2".to_owned(),
            expires_at: 122_001
        }
    );
    // Only the holder can give it up.
    store.release_lease(&uni, "host-a:1:run-1").await.unwrap();
    assert!(matches!(
        acquire("host-a:1:run-1", 62_003).await,
        LeaseOutcome::Held { .. }
    ));
    store.release_lease(&uni, "host-b:2:run-2").await.unwrap();
    assert_eq!(
        acquire("host-a:1:run-1", 62_004).await,
        LeaseOutcome::Acquired {
            expires_at: 122_004
        }
    );
    // Leases are per operator.
    let other = store
        .acquire_lease(&op("newsroom"), "host-c", 62_005, MINUTE)
        .await
        .unwrap();
    assert!(matches!(other, LeaseOutcome::Acquired { .. }));
}

pub async fn of_two_concurrent_acquirers_exactly_one_wins(db: TestDb) {
    let store = db.store().await;
    for round in 0..10 {
        let operator = op(&format!("round-{round}"));
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = ["runner-a", "runner-b"]
            .into_iter()
            .map(|holder| {
                let (store, operator, barrier) = (store.clone(), operator.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let outcome = store
                        .acquire_lease(&operator, holder, 1_000, MINUTE)
                        .await
                        .unwrap();
                    (holder, outcome)
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|(_, outcome)| matches!(outcome, LeaseOutcome::Acquired { .. }))
            .map(|(holder, _)| *holder)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        let loser = outcomes
            .iter()
            .find(|(holder, _)| *holder != winners[0])
            .map(|(_, outcome)| outcome.clone());
        assert_eq!(
            loser,
            Some(LeaseOutcome::Held {
                holder: winners[0].to_owned(),
                expires_at: 61_000
            }),
            "round {round}"
        );
    }
}

/// Many runs recording intents at once (SQLite writes them a batch to a statement): every
/// caller gets the id of its own intent.
pub async fn concurrent_intents_each_get_their_own_id(db: TestDb) {
    let store = db.store().await;
    let operators = [op("uni"), op("newsroom"), op("lab")];
    let mut tasks = JoinSet::new();
    for operator in &operators {
        for n in 0..60 {
            let (store, operator) = (store.clone(), operator.clone());
            tasks.spawn(async move {
                // Intents alike two by two but for their inputs: still told apart.
                let address = format!("vm.n{}", n / 2);
                let inputs = json!({"n": n, "token": secret(format!("{operator}-{n}"))});
                let wanted = intent(&operator, &address, inputs, n / 2);
                let id = store.begin_intent(&wanted).await.unwrap();
                (id, wanted)
            });
        }
    }
    let begun: Vec<_> = tasks.join_all().await;
    let ids: BTreeSet<i64> = begun.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), begun.len(), "an id was handed out twice");
    for operator in &operators {
        let open: HashMap<i64, _> = store
            .open_intents(operator)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(open.len(), 60);
        for (id, wanted) in begun.iter().filter(|(_, i)| &i.operator == operator) {
            assert_eq!(open.get(id), Some(wanted), "intent {id}");
        }
    }
}

/// Outcomes for many intents at once, each raced by a second outcome from its own operator and
/// one from another operator: exactly one counts, the others are errors that change nothing.
pub async fn concurrent_outcomes_finish_each_intent_once(db: TestDb) {
    let store = db.store().await;
    let (uni, intruder) = (op("uni"), op("intruder"));
    let mut ids = Vec::new();
    for n in 0..60 {
        let address = format!("vm.n{n}");
        let id = store
            .begin_intent(&intent(&uni, &address, json!({}), n))
            .await
            .unwrap();
        ids.push((id, address));
    }
    let mut tasks = JoinSet::new();
    for (n, (id, address)) in (0_i64..).zip(&ids) {
        let made = record(json!({}), json!({"n": n}), n);
        let attempts = [
            (uni.clone(), StateChange::Upsert(made.clone())),
            (uni.clone(), StateChange::Remove),
            (intruder.clone(), StateChange::Upsert(made)),
        ];
        for (operator, change) in attempts {
            let (store, id, address) = (store.clone(), *id, address.clone());
            tasks.spawn(async move {
                let done = store
                    .finish_intent(&operator, id, &Outcome::Succeeded, &change)
                    .await
                    .is_ok();
                (address, operator, change, done)
            });
        }
    }
    let attempts = tasks.join_all().await;
    let state = store.load_state(&uni).await.unwrap();
    for (_, address) in &ids {
        let won: Vec<_> = attempts
            .iter()
            .filter(|(a, _, _, done)| a == address && *done)
            .collect();
        assert_eq!(won.len(), 1, "{address}: {won:?}");
        let (_, operator, change, _) = won[0];
        assert_eq!(operator, &uni, "{address}");
        match change {
            StateChange::Upsert(made) => {
                assert_eq!(state.resources.get(&addr(address)), Some(made))
            }
            _ => assert!(!state.resources.contains_key(&addr(address)), "{address}"),
        }
    }
    assert!(store.open_intents(&uni).await.unwrap().is_empty());
    assert!(
        store
            .load_state(&intruder)
            .await
            .unwrap()
            .resources
            .is_empty()
    );
}
