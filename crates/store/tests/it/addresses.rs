//! The address pools' table: an address belongs to one resource, a resource holds one address
//! per pool, and of many processes claiming one address at once exactly one wins.

use std::net::IpAddr;

use crate::harness::{TestDb, addr, op};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub async fn addresses_are_claimed_once_held_and_released(db: TestDb) {
    let store = db.store().await;
    let (uni, other) = (op("uni"), op("other"));
    let (vm, vm2) = (addr("vm.mastodon"), addr("vm.pixelfed"));
    let pool = "proxmox.ipv4";
    assert!(
        store
            .claim_address(pool, ip("192.0.2.10"), &uni, &vm, 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_address(pool, ip("192.0.2.10"), &other, &vm, 2)
            .await
            .unwrap(),
        "the address is taken, by another operator too"
    );
    assert!(
        !store
            .claim_address(pool, ip("192.0.2.11"), &uni, &vm, 3)
            .await
            .unwrap(),
        "the resource already holds an address in the pool"
    );
    assert!(
        store
            .claim_address("proxmox.ipv6", ip("2001:db8::10"), &uni, &vm, 4)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_address(pool, ip("192.0.2.11"), &uni, &vm2, 5)
            .await
            .unwrap()
    );

    assert_eq!(
        store.held_address(pool, &uni, &vm).await.unwrap(),
        Some(ip("192.0.2.10"))
    );
    assert_eq!(store.held_address(pool, &other, &vm).await.unwrap(), None);
    assert_eq!(
        store
            .taken_addresses(pool)
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [ip("192.0.2.10"), ip("192.0.2.11")]
    );

    assert_eq!(
        store.release_addresses(&uni, &vm).await.unwrap(),
        2,
        "both pools"
    );
    assert_eq!(store.release_addresses(&uni, &vm).await.unwrap(), 0);
    assert_eq!(store.held_address(pool, &uni, &vm).await.unwrap(), None);
    assert!(
        store
            .claim_address(pool, ip("192.0.2.10"), &other, &vm, 6)
            .await
            .unwrap()
    );
}

pub async fn of_many_concurrent_claims_of_one_address_exactly_one_wins(db: TestDb) {
    let store = db.store().await;
    let claims = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_address(
                    "proxmox.ipv4",
                    ip("192.0.2.10"),
                    &op("uni"),
                    &addr(&format!("vm.s3-{i}")),
                    i,
                )
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(won, 1);
}
