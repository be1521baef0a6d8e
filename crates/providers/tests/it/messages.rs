//! The protocol's checked-in example messages (`examples/providers/messages/<def>[.variant].json`)
//! against its JSON Schema (`docs/provider-protocol.schema.json`): each matches the whole
//! schema and the definition its name gives, and parses into the Rust wire types.

use std::collections::BTreeSet;
use std::fs;

use fediversity_engine::provider::Outputs;
use fediversity_providers::external::protocol::{
    DeleteResult, DiffParams, DiffResult, Hello, HelloParams, Message, PROTOCOL_VERSION,
    ReadResult, Request, ResourceParams, SCHEMA,
};
use serde_json::{Value, json};

use crate::workspace;

fn schema() -> Value {
    serde_json::from_str(SCHEMA).unwrap()
}

/// A validator for `$defs/<def>` of the protocol schema.
fn validator_for_def(def: &str) -> jsonschema::Validator {
    let mut sub = schema();
    sub["$ref"] = json!(format!("#/$defs/{def}"));
    if let Some(map) = sub.as_object_mut() {
        map.remove("oneOf");
    }
    jsonschema::validator_for(&sub).unwrap()
}

fn problems(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path().as_str()))
        .collect()
}

/// Parses `value` with the Rust type the definition `def` corresponds to.
fn parse_as(def: &str, value: &Value) -> Result<(), String> {
    let text = value.to_string();
    let result = |message: Result<Message, String>| match message? {
        Message::Result { result, .. } => Ok(result),
        other => Err(format!("not a result: {other:?}")),
    };
    let e = |e: serde_json::Error| e.to_string();
    match def {
        "request_hello" | "request_create" | "request_read" | "request_update"
        | "request_delete" | "request_diff" => {
            let request: Request = serde_json::from_value(value.clone()).map_err(e)?;
            match def {
                "request_hello" => serde_json::from_value::<HelloParams>(request.params)
                    .map(drop)
                    .map_err(e),
                "request_diff" => serde_json::from_value::<DiffParams>(request.params)
                    .map(drop)
                    .map_err(e),
                _ => serde_json::from_value::<ResourceParams>(request.params)
                    .map(drop)
                    .map_err(e),
            }
        }
        "progress" | "response_error" => Message::parse(&text).map(drop),
        "response_hello" => serde_json::from_value::<Hello>(result(Message::parse(&text))?)
            .map(drop)
            .map_err(e),
        "response_outputs" => serde_json::from_value::<Outputs>(result(Message::parse(&text))?)
            .map(drop)
            .map_err(e),
        "response_read" => {
            serde_json::from_value::<Option<ReadResult>>(result(Message::parse(&text))?)
                .map(drop)
                .map_err(e)
        }
        "response_delete" => serde_json::from_value::<DeleteResult>(result(Message::parse(&text))?)
            .map(drop)
            .map_err(e),
        "response_diff" => serde_json::from_value::<DiffResult>(result(Message::parse(&text))?)
            .map(drop)
            .map_err(e),
        other => Err(format!("no Rust type for the definition `{other}`")),
    }
}

#[test]
fn every_example_message_matches_the_schema_and_the_wire_types() {
    let whole = jsonschema::validator_for(&schema()).unwrap();
    let dir = workspace().join("examples/providers/messages");
    let mut covered = BTreeSet::new();
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".json"),
            "{name}: only JSON examples belong here"
        );
        let def = name
            .trim_end_matches(".json")
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        let value: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            problems(&whole, &value),
            Vec::<String>::new(),
            "{name} against the whole schema"
        );
        assert_eq!(
            problems(&validator_for_def(&def), &value),
            Vec::<String>::new(),
            "{name} against $defs/{def}"
        );
        parse_as(&def, &value).unwrap_or_else(|e| panic!("{name} does not parse as {def}: {e}"));
        covered.insert(def);
        count += 1;
    }
    assert!(count >= 20, "{count} examples");
    // Every message a provider or the platform may send has an example.
    let defs = schema()["$defs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    for def in defs.iter().filter(|d| {
        (d.starts_with("request_") || d.starts_with("response_") || *d == "progress")
            && *d != "response_result"
    }) {
        assert!(covered.contains(def), "no example message for $defs/{def}");
    }
}

#[test]
fn the_schema_is_of_this_protocol_version_and_refuses_what_it_should() {
    let schema = schema();
    assert_eq!(
        schema["$defs"]["protocol_version"]["const"],
        json!(PROTOCOL_VERSION)
    );
    assert!(
        schema["title"]
            .as_str()
            .unwrap()
            .contains(&format!("version {PROTOCOL_VERSION}"))
    );
    let whole = jsonschema::validator_for(&schema).unwrap();
    for bad in [
        json!({"id": 1, "method": "hello", "params": {"protocol": 2, "platform": "x"}}),
        json!({"id": 1, "result": 1, "error": {"kind": "permanent", "message": "m"}}),
        json!({"id": 1, "error": {"kind": "sometimes", "message": "m"}}),
        json!({"id": 1, "progress": {"message": "m", "fraction": 2}}),
        json!({"id": -1, "result": null}),
        json!({"id": 1, "method": "create", "params": {"operator": "x", "address": "vm.a"}}),
    ] {
        assert!(!whole.is_valid(&bad), "{bad}");
    }
}
