//! A whole sandbox deployment through the engine: the configurator's sandbox graph for every
//! service, applied with the sandbox's providers, applied again (nothing to do), refreshed
//! after a hand edit (drift), repaired, and removed with each service's retention choice. No
//! secret value reaches an event.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use fediversity_engine::clock::SystemClock;
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::{Engine, EngineOptions};
use fediversity_model::Retention;
use fediversity_model::graph::DesiredGraph;
use fediversity_providers::sandbox_providers;

use crate::{Events, apply, workspace};

fn sandbox_graph() -> DesiredGraph {
    let path = workspace().join("crates/configurator/tests/golden/all-services.sandbox.graph.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Every secret file the sandbox wrote, by path: their values must not show anywhere else.
fn secret_values(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for vm in fs::read_dir(root.join("example-org/vms")).unwrap() {
        let secrets = vm.unwrap().path().join("secrets");
        for file in fs::read_dir(&secrets).into_iter().flatten() {
            let path = file.unwrap().path();
            if path.display().to_string().ends_with("public-key") {
                continue; // Delivered beside the secrets, but public.
            }
            found.insert(
                path.display().to_string(),
                fs::read_to_string(&path).unwrap(),
            );
        }
    }
    found
}

#[tokio::test]
async fn a_whole_sandbox_deployment_applies_refreshes_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The identity provider's bind password, stored by the operator.
    let stored = root.join("example-org/operator-secrets/ldap-bind");
    fs::create_dir_all(stored.parent().unwrap()).unwrap();
    fs::write(&stored, "operator-stored-poison\n").unwrap();

    let graph = sandbox_graph();
    let engine = Engine::new(
        sandbox_providers(root),
        Arc::new(MemoryStore::default()),
        Arc::new(SystemClock),
        EngineOptions::default(),
    );
    let events = Arc::new(Events::default());
    let report = engine
        .apply(
            &graph,
            events.clone(),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.done.len(), graph.resources.len());

    let vm = root.join("example-org/vms/fedi-example-org-mastodon");
    let record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(vm.join("vm.json")).unwrap()).unwrap();
    let zone = fs::read_to_string(root.join("example-org/dns/example.org.zone")).unwrap();
    assert!(
        zone.contains(&format!(
            "social.example.org. 300 IN A {}\n",
            record["ipv4"].as_str().unwrap()
        )),
        "the record points at the VM: {zone}"
    );
    let spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(vm.join("host-spec.json")).unwrap()).unwrap();
    assert!(
        spec["s3"]["access_key_id"]
            .as_str()
            .unwrap()
            .starts_with("GK"),
        "references are resolved"
    );
    assert_eq!(
        fs::read_to_string(vm.join("secrets/identity-bind-password")).unwrap(),
        "operator-stored-poison"
    );
    assert!(
        root.join("example-org/buckets/fedi-example-org-mastodon-media/.bucket.json")
            .exists()
    );
    assert!(
        root.join("example-org/keys/fedi-example-org-mastodon.json")
            .exists()
    );

    // No secret value in any event.
    let secrets = secret_values(root);
    assert!(secrets.len() > 10, "{secrets:?}");
    let shown = events.json();
    for (path, value) in &secrets {
        assert!(
            !shown.contains(value.as_str()),
            "the secret in {path} shows in an event"
        );
    }

    // Applying again does nothing.
    let again = apply(&engine, &graph).await;
    assert!(again.done.is_empty(), "{again:#?}");
    assert_eq!(again.provider_calls, 0);

    // A hand edit is drift, reported by refresh (without secrets) and repaired by apply.
    let refreshed = engine.refresh(&graph.operator).await.unwrap();
    assert!(
        refreshed.drifted.is_empty() && refreshed.missing.is_empty() && refreshed.errors.is_empty(),
        "{refreshed:#?}"
    );
    let edited = fs::read_to_string(vm.join("vm.json"))
        .unwrap()
        .replace("\"cores\": 4", "\"cores\": 1");
    fs::write(vm.join("vm.json"), edited).unwrap();
    fs::write(vm.join("secrets/admin-password"), "tampered").unwrap();
    let drift = engine.refresh(&graph.operator).await.unwrap();
    let drifted: Vec<String> = drift.drifted.keys().map(ToString::to_string).collect();
    assert_eq!(drifted, ["vm.mastodon", "nixos.mastodon"], "{drift:#?}");
    let drift_text = serde_json::to_string(&drift).unwrap();
    for value in secrets.values() {
        assert!(
            !drift_text.contains(value.as_str()),
            "a secret shows in the drift report"
        );
    }
    let repaired = apply(&engine, &graph).await;
    assert!(repaired.succeeded(), "{repaired:#?}");
    assert!(
        fs::read_to_string(vm.join("vm.json"))
            .unwrap()
            .contains("\"cores\": 4")
    );
    assert_eq!(
        fs::read_to_string(vm.join("secrets/admin-password")).unwrap(),
        secrets[&vm.join("secrets/admin-password").display().to_string()]
    );

    // Everything removed: mastodon and peertube keep their data (and the secrets that data
    // needs), pixelfed's is deleted.
    let nothing = DesiredGraph {
        resources: BTreeMap::new(),
        ..graph.clone()
    };
    let removed = apply(&engine, &nothing).await;
    assert!(removed.succeeded(), "{removed:#?}");
    let kept: Vec<String> = removed.kept.keys().map(ToString::to_string).collect();
    let expected: Vec<String> = graph
        .resources
        .iter()
        .filter(|(_, r)| {
            r.holds_data
                && r.service
                    .is_some_and(|s| graph.retention.get(&s) == Some(&Retention::Keep))
        })
        .map(|(a, _)| a.to_string())
        .collect();
    assert_eq!(kept, expected);
    for data in [
        "vm.mastodon",
        "vm.peertube",
        "bucket.mastodon-media",
        "secret.mastodon-vapid",
    ] {
        assert!(kept.iter().any(|k| k == data), "{data} is kept: {kept:?}");
    }
    assert!(!kept.iter().any(|k| k.contains("pixelfed")), "{kept:?}");
    assert!(vm.join("disk").is_dir());
    assert!(!vm.join("host-spec.json").exists());
    assert!(
        root.join("example-org/buckets/fedi-example-org-mastodon-media")
            .is_dir()
    );
    assert!(
        !root
            .join("example-org/vms/fedi-example-org-pixelfed")
            .exists()
    );
    assert!(
        !root
            .join("example-org/buckets/fedi-example-org-pixelfed-media")
            .exists()
    );
    assert!(!root.join("example-org/dns/example.org.zone").exists());
    assert!(
        fs::read_dir(root.join("example-org/keys"))
            .unwrap()
            .next()
            .is_none()
    );

    // Turned on again, the kept VM, bucket and keys are used again: the kept data stays
    // readable.
    let back = apply(&engine, &graph).await;
    assert!(back.succeeded(), "{back:#?}");
    let key_base = vm.join("secrets/secret-key-base");
    assert_eq!(
        fs::read_to_string(&key_base).unwrap(),
        secrets[&key_base.display().to_string()],
        "the kept secret is used again"
    );
    let again: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(vm.join("vm.json")).unwrap()).unwrap();
    assert_eq!(
        again["ipv4"], record["ipv4"],
        "the kept VM keeps its address"
    );
    assert_eq!(again["state"], "running");
}
