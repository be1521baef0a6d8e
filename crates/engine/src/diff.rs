//! Field-level differences between two JSON values, for plans and drift reports.
//!
//! Objects are compared field by field, recursively; arrays, scalars and secrets as wholes.
//! Values keep their secret wrappers here; [`FieldChange::masked`] is what gets shown.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::provider::ChangeKind;
use crate::value::{as_secret, mask};

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field, as `spec.s3.endpoint`; empty for the value as a whole.
    pub path: String,
    /// The value before, `None` when the field is new.
    pub before: Option<Value>,
    /// The value after, `None` when the field goes away.
    pub after: Option<Value>,
    /// Whether the change is made in place or forces a replacement.
    pub kind: ChangeKind,
}

impl FieldChange {
    /// The same change, carried out as `kind`.
    pub fn with_kind(mut self, kind: ChangeKind) -> Self {
        self.kind = kind;
        self
    }

    /// The change with every secret masked: what plans, events and logs show.
    pub fn masked(&self) -> FieldChange {
        FieldChange {
            path: self.path.clone(),
            before: self.before.as_ref().map(mask),
            after: self.after.as_ref().map(mask),
            kind: self.kind,
        }
    }
}

/// Every field in which `before` and `after` differ, in a stable order, all marked in place.
pub fn changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut found = Vec::new();
    collect(String::new(), Some(before), Some(after), &mut found);
    found
}

fn collect(
    path: String,
    before: Option<&Value>,
    after: Option<&Value>,
    found: &mut Vec<FieldChange>,
) {
    if before == after {
        return;
    }
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a)))
            if as_secret(before.unwrap_or(&Value::Null)).is_none()
                && as_secret(after.unwrap_or(&Value::Null)).is_none() =>
        {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect(sub, b.get(key), a.get(key), found);
            }
        }
        _ => found.push(FieldChange {
            path,
            before: before.cloned(),
            after: after.cloned(),
            kind: ChangeKind::InPlace,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::secret;
    use serde_json::json;

    #[test]
    fn nested_fields_are_compared_one_by_one() {
        let before = json!({"cores": 2, "spec": {"fqdn": "a.example", "s3": {"region": "x"}}, "tags": ["a"], "gone": 1});
        let after = json!({"cores": 4, "spec": {"fqdn": "a.example", "s3": {"region": "y"}}, "tags": ["a", "b"], "new": true});
        let paths: Vec<(String, Option<Value>, Option<Value>)> = changes(&before, &after)
            .into_iter()
            .map(|c| (c.path, c.before, c.after))
            .collect();
        assert_eq!(
            paths,
            [
                ("cores".into(), Some(json!(2)), Some(json!(4))),
                ("gone".into(), Some(json!(1)), None),
                ("new".into(), None, Some(json!(true))),
                ("spec.s3.region".into(), Some(json!("x")), Some(json!("y"))),
                ("tags".into(), Some(json!(["a"])), Some(json!(["a", "b"]))),
            ]
        );
    }

    #[test]
    fn secrets_are_compared_whole_and_shown_masked() {
        let found = changes(&json!({"p": secret("old")}), &json!({"p": secret("new")}));
        assert_eq!(found.len(), 1);
        let shown = serde_json::to_string(&found[0].masked()).unwrap();
        assert!(!shown.contains("old") && !shown.contains("new"), "{shown}");
        assert!(changes(&json!({"p": secret("same")}), &json!({"p": secret("same")})).is_empty());
    }
}
