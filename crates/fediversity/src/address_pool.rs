//! The `proxmox` provider's address pool, kept in the platform's store: the glue between the
//! providers crate's [`AddressPool`] trait (which must not know the store) and the store's
//! `addresses` table (which must not know how a pool's range is laid out).
//!
//! Allocation looks for the address the resource already holds (so a VM made again after a
//! crash gets its address back), else claims the lowest free one; the table's unique keys make
//! a claim that lost a race a no-op, and the loop then looks again.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use fediversity_engine::clock::Clock;
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use fediversity_providers::proxmox::pool::{AddressPool, AddressRange, exhausted, lowest_free};
use fediversity_store::Store;

/// How many times a claim that lost a race is tried again before giving up for now.
const CLAIM_ATTEMPTS: usize = 16;

/// Addresses allocated in the store, shared by every process using it.
#[derive(Clone)]
pub struct StoreAddressPool {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StoreAddressPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAddressPool").finish_non_exhaustive()
    }
}

impl StoreAddressPool {
    /// A pool in `store`, stamping allocations with `clock`'s time.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

fn unavailable(what: &str, error: &fediversity_store::Error) -> ProviderError {
    ProviderError::transient(format!("the platform's store could not {what}: {error}"))
}

#[async_trait]
impl AddressPool for StoreAddressPool {
    async fn allocate(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
        range: &AddressRange,
    ) -> ProviderResult<IpAddr> {
        for _ in 0..CLAIM_ATTEMPTS {
            let held = self
                .store
                .held_address(&range.pool, operator, resource)
                .await
                .map_err(|e| unavailable("read an address", &e))?;
            if let Some(address) = held {
                return Ok(address);
            }
            let taken = self
                .store
                .taken_addresses(&range.pool)
                .await
                .map_err(|e| unavailable("read a pool's addresses", &e))?;
            let candidate = lowest_free(range, &taken).ok_or_else(|| exhausted(range))?;
            let claimed = self
                .store
                .claim_address(&range.pool, candidate, operator, resource, self.clock.now())
                .await
                .map_err(|e| unavailable("claim an address", &e))?;
            if claimed {
                return Ok(candidate);
            }
        }
        Err(ProviderError::transient(format!(
            "could not claim an address in {} for {resource}: other allocations kept taking \
             the free ones",
            range.pool
        )))
    }

    async fn release(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
    ) -> ProviderResult<()> {
        self.store
            .release_addresses(operator, resource)
            .await
            .map(|_| ())
            .map_err(|e| unavailable("release addresses", &e))
    }
}

#[cfg(test)]
mod tests {
    use fediversity_engine::clock::SystemClock;
    use fediversity_store::SealingKey;

    use super::*;

    #[tokio::test]
    async fn concurrent_allocations_get_distinct_addresses_kept_across_calls() {
        let store = Store::connect("sqlite::memory:", SealingKey::generate().unwrap())
            .await
            .unwrap();
        let pool = StoreAddressPool::new(store, Arc::new(SystemClock));
        let operator = OperatorId::try_from("example-org").unwrap();
        let range = AddressRange {
            pool: "proxmox.ipv4".to_owned(),
            first: "192.0.2.10".parse().unwrap(),
            last: "192.0.2.20".parse().unwrap(),
        };
        let allocations = (0..6).map(|i| {
            let (pool, operator, range) = (pool.clone(), operator.clone(), range.clone());
            tokio::spawn(async move {
                let resource: ResourceAddress = format!("vm.s3-{i}").parse().unwrap();
                pool.allocate(&operator, &resource, &range).await.unwrap()
            })
        });
        let mut seen = std::collections::BTreeSet::new();
        for allocation in allocations {
            assert!(seen.insert(allocation.await.unwrap()), "no address twice");
        }
        assert_eq!(seen.len(), 6);
        let resource: ResourceAddress = "vm.s3-0".parse().unwrap();
        let again = pool.allocate(&operator, &resource, &range).await.unwrap();
        assert!(seen.contains(&again));
        pool.release(&operator, &resource).await.unwrap();
        let other: ResourceAddress = "vm.mastodon".parse().unwrap();
        assert_eq!(
            pool.allocate(&operator, &other, &range).await.unwrap(),
            again
        );
    }
}
