//! The fleet on the operator's dashboard: its upcoming maintenance in its own time zone, with
//! "outside your windows" when a deadline forced it, the form that moves it or applies it now,
//! and its notifications; never another operator's.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fediversity_engine::clock::{Clock, ManualClock};
use fediversity_fleet::rollout::{Item, ItemStatus, Policy, State};
use fediversity_fleet::schedule::{Severity, Slot};
use fediversity_model::names::OperatorId;
use fediversity_panel::PanelOptions;
use fediversity_store::{NewNotification, NewRelease, NotificationKind, ReleaseId};
use reqwest::StatusCode;

use crate::harness::{Browser, Page, Panel, configure, mastodon_config};

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

/// Monday 1 March 2027, noon UTC: the panel's clock in the tests of the maintenance form.
const NOW: &str = "2027-03-01T12:00:00Z";

/// A panel whose clock stands at [`NOW`], with operators `alpha` and `beta` configured (Sunday
/// 02:00–04:00 in Amsterdam), and two releases for `alpha`: a routine one with a deadline of
/// 10 April, scheduled on Sunday 7 March, and one being applied.
struct Scene {
    panel: Panel,
    alpha: Browser,
    beta: Browser,
    routine: ReleaseId,
    running: ReleaseId,
}

impl Scene {
    async fn new() -> Scene {
        let now = utc(NOW);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(now.timestamp_millis()));
        let panel = Panel::start_with(|options| PanelOptions { clock, ..options }).await;
        let alpha = panel.operator("alpha").await;
        let beta = panel.operator("beta").await;
        for (browser, name) in [(&alpha, "alpha"), (&beta, "beta")] {
            let config = mastodon_config("Org", &format!("{name}.example.org"));
            let saved = configure(browser, name, &config).await;
            assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        }
        let routine = release(&panel, "Routine fix", Some("2027-04-10T00:00:00Z")).await;
        let slot = Slot {
            start: utc("2027-03-07T01:00:00Z"),
            latest_start: Some(utc("2027-03-07T02:30:00Z")),
            outside_windows: false,
        };
        record(&panel, routine, slot, ItemStatus::Scheduled).await;
        let running = release(&panel, "Kernel update", None).await;
        let slot = Slot {
            start: utc("2027-03-01T11:00:00Z"),
            latest_start: None,
            outside_windows: true,
        };
        record(&panel, running, slot, ItemStatus::Running).await;
        // Its deployment is queued, as the scheduler leaves it, so that a worker's tick
        // meanwhile still finds it running.
        let version = panel
            .store
            .configurations(&alpha_id())
            .await
            .unwrap()
            .last()
            .unwrap()
            .version;
        let deployment = panel
            .store
            .create_deployment(&alpha_id(), version, now.timestamp_millis())
            .await
            .unwrap();
        panel
            .store
            .set_rollout_deployment(running, &alpha_id(), deployment)
            .await
            .unwrap();
        Scene {
            panel,
            alpha,
            beta,
            routine,
            running,
        }
    }

    /// `alpha`'s rollout item in `release`.
    async fn item(&self, release: ReleaseId) -> Item {
        self.panel
            .store
            .rollout(release)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.item.operator == alpha_id())
            .unwrap()
            .item
    }

    /// Sends `alpha`'s form for `release` with `fields`, as `alpha`.
    async fn send(&self, release: ReleaseId, fields: &[(&str, &str)]) -> Page {
        self.send_as(&self.alpha, "/operators/alpha", release, fields)
            .await
    }

    /// Sends `alpha`'s form for `release` with `fields`, as `browser` (signed in to `home`).
    async fn send_as(
        &self,
        browser: &Browser,
        home: &str,
        release: ReleaseId,
        fields: &[(&str, &str)],
    ) -> Page {
        let path = format!("/operators/alpha/maintenance/{release}");
        browser.submit(home, &path, fields).await
    }
}

fn alpha_id() -> OperatorId {
    OperatorId::try_from("alpha").unwrap()
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// A release of `title` for `alpha` (30 minutes per operator).
async fn release(panel: &Panel, title: &str, deadline: Option<&str>) -> ReleaseId {
    let release = NewRelease {
        title: title.to_owned(),
        severity: Severity::Routine,
        deadline: deadline.map(|d| utc(d).timestamp_millis()),
        infra: "# the release's infra.toml\n".to_owned(),
        policy: Policy::new(10, 2, 0.2).unwrap(),
        expected_minutes: 30,
    };
    let waves = BTreeMap::from([(alpha_id(), 0)]);
    panel
        .store
        .create_release(&release, &waves, 0)
        .await
        .unwrap()
}

async fn record(panel: &Panel, release: ReleaseId, slot: Slot, status: ItemStatus) {
    let item = Item {
        operator: alpha_id(),
        wave: 0,
        slot: Some(slot),
        status,
    };
    panel
        .store
        .record_rollout_item(release, &item, 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_operator_moves_its_maintenance_to_another_window_or_applies_it_now() {
    let scene = Scene::new().await;
    let page = scene.alpha.get("/operators/alpha").await;
    assert_eq!(page.status, StatusCode::OK);
    let routine_form = format!("action=\"/operators/alpha/maintenance/{}\"", scene.routine);
    assert!(page.body.contains(&routine_form), "{}", page.body);
    assert!(
        !page.body.contains(&format!(
            "action=\"/operators/alpha/maintenance/{}\"",
            scene.running
        )),
        "a maintenance being applied has no form: {}",
        page.body
    );
    // The coming Sundays before the deadline, but not the current one, in Amsterdam's time and
    // in UTC; summer time starts on 28 March, at 02:00, inside the window.
    let offered: Vec<&str> = page
        .body
        .match_indices("<option value=\"")
        .map(|(at, marker)| page.body[at + marker.len()..].split('"').next().unwrap())
        .collect();
    assert_eq!(
        offered,
        [
            "2027-03-14T01:00:00Z",
            "2027-03-21T01:00:00Z",
            "2027-03-28T01:00:00Z",
            "2027-04-04T00:00:00Z",
        ]
    );
    for label in [
        ">Sunday 14 March 2027, 02:00 (Europe/Amsterdam) · Sunday 14 March 2027, 01:00 UTC<",
        ">Sunday 28 March 2027, 03:00 (Europe/Amsterdam) · Sunday 28 March 2027, 01:00 UTC<",
        ">Sunday 4 April 2027, 02:00 (Europe/Amsterdam) · Sunday 4 April 2027, 00:00 UTC<",
    ] {
        assert!(page.body.contains(label), "{label} in {}", page.body);
    }
    assert!(page.body.contains("value=\"now\">Apply now</button>"));

    let moved = scene
        .send(
            scene.routine,
            &[("action", "move"), ("to", "2027-03-28T01:00:00Z")],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert_eq!(
        moved.location,
        format!("/operators/alpha?moved={}#maintenance", scene.routine)
    );
    let slot = scene.item(scene.routine).await.slot.unwrap();
    assert_eq!(slot.start, utc("2027-03-28T01:00:00Z"));
    assert_eq!(slot.latest_start, Some(utc("2027-03-28T02:30:00Z")));
    assert!(!slot.outside_windows);
    let after = scene.alpha.get(&moved.location).await;
    assert!(
        after.body.contains(
            "“Routine fix” moved to Sunday 28 March 2027, 03:00 (Europe/Amsterdam) \
             (Sunday 28 March 2027, 01:00 UTC)."
        ),
        "{}",
        after.body
    );
    assert!(
        after
            .body
            .contains("in your maintenance window starting 2027-03-28 01:00 UTC"),
        "the move is a notification: {}",
        after.body
    );

    let applied = scene
        .send(
            scene.routine,
            &[("action", "now"), ("to", "2027-03-14T01:00:00Z")],
        )
        .await;
    assert_eq!(applied.status, StatusCode::SEE_OTHER, "{}", applied.body);
    let slot = scene.item(scene.routine).await.slot.unwrap();
    assert_eq!(slot.start, utc(NOW), "applied now: the slot starts now");
    assert_eq!(slot.latest_start, None);
    assert!(slot.outside_windows, "Monday noon is no window");
    let after = scene.alpha.get(&applied.location).await;
    assert!(
        after.body.contains("“Routine fix” is applied now"),
        "{}",
        after.body
    );
    assert!(
        after.body.contains("or you asked for it to be applied now"),
        "{}",
        after.body
    );
    scene.panel.stop().await;
}

#[tokio::test]
async fn refusals_are_shown_and_change_nothing_and_only_the_operator_moves_its_own() {
    let scene = Scene::new().await;
    let before = scene.item(scene.routine).await;
    let unchanged = |item: Item| {
        assert_eq!(item, before, "the maintenance was not changed");
    };

    // After the deadline, or not a window: shown on the dashboard, with the form still there.
    for (to, says) in [
        (
            "2027-04-11T00:00:00Z",
            "must be applied before 2027-04-10T00:00:00+00:00",
        ),
        (
            "2027-03-15T09:00:00Z",
            "2027-03-15T09:00:00+00:00 is not the start of one of your coming maintenance windows",
        ),
    ] {
        let refused = scene
            .send(scene.routine, &[("action", "move"), ("to", to)])
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(refused.body.contains("“Routine fix” was not moved: "));
        assert!(refused.body.contains(says), "{says} in {}", refused.body);
        assert!(refused.body.contains("class=\"error\""));
        unchanged(scene.item(scene.routine).await);
    }
    // A maintenance being applied cannot be moved, nor applied again.
    for action in ["now", "move"] {
        let fields = [("action", action), ("to", "2027-03-14T01:00:00Z")];
        let refused = scene.send(scene.running, &fields).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(
            refused
                .body
                .contains("there is no scheduled maintenance to move"),
            "{}",
            refused.body
        );
        assert_eq!(scene.item(scene.running).await.status, ItemStatus::Running);
    }
    // A form the panel cannot read.
    let garbled = scene
        .send(scene.routine, &[("action", "move"), ("to", "next sunday")])
        .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);

    // Without the session's CSRF token, or with another: refused.
    let path = format!("/operators/alpha/maintenance/{}", scene.routine);
    let missing = scene.alpha.post(&path, &[("action", "now")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = scene
        .alpha
        .post(&path, &[("action", "now"), ("csrf", "not-the-token")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    unchanged(scene.item(scene.routine).await);

    // beta, with its own valid token, can neither reach alpha's form nor name alpha's
    // release as its own.
    let as_alpha = scene
        .send_as(
            &scene.beta,
            "/operators/beta",
            scene.routine,
            &[("action", "now")],
        )
        .await;
    assert_eq!(as_alpha.status, StatusCode::NOT_FOUND);
    let as_beta = scene
        .beta
        .submit(
            "/operators/beta",
            &format!("/operators/beta/maintenance/{}", scene.routine),
            &[("action", "now")],
        )
        .await;
    assert_eq!(as_beta.status, StatusCode::NOT_FOUND);
    unchanged(scene.item(scene.routine).await);
    scene.panel.stop().await;
}
