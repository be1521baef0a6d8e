//! Properties every graph keeps, over random valid configurations on each infrastructure.

use std::collections::{BTreeMap, BTreeSet};

use fediversity_configurator::configure;
use fediversity_model::graph::{DesiredGraph, Reference, ResourceKind};
use fediversity_model::{Infra, ServiceKind, parse_operator_config};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::infra;

/// Outputs that hold secret values: they may reach a host only as an uploaded file.
const SECRET_OUTPUTS: &[&str] = &["value", "private_key", "secret_access_key"];

fn service() -> impl Strategy<Value = Option<Value>> {
    let subdomain = prop_oneof![
        Just(None),
        Just(Some("social")),
        Just(Some("media")),
        Just(Some("a.b")),
    ];
    let config = (any::<bool>(), subdomain, prop_oneof!["small", "medium", "large"], any::<bool>())
        .prop_map(|(enable, subdomain, size, keep)| {
            let mut service = json!({"enable": enable, "size": size, "retention": if keep { "keep" } else { "delete" }});
            if let Some(subdomain) = subdomain {
                service["subdomain"] = json!(subdomain);
            }
            service
        });
    proptest::option::of(config)
}

fn operator_config() -> impl Strategy<Value = Value> {
    ("[a-z][a-z0-9-]{1,30}[a-z0-9]", "[a-z]{1,10}\\.(org|example|fedi\\.example\\.net)", service(), service(), service())
        .prop_map(|(id, domain, mastodon, pixelfed, peertube)| {
            let services: serde_json::Map<String, Value> = [("mastodon", mastodon), ("pixelfed", pixelfed), ("peertube", peertube)]
                .into_iter()
                .filter_map(|(name, s)| s.map(|s| (name.to_owned(), s)))
                .collect();
            json!({
                "version": 1,
                "operator": {"id": id, "name": "Random"},
                "domain": domain,
                "services": services,
                "admin": {"username": "admin", "email": "admin@example.org"},
                "maintenance": {"time_zone": "UTC", "windows": [{"days": ["sun"], "start": "00:00", "duration_minutes": 60}]},
            })
        })
}

/// Checks the invariants of `graph`, made for `config` on `infra`.
fn check(config: &fediversity_model::OperatorConfig, infra: &Infra, graph: &DesiredGraph) {
    assert!(
        graph.edge_problems().is_empty(),
        "{:?}",
        graph.edge_problems()
    );
    let id = config.operator.id.as_str();
    let names: BTreeSet<String> = graph.resources.keys().map(ToString::to_string).collect();
    for kind in ServiceKind::ALL {
        let enabled = config.services.get(kind).is_some_and(|s| s.enable);
        for needed in [
            format!("vm.{kind}"),
            format!("nixos.{kind}"),
            format!("s3key.{kind}"),
            format!("dns.{kind}-a"),
        ] {
            assert_eq!(
                names.contains(&needed),
                enabled,
                "{needed} with {kind} enabled = {enabled}"
            );
        }
        assert_eq!(
            graph.retention.contains_key(&kind),
            config.services.get(kind).is_some()
        );
    }
    let mut aliases = BTreeSet::new();
    let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut vcpus, mut vms, mut buckets) = (0, 0, 0);
    for (address, resource) in &graph.resources {
        match address.kind() {
            ResourceKind::Bucket => {
                buckets += 1;
                let alias = resource.inputs["alias"].as_str().unwrap().to_owned();
                assert!(
                    alias.len() <= 63 && alias.starts_with(&format!("fedi-{id}-")),
                    "{alias}"
                );
                assert!(aliases.insert(alias), "bucket alias used twice");
                assert!(resource.holds_data);
            }
            ResourceKind::S3key => {
                for grant in resource.inputs["grants"].as_array().unwrap() {
                    assert_eq!(grant["owner"], false, "keys never own their buckets");
                    for r in Reference::all_in(&grant["bucket"]) {
                        assert_eq!(
                            graph.resources[&r.address].service, resource.service,
                            "a key reaches only its own service's buckets"
                        );
                        grants
                            .entry(r.address.to_string())
                            .or_default()
                            .push(address.to_string());
                    }
                }
            }
            ResourceKind::Vm => {
                vms += 1;
                vcpus += resource.inputs["cores"].as_u64().unwrap();
            }
            ResourceKind::Nixos => {
                let spec_refs = Reference::all_in(&resource.inputs["spec"]);
                assert!(
                    spec_refs
                        .iter()
                        .all(|r| !SECRET_OUTPUTS.contains(&r.output.as_str())),
                    "{address}: a secret reached the host spec: {spec_refs:?}"
                );
                let service = resource.inputs["spec"]["service"].as_str().unwrap();
                let expected = resource.service.map_or("garage", ServiceKind::as_str);
                assert_eq!(
                    service, expected,
                    "{address}: an S3 host never runs a service, and the reverse"
                );
            }
            _ => {}
        }
    }
    assert!(
        grants.values().all(|keys| keys.len() == 1),
        "each bucket has exactly one key: {grants:?}"
    );
    assert_eq!(grants.len(), buckets as usize, "every bucket has a key");
    let limits = infra.limits.for_operator(&config.operator.id);
    assert!(vms <= limits.vms && vcpus <= limits.vcpus && buckets <= limits.buckets);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_graph_keeps_its_invariants(value in operator_config()) {
        // Clashing subdomains are refused by validation; those configurations prove nothing here.
        let parsed = parse_operator_config(&value.to_string());
        prop_assume!(parsed.is_ok());
        let config = parsed.unwrap();
        for infra_name in ["sandbox", "example", "infra-dedicated"] {
            let infra = infra(infra_name);
            match configure(&config, &infra) {
                Ok(graph) => check(&config, &infra, &graph),
                Err(problems) => {
                    // Only sizes the infrastructure lacks or limits may refuse a valid configuration.
                    for p in problems.as_slice() {
                        prop_assert!(p.path == "services" || p.path.ends_with(".size"), "{p}");
                    }
                }
            }
        }
    }
}
