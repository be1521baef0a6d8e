//! Domain claims: one operator per name, and no operator under or above another's name, also
//! when several claim at once.

use std::sync::Arc;

use fediversity_model::names::Domain;
use fediversity_store::Error;

use crate::harness::{TestDb, op};

fn domain(text: &str) -> Domain {
    Domain::try_from(text).unwrap()
}

pub async fn a_domain_belongs_to_one_operator_and_nothing_nests_across_operators(db: TestDb) {
    let store = db.store().await;
    let (uni, other) = (op("holder-of-uni"), op("other"));
    store
        .claim_domain(&uni, &domain("uni.example.org"), 1)
        .await
        .unwrap();
    store
        .claim_domain(&uni, &domain("uni.example.org"), 2)
        .await
        .expect("claiming one's own domain again is fine");
    for taken in ["uni.example.org", "social.uni.example.org", "example.org"] {
        let error = store
            .claim_domain(&other, &domain(taken), 3)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::DomainTaken(_)), "{taken}: {error}");
        assert!(
            !error.to_string().contains("holder-of-uni"),
            "the message does not name the holder: {error}"
        );
    }
    store
        .claim_domain(&other, &domain("runi.example.org"), 4)
        .await
        .expect("a name that merely ends the same way is another name");

    // Moving to another domain frees the old one; deleting the account frees the new one.
    store
        .claim_domain(&uni, &domain("uni.example.net"), 5)
        .await
        .unwrap();
    let third = op("third");
    store
        .claim_domain(&third, &domain("uni.example.org"), 6)
        .await
        .unwrap();
    store.release_domain(&uni).await.unwrap();
    store
        .claim_domain(&other, &domain("uni.example.net"), 7)
        .await
        .expect("released with the account");
}

pub async fn of_nested_domains_claimed_at_once_exactly_one_wins(db: TestDb) {
    let store = Arc::new(db.store().await);
    let names = [
        "example.org",
        "a.example.org",
        "b.a.example.org",
        "c.b.a.example.org",
    ];
    let claims = names.iter().enumerate().map(|(i, name)| {
        let store = store.clone();
        let operator = op(&format!("op{i}"));
        let name = domain(name);
        tokio::spawn(async move { store.claim_domain(&operator, &name, 1).await.is_ok() })
    });
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(
        won, 1,
        "every pair of these names nests: one claim only may win"
    );
}
