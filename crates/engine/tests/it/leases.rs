//! One run per operator: a second one waits or is refused, naming the holder; a dead run's
//! lease expires.

use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::EngineError;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_engine::events::Discard;
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::store::{LeaseOutcome, StateStore};
use serde_json::json;

use crate::fake::{Fake, Harness, engine_for, graph, operator, resource};

fn slow_graph() -> fediversity_model::graph::DesiredGraph {
    graph(
        (0..4)
            .map(|i| {
                (
                    ["vm.a", "vm.b", "vm.c", "vm.d"][i],
                    resource(json!({"n": i})),
                )
            })
            .collect(),
        &[],
    )
}

#[tokio::test]
async fn two_concurrent_applies_never_both_run() {
    let fake = Fake::slow(Duration::from_millis(50), 1);
    let store = Arc::new(MemoryStore::default());
    let first = engine_for(&fake, &store, Arc::new(SystemClock), "run one");
    let second = engine_for(&fake, &store, Arc::new(SystemClock), "run two");
    let g = slow_graph();
    let (a, b) = tokio::join!(
        first.apply(
            &g,
            Arc::new(Discard),
            fediversity_engine::Approval::Automatic
        ),
        second.apply(
            &g,
            Arc::new(Discard),
            fediversity_engine::Approval::Automatic
        )
    );
    let (ok, refused) = match (a, b) {
        (Ok(report), Err(error)) | (Err(error), Ok(report)) => (report.unwrap(), error),
        other => panic!("exactly one run must proceed: {other:?}"),
    };
    assert!(ok.succeeded());
    let message = refused.to_string();
    assert!(matches!(refused, EngineError::Locked { .. }), "{message}");
    assert!(
        message.contains("run one") || message.contains("run two"),
        "the message names the holder: {message}"
    );
    assert_eq!(fake.calls(), 4, "nothing was done twice");
}

#[tokio::test]
async fn a_second_apply_that_may_wait_runs_after_the_first() {
    let fake = Fake::slow(Duration::from_millis(30), 1);
    let store = Arc::new(MemoryStore::default());
    let first = engine_for(&fake, &store, Arc::new(SystemClock), "run one");
    let mut options = crate::fake::options("run two");
    options.lease_wait = Duration::from_secs(30);
    let providers = crate::fake::providers(&fake);
    let second =
        fediversity_engine::Engine::new(providers, store.clone(), Arc::new(SystemClock), options);
    let g = slow_graph();
    let (a, b) = tokio::join!(
        first.apply(
            &g,
            Arc::new(Discard),
            fediversity_engine::Approval::Automatic
        ),
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            second
                .apply(
                    &g,
                    Arc::new(Discard),
                    fediversity_engine::Approval::Automatic,
                )
                .await
        }
    );
    assert!(a.unwrap().unwrap().succeeded());
    let b = b.unwrap().unwrap();
    assert_eq!(
        b.provider_calls, 0,
        "the waiting run found everything done: {b:?}"
    );
}

#[tokio::test]
async fn a_dead_runs_lease_expires() {
    let clock = Harness::manual_clock();
    let store = Arc::new(MemoryStore::default());
    let ttl = Duration::from_secs(60);
    let taken = store
        .acquire_lease(&operator(), "dead run", clock.now(), ttl)
        .await
        .unwrap();
    assert!(matches!(taken, LeaseOutcome::Acquired { .. }));
    let fake = Fake::new();
    let engine = engine_for(&fake, &store, clock.clone(), "new run");
    let refused = engine
        .apply(
            &slow_graph(),
            Arc::new(Discard),
            fediversity_engine::Approval::Automatic,
        )
        .await;
    assert!(matches!(refused, Err(EngineError::Locked { ref holder, .. }) if holder == "dead run"));
    clock.advance(ttl + Duration::from_secs(1));
    let report = engine
        .apply(
            &slow_graph(),
            Arc::new(Discard),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(report.succeeded());
    let after = store
        .acquire_lease(&operator(), "someone", clock.now(), ttl)
        .await
        .unwrap();
    assert!(
        matches!(after, LeaseOutcome::Acquired { .. }),
        "the run released its lease"
    );
}

/// A store whose lease is taken over by an intruder as soon as the run first renews it.
struct Intruded {
    inner: MemoryStore,
    acquisitions: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl StateStore for Intruded {
    async fn load_state(
        &self,
        o: &fediversity_model::names::OperatorId,
    ) -> fediversity_engine::store::StoreResult<fediversity_engine::state::RecordedState> {
        self.inner.load_state(o).await
    }
    async fn begin_intent(
        &self,
        i: &fediversity_engine::store::Intent,
    ) -> fediversity_engine::store::StoreResult<i64> {
        self.inner.begin_intent(i).await
    }
    async fn finish_intent(
        &self,
        o: &fediversity_model::names::OperatorId,
        id: i64,
        outcome: &fediversity_engine::store::Outcome,
        change: &fediversity_engine::store::StateChange,
    ) -> fediversity_engine::store::StoreResult<()> {
        self.inner.finish_intent(o, id, outcome, change).await
    }
    async fn open_intents(
        &self,
        o: &fediversity_model::names::OperatorId,
    ) -> fediversity_engine::store::StoreResult<Vec<(i64, fediversity_engine::store::Intent)>> {
        self.inner.open_intents(o).await
    }
    async fn put_record(
        &self,
        o: &fediversity_model::names::OperatorId,
        a: &fediversity_model::graph::ResourceAddress,
        r: &fediversity_engine::state::ResourceRecord,
    ) -> fediversity_engine::store::StoreResult<()> {
        self.inner.put_record(o, a, r).await
    }
    async fn acquire_lease(
        &self,
        o: &fediversity_model::names::OperatorId,
        holder: &str,
        now: i64,
        ttl: Duration,
    ) -> fediversity_engine::store::StoreResult<LeaseOutcome> {
        if self
            .acquisitions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            return self.inner.acquire_lease(o, holder, now, ttl).await;
        }
        Ok(LeaseOutcome::Held {
            holder: "intruder".to_owned(),
            expires_at: now + 60_000,
        })
    }
    async fn release_lease(
        &self,
        o: &fediversity_model::names::OperatorId,
        holder: &str,
    ) -> fediversity_engine::store::StoreResult<()> {
        self.inner.release_lease(o, holder).await
    }
}

#[tokio::test]
async fn a_run_that_loses_its_lease_starts_no_new_change() {
    let fake = Fake::slow(Duration::from_millis(60), 1);
    let store = Arc::new(Intruded {
        inner: MemoryStore::default(),
        acquisitions: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut options = crate::fake::options("run one");
    options.lease_ttl = Duration::from_millis(30);
    let providers = crate::fake::providers(&fake);
    let engine = fediversity_engine::Engine::new(providers, store, Arc::new(SystemClock), options);
    let chain = graph(
        vec![
            ("vm.a", resource(json!({"n": 1}))),
            ("vm.b", resource(json!({"after": "${vm.a.id}"}))),
            ("vm.c", resource(json!({"after": "${vm.b.id}"}))),
            ("vm.d", resource(json!({"after": "${vm.c.id}"}))),
        ],
        &[],
    );
    let report = engine
        .apply(
            &chain,
            Arc::new(Discard),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!report.succeeded(), "{report:?}");
    assert!(
        report
            .failed
            .values()
            .any(|e| e.contains("lost the operator's lease")),
        "{report:?}"
    );
    assert!(
        fake.calls() < 4,
        "no new call after the lease was lost: {} calls",
        fake.calls()
    );
}
