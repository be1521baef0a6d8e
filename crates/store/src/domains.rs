//! Which operator deploys under which domain. The configurator names every DNS record, host
//! and certificate under the operator's domain, and the `dns` provider only checks a record
//! against that same domain: without a claim here, any operator could write a configuration
//! naming another's domain and take over its names.

use fediversity_engine::clock::Millis;
use fediversity_model::names::{Domain, OperatorId};

use crate::Store;
use crate::error::{Error, Result};

impl Store {
    /// Records `domain` as `operator`'s (replacing its earlier claim, when it moves). Fails
    /// with [`Error::DomainTaken`] when another operator holds the same name, a name above it
    /// or a name under it; the message does not say which operator.
    pub async fn claim_domain(
        &self,
        operator: &OperatorId,
        domain: &Domain,
        now: Millis,
    ) -> Result<()> {
        // A `Domain` is already lower case, without a trailing dot: one spelling per name.
        let name = domain.as_str();
        if self
            .queries
            .claim_domain(operator.as_str(), name, now)
            .await?
        {
            Ok(())
        } else {
            Err(Error::DomainTaken(name.to_owned()))
        }
    }

    /// Forgets `operator`'s domain (after its account was deleted).
    pub async fn release_domain(&self, operator: &OperatorId) -> Result<()> {
        self.queries.release_domain(operator.as_str()).await
    }
}
