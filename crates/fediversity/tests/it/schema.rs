//! `fediversity schema`: the published JSON Schemas are JSON Schemas, and the examples use only
//! what the operator schema declares.

use serde_json::Value;

use crate::cli::{fediversity, files_in, workspace_root};

fn schema(document: &str) -> Value {
    let outcome = fediversity(["schema", document]).run();
    outcome.exits(0);
    assert!(outcome.stderr.is_empty(), "{outcome}");
    serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("the schema is not JSON ({e}):\n{outcome}"))
}

#[test]
fn schemas_are_json_schemas_with_definitions() {
    for document in ["operator", "infra"] {
        let schema = schema(document);
        assert!(
            schema["$schema"]
                .as_str()
                .is_some_and(|s| s.starts_with("https://json-schema.org/")),
            "{document}: $schema is {}",
            schema["$schema"]
        );
        assert!(
            schema["$defs"].as_object().is_some_and(|d| !d.is_empty()),
            "{document}: no $defs"
        );
        assert!(
            schema["properties"]
                .as_object()
                .is_some_and(|p| p.contains_key("version")),
            "{document}: no `version` property"
        );
    }
}

#[test]
fn examples_use_only_fields_the_operator_schema_declares() {
    let schema = schema("operator");
    let properties = schema["properties"].as_object().expect("properties");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for example in files_in(&workspace_root().join("examples/operators"), "json") {
        let text = std::fs::read_to_string(&example).expect("an example");
        let config: Value = serde_json::from_str(&text).expect("an example is JSON");
        let fields = config.as_object().expect("an example is an object");
        let undeclared: Vec<&String> = fields
            .keys()
            .filter(|k| !properties.contains_key(*k))
            .collect();
        assert!(
            undeclared.is_empty(),
            "{}: fields the schema does not declare: {undeclared:?}",
            example.display()
        );
        let missing: Vec<&&str> = required
            .iter()
            .filter(|k| !fields.contains_key(**k))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: required fields missing: {missing:?}",
            example.display()
        );
    }
}
