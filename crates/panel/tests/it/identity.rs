//! The operator's own directory in the panel, against a real OpenLDAP (the testkit's `slapd`):
//! the scheduled user sync (run with a manual clock) and what the dashboard and the
//! configuration page's "Check identity provider" button show, to the operator only.

use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::clock::{Clock, ManualClock, SystemClock};
use fediversity_engine::store::StateStore as _;
use fediversity_model::ServiceKind;
use fediversity_model::names::{OperatorId, SecretName};
use fediversity_panel::Platform;
use fediversity_panel::identity::{SyncRecord, SyncSchedule, sync_due};
use fediversity_panel::worker::{Worker, enqueue_deployment};
use fediversity_providers::identity::sync::Outcome;
use fediversity_providers::{DirectoryOperatorSecrets, IdentityOptions};
use fediversity_store::{DeploymentStatus, Store};
use fediversity_testkit::recorder::Recorder;
use fediversity_testkit::slapd::{ADMIN_GROUP, BIND_DN, BIND_PASSWORD, PEOPLE, Slapd};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::harness::{Panel, configure, mastodon_config, platform_in};

const HOUR: Duration = Duration::from_secs(3600);

/// The `pluginAuth` PeerTube records on the accounts its LDAP plugin made.
const LDAP_PLUGIN: &str = "peertube-plugin-auth-ldap";

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
    assert!(changes.removed.is_empty());
    // Nothing is deployed: the admin's role awaits a person on every service.
    assert!(
        awaiting
            .iter()
            .all(|a| a.username == "alice" && a.what.contains("role")),
        "{awaiting:?}"
    );
    assert_eq!(awaiting.len(), 3, "{awaiting:?}");

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
        "nothing is deployed: no service admin credential is recorded"
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
            ("peertube", "bob"),
            ("mastodon", "carol"),
            ("pixelfed", "carol"),
            ("peertube", "carol")
        ]
    );
    assert!(
        awaiting[0].what.contains("not deployed yet"),
        "{awaiting:?}"
    );
    assert!(
        awaiting[1].what.contains("php artisan user:delete bob"),
        "{awaiting:?}"
    );
    assert!(
        awaiting[4].what.contains("php artisan user:admin carol"),
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

/// Stand-ins for the operator's Mastodon and PeerTube behind HTTPS, knowing `alice`, `bob` and
/// `carol` (on PeerTube, as accounts its LDAP plugin made); PeerTube signs `root` in and hands
/// out `token`, and revokes it.
async fn service_stand_ins(peertube_token: &str) -> (Recorder, Recorder) {
    let mastodon = Recorder::https().await;
    mastodon.answer(
        "GET",
        "/api/v2/admin/accounts",
        200,
        r#"[{"id":"109","username":"bob","domain":null}]"#,
    );
    mastodon.answer("POST", "/api/v1/admin/accounts/109/action", 200, "{}");
    let peertube = Recorder::https().await;
    peertube.answer_peertube_sign_in(peertube_token);
    peertube.answer(
        "GET",
        "/api/v1/users",
        200,
        &json!({"total": 3, "data": [
            {"id": 5, "username": "alice", "email": "alice@example.org", "pluginAuth": LDAP_PLUGIN},
            {"id": 7, "username": "bob", "email": "bob@example.org", "pluginAuth": LDAP_PLUGIN},
            {"id": 9, "username": "carol", "email": "carol@example.org", "pluginAuth": LDAP_PLUGIN},
        ]})
        .to_string(),
    );
    for user in ["5", "9"] {
        peertube.answer("PUT", &format!("/api/v1/users/{user}"), 204, "");
    }
    peertube.answer("POST", "/api/v1/users/7/block", 204, "");
    (mastodon, peertube)
}

/// Deploys `operator`'s latest configuration in the sandbox and waits for it to succeed. The
/// test holds the operator's sync claim meanwhile, so that the worker's own hourly sync leaves
/// the operator to the test.
async fn deploy(store: &Arc<Store>, platform: &Platform, operator: &OperatorId) {
    let claimed = store
        .claim_identity_sync(operator, "test", SystemClock.now(), HOUR)
        .await
        .unwrap();
    assert!(claimed);
    let version = store
        .configurations(operator)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .version;
    let deployment = enqueue_deployment(store, operator, version, false)
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(Worker::new(store.clone(), platform.clone()).run(stopped));
    let mut status = DeploymentStatus::Queued;
    for _ in 0..1200 {
        let deployments = store.deployments(operator).await.unwrap();
        let current = deployments.iter().find(|d| d.id == deployment).unwrap();
        status = current.status;
        if matches!(
            status,
            DeploymentStatus::Succeeded | DeploymentStatus::Failed
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send_replace(true);
    worker.await.unwrap();
    assert_eq!(
        status,
        DeploymentStatus::Succeeded,
        "the sandbox deployment"
    );
    store.release_identity_sync(operator, "test").await.unwrap();
}

/// The `value` of the secret recorded at `address`.
async fn recorded_secret(store: &Store, operator: &OperatorId, address: &str) -> String {
    let state = store.load_state(operator).await.unwrap();
    let record = &state.resources[&address.parse().unwrap()];
    record.outputs["value"]["$secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_deployed_operators_sync_suspends_blocks_and_maps_admins_retrying_what_failed() {
    let slapd = Slapd::start();
    const PEERTUBE_TOKEN: &str = "peertube-access-token-for-root";
    let (mastodon, peertube) = service_stand_ins(PEERTUBE_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let (store, mut platform) = platform_in(dir.path()).await;
    let mut trusted = slapd.ca_pem().to_owned();
    for stand_in in [&mastodon, &peertube] {
        trusted.push_str(stand_in.ca_pem().unwrap());
    }
    platform.identity = IdentityOptions {
        ca_pem: Some(trusted.into_bytes()),
        timeout: Duration::from_secs(10),
    };
    let uni = OperatorId::try_from("uni".to_owned()).unwrap();
    store.create_operator(&uni, 0).await.unwrap();
    let mut document = config("uni", Some(ldap(&slapd)));
    document["services"]["pixelfed"]["enable"] = json!(false);
    store.save_configuration(&uni, &document, 0).await.unwrap();
    store_bind_password(&dir.path().join("sandbox"), &uni, BIND_PASSWORD);
    deploy(&store, &platform, &uni).await;
    let token = recorded_secret(&store, &uni, "secret.mastodon-admin-api-token").await;
    assert_eq!(token.len(), 64);
    let root_password = recorded_secret(&store, &uni, "secret.peertube-admin").await;

    let clock = Arc::new(ManualClock::at(SystemClock.now()));
    let mut schedule = SyncSchedule::new(HOUR, clock.clone());
    schedule.service_urls = [
        (ServiceKind::Mastodon, mastodon.url()),
        (ServiceKind::Peertube, peertube.url()),
    ]
    .into();

    // The first sync makes the directory's admin a PeerTube administrator; Mastodon's role
    // awaits a person.
    sync_due(&store, &platform, "worker-1", &schedule)
        .await
        .unwrap();
    let (_, first) = record(&store, &uni).await;
    let SyncRecord::Synced {
        roles, awaiting, ..
    } = first
    else {
        panic!("the first sync failed: {first:?}");
    };
    assert_eq!(
        roles
            .iter()
            .map(|c| (c.service, c.username.as_str(), &c.outcome))
            .collect::<Vec<_>>(),
        [(ServiceKind::Peertube, "alice", &Outcome::RoleSet)]
    );
    assert_eq!(awaiting.len(), 1, "{awaiting:?}");
    assert!(
        awaiting[0].service == ServiceKind::Mastodon
            && awaiting[0]
                .what
                .contains("tootctl accounts modify alice --role Admin"),
        "{awaiting:?}"
    );
    assert!(mastodon.requests().is_empty());

    // bob leaves, carol joins the admin group; PeerTube is busy for the block.
    slapd.remove_user("bob");
    slapd.add_admin("carol");
    peertube.answer("POST", "/api/v1/users/7/block", 503, "busy");
    clock.advance(HOUR);
    sync_due(&store, &platform, "worker-1", &schedule)
        .await
        .unwrap();
    let (snapshot, second) = record(&store, &uni).await;
    let SyncRecord::Synced {
        deprovisioned,
        roles,
        awaiting,
        ..
    } = second
    else {
        panic!("the second sync failed: {second:?}");
    };
    assert_eq!(deprovisioned[0].service, ServiceKind::Mastodon);
    assert_eq!(deprovisioned[0].outcome, Outcome::Suspended);
    assert_eq!(deprovisioned[1].service, ServiceKind::Peertube);
    let Outcome::Failed(why) = &deprovisioned[1].outcome else {
        panic!("{deprovisioned:?}")
    };
    assert!(why.contains("503"), "{why}");
    assert_eq!(
        (roles[0].username.as_str(), &roles[0].outcome),
        ("carol", &Outcome::RoleSet)
    );
    assert!(
        awaiting.iter().any(|a| a
            .what
            .contains("tootctl accounts modify carol --role Admin")),
        "{awaiting:?}"
    );
    assert_eq!(snapshot["pending"][0]["username"], "bob", "{snapshot}");

    let bearer = Some(format!("Bearer {token}"));
    let requests = mastodon.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.authorization == bearer));
    assert_eq!(requests[1].path, "/api/v1/admin/accounts/109/action");
    let requests = peertube.requests();
    let sign_in = requests
        .iter()
        .find(|r| r.path == "/api/v1/users/token")
        .unwrap();
    assert!(
        sign_in.body.contains("username=root") && sign_in.body.contains(&root_password),
        "the sign-in uses root's generated password"
    );
    let peertube_bearer = Some(format!("Bearer {PEERTUBE_TOKEN}"));
    let grant = requests
        .iter()
        .rfind(|r| r.method == "PUT" && r.path == "/api/v1/users/9")
        .unwrap();
    assert_eq!(grant.authorization, peertube_bearer);
    assert!(grant.body.contains(r#""role":0"#), "{}", grant.body);

    // PeerTube is back: the next sync blocks bob, with nothing new in the directory.
    peertube.answer("POST", "/api/v1/users/7/block", 204, "");
    clock.advance(HOUR);
    sync_due(&store, &platform, "worker-1", &schedule)
        .await
        .unwrap();
    let (snapshot, third) = record(&store, &uni).await;
    let SyncRecord::Synced {
        changes,
        deprovisioned,
        ..
    } = third
    else {
        panic!("the third sync failed: {third:?}");
    };
    assert!(changes.removed.is_empty());
    assert_eq!(
        deprovisioned
            .iter()
            .map(|c| (c.service, c.username.as_str(), &c.outcome))
            .collect::<Vec<_>>(),
        [(ServiceKind::Peertube, "bob", &Outcome::Blocked)]
    );
    assert!(snapshot.get("pending").is_none(), "{snapshot}");
    let blocks: Vec<_> = peertube
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/users/7/block")
        .collect();
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|r| r.authorization == peertube_bearer));
    // Each sync signs out of PeerTube once its calls are done.
    let last = peertube.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/api/v1/users/revoke-token")
    );
    assert_eq!(last.authorization, peertube_bearer);

    // No token or password reached the record the dashboard shows.
    let report = store.identity_sync(&uni).await.unwrap().unwrap().report;
    let text = report.to_string();
    assert!(
        !text.contains(&token) && !text.contains(&root_password) && !text.contains(PEERTUBE_TOKEN)
    );
}
