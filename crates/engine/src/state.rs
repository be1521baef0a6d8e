//! What the platform has recorded about an operator's resources.

use std::collections::{BTreeMap, BTreeSet};

use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use fediversity_model::{Retention, ServiceKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;

/// One resource as last applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// The provider that made it.
    pub provider: String,
    /// The service it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceKind>,
    /// Whether deleting it deletes data.
    #[serde(default)]
    pub holds_data: bool,
    /// The retention choice in force when it was last applied; used when it is removed and the
    /// configuration no longer says (account deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// The inputs it was last applied with, references resolved (secrets wrapped).
    pub inputs: Value,
    /// Its outputs (secrets wrapped), an object of output name to value.
    pub outputs: Value,
    /// The resources it depended on when last applied: they are removed after it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<ResourceAddress>,
    /// Active, or kept after its service was switched off.
    #[serde(default)]
    pub status: RecordStatus,
    /// When it was last written.
    pub updated_at: Millis,
}

/// Whether a recorded resource is in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RecordStatus {
    /// Part of the operator's deployment.
    #[default]
    Active,
    /// Removed from the deployment with retention `keep`: access revoked, data kept. Turning
    /// the service on again reuses it.
    Retained {
        /// What was kept and how to find it.
        note: String,
    },
    /// Refresh did not find it: the next apply makes it again (the record keeps what the
    /// platform knew of it until then).
    Missing,
}

/// Everything recorded for one operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedState {
    /// Whose resources.
    pub operator: OperatorId,
    /// The records, by address.
    pub resources: BTreeMap<ResourceAddress, ResourceRecord>,
}

impl RecordedState {
    /// An operator with nothing recorded.
    pub fn empty(operator: OperatorId) -> Self {
        Self {
            operator,
            resources: BTreeMap::new(),
        }
    }
}
