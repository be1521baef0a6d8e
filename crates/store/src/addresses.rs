//! Static addresses handed out from the infrastructure's pools: which resource holds which
//! address of which pool. The table's two unique keys are the guarantees — an address belongs
//! to at most one resource, a resource holds at most one address per pool — so two processes
//! allocating at once cannot both win one address; choosing the candidate is the caller's
//! business (the store does not know how a pool's range is laid out).

use std::collections::BTreeSet;
use std::net::IpAddr;

use fediversity_engine::clock::Millis;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;

use crate::Store;
use crate::error::{Result, corrupt};

fn parse(text: String) -> Result<IpAddr> {
    text.parse().map_err(|e| corrupt("address", e))
}

impl Store {
    /// The address `resource` of `operator` holds in `pool`, if any.
    pub async fn held_address(
        &self,
        pool: &str,
        operator: &OperatorId,
        resource: &ResourceAddress,
    ) -> Result<Option<IpAddr>> {
        self.queries
            .held_address(pool, operator.as_str(), &resource.to_string())
            .await?
            .map(parse)
            .transpose()
    }

    /// Every address held in `pool`, whoever holds it.
    pub async fn taken_addresses(&self, pool: &str) -> Result<BTreeSet<IpAddr>> {
        self.queries
            .taken_addresses(pool)
            .await?
            .into_iter()
            .map(parse)
            .collect()
    }

    /// Records `address` of `pool` as held by `resource` of `operator`. `false`, with nothing
    /// written, when the address is taken or the resource already holds an address in the
    /// pool: the caller looks again and chooses anew.
    pub async fn claim_address(
        &self,
        pool: &str,
        address: IpAddr,
        operator: &OperatorId,
        resource: &ResourceAddress,
        now: Millis,
    ) -> Result<bool> {
        self.queries
            .claim_address(
                pool,
                &address.to_string(),
                operator.as_str(),
                &resource.to_string(),
                now,
            )
            .await
    }

    /// Frees every address `resource` of `operator` holds, in every pool; returns how many.
    pub async fn release_addresses(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
    ) -> Result<u64> {
        self.queries
            .release_addresses(operator.as_str(), &resource.to_string())
            .await
    }
}
