//! Typed inputs from the JSON the engine hands over, with errors that say what is wrong and
//! never quote a value (any input may be a secret).

use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::graph::ResourceAddress;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// `inputs` as `T`, or a permanent error saying what is wrong without quoting any value (an
/// input may be a secret).
pub(crate) fn parse_inputs<T: DeserializeOwned>(
    address: &ResourceAddress,
    provider: &str,
    inputs: &Value,
) -> ProviderResult<T> {
    serde_json::from_value(inputs.clone()).map_err(|e| {
        ProviderError::permanent(format!(
            "the inputs of {address} are not what the `{provider}` provider expects: {}",
            without_values(&e.to_string())
        ))
    })
}

/// The observed fields that the inputs have: a field the inputs leave out is not compared,
/// and so is not reported as drift.
pub(crate) fn observed_inputs(inputs: &Value, observed: Map<String, Value>) -> Value {
    let wanted = inputs.as_object();
    Value::Object(
        observed
            .into_iter()
            .filter(|(key, _)| wanted.is_some_and(|w| w.contains_key(key)))
            .collect(),
    )
}

/// A serde error message with any quoted value left out: "invalid type: string \"x\",
/// expected u32" becomes "a value of the wrong type or form, expected u32".
pub(crate) fn without_values(message: &str) -> String {
    if message.starts_with("unknown variant") {
        return match message.find(", expected") {
            Some(at) => format!("an unknown choice{}", &message[at..]),
            None => "an unknown choice".to_owned(),
        };
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        match message.find(", expected") {
            Some(at) => format!("a value of the wrong type or form{}", &message[at..]),
            None => "a value of the wrong type or form".to_owned(),
        }
    } else {
        message.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_their_values() {
        assert_eq!(
            without_values("invalid type: string \"hunter2\", expected u32"),
            "a value of the wrong type or form, expected u32"
        );
        assert_eq!(
            without_values("missing field `cores`"),
            "missing field `cores`"
        );
        assert_eq!(
            without_values("unknown variant `hunter2`, expected `a` or `b`"),
            "an unknown choice, expected `a` or `b`"
        );
    }
}
