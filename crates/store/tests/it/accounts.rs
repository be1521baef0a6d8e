//! The panel's accounts: sign-ups, administrators and sessions.

use fediversity_store::{Error, Role};

use crate::harness::{TestDb, op};

pub async fn a_sign_up_makes_operator_and_user_together_or_neither(db: TestDb) {
    let store = db.store().await;
    let uni = op("uni");
    let id = store
        .sign_up(&uni, "a@uni.example", "$argon2id$h1", 1)
        .await
        .unwrap();
    assert_eq!(store.operators().await.unwrap(), std::slice::from_ref(&uni));
    let user = store.user_by_email("a@uni.example").await.unwrap().unwrap();
    assert_eq!(user.id, id);
    assert_eq!(user.role, Role::Operator(uni.clone()));
    assert_eq!(user.password_hash, "$argon2id$h1");
    assert!(
        !format!("{user:?}").contains("argon2id"),
        "Debug hides the hash"
    );

    // The operator is taken: no user is made.
    let taken = store.sign_up(&uni, "b@uni.example", "h", 2).await;
    assert!(matches!(taken, Err(Error::OperatorExists(_))), "{taken:?}");
    assert!(
        store
            .user_by_email("b@uni.example")
            .await
            .unwrap()
            .is_none()
    );
    // The address is taken: no operator is made.
    let taken = store.sign_up(&op("news"), "a@uni.example", "h", 3).await;
    assert!(matches!(taken, Err(Error::EmailTaken(_))), "{taken:?}");
    assert_eq!(store.operators().await.unwrap(), [uni]);

    store
        .create_admin("root@host.example", "h", 4)
        .await
        .unwrap();
    let admin = store
        .user_by_email("root@host.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(matches!(
        store.create_admin("root@host.example", "h", 5).await,
        Err(Error::EmailTaken(_))
    ));
}

pub async fn an_operators_emails_are_its_users_only(db: TestDb) {
    let store = db.store().await;
    let (uni, news) = (op("uni"), op("news"));
    assert!(store.operator_emails(&uni).await.unwrap().is_empty());
    store.sign_up(&uni, "a@uni.example", "h", 1).await.unwrap();
    store
        .sign_up(&news, "b@news.example", "h", 2)
        .await
        .unwrap();
    store
        .create_admin("root@host.example", "h", 3)
        .await
        .unwrap();
    assert_eq!(
        store.operator_emails(&uni).await.unwrap(),
        ["a@uni.example"]
    );
    assert_eq!(
        store.operator_emails(&news).await.unwrap(),
        ["b@news.example"]
    );
}

pub async fn sessions_live_until_they_expire_or_end(db: TestDb) {
    let store = db.store().await;
    let user = store
        .sign_up(&op("uni"), "a@uni.example", "h", 1)
        .await
        .unwrap();
    store
        .create_session("hash-1", user, "csrf-1", 10, 100)
        .await
        .unwrap();
    store
        .create_session("hash-2", user, "csrf-2", 10, 1_000)
        .await
        .unwrap();

    let session = store.session("hash-1", 50).await.unwrap().unwrap();
    assert_eq!(session.user.email, "a@uni.example");
    assert_eq!(session.csrf_token, "csrf-1");
    assert_eq!(session.expires_at, 100);
    assert!(
        store.session("hash-1", 100).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.session("unknown", 50).await.unwrap().is_none());

    store.delete_session("hash-2").await.unwrap();
    assert!(
        store.session("hash-2", 50).await.unwrap().is_none(),
        "ended"
    );

    // Removing the operator's users ends their sessions; other operators' stay.
    let other = store
        .sign_up(&op("news"), "n@news.example", "h", 1)
        .await
        .unwrap();
    store
        .create_session("hash-3", user, "c", 10, 1_000)
        .await
        .unwrap();
    store
        .create_session("hash-4", other, "c", 10, 1_000)
        .await
        .unwrap();
    store
        .create_api_token("token-1", user, "ci", 10)
        .await
        .unwrap();
    let owner = store.api_token_user("token-1").await.unwrap().unwrap();
    assert_eq!(owner.id, user);
    assert!(store.api_token_user("token-2").await.unwrap().is_none());
    assert_eq!(store.delete_users(&op("uni")).await.unwrap(), 1);
    assert!(
        store.api_token_user("token-1").await.unwrap().is_none(),
        "tokens go too"
    );
    assert!(store.session("hash-3", 50).await.unwrap().is_none());
    assert!(
        store
            .user_by_email("a@uni.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.session("hash-4", 50).await.unwrap().is_some());
}
