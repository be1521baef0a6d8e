//! Random and mutated documents go through the parsers and validators without a panic, and
//! every refusal carries at least one problem with a message.

use fediversity_model::{Infra, parse_infra, parse_operator_config};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, up to a few levels deep, with keys that are sometimes the real field names
/// so that the validator gets past the first level.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("version".to_owned()),
        Just("services".to_owned()),
        Just("mastodon".to_owned()),
        Just("domain".to_owned()),
        Just("identity".to_owned()),
        Just("ldap".to_owned()),
        Just("maintenance".to_owned()),
        Just("windows".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_operator() -> Value {
    json!({
        "version": 1,
        "operator": {"id": "uni-example", "name": "Example University"},
        "domain": "example.org",
        "services": {
            "mastodon": {"enable": true, "size": "small", "subdomain": "social"},
            "peertube": {"enable": false, "size": "large", "retention": "delete"}
        },
        "admin": {"username": "admin", "email": "admin@example.org"},
        "identity": {"oidc": {"issuer": "https://id.example.org", "client_id": "fedi", "client_secret": {"secret": "oidc"}}},
        "maintenance": {"time_zone": "Europe/Amsterdam", "windows": [{"days": ["sat", "sun"], "start": "02:00", "duration_minutes": 120}]}
    })
}

/// Replaces the value at a random path of `document` with `replacement`.
fn mutate(document: &mut Value, path: &[usize], replacement: Value) {
    let Some((step, rest)) = path.split_first() else {
        *document = replacement;
        return;
    };
    match document {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().unwrap();
            mutate(map.get_mut(&key).unwrap(), rest, replacement);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[step % len], rest, replacement);
        }
        other => *other = replacement,
    }
}

fn assert_refusal_is_explained(result: Result<impl Sized, fediversity_model::Problems>) {
    if let Err(problems) = result {
        assert!(!problems.as_slice().is_empty());
        assert!(problems.as_slice().iter().all(|p| !p.message.is_empty()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_json_never_panics(value in any_json()) {
        assert_refusal_is_explained(parse_operator_config(&value.to_string()));
    }

    #[test]
    fn random_text_never_panics(text in ".{0,200}") {
        assert_refusal_is_explained(parse_operator_config(&text));
        assert_refusal_is_explained(parse_infra(&text));
    }

    #[test]
    fn mutated_configurations_never_panic(path in prop::collection::vec(any::<usize>(), 0..5), replacement in any_json()) {
        let mut document = valid_operator();
        mutate(&mut document, &path, replacement);
        assert_refusal_is_explained(parse_operator_config(&document.to_string()));
    }

    #[test]
    fn mutated_infra_never_panics(path in prop::collection::vec(any::<usize>(), 0..5), replacement in any_json()) {
        let mut document = serde_json::to_value(Infra::example().unwrap()).unwrap();
        mutate(&mut document, &path, replacement);
        // TOML has no null: documents that cannot be written as TOML are not infra.toml files.
        if let Ok(text) = toml::to_string(&document) {
            assert_refusal_is_explained(parse_infra(&text));
        }
    }
}

#[test]
fn the_unmutated_documents_are_valid() {
    parse_operator_config(&valid_operator().to_string()).unwrap();
    parse_infra(&toml::to_string(&Infra::example().unwrap()).unwrap()).unwrap();
}
