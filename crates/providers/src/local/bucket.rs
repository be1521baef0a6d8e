//! Sandbox buckets: `buckets/<alias>/` is the bucket, its objects are the files in it, and
//! `buckets/<alias>/.bucket.json` holds its settings and its id. Retention `keep` leaves the
//! directory where it is.

use std::path::PathBuf;

use fediversity_engine::ProviderResult;
use fediversity_engine::provider::{Deletion, Observed, Outputs};
use fediversity_model::Retention;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Kind, NAME, Place, observed_inputs, outputs, parse_inputs, taken_by};
use crate::files::{PUBLIC_FILE, check_component, list_dir, read_json, remove_dir_all, write_json};
use crate::s3_inputs::BucketInputs;

/// `.bucket.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketRecord {
    /// The address of the resource that made this bucket.
    pub resource: String,
    /// The bucket's id, which keys are granted access to (as Garage's bucket ids).
    pub id: String,
    /// The bucket's name.
    pub alias: String,
    /// The most it may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// Whether its objects are served as a website.
    pub website: bool,
    /// The origins allowed to read it from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// Set when the bucket was removed from the deployment and its data kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

const SETTINGS: &str = ".bucket.json";

fn bucket_dir(at: &Place, alias: &str) -> PathBuf {
    at.operator_dir().join("buckets").join(alias)
}

/// The operator's buckets.
pub fn all(at: &Place) -> ProviderResult<Vec<BucketRecord>> {
    let mut found = Vec::new();
    for alias in list_dir(&at.operator_dir().join("buckets"))? {
        if check_component("bucket alias", &alias).is_err() {
            continue;
        }
        if let Some(record) = read_json(&bucket_dir(at, &alias).join(SETTINGS))? {
            found.push(record);
        }
    }
    Ok(found)
}

fn check_alias(alias: &str) -> ProviderResult<()> {
    let ok = (3..=63).contains(&alias.len())
        && alias
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !alias.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(fediversity_engine::ProviderError::permanent(format!(
            "`{alias}` is not a valid bucket name: use 3 to 63 characters from a-z, 0-9, '-' and '.'"
        )))
    }
}

fn bucket_outputs(record: &BucketRecord) -> Outputs {
    outputs([("id", json!(record.id)), ("alias", json!(record.alias))])
}

pub struct Bucket;

impl Kind for Bucket {
    fn replace_on(&self) -> &'static [&'static str] {
        &["alias"]
    }

    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: BucketInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_alias(&inputs.alias)?;
        let dir = bucket_dir(at, &inputs.alias);
        let existing: Option<BucketRecord> = read_json(&dir.join(SETTINGS))?;
        let id = match existing {
            Some(existing) if existing.resource != at.resource() => {
                return Err(taken_by(
                    at,
                    &format!("bucket `{}`", inputs.alias),
                    &existing.resource,
                ));
            }
            Some(existing) => existing.id,
            None => crate::secret::random_hex(64)?,
        };
        let record = BucketRecord {
            resource: at.resource(),
            id,
            alias: inputs.alias,
            quota_bytes: inputs.quota_bytes,
            website: inputs.website,
            cors_allowed_origins: inputs.cors_allowed_origins,
            kept: false,
        };
        write_json(&dir.join(SETTINGS), &record, PUBLIC_FILE)?;
        Ok(bucket_outputs(&record))
    }

    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>> {
        let parsed: BucketInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_alias(&parsed.alias)?;
        let Some(record) =
            read_json::<BucketRecord>(&bucket_dir(at, &parsed.alias).join(SETTINGS))?
        else {
            return Ok(None);
        };
        if record.resource != at.resource() {
            return Ok(None);
        }
        let observed = Map::from_iter([
            ("alias".to_owned(), json!(record.alias)),
            ("quota_bytes".to_owned(), json!(record.quota_bytes)),
            ("website".to_owned(), json!(record.website)),
            (
                "cors_allowed_origins".to_owned(),
                json!(record.cors_allowed_origins),
            ),
        ]);
        Ok(Some(Observed {
            inputs: observed_inputs(inputs, observed),
            outputs: bucket_outputs(&record),
        }))
    }

    fn delete(&self, at: &Place, inputs: &Value, retention: Retention) -> ProviderResult<Deletion> {
        let inputs: BucketInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_alias(&inputs.alias)?;
        let dir = bucket_dir(at, &inputs.alias);
        let Some(mut record) = read_json::<BucketRecord>(&dir.join(SETTINGS))? else {
            return Ok(Deletion::Removed);
        };
        if record.resource != at.resource() {
            return Ok(Deletion::Removed);
        }
        match retention {
            Retention::Keep => {
                record.kept = true;
                write_json(&dir.join(SETTINGS), &record, PUBLIC_FILE)?;
                Ok(Deletion::Kept {
                    note: format!(
                        "bucket `{}` is kept with its objects in {}",
                        record.alias,
                        dir.display()
                    ),
                })
            }
            Retention::Delete => {
                remove_dir_all(&dir)?;
                Ok(Deletion::Removed)
            }
        }
    }
}
