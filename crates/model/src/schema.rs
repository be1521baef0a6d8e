//! The published JSON Schemas (`fediversity schema operator|infra`).
//!
//! They are generated from the Rust types, so they cannot drift from what the code reads, and
//! [`crate::validate`] checks documents against these very schemas.

use schemars::JsonSchema;
use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde::Serialize;
use serde_json::Value;

use crate::infra::Infra;
use crate::operator::OperatorConfig;

/// The JSON Schema (draft 2020-12) of `T`, as documents are read. An optional field is one
/// that may be left out: `null` is not a second spelling of "absent", which keeps documents
/// uniform and lets a wrong value be reported against the field's one real type.
pub fn schema_for<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .with_transform(RecursiveTransform(forbid_null))
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The JSON Schema of the operator configuration.
pub fn operator_schema() -> Value {
    schema_for::<OperatorConfig>()
}

/// The JSON Schema of `infra.toml` (as the JSON value a TOML document reads to).
pub fn infra_schema() -> Value {
    schema_for::<Infra>()
}

/// Removes the `null` alternative schemars gives `Option` fields: `"type": ["string", "null"]`
/// becomes `"type": "string"`, and `"anyOf": [X, {"type": "null"}]` becomes `X`.
fn forbid_null(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            object.insert("type".into(), single);
        }
    }
    let null = serde_json::json!({"type": "null"});
    let other = match object.get("anyOf") {
        Some(Value::Array(alternatives))
            if alternatives.len() == 2 && alternatives.contains(&null) =>
        {
            alternatives.iter().find(|a| **a != null).cloned()
        }
        _ => None,
    };
    if let Some(Value::Object(other)) = other {
        object.remove("anyOf");
        for (key, value) in other {
            object.entry(key).or_insert(value);
        }
    }
}

/// `value` as TOML in which every key is preceded by its description from `T`'s JSON Schema,
/// so that an example generated from the types documents itself and cannot drift from them.
pub fn annotated_toml<T: Serialize + JsonSchema>(
    value: &T,
    header: &str,
) -> Result<String, String> {
    let table = toml::Table::try_from(value).map_err(|e| e.to_string())?;
    let root = schema_for::<T>();
    let mut out = String::new();
    comment(&mut out, header);
    out.push('\n');
    write_table(&mut out, &mut Vec::new(), &table, &root, &root);
    Ok(out)
}

fn write_table(
    out: &mut String,
    path: &mut Vec<String>,
    table: &toml::Table,
    schema: &Value,
    root: &Value,
) {
    let schema = resolve(root, schema);
    let (tables, values): (Vec<_>, Vec<_>) = table.iter().partition(|(_, v)| v.is_table());
    if !path.is_empty() && !values.is_empty() {
        out.push_str(&format!("[{}]\n", path.join(".")));
    }
    for (key, value) in values {
        comment(out, description(root, property(schema, key)));
        out.push_str(&format!("{} = {value}\n", toml_key(key)));
    }
    for (key, value) in tables {
        let Some(sub_table) = value.as_table() else {
            continue;
        };
        let sub_schema = resolve(root, property(schema, key));
        out.push('\n');
        comment(out, description(root, property(schema, key)));
        path.push(toml_key(key));
        let is_map = sub_schema.get("properties").is_none();
        if is_map {
            let entry_schema = sub_schema
                .get("additionalProperties")
                .unwrap_or(&Value::Null);
            for (index, (entry, entry_value)) in sub_table.iter().enumerate() {
                if index > 0 {
                    out.push('\n');
                }
                path.push(toml_key(entry));
                let single = toml::Table::from_iter([(entry.clone(), entry_value.clone())]);
                let entry_table = single
                    .get(entry)
                    .and_then(toml::Value::as_table)
                    .cloned()
                    .unwrap_or_default();
                write_table(out, path, &entry_table, entry_schema, root);
                path.pop();
            }
        } else {
            write_table(out, path, sub_table, sub_schema, root);
        }
        path.pop();
    }
}

fn resolve<'s>(root: &'s Value, schema: &'s Value) -> &'s Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name))
        .unwrap_or(schema)
}

fn property<'s>(schema: &'s Value, key: &str) -> &'s Value {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .unwrap_or(&Value::Null)
}

fn description<'s>(root: &'s Value, schema: &'s Value) -> &'s str {
    schema
        .get("description")
        .or_else(|| resolve(root, schema).get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Writes `text` as `#` comment lines of at most 100 characters.
fn comment(out: &mut String, text: &str) {
    for paragraph in text.lines() {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() + word.len() + 1 > 100 && line.len() > 1 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_do_not_accept_null() {
        let schema = operator_schema().to_string();
        assert!(!schema.contains("null"), "{schema}");
        assert!(
            schema.contains("\"$ref\":\"#/$defs/IdentityProvider\""),
            "{schema}"
        );
    }
}
