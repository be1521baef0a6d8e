//! Sandbox S3 keys: `keys/<name>.json` (mode 0600) holds the key pair and its grants on the
//! operator's buckets. The secret half is a sensitive output; deleting the key removes the file.

use std::path::PathBuf;

use fediversity_engine::provider::{Deletion, Observed, Outputs};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Kind, NAME, Place, bucket, observed_inputs, parse_inputs, taken_by};
use crate::files::{PRIVATE_FILE, check_component, read_json, remove_file, write_json};
use crate::s3_inputs::{Grant, S3KeyInputs};
use crate::sensitive::SecretString;

/// `keys/<name>.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    resource: String,
    name: String,
    access_key_id: String,
    secret_access_key: String,
    grants: Vec<Grant>,
}

fn key_file(at: &Place, name: &str) -> PathBuf {
    at.operator_dir().join("keys").join(format!("{name}.json"))
}

fn key_outputs(record: &KeyRecord) -> Outputs {
    let mut outputs = super::outputs([
        ("access_key_id", json!(record.access_key_id)),
        ("secret_access_key", json!(record.secret_access_key)),
    ]);
    outputs.sensitive.insert("secret_access_key".to_owned());
    outputs
}

/// Refuses grants on buckets the operator does not have, as an S3 store would.
fn check_grants(at: &Place, grants: &[Grant]) -> ProviderResult<()> {
    if grants.is_empty() {
        return Ok(());
    }
    let buckets = bucket::all(at)?;
    for grant in grants {
        if !buckets.iter().any(|b| b.id == grant.bucket && !b.kept) {
            return Err(ProviderError::permanent(format!(
                "{}: a grant names the bucket id `{}`, which is no bucket of operator `{}` in the sandbox",
                at.address, grant.bucket, at.operator
            )));
        }
    }
    Ok(())
}

pub struct S3Key;

impl Kind for S3Key {
    fn replace_on(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: S3KeyInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_component("S3 key name", &inputs.name)?;
        check_grants(at, &inputs.grants)?;
        let path = key_file(at, &inputs.name);
        let existing: Option<KeyRecord> = read_json(&path)?;
        let (access_key_id, secret_access_key) = match existing {
            Some(existing) if existing.resource != at.resource() => {
                return Err(taken_by(
                    at,
                    &format!("S3 key `{}`", inputs.name),
                    &existing.resource,
                ));
            }
            Some(existing) => (
                existing.access_key_id,
                SecretString::new(existing.secret_access_key),
            ),
            None => (
                format!("GK{}", crate::secret::random_hex(24)?),
                SecretString::new(crate::secret::random_hex(64)?),
            ),
        };
        let record = KeyRecord {
            resource: at.resource(),
            name: inputs.name,
            access_key_id,
            secret_access_key: secret_access_key.into_exposed(),
            grants: inputs.grants,
        };
        write_json(&path, &record, PRIVATE_FILE)?;
        Ok(key_outputs(&record))
    }

    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>> {
        let parsed: S3KeyInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_component("S3 key name", &parsed.name)?;
        let Some(record) = read_json::<KeyRecord>(&key_file(at, &parsed.name))? else {
            return Ok(None);
        };
        if record.resource != at.resource() {
            return Ok(None);
        }
        let observed = Map::from_iter([
            ("name".to_owned(), json!(record.name)),
            ("grants".to_owned(), json!(record.grants)),
        ]);
        Ok(Some(Observed {
            inputs: observed_inputs(inputs, observed),
            outputs: key_outputs(&record),
        }))
    }

    fn delete(
        &self,
        at: &Place,
        inputs: &Value,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let inputs: S3KeyInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_component("S3 key name", &inputs.name)?;
        let path = key_file(at, &inputs.name);
        match read_json::<KeyRecord>(&path)? {
            Some(record) if record.resource != at.resource() => {}
            _ => remove_file(&path)?,
        }
        Ok(Deletion::Removed)
    }
}
