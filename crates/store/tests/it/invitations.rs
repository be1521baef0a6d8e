//! Invitations to sign up: made, listed, used once, refused when expired or revoked.

use std::sync::Arc;

use fediversity_store::{Error, InvitationId};

use crate::harness::{TestDb, op};

const DAY: i64 = 24 * 3600 * 1000;

pub async fn an_invitation_is_used_once_and_refused_when_expired_or_revoked(db: TestDb) {
    let store = db.store().await;
    let for_uni = store
        .create_invitation("hash-uni", "University", 100, 100 + 7 * DAY)
        .await
        .unwrap();
    let expiring = store
        .create_invitation("hash-old", "", 200, 200 + DAY)
        .await
        .unwrap();
    let revoked = store
        .create_invitation("hash-revoked", "Club", 300, 300 + DAY)
        .await
        .unwrap();
    assert!(store.invitation_usable("hash-uni", 1000).await.unwrap());
    assert!(!store.invitation_usable("unknown", 1000).await.unwrap());

    // An unknown invitation makes nothing, and does not tell whether the id is taken.
    let unknown = store
        .sign_up_invited("unknown", &op("uni"), "a@uni.example", "h", 1000)
        .await;
    assert!(
        matches!(unknown, Err(Error::InvitationRefused)),
        "{unknown:?}"
    );
    assert!(store.operators().await.unwrap().is_empty());

    // Used once; the second sign-up with it is refused and makes nothing.
    store
        .sign_up_invited("hash-uni", &op("uni"), "a@uni.example", "h", 1000)
        .await
        .unwrap();
    let again = store
        .sign_up_invited("hash-uni", &op("news"), "b@news.example", "h", 1001)
        .await;
    assert!(matches!(again, Err(Error::InvitationRefused)), "{again:?}");
    assert!(!store.invitation_usable("hash-uni", 1001).await.unwrap());
    assert!(
        store
            .user_by_email("b@news.example")
            .await
            .unwrap()
            .is_none()
    );

    // A sign-up that fails for another reason leaves its invitation unused.
    let taken = store
        .sign_up_invited("hash-old", &op("uni"), "c@uni.example", "h", 1002)
        .await;
    assert!(matches!(taken, Err(Error::OperatorExists(_))), "{taken:?}");
    assert!(store.invitation_usable("hash-old", 1002).await.unwrap());

    // Expired at its expiry.
    assert!(
        !store
            .invitation_usable("hash-old", 200 + DAY)
            .await
            .unwrap()
    );
    let late = store
        .sign_up_invited("hash-old", &op("late"), "l@late.example", "h", 200 + DAY)
        .await;
    assert!(matches!(late, Err(Error::InvitationRefused)), "{late:?}");

    // Revoked once, and only while unused.
    assert!(store.revoke_invitation(revoked, 2000).await.unwrap());
    assert!(!store.revoke_invitation(revoked, 2001).await.unwrap());
    assert!(!store.revoke_invitation(for_uni, 2001).await.unwrap());
    assert!(
        !store
            .revoke_invitation(InvitationId(9999), 2001)
            .await
            .unwrap()
    );
    let refused = store
        .sign_up_invited("hash-revoked", &op("club"), "c@club.example", "h", 2002)
        .await;
    assert!(
        matches!(refused, Err(Error::InvitationRefused)),
        "{refused:?}"
    );
    assert_eq!(store.operators().await.unwrap(), [op("uni")]);

    let listed = store.invitations().await.unwrap();
    let ids: Vec<_> = listed.iter().map(|i| i.id).collect();
    assert_eq!(ids, [revoked, expiring, for_uni], "newest first");
    let [revoked_row, expiring_row, uni_row] = &listed[..] else {
        panic!("three invitations: {listed:?}");
    };
    assert_eq!(uni_row.note, "University");
    assert_eq!(uni_row.created_at, 100);
    assert_eq!(uni_row.expires_at, 100 + 7 * DAY);
    assert_eq!(uni_row.used, Some((1000, op("uni"))));
    assert_eq!(uni_row.revoked_at, None);
    assert_eq!(revoked_row.revoked_at, Some(2000));
    assert_eq!(revoked_row.used, None);
    assert!(expiring_row.usable(200) && !expiring_row.usable(200 + DAY));
    assert!(!uni_row.usable(1000) && !revoked_row.usable(300));
}

pub async fn of_concurrent_sign_ups_with_one_invitation_exactly_one_wins(db: TestDb) {
    let store = Arc::new(db.store().await);
    store.create_invitation("hash", "", 0, DAY).await.unwrap();
    let attempts = (0..8).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let operator = op(&format!("op{n}"));
            store
                .sign_up_invited("hash", &operator, &format!("{n}@example.org"), "h", 1)
                .await
        })
    });
    let mut won = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::InvitationRefused) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.operators().await.unwrap().len(), 1);
}
