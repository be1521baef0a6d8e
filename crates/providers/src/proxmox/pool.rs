//! Static addresses for VMs, from the infra's `[proxmox.ipv4]` (and `ipv6`) ranges.
//!
//! The allocation must outlive the process and be shared by every run (two VMs must never get
//! one address, and a VM re-made after a crash must get its address back), so it lives in the
//! platform's store behind [`AddressPool`]; this crate only defines the trait (it must not
//! know the store) and an in-memory pool for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;

/// A named range of addresses, first and last included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRange {
    /// The pool's name, unique across the platform (`proxmox.ipv4`).
    pub pool: String,
    /// The first address that may be given.
    pub first: IpAddr,
    /// The last address that may be given.
    pub last: IpAddr,
}

/// Where addresses are allocated.
#[async_trait]
pub trait AddressPool: Send + Sync + fmt::Debug {
    /// The address `resource` of `operator` holds in `range`'s pool, allocating the lowest
    /// free one when it holds none. Fails when the range is exhausted.
    async fn allocate(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
        range: &AddressRange,
    ) -> ProviderResult<IpAddr>;

    /// Frees every address `resource` of `operator` holds, in every pool; freeing nothing
    /// succeeds.
    async fn release(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
    ) -> ProviderResult<()>;
}

fn bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

fn from_bits(like: IpAddr, value: u128) -> Option<IpAddr> {
    match like {
        IpAddr::V4(_) => u32::try_from(value)
            .ok()
            .map(|v| IpAddr::V4(std::net::Ipv4Addr::from_bits(v))),
        IpAddr::V6(_) => Some(IpAddr::V6(std::net::Ipv6Addr::from_bits(value))),
    }
}

/// The lowest address of `range` not in `taken`, if any. Looks at no more than
/// `taken.len() + 1` candidates, so a huge IPv6 range costs nothing.
pub fn lowest_free(range: &AddressRange, taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let (first, last) = (bits(range.first), bits(range.last));
    (first..=last)
        .take(taken.len().saturating_add(1))
        .filter_map(|value| from_bits(range.first, value))
        .find(|candidate| !taken.contains(candidate))
}

/// The error for an exhausted range.
pub fn exhausted(range: &AddressRange) -> ProviderError {
    ProviderError::permanent(format!(
        "the address pool {} ({} to {}) has no free address left: widen it in infra.toml",
        range.pool, range.first, range.last
    ))
}

/// An address pool in memory, for tests and single-process tools.
#[derive(Debug, Default)]
pub struct MemoryAddressPool {
    /// `(pool, operator, resource)` → address.
    held: Mutex<BTreeMap<(String, String, String), IpAddr>>,
}

impl MemoryAddressPool {
    /// Every allocation, as `(pool, operator, resource, address)`.
    pub fn allocations(&self) -> Vec<(String, String, String, IpAddr)> {
        self.lock()
            .iter()
            .map(|((p, o, r), a)| (p.clone(), o.clone(), r.clone(), *a))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String, String), IpAddr>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl AddressPool for MemoryAddressPool {
    async fn allocate(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
        range: &AddressRange,
    ) -> ProviderResult<IpAddr> {
        let mut held = self.lock();
        let key = (
            range.pool.clone(),
            operator.to_string(),
            resource.to_string(),
        );
        if let Some(address) = held.get(&key) {
            return Ok(*address);
        }
        let taken: BTreeSet<IpAddr> = held
            .iter()
            .filter(|((pool, _, _), _)| *pool == range.pool)
            .map(|(_, address)| *address)
            .collect();
        let address = lowest_free(range, &taken).ok_or_else(|| exhausted(range))?;
        held.insert(key, address);
        Ok(address)
    }

    async fn release(
        &self,
        operator: &OperatorId,
        resource: &ResourceAddress,
    ) -> ProviderResult<()> {
        let (operator, resource) = (operator.to_string(), resource.to_string());
        self.lock()
            .retain(|(_, o, r), _| !(*o == operator && *r == resource));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: &str, last: &str) -> AddressRange {
        AddressRange {
            pool: "proxmox.ipv4".to_owned(),
            first: first.parse().unwrap(),
            last: last.parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn addresses_are_unique_stable_and_released() {
        let pool = MemoryAddressPool::default();
        let operator = OperatorId::try_from("example-org").unwrap();
        let (a, b): (ResourceAddress, ResourceAddress) =
            ("vm.a".parse().unwrap(), "vm.b".parse().unwrap());
        let r = range("10.0.0.10", "10.0.0.11");
        let first = pool.allocate(&operator, &a, &r).await.unwrap();
        assert_eq!(first.to_string(), "10.0.0.10");
        assert_eq!(pool.allocate(&operator, &a, &r).await.unwrap(), first);
        assert_eq!(
            pool.allocate(&operator, &b, &r).await.unwrap().to_string(),
            "10.0.0.11"
        );
        let c: ResourceAddress = "vm.c".parse().unwrap();
        let full = pool.allocate(&operator, &c, &r).await.unwrap_err();
        assert!(full.message.contains("no free address"), "{full}");
        pool.release(&operator, &a).await.unwrap();
        assert_eq!(pool.allocate(&operator, &c, &r).await.unwrap(), first);
    }

    #[test]
    fn the_search_skips_taken_addresses_in_big_ranges() {
        let r = range("2001:db8::1", "2001:db8::ffff:ffff");
        let taken: BTreeSet<IpAddr> = ["2001:db8::1", "2001:db8::2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(lowest_free(&r, &taken).unwrap().to_string(), "2001:db8::3");
    }
}
