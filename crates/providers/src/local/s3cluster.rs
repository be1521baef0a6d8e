//! Sandbox S3 clusters: the layout a dedicated Garage cluster would be given, written to
//! `s3clusters/<name>/garage-layout.json` (zone, capacity and the nodes), with a layout
//! version that goes up whenever the layout changes, as Garage's does. The admin endpoint and
//! token are accepted and not used: no Garage runs in the sandbox.

use std::path::PathBuf;

use fediversity_engine::provider::{Deletion, Observed, Outputs};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Kind, NAME, Place, observed_inputs, outputs, parse_inputs, taken_by};
use crate::files::{PUBLIC_FILE, read_json, remove_dir_all, write_json};
use crate::sensitive::SecretString;

/// The inputs of a Garage cluster layout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterInputs {
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted for the real provider's inputs; the sandbox runs no Garage"
    )]
    admin_endpoint: Option<String>,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted for the real provider's inputs; the sandbox runs no Garage"
    )]
    admin_token: Option<SecretString>,
    zone: String,
    capacity_bytes: u64,
    replication_factor: u32,
    nodes: Vec<String>,
}

/// `garage-layout.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layout {
    resource: String,
    version: u64,
    zone: String,
    capacity_bytes: u64,
    replication_factor: u32,
    nodes: Vec<String>,
}

fn layout_file(at: &Place) -> PathBuf {
    at.operator_dir()
        .join("s3clusters")
        .join(at.address.name())
        .join("garage-layout.json")
}

pub struct S3Cluster;

impl Kind for S3Cluster {
    fn replace_on(&self) -> &'static [&'static str] {
        &[]
    }

    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: ClusterInputs = parse_inputs(&at.address, NAME, inputs)?;
        let wanted = usize::try_from(inputs.replication_factor).unwrap_or(usize::MAX);
        if wanted == 0 || inputs.nodes.len() < wanted {
            return Err(ProviderError::permanent(format!(
                "{}: a replication factor of {} needs at least as many nodes, and there are {}",
                at.address,
                inputs.replication_factor,
                inputs.nodes.len()
            )));
        }
        let path = layout_file(at);
        let existing: Option<Layout> = read_json(&path)?;
        let version = match &existing {
            Some(existing) if existing.resource != at.resource() => {
                return Err(taken_by(at, "Garage layout", &existing.resource));
            }
            Some(existing)
                if existing.zone == inputs.zone
                    && existing.capacity_bytes == inputs.capacity_bytes
                    && existing.replication_factor == inputs.replication_factor
                    && existing.nodes == inputs.nodes =>
            {
                existing.version
            }
            Some(existing) => existing.version + 1,
            None => 1,
        };
        let layout = Layout {
            resource: at.resource(),
            version,
            zone: inputs.zone,
            capacity_bytes: inputs.capacity_bytes,
            replication_factor: inputs.replication_factor,
            nodes: inputs.nodes,
        };
        write_json(&path, &layout, PUBLIC_FILE)?;
        Ok(outputs([("layout_version", json!(layout.version))]))
    }

    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>> {
        let Some(layout) = read_json::<Layout>(&layout_file(at))? else {
            return Ok(None);
        };
        if layout.resource != at.resource() {
            return Ok(None);
        }
        let observed = Map::from_iter([
            ("zone".to_owned(), json!(layout.zone)),
            ("capacity_bytes".to_owned(), json!(layout.capacity_bytes)),
            (
                "replication_factor".to_owned(),
                json!(layout.replication_factor),
            ),
            ("nodes".to_owned(), json!(layout.nodes)),
        ]);
        Ok(Some(Observed {
            inputs: observed_inputs(inputs, observed),
            outputs: outputs([("layout_version", json!(layout.version))]),
        }))
    }

    fn delete(
        &self,
        at: &Place,
        _inputs: &Value,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let path = layout_file(at);
        match read_json::<Layout>(&path)? {
            Some(layout) if layout.resource != at.resource() => {}
            _ => {
                if let Some(dir) = path.parent() {
                    remove_dir_all(dir)?;
                }
            }
        }
        Ok(Deletion::Removed)
    }
}
