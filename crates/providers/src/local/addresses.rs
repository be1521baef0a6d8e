//! Loopback addresses for sandbox VMs: one per VM across the whole sandbox, chosen from the
//! VM's identity (so the same VM gets the same address again) and recorded in
//! `<root>/addresses.json` under a lock (so two VMs never share one, even when two processes
//! work on the sandbox at once).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use fediversity_engine::{ProviderError, ProviderResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{PUBLIC_FILE, read_json, with_lock, write_json};

const FILE: &str = "addresses.json";
const LOCK: &str = ".addresses.lock";

/// The candidates: `127.a.b.c` with `a` in 1..=254, `b` in 0..=255 and `c` in 1..=254, which
/// leaves out `127.0.0.0/16` (where `localhost` lives), network and broadcast-looking hosts.
const FIRST_OCTETS: u32 = 254;
const SECOND_OCTETS: u32 = 256;
const THIRD_OCTETS: u32 = 254;
const CANDIDATES: u32 = FIRST_OCTETS * SECOND_OCTETS * THIRD_OCTETS;

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allocations {
    /// `<operator>/<vm name>` → address.
    ipv4: BTreeMap<String, Ipv4Addr>,
}

/// The candidate with index `index`.
fn candidate(index: u32) -> Ipv4Addr {
    let index = index % CANDIDATES;
    let a = index / (SECOND_OCTETS * THIRD_OCTETS);
    let b = (index / THIRD_OCTETS) % SECOND_OCTETS;
    let c = index % THIRD_OCTETS;
    // Each value is below 256 by construction.
    Ipv4Addr::new(
        127,
        u8::try_from(a + 1).unwrap_or(u8::MAX),
        u8::try_from(b).unwrap_or(u8::MAX),
        u8::try_from(c + 1).unwrap_or(u8::MAX),
    )
}

/// Where the search for `key`'s address starts.
fn start(key: &str) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The address of the VM `key` (`<operator>/<vm name>`): the recorded one, or a new one.
pub fn allocate(root: &Path, key: &str) -> ProviderResult<Ipv4Addr> {
    with_lock(&root.join(LOCK), || {
        let path = root.join(FILE);
        let mut allocations: Allocations = read_json(&path)?.unwrap_or_default();
        if let Some(address) = allocations.ipv4.get(key) {
            return Ok(*address);
        }
        let taken: std::collections::BTreeSet<Ipv4Addr> =
            allocations.ipv4.values().copied().collect();
        let first = start(key);
        let address = (0..CANDIDATES)
            .map(|offset| candidate(first.wrapping_add(offset)))
            .find(|address| !taken.contains(address))
            .ok_or_else(|| {
                ProviderError::permanent(
                    "the sandbox has no loopback address left: delete some sandbox VMs",
                )
            })?;
        allocations.ipv4.insert(key.to_owned(), address);
        write_json(&path, &allocations, PUBLIC_FILE)?;
        Ok(address)
    })
}

/// Frees the address of the VM `key`; nothing to do when it has none.
pub fn release(root: &Path, key: &str) -> ProviderResult<()> {
    with_lock(&root.join(LOCK), || {
        let path = root.join(FILE);
        let Some(mut allocations) = read_json::<Allocations>(&path)? else {
            return Ok(());
        };
        if allocations.ipv4.remove(key).is_some() {
            write_json(&path, &allocations, PUBLIC_FILE)?;
        }
        Ok(())
    })
}

/// The VM's IPv6 address, derived from its unique IPv4 address (so it is unique too) in a
/// unique-local prefix.
pub fn ipv6_for(ipv4: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = ipv4.octets();
    Ipv6Addr::new(
        0xfd00,
        0xfed1,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stay_in_loopback_and_out_of_localhost() {
        for index in [0, 1, 253, 254, CANDIDATES - 1, CANDIDATES, u32::MAX] {
            let address = candidate(index);
            assert!(address.is_loopback(), "{address}");
            assert_ne!(address.octets()[1], 0, "{address}");
            assert!(!matches!(address.octets()[3], 0 | 255), "{address}");
        }
    }

    #[test]
    fn allocation_is_stable_unique_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let a = allocate(dir.path(), "op/a").unwrap();
        assert_eq!(allocate(dir.path(), "op/a").unwrap(), a);
        let mut seen = std::collections::BTreeSet::from([a]);
        for i in 0..200 {
            assert!(seen.insert(allocate(dir.path(), &format!("op/vm-{i}")).unwrap()));
        }
        release(dir.path(), "op/a").unwrap();
        release(dir.path(), "op/a").unwrap();
        // The same identity gets the same address back when it is free.
        assert_eq!(allocate(dir.path(), "op/a").unwrap(), a);
    }

    #[test]
    fn collisions_probe_to_the_next_free_address() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = candidate(start("op/b"));
        let blocker = Allocations {
            ipv4: BTreeMap::from([("op/other".to_owned(), wanted)]),
        };
        write_json(&dir.path().join(FILE), &blocker, PUBLIC_FILE).unwrap();
        let got = allocate(dir.path(), "op/b").unwrap();
        assert_ne!(got, wanted);
        assert_eq!(got, candidate(start("op/b").wrapping_add(1)));
    }

    #[test]
    fn ipv6_follows_ipv4() {
        assert_eq!(
            ipv6_for(Ipv4Addr::new(127, 1, 2, 3)).to_string(),
            "fd00:fed1::7f01:203"
        );
    }
}
