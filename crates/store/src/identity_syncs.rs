//! The latest user sync of each operator's own directory (docs/identity.md): the snapshot the
//! next sync compares with, and the report the panel shows. Both are JSON the identity
//! provider's sync produced; the store keeps them as given and replaces them on each sync, so
//! a sync that was held back (and kept the previous snapshot) is recorded like any other.

use fediversity_engine::clock::Millis;
use fediversity_model::names::OperatorId;
use serde_json::Value;

use crate::Store;
use crate::error::Result;

/// An operator's latest identity sync.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentitySync {
    /// The directory snapshot to compare the next read with.
    pub snapshot: Value,
    /// What the sync found and did.
    pub report: Value,
    /// When it ran.
    pub synced_at: Millis,
}

impl Store {
    /// Records `operator`'s latest sync, replacing the one before.
    pub async fn record_identity_sync(
        &self,
        operator: &OperatorId,
        snapshot: &Value,
        report: &Value,
        now: Millis,
    ) -> Result<()> {
        self.queries
            .record_identity_sync(operator.as_str(), snapshot, report, now)
            .await
    }

    /// `operator`'s latest sync; `None` before the first.
    pub async fn identity_sync(&self, operator: &OperatorId) -> Result<Option<IdentitySync>> {
        Ok(self
            .queries
            .identity_sync(operator.as_str())
            .await?
            .map(|row| IdentitySync {
                snapshot: row.snapshot,
                report: row.report,
                synced_at: row.synced_at,
            }))
    }
}
