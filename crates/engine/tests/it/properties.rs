//! Random graphs and random changes: after an apply, planning the same graph again finds
//! nothing to do, and the world holds exactly the desired resources.

use std::collections::BTreeSet;

use fediversity_engine::plan::plan;
use fediversity_engine::store::StateStore;
use fediversity_model::graph::DesiredGraph;
use proptest::prelude::*;
use serde_json::json;

use crate::fake::{Harness, graph, operator, resource};

/// A random DAG over up to 12 nodes: node i may reference any node j < i.
fn random_graph() -> impl Strategy<Value = DesiredGraph> {
    prop::collection::vec(
        (
            0u8..3,
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            any::<bool>(),
        ),
        0..12,
    )
    .prop_map(|nodes| {
        let resources: Vec<(String, fediversity_model::graph::Resource)> = nodes
            .iter()
            .enumerate()
            .map(|(i, (value, refs, rename))| {
                let targets: BTreeSet<String> = if i == 0 {
                    BTreeSet::new()
                } else {
                    refs.iter()
                        .map(|r| format!("${{vm.n{}.id}}", r.index(i)))
                        .collect()
                };
                let name = if *rename {
                    format!("renamed-{i}")
                } else {
                    format!("n{i}")
                };
                (
                    format!("vm.n{i}"),
                    resource(json!({"name": name, "value": value, "refs": targets})),
                )
            })
            .collect();
        graph(
            resources
                .iter()
                .map(|(a, r)| (a.as_str(), r.clone()))
                .collect(),
            &[],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn apply_then_plan_is_empty(first in random_graph(), second in random_graph()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let h = Harness::new();
            for desired in [&first, &second, &first] {
                let report = h.apply(desired).await;
                prop_assert!(report.succeeded(), "{:?}", report);
                let state = h.store.load_state(&operator()).await.unwrap();
                let providers = crate::fake::providers(&h.fake);
                let again = plan(desired, &state, &providers, &Default::default()).unwrap();
                prop_assert!(again.is_empty(), "{:?}", again.summary());
                let world: BTreeSet<String> = h.fake.objects().keys().cloned().collect();
                let wanted: BTreeSet<String> = desired.resources.keys().map(|a| format!("uni/{a}")).collect();
                prop_assert_eq!(world, wanted);
                let calls = h.fake.calls();
                let noop = h.apply(desired).await;
                prop_assert_eq!((noop.provider_calls, h.fake.calls()), (0, calls));
            }
            Ok(())
        })?;
    }
}
