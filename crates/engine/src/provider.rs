//! The one trait every provider implements, built in or external.
//!
//! Inputs and outputs are JSON at this boundary; each provider parses them into its own typed
//! structs. Inputs arrive with every reference resolved and every secret revealed (the provider
//! needs the values); outputs the provider names in [`Outputs::sensitive`] are wrapped as
//! secrets by the engine before anything else sees them.
//!
//! A provider must be able to find what it made from the resource's stable identity alone
//! ([`CallContext::operator`] and [`CallContext::address`]), because the platform may crash
//! after the provider made something and before the answer was written down: that is what
//! [`Provider::read`] with no record is for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use fediversity_model::Retention;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diff::{self, FieldChange};
use crate::events::ProgressReporter;

/// Who is asking, for which resource; the same for every call about one resource.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The operator that owns the resource. Providers tag or name what they make with it.
    pub operator: OperatorId,
    /// The resource's address within the operator's graph.
    pub address: ResourceAddress,
    /// Unique per intended change: a provider whose API takes an idempotency key passes it, so
    /// a retried call never acts twice.
    pub idempotency_key: String,
    /// Where to report progress on long work (`Progress` events).
    pub progress: ProgressReporter,
}

/// What a provider reports about one resource. Its `Debug` masks the sensitive values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    /// Output values by name (`ipv4`, `id`, `access_key_id`, …).
    pub values: BTreeMap<String, Value>,
    /// The names of the outputs that are secret (`secret_access_key`, `private_key`, …).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive: BTreeSet<String>,
}

impl fmt::Debug for Outputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&String, Value> = self
            .values
            .iter()
            .map(|(name, value)| {
                let shown = if self.sensitive.contains(name) {
                    Value::from(crate::value::MASK)
                } else {
                    value.clone()
                };
                (name, shown)
            })
            .collect();
        f.debug_struct("Outputs")
            .field("values", &shown)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

/// A resource as the provider finds it in the real world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// The inputs as they are now, for the fields the provider can observe (others may be left
    /// out, and are then not compared): refresh reports the differences as drift.
    pub inputs: Value,
    /// The outputs as they are now.
    pub outputs: Outputs,
}

/// What deleting did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deletion {
    /// It is gone.
    Removed,
    /// Retention said keep: access was revoked and the data kept; the note says where.
    Kept {
        /// For the report: what was kept and how to find it.
        note: String,
    },
}

/// How a change to one input field is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The provider updates the resource in place.
    InPlace,
    /// The resource must be replaced: deleted and made anew (or made anew first).
    Replace,
}

/// A provider failure, classified so the engine knows whether to try again.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ProviderError {
    /// Whether trying again may help.
    pub kind: ErrorKind,
    /// What went wrong, for the user: names the endpoint and the cause, never a secret.
    pub message: String,
}

/// Whether a failure is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A timeout, a dropped connection, a 5xx, a lock held for now: try again with backoff.
    Transient,
    /// Bad credentials, a refused request, an invalid input: trying again will not help.
    Permanent,
}

impl ProviderError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    /// A failure not worth retrying.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }
}

/// A result of a provider call.
pub type ProviderResult<T> = Result<T, ProviderError>;

/// Makes, finds, changes and removes resources of some kinds in one system.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The name resources use to choose this provider (`proxmox`, `garage`, `local`, …).
    fn name(&self) -> &str;

    /// How many calls to this provider may run at once.
    fn concurrency(&self) -> usize {
        8
    }

    /// The top-level input fields of `address`'s kind whose change forces a replacement; every
    /// other change is made in place. A provider with subtler rules overrides [`Provider::diff`].
    fn replace_on(&self, _address: &ResourceAddress) -> &[&str] {
        &[]
    }

    /// The field-level differences between the recorded and the desired inputs, each with how
    /// it is carried out. Pure: no I/O.
    fn diff(
        &self,
        address: &ResourceAddress,
        recorded: &Value,
        desired: &Value,
    ) -> Vec<FieldChange> {
        let replace_on = self.replace_on(address);
        diff::changes(recorded, desired)
            .into_iter()
            .map(|change| {
                let top = change.path.split(['.', '[']).next().unwrap_or_default();
                let kind = if replace_on.contains(&top) {
                    ChangeKind::Replace
                } else {
                    ChangeKind::InPlace
                };
                change.with_kind(kind)
            })
            .collect()
    }

    /// Makes the resource from `inputs`.
    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs>;

    /// Finds the resource as it is now: by its recorded outputs when there are some, else by
    /// its stable identity in `ctx`. `None` when it does not exist.
    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>>;

    /// Changes the resource in place from the `recorded` state to `inputs`.
    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs>;

    /// Removes the resource; for a resource holding data, `retention` says whether to keep the
    /// data. Deleting what does not exist succeeds.
    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion>;
}
