//! The fleet's e-mail: notifications delivered to a real SMTP server (aiosmtpd on loopback,
//! `tls = "none"`), each once, with both parts and the slot in the operator's own time zone;
//! a relay that is down marks nothing, and the mail goes out once it is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fediversity_engine::clock::{Clock, ManualClock};
use fediversity_fleet::rollout::{Item, ItemStatus, Policy};
use fediversity_fleet::schedule::{Severity, Slot};
use fediversity_model::infra::SmtpTls;
use fediversity_model::names::OperatorId;
use fediversity_panel::mail::{Mailer, Relay, Round, send_pending};
use fediversity_store::{FleetLease, NewNotification, NewRelease, NotificationKind, Store};
use fediversity_testkit::smtp::{SmtpServer, free_port};
use serde_json::json;

use crate::harness::platform_in;

const TITLE: &str = "NixOS 26.05 & PeerTube 8";
const REASON: &str = "the health check of mastodon failed; rolled back";

/// The slot: 03:30 in Amsterdam on the night summer time starts (01:30 UTC).
fn slot_start() -> DateTime<Utc> {
    "2026-03-29T01:30:00Z".parse().unwrap()
}

struct Outbox {
    store: Store,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// An operator (admin contact in its configuration, one panel user) with one notification of
/// every kind about a security release forced outside its windows, which failed.
async fn outbox() -> Outbox {
    let dir = tempfile::tempdir().unwrap();
    let (store, _platform) = platform_in(dir.path()).await;
    let store = (*store).clone();
    let clock = Arc::new(ManualClock::at(slot_start().timestamp_millis()));
    let uni = OperatorId::try_from("uni").unwrap();
    store
        .sign_up(&uni, "member@uni.example.org", "h", 0)
        .await
        .unwrap();
    let config = json!({
        "version": 1,
        "operator": {"id": "uni", "name": "Utrecht University"},
        "domain": "uni.example.org",
        "services": {"mastodon": {"enable": true, "size": "small"}},
        "admin": {"username": "admin", "email": "admin@uni.example.org"},
        "maintenance": {
            "time_zone": "Europe/Amsterdam",
            "windows": [{"days": ["sat"], "start": "22:00", "duration_minutes": 60}]
        }
    });
    store.save_configuration(&uni, &config, 0).await.unwrap();
    let release = NewRelease {
        title: TITLE.to_owned(),
        severity: Severity::Security,
        deadline: Some(slot_start().timestamp_millis()),
        infra: "# the release's infra.toml\n".to_owned(),
        policy: Policy::new(10, 2, 0.2).unwrap(),
        expected_minutes: 30,
    };
    let waves = BTreeMap::from([(uni.clone(), 0)]);
    let release = store.create_release(&release, &waves, 0).await.unwrap();
    let item = Item {
        operator: uni.clone(),
        wave: 0,
        slot: Some(Slot {
            start: slot_start(),
            latest_start: None,
            outside_windows: true,
        }),
        status: ItemStatus::Failed(REASON.to_owned()),
    };
    store.record_rollout_item(release, &item, 0).await.unwrap();
    for kind in NotificationKind::ALL {
        let notification = NewNotification {
            release,
            operator: uni.clone(),
            kind,
            occasion: slot_start().to_rfc3339(),
            subject: format!("Maintenance {}: {TITLE}", kind.as_str()),
            body: format!("The platform release \"{TITLE}\": {}.", kind.as_str()),
        };
        assert!(store.notify(&notification, 0).await.unwrap());
    }
    Outbox {
        store,
        clock,
        _dir: dir,
    }
}

fn mailer(port: u16) -> Mailer {
    let relay = Relay {
        host: "127.0.0.1".to_owned(),
        port,
        tls: SmtpTls::None,
        login: None,
    };
    Mailer::new(
        &relay,
        "fediversity@mail.example.net",
        Some("https://panel.example.net/".to_owned()),
    )
    .unwrap()
}

#[tokio::test]
async fn every_notification_is_mailed_once_with_both_parts_in_the_operators_time() {
    let outbox = outbox().await;
    let smtp = SmtpServer::start();
    let mailer = mailer(smtp.address().port());

    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(round, Round { sent: 5, failed: 0 });
    let messages = smtp.messages();
    assert_eq!(messages.len(), 5, "{messages:#?}");
    for (message, kind) in messages.iter().zip(NotificationKind::ALL) {
        assert_eq!(message.from, "fediversity@mail.example.net");
        assert_eq!(message.to, "admin@uni.example.org, member@uni.example.org");
        assert_eq!(
            message.subject,
            format!("Maintenance {}: {TITLE}", kind.as_str())
        );
        assert_eq!(message.content_type, "multipart/alternative");
        let text = message.part("text/plain");
        let html = message.part("text/html");
        assert!(text.contains(&format!("Release:  {TITLE}")), "{text}");
        assert!(text.contains("Severity: security"), "{text}");
        assert!(
            text.contains("Sunday 29 March 2026, 03:30 (Europe/Amsterdam)"),
            "summer time has begun: {text}"
        );
        assert!(text.contains("Sunday 29 March 2026, 01:30 UTC"), "{text}");
        assert!(text.contains("outside your maintenance windows"), "{text}");
        assert!(
            text.contains("https://panel.example.net/operators/uni"),
            "{text}"
        );
        assert!(
            html.contains("NixOS 26.05 &#38; PeerTube 8"),
            "escaped: {html}"
        );
        assert!(html.contains("03:30 (Europe/Amsterdam)"), "{html}");
        assert!(
            html.contains("<a href=\"https://panel.example.net/operators/uni\">"),
            "{html}"
        );
        let told_why = text.contains(REASON) && html.contains("the health check of mastodon");
        assert_eq!(
            told_why,
            kind == NotificationKind::RolledBack,
            "{kind:?}: {text}"
        );
    }
    let emailed = outbox
        .store
        .notifications(&"uni".try_into().unwrap(), 10)
        .await
        .unwrap();
    assert!(emailed.iter().all(|n| n.emailed_at.is_some()));

    // A second round sends nothing again.
    outbox.clock.advance(Duration::from_secs(3600));
    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(round, Round::default());
    assert_eq!(smtp.messages().len(), 5);
}

#[tokio::test]
async fn a_relay_that_is_down_marks_nothing_and_the_mail_goes_out_later() {
    let outbox = outbox().await;
    let port = free_port();
    let mailer = mailer(port);

    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(
        round,
        Round { sent: 0, failed: 1 },
        "the round stops at the unreachable relay"
    );
    assert_eq!(
        outbox.store.unsent_notifications(10).await.unwrap().len(),
        5
    );

    let smtp = SmtpServer::start_on(port);
    // The failed one waits for its backoff; the others go out.
    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(round, Round { sent: 4, failed: 0 });
    outbox.clock.advance(Duration::from_secs(61));
    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(round, Round { sent: 1, failed: 0 });
    assert!(
        outbox
            .store
            .unsent_notifications(10)
            .await
            .unwrap()
            .is_empty()
    );
    let subjects: Vec<String> = smtp.messages().into_iter().map(|m| m.subject).collect();
    assert_eq!(subjects.len(), 5, "each sent once: {subjects:?}");
    assert_eq!(subjects[4], format!("Maintenance scheduled: {TITLE}"));
}

#[tokio::test]
async fn only_the_holder_of_the_outbox_lease_sends() {
    let outbox = outbox().await;
    let smtp = SmtpServer::start();
    let mailer = mailer(smtp.address().port());
    let now = outbox.clock.as_ref().now();
    assert!(
        outbox
            .store
            .try_fleet_lease(FleetLease::Outbox, "worker b", now, Duration::from_secs(60))
            .await
            .unwrap()
    );

    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(round, Round::default(), "worker b holds the outbox");
    assert!(smtp.messages().is_empty());

    outbox.clock.advance(Duration::from_secs(61));
    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker a")
        .await
        .unwrap();
    assert_eq!(round, Round { sent: 5, failed: 0 }, "b's lease lapsed");
    let round = send_pending(&outbox.store, &mailer, outbox.clock.as_ref(), "worker b")
        .await
        .unwrap();
    assert_eq!(round, Round::default());
    assert_eq!(smtp.messages().len(), 5, "each sent once");
}
