//! The latest user sync of each operator's own directory (docs/identity.md): the snapshot the
//! next sync compares with, and the report the panel shows. Both are JSON the identity
//! provider's sync produced; the store keeps them as given and replaces them on each sync, so
//! a sync that was held back (and kept the previous snapshot) is recorded like any other.

use std::time::Duration;

use fediversity_engine::clock::Millis;
use fediversity_model::names::OperatorId;
use serde_json::Value;

use crate::Store;
use crate::error::Result;
use crate::store::millis;

/// The lease key of `operator`'s sync: in the engine's lease table, apart from the operator's
/// deployment lease (an operator id has no `/`), so a sync never waits for a deployment.
fn lease_key(operator: &OperatorId) -> String {
    format!("identity-sync/{operator}")
}

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

    /// Takes the right to sync `operator` until `now + ttl`, for `holder` (a worker): `false`
    /// when another holder's claim has not lapsed. Several workers share the schedule, and a
    /// directory must not be read and compared twice at once (both would de-provision).
    pub async fn claim_identity_sync(
        &self,
        operator: &OperatorId,
        holder: &str,
        now: Millis,
        ttl: Duration,
    ) -> Result<bool> {
        let expires_at = now.saturating_add(millis(ttl));
        Ok(self
            .queries
            .try_lease(&lease_key(operator), holder, now, expires_at)
            .await?
            .is_some())
    }

    /// Gives up `holder`'s claim on `operator`'s sync (nothing when it holds none).
    pub async fn release_identity_sync(&self, operator: &OperatorId, holder: &str) -> Result<()> {
        self.queries
            .release_lease(&lease_key(operator), holder)
            .await
    }
}
