//! Values as the engine holds them: JSON in which secret values are wrapped, so that they can
//! be told apart wherever they travel.
//!
//! A provider declares which of its outputs are sensitive; the engine wraps each such value as
//! `{"$secret": "…"}`. Resolving a reference copies the wrapper into the dependent's inputs
//! (a string that embeds a secret becomes a secret as a whole), so secrecy follows the data.
//! Then:
//! - [`mask`] replaces every wrapper with `"(secret)"`: plans, events and logs only ever see
//!   masked values;
//! - [`reveal`] unwraps them for the provider call that needs the value;
//! - the store seals every wrapper's content with the platform key before writing it.

use std::collections::BTreeMap;

use fediversity_model::graph::Reference;
use serde_json::{Map, Value};

/// The key of the object that wraps a secret value.
pub const SECRET_KEY: &str = "$secret";

/// What a secret looks like wherever it is shown.
pub const MASK: &str = "(secret)";

/// Wraps `value` as a secret.
pub fn secret(value: impl Into<Value>) -> Value {
    Value::Object(Map::from_iter([(SECRET_KEY.to_owned(), value.into())]))
}

/// The wrapped value, if `value` is a secret wrapper.
pub fn as_secret(value: &Value) -> Option<&Value> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(SECRET_KEY),
        _ => None,
    }
}

/// Whether `value` contains a secret anywhere.
pub fn contains_secret(value: &Value) -> bool {
    as_secret(value).is_some()
        || match value {
            Value::Array(items) => items.iter().any(contains_secret),
            Value::Object(map) => map.values().any(contains_secret),
            _ => false,
        }
}

/// `value` with every secret replaced by [`MASK`]: safe to print, log, store in events.
pub fn mask(value: &Value) -> Value {
    map_secrets(value, &|_| Value::from(MASK))
}

/// `value` with every secret unwrapped: only for the provider call that needs the values.
pub fn reveal(value: &Value) -> Value {
    map_secrets(value, &|inner| inner.clone())
}

/// `value` with `f` applied to the content of every secret wrapper, and the wrapper removed.
fn map_secrets(value: &Value, f: &dyn Fn(&Value) -> Value) -> Value {
    if let Some(inner) = as_secret(value) {
        return f(inner);
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| map_secrets(v, f)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), map_secrets(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `text` with every secret value found in `value` replaced by [`MASK`]: for messages that
/// come from outside (a provider's error), which may quote what they were given.
pub fn scrub(text: &str, value: &Value) -> String {
    let mut secrets = Vec::new();
    collect_secret_texts(value, &mut secrets);
    // Longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), MASK)
        })
}

fn collect_secret_texts(value: &Value, found: &mut Vec<String>) {
    if let Some(inner) = as_secret(value) {
        match inner {
            Value::String(s) => found.push(s.clone()),
            other => found.push(other.to_string()),
        }
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_secret_texts(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_secret_texts(v, found)),
        _ => {}
    }
}

/// Replaces the content of every secret wrapper in `value` with `f(content)`, in place,
/// keeping the wrappers: how the store seals and unseals secrets without copying the rest.
pub fn transform_secrets<E>(
    value: &mut Value,
    f: &mut dyn FnMut(&Value) -> Result<Value, E>,
) -> Result<(), E> {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(SECRET_KEY) => {
            if let Some(inner) = map.get_mut(SECRET_KEY) {
                *inner = f(inner)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| transform_secrets(v, f)),
        Value::Object(map) => map.values_mut().try_for_each(|v| transform_secrets(v, f)),
        _ => Ok(()),
    }
}

/// The outputs of every resource, by reference, for resolving inputs.
pub type OutputsByReference<'a> = dyn Fn(&Reference) -> Resolution + 'a;

/// What a reference resolves to.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The output's value (secrets still wrapped).
    Known(Value),
    /// The referenced resource has not been made yet (or will be replaced): known after apply.
    Unknown,
    /// The referenced resource exists but has no such output: a configurator or provider bug.
    Missing,
}

/// Resolved inputs, or why they cannot be resolved yet.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// Every reference was resolved.
    Complete(Value),
    /// Some references are known only after apply; the value has them as `(known after apply)`.
    Partial(Value),
}

/// Shown in plans for values known only after apply.
pub const UNKNOWN: &str = "(known after apply)";

/// Replaces every `${kind.name.output}` in `inputs` with the output's value. A string that is
/// exactly one reference takes the output's value as it is (a number stays a number, a secret
/// stays wrapped); a reference inside a longer string is spliced in as text, and if it was a
/// secret the whole string becomes one.
pub fn resolve(inputs: &Value, lookup: &OutputsByReference<'_>) -> Result<Resolved, String> {
    let mut unknown = false;
    let value = resolve_value(inputs, lookup, &mut unknown)?;
    Ok(if unknown {
        Resolved::Partial(value)
    } else {
        Resolved::Complete(value)
    })
}

fn resolve_value(
    value: &Value,
    lookup: &OutputsByReference<'_>,
    unknown: &mut bool,
) -> Result<Value, String> {
    match value {
        Value::String(text) => resolve_string(text, lookup, unknown),
        Value::Array(items) => items
            .iter()
            .map(|v| resolve_value(v, lookup, unknown))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), resolve_value(v, lookup, unknown)?)))
            .collect::<Result<Map<_, _>, String>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn resolve_string(
    text: &str,
    lookup: &OutputsByReference<'_>,
    unknown: &mut bool,
) -> Result<Value, String> {
    let references: Vec<Reference> = Reference::all_in(&Value::from(text)).into_iter().collect();
    if references.is_empty() {
        return Ok(Value::from(text));
    }
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    for reference in &references {
        let placeholder = format!("${{{}.{}}}", reference.address, reference.output);
        let value = match lookup(reference) {
            Resolution::Known(value) => value,
            Resolution::Unknown => {
                *unknown = true;
                Value::from(UNKNOWN)
            }
            Resolution::Missing => {
                return Err(format!(
                    "{} has no output `{}`",
                    reference.address, reference.output
                ));
            }
        };
        values.insert(placeholder, value);
    }
    if let [(placeholder, value)] = values.iter().collect::<Vec<_>>().as_slice()
        && placeholder.as_str() == text
    {
        return Ok((*value).clone());
    }
    let mut spliced = text.to_owned();
    let mut is_secret = false;
    for (placeholder, value) in &values {
        let plain = as_secret(value).unwrap_or(value);
        is_secret |= as_secret(value).is_some();
        let text = match plain {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        spliced = spliced.replace(placeholder, &text);
    }
    Ok(if is_secret {
        secret(spliced)
    } else {
        Value::from(spliced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(reference: &Reference) -> Resolution {
        match (
            reference.address.to_string().as_str(),
            reference.output.as_str(),
        ) {
            ("vm.a", "ipv4") => Resolution::Known(json!("192.0.2.10")),
            ("vm.a", "cores") => Resolution::Known(json!(4)),
            ("secret.a", "value") => Resolution::Known(secret("hunter2")),
            ("vm.b", _) => Resolution::Unknown,
            _ => Resolution::Missing,
        }
    }

    #[test]
    fn whole_references_keep_their_type_and_secrecy() {
        let inputs = json!({"ip": "${vm.a.ipv4}", "cores": "${vm.a.cores}", "password": "${secret.a.value}"});
        assert_eq!(
            resolve(&inputs, &lookup),
            Ok(Resolved::Complete(
                json!({"ip": "192.0.2.10", "cores": 4, "password": {"$secret": "hunter2"}})
            ))
        );
    }

    #[test]
    fn spliced_secrets_make_the_whole_string_secret() {
        let inputs = json!([
            "http://${vm.a.ipv4}:3903",
            "user:${secret.a.value}@${vm.a.ipv4}"
        ]);
        assert_eq!(
            resolve(&inputs, &lookup),
            Ok(Resolved::Complete(json!([
                "http://192.0.2.10:3903",
                {"$secret": "user:hunter2@192.0.2.10"}
            ])))
        );
    }

    #[test]
    fn unknown_and_missing_outputs() {
        assert_eq!(
            resolve(&json!({"ip": "${vm.b.ipv4}"}), &lookup),
            Ok(Resolved::Partial(json!({"ip": UNKNOWN})))
        );
        assert_eq!(
            resolve(&json!("${vm.a.nothing}"), &lookup),
            Err("vm.a has no output `nothing`".to_owned())
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let inputs = json!({"password": secret("hunter2-long"), "name": "a"});
        assert_eq!(
            scrub("login with hunter2-long as a failed", &inputs),
            "login with (secret) as a failed"
        );
    }

    #[test]
    fn masking_and_revealing() {
        let value = json!({"a": secret("s1"), "b": [secret(json!({"x": 1})), "plain"]});
        assert!(contains_secret(&value));
        assert_eq!(mask(&value), json!({"a": MASK, "b": [MASK, "plain"]}));
        assert_eq!(reveal(&value), json!({"a": "s1", "b": [{"x": 1}, "plain"]}));
        assert!(!mask(&value).to_string().contains("s1"));
        let mut sealed = value.clone();
        transform_secrets(&mut sealed, &mut |v| {
            Ok::<_, ()>(json!(format!("sealed:{v}")))
        })
        .unwrap();
        assert_eq!(sealed["a"], secret("sealed:\"s1\""));
        assert_eq!(sealed["b"][1], "plain");
    }
}
