//! The panel's OpenID Connect provider: clients, signing keys, and grants whose codes and
//! refresh tokens are spent once.

use fediversity_store::{
    Error, GrantId, NewGrant, NewToken, OidcClient, Redemption, Store, TokenKind, UserId,
};

use crate::harness::{TestDb, op};

fn client(operator: &str, service: &str, secret_hash: &str) -> OidcClient {
    OidcClient {
        client_id: format!("{operator}-{service}"),
        operator: op(operator),
        secret_hash: secret_hash.to_owned(),
        redirect_uris: vec![format!("https://{service}.{operator}.example/callback")],
    }
}

fn grant(code_hash: &str, client_id: &str, user: UserId, expires_at: i64) -> NewGrant {
    NewGrant {
        code_hash: code_hash.to_owned(),
        client_id: client_id.to_owned(),
        user,
        redirect_uri: "https://social.uni.example/callback".to_owned(),
        code_challenge: "challenge".to_owned(),
        scope: "openid email".to_owned(),
        nonce: Some("n-0S6".to_owned()),
        auth_time: 10,
        code_expires_at: expires_at,
    }
}

fn token(hash: &str, kind: TokenKind, expires_at: i64) -> NewToken {
    NewToken {
        hash: hash.to_owned(),
        kind,
        expires_at,
    }
}

/// A store with operator `uni`, its user, and its Mastodon client.
async fn with_client(db: &TestDb) -> (Store, UserId) {
    let store = db.store().await;
    let user = store
        .sign_up(&op("uni"), "a@uni.example", "h", 1)
        .await
        .unwrap();
    store
        .put_oidc_client(&client("uni", "mastodon", "s1"), 1)
        .await
        .unwrap();
    (store, user)
}

/// Redeems `code`, expecting a fresh grant.
async fn redeemed(store: &Store, code: &str, now: i64) -> GrantId {
    match store.redeem_oidc_code(code, now).await.unwrap() {
        Redemption::Redeemed(grant) => grant.id,
        other => panic!("code {code}: {other:?}"),
    }
}

pub async fn clients_are_created_updated_and_deleted_with_what_they_were_issued(db: TestDb) {
    let (store, user) = with_client(&db).await;
    let mut updated = client("uni", "mastodon", "s2");
    updated
        .redirect_uris
        .push("https://other.uni.example/cb".to_owned());
    store.put_oidc_client(&updated, 2).await.unwrap();
    assert_eq!(
        store.oidc_client("uni-mastodon").await.unwrap(),
        Some(updated)
    );
    assert_eq!(store.oidc_client("nobody-mastodon").await.unwrap(), None);

    // Another operator cannot take the id over.
    let mut stolen = client("uni", "mastodon", "s3");
    stolen.operator = op("news");
    let refused = store.put_oidc_client(&stolen, 3).await;
    assert!(matches!(refused, Err(Error::Corrupt { .. })), "{refused:?}");
    assert!(
        !store
            .delete_oidc_client(&op("news"), "uni-mastodon")
            .await
            .unwrap()
    );

    store
        .create_oidc_grant(&grant("c1", "uni-mastodon", user, 100), 4)
        .await
        .unwrap();
    let id = redeemed(&store, "c1", 5).await;
    store
        .add_oidc_tokens(id, &[token("a1", TokenKind::Access, 1000)], 5)
        .await
        .unwrap();
    assert!(store.oidc_access_token("a1", 6).await.unwrap().is_some());
    assert!(
        store
            .delete_oidc_client(&op("uni"), "uni-mastodon")
            .await
            .unwrap()
    );
    assert_eq!(store.oidc_client("uni-mastodon").await.unwrap(), None);
    assert_eq!(store.oidc_access_token("a1", 7).await.unwrap(), None);
    assert!(
        !store
            .delete_oidc_client(&op("uni"), "uni-mastodon")
            .await
            .unwrap()
    );
}

pub async fn a_code_is_redeemed_once_and_a_replay_revokes_its_tokens(db: TestDb) {
    let (store, user) = with_client(&db).await;
    store
        .create_oidc_grant(&grant("c1", "uni-mastodon", user, 100), 2)
        .await
        .unwrap();
    let Redemption::Redeemed(found) = store.redeem_oidc_code("c1", 3).await.unwrap() else {
        panic!("the fresh code is good");
    };
    assert_eq!(found.client_id, "uni-mastodon");
    assert_eq!(found.user.email, "a@uni.example");
    assert_eq!(found.nonce.as_deref(), Some("n-0S6"));
    assert_eq!(found.code_challenge, "challenge");
    store
        .add_oidc_tokens(
            found.id,
            &[
                token("a1", TokenKind::Access, 1000),
                token("r1", TokenKind::Refresh, 1000),
            ],
            3,
        )
        .await
        .unwrap();
    let by_token = store.oidc_access_token("a1", 4).await.unwrap().unwrap();
    assert_eq!(by_token.id, found.id);
    assert_eq!(
        store.oidc_access_token("r1", 4).await.unwrap(),
        None,
        "not an access token"
    );
    assert_eq!(
        store.oidc_access_token("a1", 1000).await.unwrap(),
        None,
        "expired"
    );

    assert_eq!(
        store.redeem_oidc_code("c1", 5).await.unwrap(),
        Redemption::Replayed
    );
    assert_eq!(store.oidc_access_token("a1", 6).await.unwrap(), None);
    assert_eq!(
        store
            .redeem_refresh_token("r1", "uni-mastodon", 6)
            .await
            .unwrap(),
        Redemption::Unknown,
        "revoked with its grant"
    );

    // An expired code and an unknown one are refused alike.
    store
        .create_oidc_grant(&grant("c2", "uni-mastodon", user, 100), 7)
        .await
        .unwrap();
    assert_eq!(
        store.redeem_oidc_code("c2", 100).await.unwrap(),
        Redemption::Unknown
    );
    assert_eq!(
        store.redeem_oidc_code("nope", 8).await.unwrap(),
        Redemption::Unknown
    );
}

pub async fn a_refresh_token_is_spent_once_and_only_by_its_client(db: TestDb) {
    let (store, user) = with_client(&db).await;
    store
        .put_oidc_client(&client("uni", "peertube", "s"), 1)
        .await
        .unwrap();
    store
        .create_oidc_grant(&grant("c1", "uni-mastodon", user, 100), 2)
        .await
        .unwrap();
    let id = redeemed(&store, "c1", 3).await;
    store
        .add_oidc_tokens(id, &[token("r1", TokenKind::Refresh, 1000)], 3)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_refresh_token("r1", "uni-peertube", 4)
            .await
            .unwrap(),
        Redemption::Unknown,
        "another client's token"
    );
    let Redemption::Redeemed(again) = store
        .redeem_refresh_token("r1", "uni-mastodon", 5)
        .await
        .unwrap()
    else {
        panic!("another client's attempt did not spend it");
    };
    assert_eq!(again.id, id);
    store
        .add_oidc_tokens(
            id,
            &[
                token("a2", TokenKind::Access, 1000),
                token("r2", TokenKind::Refresh, 1000),
            ],
            5,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_refresh_token("r1", "uni-mastodon", 6)
            .await
            .unwrap(),
        Redemption::Replayed,
        "a rotated token used again"
    );
    assert_eq!(store.oidc_access_token("a2", 7).await.unwrap(), None);
    assert_eq!(
        store
            .redeem_refresh_token("r2", "uni-mastodon", 7)
            .await
            .unwrap(),
        Redemption::Unknown,
        "the whole grant is revoked"
    );
}

pub async fn signing_keys_are_sealed_rotated_and_forgotten(db: TestDb) {
    let store = db.store().await;
    assert!(store.signing_keys().await.unwrap().is_empty());
    let first = b"first private key, not really DER".to_vec();
    let second = b"second private key, not really DER".to_vec();
    store.rotate_signing_key("k1", &first, 10, 0).await.unwrap();
    store
        .rotate_signing_key("k2", &second, 20, 0)
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    let summary: Vec<_> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.created_at, k.retired_at))
        .collect();
    assert_eq!(summary, [("k2", 20, None), ("k1", 10, Some(20))]);
    assert_eq!(keys[0].private_key, second);
    assert_eq!(keys[1].private_key, first);
    assert!(
        !format!("{keys:?}").contains("private key"),
        "Debug hides the keys"
    );

    // Retired before 21: forgotten on the next rotation.
    store
        .rotate_signing_key("k3", b"third", 30, 21)
        .await
        .unwrap();
    let kids: Vec<_> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k3", "k2"]);

    store.close().await;
    let raw = db.raw_contents().await;
    assert!(!raw.contains("second private key"), "sealed at rest");
}
