//! The operator's own directory in the panel, against a real OpenLDAP (the testkit's `slapd`):
//! the scheduled user sync (run with a manual clock) and what the dashboard and the
//! configuration page's "Check identity provider" button show, to the operator only.

use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::clock::{Clock, ManualClock, SystemClock};
use fediversity_model::names::{OperatorId, SecretName};
use fediversity_panel::Platform;
use fediversity_panel::identity::{SyncRecord, SyncSchedule, sync_due};
use fediversity_providers::{DirectoryOperatorSecrets, IdentityOptions};
use fediversity_store::Store;
use fediversity_testkit::slapd::{ADMIN_GROUP, BIND_DN, BIND_PASSWORD, PEOPLE, Slapd};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Panel, configure, mastodon_config, platform_in};

const HOUR: Duration = Duration::from_secs(3600);

fn options(slapd: &Slapd) -> IdentityOptions {
    IdentityOptions {
        ca_pem: Some(slapd.ca_pem().as_bytes().to_vec()),
        timeout: Duration::from_secs(10),
    }
}

fn ldap(slapd: &Slapd) -> Value {
    json!({"ldap": {
        "url": slapd.ldaps_url(),
        "bind_dn": BIND_DN,
        "bind_password": {"secret": "ldap-bind"},
        "user_base": PEOPLE,
        "admin_group": ADMIN_GROUP,
    }})
}

/// A configuration of `operator` running every service, with `identity` if given.
fn config(operator: &str, identity: Option<Value>) -> Value {
    let mut config = json!({
        "version": 1,
        "operator": {"id": operator, "name": "University"},
        "domain": format!("{operator}.example"),
        "services": {
            "mastodon": {"enable": true, "size": "small", "subdomain": "social"},
            "pixelfed": {"enable": true, "size": "small", "subdomain": "photos"},
            "peertube": {"enable": true, "size": "small", "subdomain": "video"},
        },
        "admin": {"username": "admin", "email": format!("admin@{operator}.example")},
        "maintenance": {"time_zone": "Europe/Amsterdam", "windows": [
            {"days": ["sat"], "start": "02:00", "duration_minutes": 120}
        ]},
    });
    if let Some(identity) = identity {
        config["identity"] = identity;
    }
    config
}

/// Stores the operator secret `ldap-bind` as the sandbox keeps it.
fn store_bind_password(sandbox: &std::path::Path, operator: &OperatorId, password: &str) {
    let name = SecretName::try_from("ldap-bind".to_owned()).unwrap();
    let path = DirectoryOperatorSecrets::new(sandbox).path(operator, &name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{password}\n")).unwrap();
}

async fn record(store: &Store, operator: &OperatorId) -> (Value, SyncRecord) {
    let sync = store.identity_sync(operator).await.unwrap().unwrap();
    (sync.snapshot, serde_json::from_value(sync.report).unwrap())
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test]
async fn the_scheduled_sync_reports_changes_once_a_period_and_survives_a_directory_outage() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut platform) = platform_in(dir.path()).await;
    platform.identity = options(&slapd);
    let (uni, plain) = (
        OperatorId::try_from("uni".to_owned()).unwrap(),
        OperatorId::try_from("plain".to_owned()).unwrap(),
    );
    for (operator, identity) in [(&uni, Some(ldap(&slapd))), (&plain, None)] {
        store.create_operator(operator, 0).await.unwrap();
        let document = config(operator.as_str(), identity);
        store
            .save_configuration(operator, &document, 0)
            .await
            .unwrap();
    }
    store_bind_password(&dir.path().join("sandbox"), &uni, BIND_PASSWORD);
    let clock = Arc::new(ManualClock::at(1_000_000));
    let schedule = SyncSchedule::new(HOUR, clock.clone());

    // Two workers at once: the directory is read once.
    let (first, second) = tokio::join!(
        sync_due(&store, &platform, "worker-1", &schedule),
        sync_due(&store, &platform, "worker-2", &schedule),
    );
    let mut synced = first.unwrap();
    synced.extend(second.unwrap());
    assert_eq!(
        synced,
        vec![uni.clone()],
        "only the operator with LDAP, once"
    );
    let (_, first) = record(&store, &uni).await;
    let SyncRecord::Synced {
        users,
        admins,
        changes,
        awaiting,
        held_back,
        ..
    } = first
    else {
        panic!("the first sync failed: {first:?}");
    };
    assert_eq!((users, admins, held_back), (Some(3), Some(1), None));
    assert_eq!(changes.added, names(&["alice", "bob", "carol"]));
    assert_eq!(changes.admin_granted, names(&["alice"]));
    assert!(changes.removed.is_empty() && awaiting.is_empty());

    // Within the period nothing runs, however often the worker looks.
    slapd.add_user("dave");
    slapd.remove_user("bob");
    slapd.add_admin("carol");
    clock.advance(HOUR / 2);
    assert!(
        sync_due(&store, &platform, "worker-1", &schedule)
            .await
            .unwrap()
            .is_empty()
    );

    clock.advance(HOUR / 2);
    assert_eq!(
        sync_due(&store, &platform, "worker-2", &schedule)
            .await
            .unwrap(),
        vec![uni.clone()]
    );
    let (snapshot, second) = record(&store, &uni).await;
    let SyncRecord::Synced {
        users,
        admins,
        changes,
        awaiting,
        deprovisioned,
        ..
    } = second
    else {
        panic!("the second sync failed: {second:?}");
    };
    assert_eq!((users, admins), (Some(3), Some(2)));
    assert_eq!(changes.added, names(&["dave"]));
    assert_eq!(changes.removed, names(&["bob"]));
    assert_eq!(changes.admin_granted, names(&["carol"]));
    assert!(
        deprovisioned.is_empty(),
        "no service admin token exists yet"
    );
    let services: Vec<_> = awaiting
        .iter()
        .map(|a| (a.service.as_str(), a.username.as_str()))
        .collect();
    assert_eq!(
        services,
        [
            ("mastodon", "bob"),
            ("pixelfed", "bob"),
            ("peertube", "bob")
        ]
    );
    assert!(
        awaiting[1].what.contains("php artisan user:delete bob"),
        "{awaiting:?}"
    );

    // The directory goes away: a failed sync is recorded, the snapshot kept, and the next
    // period tries again.
    drop(slapd);
    clock.advance(HOUR);
    assert_eq!(
        sync_due(&store, &platform, "worker-1", &schedule)
            .await
            .unwrap(),
        vec![uni.clone()]
    );
    let (kept, failed) = record(&store, &uni).await;
    assert_eq!(kept, snapshot);
    let SyncRecord::Failed { error } = failed else {
        panic!("a sync against a stopped server succeeded: {failed:?}");
    };
    assert!(error.contains("cannot reach"), "{error}");
    assert!(!error.contains(BIND_PASSWORD), "{error}");
    clock.advance(HOUR);
    assert_eq!(
        sync_due(&store, &platform, "worker-1", &schedule)
            .await
            .unwrap(),
        vec![uni.clone()]
    );
}

#[tokio::test]
async fn the_operator_checks_its_directory_and_sees_its_last_sync_and_nobody_else_does() {
    let slapd = Slapd::start();
    let identity = options(&slapd);
    let panel = Panel::start_on(
        |options| options,
        |platform| Platform {
            identity,
            ..platform
        },
    )
    .await;
    let alpha = panel.operator("alpha").await;
    let beta = panel.operator("beta").await;
    let alpha_id = OperatorId::try_from("alpha".to_owned()).unwrap();
    let saved = configure(&alpha, "alpha", &mastodon_config("Alpha", "alpha.example")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let mut document = panel
        .store
        .configurations(&alpha_id)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .config;
    document["identity"] = ldap(&slapd);
    let now = SystemClock.now();
    panel
        .store
        .save_configuration(&alpha_id, &document, now)
        .await
        .unwrap();
    let configure_path = "/operators/alpha/configure";
    let check_path = "/operators/alpha/identity/check";

    // Before the password is stored, the check says which secret is missing.
    let page = alpha.submit(configure_path, check_path, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("operator secret `ldap-bind` is missing"),
        "{}",
        page.body
    );

    store_bind_password(&panel.sandbox(), &alpha_id, "not-the-password");
    let page = alpha.submit(configure_path, check_path, &[]).await;
    assert!(
        page.body.contains("refused the credentials of"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("not-the-password"));

    store_bind_password(&panel.sandbox(), &alpha_id, BIND_PASSWORD);
    let page = alpha.submit(configure_path, check_path, &[]).await;
    assert!(
        page.body.contains("3 users, 1 of them administrators"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Check identity provider"));

    // The button is a form: without the CSRF token it is refused; another operator's is not
    // there at all.
    assert_eq!(
        alpha.post(check_path, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let page = beta
        .submit("/operators/beta/configure", check_path, &[])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);

    // The dashboard shows the last sync, then what changed and what awaits a person.
    let clock = Arc::new(ManualClock::at(now + 1));
    let schedule = SyncSchedule::new(HOUR, clock.clone());
    sync_due(&panel.store, &panel.platform, "test", &schedule)
        .await
        .unwrap();
    let page = alpha.get("/operators/alpha").await;
    assert!(
        page.body.contains("3 users, 1 administrators"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Added: alice, bob, carol"),
        "{}",
        page.body
    );
    slapd.remove_user("bob");
    clock.advance(HOUR);
    sync_due(&panel.store, &panel.platform, "test", &schedule)
        .await
        .unwrap();
    let page = alpha.get("/operators/alpha").await;
    assert!(page.body.contains("Removed: bob"), "{}", page.body);
    assert!(page.body.contains("Awaiting a person"), "{}", page.body);
    assert!(page.body.contains("suspend `bob`"), "{}", page.body);

    assert_eq!(
        beta.get("/operators/alpha").await.status,
        StatusCode::NOT_FOUND
    );
    let page = beta.get("/operators/beta").await;
    assert!(
        !page.body.contains("User sync") && !page.body.contains("alice"),
        "{}",
        page.body
    );
    panel.stop().await;
}
