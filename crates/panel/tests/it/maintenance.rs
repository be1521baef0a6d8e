//! The fleet on the operator's dashboard: its upcoming maintenance in its own time zone, with
//! "outside your windows" when a deadline forced it, and its notifications; never another
//! operator's.

use std::collections::BTreeMap;

use fediversity_fleet::rollout::{Item, ItemStatus, Policy, State};
use fediversity_fleet::schedule::{Severity, Slot};
use fediversity_model::names::OperatorId;
use fediversity_store::{NewNotification, NewRelease, NotificationKind};
use reqwest::StatusCode;

use crate::harness::{Panel, configure, mastodon_config};

#[tokio::test]
async fn the_dashboard_shows_upcoming_maintenance_and_notifications_of_its_operator_only() {
    let panel = Panel::start().await;
    let a = panel.operator("alpha").await;
    let b = panel.operator("beta").await;
    for (browser, name) in [(&a, "alpha"), (&b, "beta")] {
        let saved = configure(
            browser,
            name,
            &mastodon_config("Org", &format!("{name}.example.org")),
        )
        .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    }
    let alpha = OperatorId::try_from("alpha").unwrap();
    let store = &panel.store;
    let release = NewRelease {
        title: "OpenSSL <fix> for alpha".to_owned(),
        severity: Severity::Security,
        deadline: None,
        infra: "# the release's infra.toml\n".to_owned(),
        policy: Policy::new(10, 2, 0.2).unwrap(),
        expected_minutes: 30,
    };
    let waves = BTreeMap::from([(alpha.clone(), 0)]);
    let release = store.create_release(&release, &waves, 0).await.unwrap();
    let start = "2026-10-25T01:30:00Z".parse().unwrap();
    let item = Item {
        operator: alpha.clone(),
        wave: 0,
        slot: Some(Slot {
            start,
            latest_start: None,
            outside_windows: true,
        }),
        status: ItemStatus::Scheduled,
    };
    store.record_rollout_item(release, &item, 0).await.unwrap();
    let notification = NewNotification {
        release,
        operator: alpha.clone(),
        kind: NotificationKind::Scheduled,
        occasion: start.to_rfc3339(),
        subject: "Maintenance scheduled: OpenSSL <fix> for alpha".to_owned(),
        body: "It will be applied outside your maintenance windows.".to_owned(),
    };
    store.notify(&notification, 0).await.unwrap();

    let page = a.get("/operators/alpha").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("OpenSSL &#60;fix&#62; for alpha"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Sunday 25 October 2026, 02:30 (Europe/Amsterdam)"),
        "winter time is back in Amsterdam: {}",
        page.body
    );
    assert!(page.body.contains("Sunday 25 October 2026, 01:30 UTC"));
    assert!(page.body.contains("(outside your windows)"));
    assert!(page.body.contains("Maintenance scheduled: OpenSSL"));
    assert!(
        page.body
            .contains("It will be applied outside your maintenance windows.")
    );

    let other = b.get("/operators/beta").await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(other.body.contains("None planned."), "{}", other.body);
    assert!(!other.body.contains("OpenSSL"), "{}", other.body);

    // The administrators see the release with its operators counted, and pause and resume
    // it; an operator's member cannot.
    let refused = b
        .submit(
            "/operators/beta",
            &format!("/fleet/releases/{release}/pause"),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let hash = fediversity_panel::hash_password(crate::harness::PASSWORD.to_owned())
        .await
        .unwrap();
    store
        .create_admin("root@host.example", &hash, 1)
        .await
        .unwrap();
    let admin = panel.visitor();
    admin
        .sign_in("root@host.example", crate::harness::PASSWORD)
        .await;
    let list = admin.get("/operators").await;
    assert!(
        list.body.contains(
            "<td>OpenSSL &#60;fix&#62; for alpha</td><td>security</td><td>running</td>\
             <td>1</td><td>0</td><td>0</td><td>0</td>"
        ),
        "{}",
        list.body
    );
    let paused = admin
        .submit(
            "/operators",
            &format!("/fleet/releases/{release}/pause"),
            &[],
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    let state = |s: &fediversity_store::Store| {
        let s = s.clone();
        async move { s.release(release).await.unwrap().state }
    };
    assert_eq!(state(store).await, State::Paused);
    assert!(admin.get("/operators").await.body.contains("/resume\""));
    admin
        .submit(
            "/operators",
            &format!("/fleet/releases/{release}/resume"),
            &[],
        )
        .await;
    assert_eq!(state(store).await, State::Running);
    panel.stop().await;
}
