//! Apply: order, parallelism, no-op runs, updates, replacements, pruning, retention, failures,
//! retries, and secrets kept out of events.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fediversity_engine::Action;
use fediversity_engine::plan::plan;
use fediversity_engine::state::RecordStatus;
use fediversity_engine::store::StateStore;
use fediversity_model::{Retention, ServiceKind};
use serde_json::json;

use crate::fake::{Failure, Fake, Harness, TOKEN, data, graph, operator, resource, with_input};

fn chain() -> fediversity_model::graph::DesiredGraph {
    graph(
        vec![
            ("vm.a", resource(json!({"name": "a", "value": 1}))),
            (
                "dns.a",
                resource(json!({"name": "a", "target": "${vm.a.id}", "value": 2})),
            ),
            (
                "nixos.a",
                resource(json!({"name": "a", "host": "${vm.a.id}", "password": "${vm.a.token}"})),
            ),
        ],
        &[],
    )
}

#[tokio::test]
async fn creates_in_dependency_order_and_passes_outputs_on() {
    let h = Harness::new();
    let report = h.apply(&chain()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.done.len(), 3);
    let log = h.fake.log();
    assert_eq!(log[0], "create vm.a", "{log:?}");
    let objects = h.fake.objects();
    assert_eq!(objects["uni/dns.a"].inputs["target"], "uni/vm.a");
    assert_eq!(
        objects["uni/nixos.a"].inputs["password"], TOKEN,
        "the provider receives the secret itself"
    );
}

#[tokio::test]
async fn an_unchanged_configuration_costs_no_provider_call() {
    let h = Harness::new();
    h.apply(&chain()).await;
    let calls = h.fake.calls();
    let report = h.apply(&chain()).await;
    assert_eq!(
        (report.provider_calls, report.unchanged, h.fake.calls()),
        (0, 3, calls)
    );
    assert!(report.done.is_empty());
}

#[tokio::test]
async fn changes_are_made_in_place_or_by_replacement() {
    let h = Harness::new();
    h.apply(&chain()).await;
    let changed = with_input(chain(), "dns.a", "value", json!(3));
    let changed = with_input(changed, "vm.a", "name", json!("a2"));
    let state = h.store.load_state(&operator()).await.unwrap();
    let providers = crate::fake::providers(&h.fake);
    let planned = plan(&changed, &state, &providers, &Default::default()).unwrap();
    let actions: Vec<(String, Action)> = planned
        .steps
        .iter()
        .map(|(a, s)| (a.to_string(), s.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("vm.a".to_owned(), Action::Replace),
            ("dns.a".to_owned(), Action::Update),
            ("nixos.a".to_owned(), Action::Update),
        ]
    );
    let host = &planned.steps[&"nixos.a".parse().unwrap()].changes;
    assert!(
        host.iter()
            .any(|c| c.after == Some(json!("(known after apply)"))),
        "{host:?}"
    );
    assert!(
        planned.steps[&"vm.a".parse().unwrap()].reasons[0]
            .contains("`name` cannot be changed in place")
    );
    let report = h.apply(&changed).await;
    assert_eq!(report.done[&"vm.a".parse().unwrap()], Action::Replace);
    assert_eq!(report.done[&"dns.a".parse().unwrap()], Action::Update);
    assert!(
        !report.done.contains_key(&"nixos.a".parse().unwrap()),
        "the replaced VM kept its outputs, so its host needed no change after all: {report:?}"
    );
    assert_eq!(h.fake.objects()["uni/vm.a"].inputs["name"], "a2");
    let log = h.fake.log();
    assert_eq!(&log[3..5], ["delete vm.a", "create vm.a"], "{log:?}");
}

#[tokio::test]
async fn removed_resources_are_deleted_after_what_used_them() {
    let h = Harness::new();
    h.apply(&chain()).await;
    let report = h.apply(&graph(vec![], &[])).await;
    assert_eq!(
        report
            .done
            .values()
            .filter(|a| **a == Action::Delete)
            .count(),
        3,
        "{report:?}"
    );
    assert!(h.fake.objects().is_empty());
    let log = h.fake.log();
    let position = |entry: &str| log.iter().position(|l| l == entry).unwrap();
    assert!(
        position("delete vm.a") > position("delete dns.a"),
        "{log:?}"
    );
    assert!(
        position("delete vm.a") > position("delete nixos.a"),
        "{log:?}"
    );
    assert!(
        h.store
            .load_state(&operator())
            .await
            .unwrap()
            .resources
            .is_empty()
    );
}

#[tokio::test]
async fn retention_keep_detaches_and_turning_the_service_on_again_reuses_the_data() {
    let h = Harness::new();
    let with_bucket = |retention| {
        graph(
            vec![
                (
                    "bucket.media",
                    data(ServiceKind::Mastodon, json!({"name": "media", "value": 1})),
                ),
                (
                    "s3key.media",
                    resource(json!({"name": "key", "bucket": "${bucket.media.id}"})),
                ),
            ],
            &[(ServiceKind::Mastodon, retention)],
        )
    };
    h.apply(&with_bucket(Retention::Keep)).await;
    let off = graph(vec![], &[(ServiceKind::Mastodon, Retention::Keep)]);
    let report = h.apply(&off).await;
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert_eq!(report.done[&"s3key.media".parse().unwrap()], Action::Delete);
    let state = h.store.load_state(&operator()).await.unwrap();
    assert!(matches!(
        state.resources[&"bucket.media".parse().unwrap()].status,
        RecordStatus::Retained { .. }
    ));
    assert!(h.fake.objects()["uni/bucket.media"].kept);

    let again = h.apply(&off).await;
    assert!(
        again.done.is_empty() && again.kept.is_empty(),
        "kept data stays kept: {again:?}"
    );

    let back = h.apply(&with_bucket(Retention::Keep)).await;
    assert_eq!(
        back.done[&"bucket.media".parse().unwrap()],
        Action::Update,
        "{back:?}"
    );
    assert_eq!(back.done[&"s3key.media".parse().unwrap()], Action::Create);
    assert!(!h.fake.objects()["uni/bucket.media"].kept);

    let deleted = h
        .apply(&graph(
            vec![],
            &[(ServiceKind::Mastodon, Retention::Delete)],
        ))
        .await;
    assert_eq!(
        deleted.done[&"bucket.media".parse().unwrap()],
        Action::Delete,
        "{deleted:?}"
    );
    assert!(h.fake.objects().is_empty());
}

#[tokio::test]
async fn a_failure_stops_only_what_depends_on_it() {
    let h = Harness::new();
    h.fake.fail("vm.a", Failure::Permanent);
    let mut g = chain();
    g.resources
        .insert("vm.b".parse().unwrap(), resource(json!({"name": "b"})));
    let report = h.apply(&g).await;
    assert_eq!(
        report
            .failed
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["vm.a"]
    );
    assert!(report.failed[&"vm.a".parse().unwrap()].contains("refused by the fake"));
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(report.skipped[&"dns.a".parse().unwrap()].contains("vm.a failed"));
    assert_eq!(report.done[&"vm.b".parse().unwrap()], Action::Create);
    assert_eq!(h.fake.calls(), 2, "a permanent failure is not retried");
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let h = Harness::new();
    h.fake.fail("vm.a", Failure::Transient(2));
    let report = h.apply(&chain()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        report.provider_calls, 5,
        "3 attempts for vm.a, 1 each for the others"
    );
}

#[tokio::test]
async fn secrets_never_reach_events_or_plans() {
    let h = Harness::new();
    h.apply(&chain()).await;
    let changed = with_input(chain(), "nixos.a", "other", json!("x-${vm.a.token}"));
    h.apply(&changed).await;
    let events = h.events.json();
    assert!(events.contains("(secret)"), "{events}");
    assert!(!events.contains(TOKEN), "{events}");
    let (planned, _) = h.engine.preview(&changed).await.unwrap();
    assert!(
        !serde_json::to_string(&planned.summary())
            .unwrap()
            .contains(TOKEN)
    );
}

#[tokio::test]
async fn independent_resources_run_in_parallel_within_the_provider_bound() {
    let h = Harness::with_fake(Fake::slow(Duration::from_millis(20), 3));
    let resources = (0..12)
        .map(|i| (format!("vm.n{i}"), resource(json!({"name": i}))))
        .collect::<Vec<_>>();
    let g = graph(
        resources
            .iter()
            .map(|(a, r)| (a.as_str(), r.clone()))
            .collect(),
        &[],
    );
    let report = h.apply(&g).await;
    assert!(report.succeeded());
    assert_eq!(
        h.fake.max_in_flight.load(Ordering::SeqCst),
        3,
        "parallel, and never more than the bound"
    );
}

#[tokio::test]
async fn a_replacement_that_would_delete_kept_data_is_refused() {
    let h = Harness::new();
    let bucket = |name: &str, retention| {
        graph(
            vec![(
                "bucket.media",
                data(ServiceKind::Mastodon, json!({"name": name})),
            )],
            &[(ServiceKind::Mastodon, retention)],
        )
    };
    h.apply(&bucket("media", Retention::Keep)).await;
    let refused = h
        .engine
        .apply(
            &bucket("media-2", Retention::Keep),
            h.events.clone(),
            fediversity_engine::Approval::Automatic,
        )
        .await;
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("bucket.media holds data") && message.contains("retention"),
        "{message}"
    );
    assert_eq!(
        h.fake.objects()["uni/bucket.media"].inputs["name"],
        "media",
        "nothing was touched"
    );
    let allowed = h.apply(&bucket("media-2", Retention::Delete)).await;
    assert_eq!(
        allowed.done[&"bucket.media".parse().unwrap()],
        Action::Replace
    );
}

#[tokio::test]
async fn kept_data_is_deleted_once_retention_says_delete() {
    let h = Harness::new();
    let with_bucket = graph(
        vec![(
            "bucket.media",
            data(ServiceKind::Mastodon, json!({"name": "media"})),
        )],
        &[(ServiceKind::Mastodon, Retention::Keep)],
    );
    h.apply(&with_bucket).await;
    h.apply(&graph(vec![], &[(ServiceKind::Mastodon, Retention::Keep)]))
        .await;
    assert!(h.fake.objects()["uni/bucket.media"].kept);
    let purge = h
        .apply(&graph(
            vec![],
            &[(ServiceKind::Mastodon, Retention::Delete)],
        ))
        .await;
    assert_eq!(
        purge.done[&"bucket.media".parse().unwrap()],
        Action::Delete,
        "{purge:?}"
    );
    assert!(h.fake.objects().is_empty());
    assert!(
        h.store
            .load_state(&operator())
            .await
            .unwrap()
            .resources
            .is_empty()
    );
}

/// An engine over `h`'s fake and store that replaces `addresses` on request.
fn replacing(h: &Harness, addresses: &[&str]) -> fediversity_engine::Engine {
    let mut options = crate::fake::options("replacing run");
    options.replace = addresses.iter().map(|a| a.parse().unwrap()).collect();
    fediversity_engine::Engine::new(
        crate::fake::providers(&h.fake),
        h.store.clone(),
        std::sync::Arc::new(fediversity_engine::clock::SystemClock),
        options,
    )
}

#[tokio::test]
async fn a_requested_replacement_replaces_an_unchanged_resource_and_updates_its_dependents() {
    let h = Harness::new();
    h.apply(&chain()).await;
    let engine = replacing(&h, &["vm.a"]);
    let (planned, _) = engine.preview(&chain()).await.unwrap();
    let vm = &planned.steps[&"vm.a".parse().unwrap()];
    assert_eq!(
        (vm.action, vm.reasons.clone()),
        (Action::Replace, vec!["replacement requested".to_owned()])
    );
    let dns = &planned.steps[&"dns.a".parse().unwrap()];
    assert_eq!(dns.action, Action::Update, "its dependents see new outputs");
    let before = h.fake.log().len();
    let report = engine
        .apply(
            &chain(),
            h.events.clone(),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        h.fake.log()[before..before + 2],
        ["delete vm.a", "create vm.a"],
        "replaced: removed, then made anew"
    );
    let again = h.apply(&chain()).await;
    assert_eq!(
        again.provider_calls, 0,
        "a replacement is done once, not kept"
    );
}

#[tokio::test]
async fn a_replacement_of_an_unknown_resource_is_refused_before_anything_starts() {
    let h = Harness::new();
    h.apply(&chain()).await;
    let calls = h.fake.calls();
    let error = replacing(&h, &["vm.nope", "vm.a"])
        .apply(
            &chain(),
            h.events.clone(),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("cannot replace vm.nope"), "{error}");
    assert!(
        !error.contains("vm.a,"),
        "only the unknown one is named: {error}"
    );
    assert_eq!(h.fake.calls(), calls, "nothing was called");
}

#[tokio::test]
async fn a_requested_replacement_of_kept_data_is_refused() {
    let h = Harness::new();
    let kept = graph(
        vec![(
            "bucket.media",
            data(ServiceKind::Mastodon, json!({"name": "m"})),
        )],
        &[(ServiceKind::Mastodon, Retention::Keep)],
    );
    h.apply(&kept).await;
    let error = replacing(&h, &["bucket.media"])
        .apply(
            &kept,
            h.events.clone(),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("replacement requested"), "{error}");
    assert!(error.contains("retention"), "{error}");
}

#[tokio::test]
async fn a_requested_rotation_of_a_kept_secret_goes_ahead() {
    let h = Harness::new();
    let kept = graph(
        vec![(
            "secret.mastodon-admin",
            data(ServiceKind::Mastodon, json!({"name": "admin"})),
        )],
        &[(ServiceKind::Mastodon, Retention::Keep)],
    );
    h.apply(&kept).await;
    let before = h.fake.log().len();
    let report = replacing(&h, &["secret.mastodon-admin"])
        .apply(
            &kept,
            h.events.clone(),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        h.fake.log()[before..],
        [
            "delete secret.mastodon-admin",
            "create secret.mastodon-admin"
        ]
    );
}
