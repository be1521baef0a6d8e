//! The wire types of the external provider protocol, version [`PROTOCOL_VERSION`], as
//! documented in `docs/provider-protocol.md` and checked by `docs/provider-protocol.schema.json`.
//!
//! One JSON object per line: requests from the platform on the provider's standard input;
//! progress messages, results and errors from the provider on its standard output.

use std::collections::BTreeMap;

use fediversity_engine::provider::{Deletion, ErrorKind, Observed, Outputs};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The protocol's JSON Schema, as shipped in `docs/`.
pub const SCHEMA: &str = include_str!("../../../../docs/provider-protocol.schema.json");

/// The request methods.
pub mod method {
    /// The handshake.
    pub const HELLO: &str = "hello";
    /// Make a resource.
    pub const CREATE: &str = "create";
    /// Find a resource.
    pub const READ: &str = "read";
    /// Change a resource in place.
    pub const UPDATE: &str = "update";
    /// Remove a resource.
    pub const DELETE: &str = "delete";
    /// Compare inputs (optional).
    pub const DIFF: &str = "diff";
}

/// A request line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Unique within the process's life.
    pub id: u64,
    /// One of [`method`].
    pub method: String,
    /// The method's parameters.
    pub params: Value,
}

/// The parameters of `hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// The protocol version the platform speaks.
    pub protocol: u32,
    /// The platform's name and version, for the provider's logs.
    pub platform: String,
}

/// Inputs the conformance runner may use for one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The kind the inputs are for.
    pub kind: String,
    /// Inputs to create with.
    pub create: Value,
    /// Different inputs to update to (changing no field that forces a replacement).
    pub update: Value,
    /// Inputs the provider must refuse with a permanent error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<Value>,
}

/// The result of `hello`: who the provider is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The protocol version the provider speaks.
    pub protocol: u32,
    /// The provider name resources choose it by.
    pub name: String,
    /// The resource kinds it makes.
    pub kinds: Vec<String>,
    /// Per kind, the input fields whose change forces a replacement.
    #[serde(default)]
    pub replace_on: BTreeMap<String, Vec<String>>,
    /// How many requests may be outstanding at once.
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Whether it answers `diff`.
    #[serde(default)]
    pub diff: bool,
    /// Whether it honours `params.test`.
    #[serde(default)]
    pub test_hooks: bool,
    /// Inputs for the conformance runner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
}

fn one() -> usize {
    1
}

/// Asks a provider with test hooks to fail a call, changing nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestHook {
    /// The kind of error to answer with.
    pub fail: ErrorKind,
}

/// The parameters of `create`, `read`, `update` and `delete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceParams {
    /// The owning operator.
    pub operator: String,
    /// `kind.name`.
    pub address: String,
    /// The address's kind.
    pub kind: String,
    /// The address's name.
    pub name: String,
    /// Unique per intended change.
    pub idempotency_key: String,
    /// Inputs, references resolved and secrets revealed.
    pub inputs: Value,
    /// For `read` (may be null), `update` and `delete`: the recorded outputs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub recorded: Option<Option<Outputs>>,
    /// For `delete`: keep or delete the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<fediversity_model::Retention>,
    /// Only from the conformance runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestHook>,
}

/// The parameters of `diff`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// `kind.name`.
    pub address: String,
    /// The address's kind.
    pub kind: String,
    /// The address's name.
    pub name: String,
    /// The inputs as recorded.
    pub recorded: Value,
    /// The inputs as desired.
    pub desired: Value,
}

/// A progress report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// What is happening.
    pub message: String,
    /// How far along, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f32>,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireError {
    /// Whether trying again may help.
    pub kind: ErrorKind,
    /// For people; never a secret.
    pub message: String,
}

/// A line from the provider.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Progress on request `id`.
    Progress {
        /// The request.
        id: u64,
        /// The report.
        progress: Progress,
    },
    /// The result of request `id`.
    Result {
        /// The request.
        id: u64,
        /// The method-specific result.
        result: Value,
    },
    /// The failure of request `id`.
    Error {
        /// The request.
        id: u64,
        /// Why.
        error: WireError,
    },
}

impl Message {
    /// Parses one line from the provider; the error says what is wrong without quoting it.
    pub fn parse(line: &str) -> Result<Message, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            id: u64,
            #[serde(default)]
            progress: Option<Progress>,
            #[serde(default, deserialize_with = "present")]
            result: Option<Value>,
            #[serde(default)]
            error: Option<WireError>,
        }
        let raw: Raw = serde_json::from_str(line).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                "a line that is not JSON".to_owned()
            } else {
                format!(
                    "a message that is not a progress report, result or error ({})",
                    crate::inputs::without_values(&e.to_string())
                )
            }
        })?;
        match (raw.progress, raw.result, raw.error) {
            (Some(progress), None, None) => Ok(Message::Progress {
                id: raw.id,
                progress,
            }),
            (None, Some(result), None) => Ok(Message::Result { id: raw.id, result }),
            (None, None, Some(error)) => Ok(Message::Error { id: raw.id, error }),
            _ => {
                Err("a message with not exactly one of `progress`, `result` and `error`".to_owned())
            }
        }
    }

    /// The request the message is about.
    pub fn id(&self) -> u64 {
        match self {
            Message::Progress { id, .. }
            | Message::Result { id, .. }
            | Message::Error { id, .. } => *id,
        }
    }
}

/// Deserialises a field that is present as `Some`, even when it is `null` (a `read` result).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Deserialises a field that is present as `Some`, and a present `null` as `Some(None)`.
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Outputs>>, D::Error> {
    Option::<Outputs>::deserialize(deserializer).map(Some)
}

/// The result of `read`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadResult {
    /// The inputs as observed.
    pub inputs: Value,
    /// The outputs as they are.
    pub outputs: Outputs,
}

impl From<ReadResult> for Observed {
    fn from(read: ReadResult) -> Observed {
        Observed {
            inputs: read.inputs,
            outputs: read.outputs,
        }
    }
}

/// The result of `delete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "deletion", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeleteResult {
    /// It is gone.
    Removed,
    /// Its data was kept.
    Kept {
        /// What was kept, and where.
        note: String,
    },
}

impl From<DeleteResult> for Deletion {
    fn from(result: DeleteResult) -> Deletion {
        match result {
            DeleteResult::Removed => Deletion::Removed,
            DeleteResult::Kept { note } => Deletion::Kept { note },
        }
    }
}

/// One change in a `diff` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffChange {
    /// `a.b` for nested fields.
    pub path: String,
    /// In place, or forcing a replacement.
    pub kind: fediversity_engine::provider::ChangeKind,
}

/// The result of `diff`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffResult {
    /// The fields that differ.
    pub changes: Vec<DiffChange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_messages() {
        assert_eq!(
            Message::parse(r#"{"id":3,"result":null}"#).unwrap(),
            Message::Result {
                id: 3,
                result: Value::Null
            }
        );
        assert!(matches!(
            Message::parse(r#"{"id":3,"progress":{"message":"m","fraction":0.5}}"#).unwrap(),
            Message::Progress { id: 3, .. }
        ));
        assert!(matches!(
            Message::parse(r#"{"id":3,"error":{"kind":"transient","message":"m"}}"#).unwrap(),
            Message::Error { id: 3, .. }
        ));
    }

    #[test]
    fn bad_lines_are_described_without_being_quoted() {
        assert_eq!(
            Message::parse("hunter2").unwrap_err(),
            "a line that is not JSON"
        );
        for line in [
            r#"{"id":3}"#,
            r#"{"id":3,"result":1,"error":{"kind":"permanent","message":"m"}}"#,
        ] {
            assert!(
                Message::parse(line)
                    .unwrap_err()
                    .contains("not exactly one"),
                "{line}"
            );
        }
        let error = Message::parse(r#"{"id":"hunter2","result":1}"#).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
