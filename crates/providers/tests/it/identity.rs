//! The `identity` provider against a real OpenLDAP (`slapd`, started by the testkit with a
//! small directory and its own CA), OpenID Connect discovery against a loopback HTTPS server,
//! and the services' de-provisioning requests against a loopback recorder.

use std::time::{Duration, Instant};

use fediversity_engine::provider::{ErrorKind, Provider};
use fediversity_model::ServiceKind;
use fediversity_model::names::HttpsUrl;
use fediversity_providers::SecretString;
use fediversity_providers::identity::peertube;
use fediversity_providers::identity::sync::{
    Action, Credential, Outcome, Pending, ServiceAdmin, ServiceCall, Snapshot, SyncOptions, sync,
};
use fediversity_providers::identity::{
    CheckReport, IdentityCheckProvider, IdentityError, IdentityOptions, LdapSettings, check,
    ldap::read_directory, oidc,
};
use fediversity_testkit::recorder::{RecordedRequest, Recorder};
use fediversity_testkit::slapd::{ADMIN_GROUP, BIND_DN, BIND_PASSWORD, PEOPLE, Slapd};
use serde_json::{Value, json};

use crate::ctx;

const TOKEN: &str = "poison-admin-token-91c2";

fn options(ca_pem: Option<&str>) -> IdentityOptions {
    IdentityOptions {
        ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        timeout: Duration::from_secs(10),
    }
}

fn settings(url: &str, start_tls: bool) -> LdapSettings {
    serde_json::from_value(json!({
        "url": url,
        "start_tls": start_tls,
        "bind_dn": BIND_DN,
        "user_base": PEOPLE,
        "user_filter": "(objectClass=inetOrgPerson)",
        "admin_group": ADMIN_GROUP,
    }))
    .unwrap()
}

fn password() -> SecretString {
    SecretString::new(BIND_PASSWORD)
}

async fn check_ldap(
    settings: &LdapSettings,
    password: &str,
    options: &IdentityOptions,
) -> Result<(usize, usize), IdentityError> {
    let snapshot = read_directory(settings, &SecretString::new(password), options).await?;
    Ok((snapshot.users.len(), snapshot.admins()))
}

fn provider_inputs(settings: &LdapSettings, password: &str) -> Value {
    json!({"ldap": settings, "bind_password": password})
}

#[tokio::test]
async fn ldaps_and_start_tls_checks_count_users_and_admins() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    for settings in [
        settings(&slapd.ldaps_url(), false),
        settings(&slapd.ldap_url(), true),
    ] {
        assert_eq!(
            check_ldap(&settings, BIND_PASSWORD, &options)
                .await
                .unwrap(),
            (3, 1),
            "{}",
            settings.url
        );
    }
    let provider = IdentityCheckProvider::new(options);
    let settings = settings(&slapd.ldaps_url(), false);
    let outputs = provider
        .create(
            &ctx("acme", "secret.identity-ldap"),
            &provider_inputs(&settings, BIND_PASSWORD),
        )
        .await
        .unwrap();
    assert_eq!(outputs.values["users"], json!(3));
    assert_eq!(outputs.values["admins"], json!(1));
    let checked = outputs.values["checked"].as_str().unwrap().to_owned();
    assert!(checked.starts_with("sha256:"), "{checked}");
    let again = provider
        .read(
            &ctx("acme", "secret.identity-ldap"),
            &provider_inputs(&settings, BIND_PASSWORD),
            Some(&outputs),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.outputs, outputs,
        "the digest is stable, not a timestamp"
    );
}

#[tokio::test]
async fn the_panel_check_reports_counts_and_needs_the_password() {
    let slapd = Slapd::start();
    let provider: fediversity_model::operator::IdentityProvider =
        serde_json::from_value(json!({"ldap": {
            "url": slapd.ldap_url(),
            "start_tls": true,
            "bind_dn": BIND_DN,
            "bind_password": {"secret": "ldap-bind"},
            "user_base": PEOPLE,
            "admin_group": ADMIN_GROUP,
        }}))
        .unwrap();
    let options = options(Some(slapd.ca_pem()));
    let report = check(&provider, Some(&password()), &options).await.unwrap();
    assert_eq!(
        report,
        CheckReport::Ldap {
            users: 3,
            admins: 1
        }
    );
    let error = check(&provider, None, &options).await.unwrap_err();
    assert!(error.to_string().contains("`ldap-bind`"), "{error}");
}

#[tokio::test]
async fn tls_failures_are_told_apart_and_permanent() {
    let slapd = Slapd::start();
    let untrusted = check_ldap(
        &settings(&slapd.ldaps_url(), false),
        BIND_PASSWORD,
        &options(None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(untrusted, IdentityError::Tls { .. }),
        "{untrusted:?}"
    );
    assert!(
        untrusted.to_string().contains("UnknownIssuer"),
        "{untrusted}"
    );
    let untrusted_start_tls = check_ldap(
        &settings(&slapd.ldap_url(), true),
        BIND_PASSWORD,
        &options(None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(untrusted_start_tls, IdentityError::Tls { .. }),
        "{untrusted_start_tls:?}"
    );
    let wrong_name = check_ldap(
        &settings(&slapd.ldaps_url_by_address(), false),
        BIND_PASSWORD,
        &options(Some(slapd.ca_pem())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(wrong_name, IdentityError::Tls { .. }),
        "{wrong_name:?}"
    );
    assert!(
        wrong_name.to_string().contains("not valid for name"),
        "{wrong_name}"
    );
    assert!(!wrong_name.is_transient());
}

#[tokio::test]
async fn bad_credentials_empty_searches_and_missing_groups_are_named() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let good = settings(&slapd.ldaps_url(), false);

    let refused = check_ldap(&good, "not-the-password", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IdentityError::BadCredentials { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains(BIND_DN), "{refused}");

    let mut empty = good.clone();
    empty.user_filter = "(uid=nobody-at-all)".into();
    let error = check_ldap(&empty, BIND_PASSWORD, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, IdentityError::EmptySearch { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("(uid=nobody-at-all)"), "{error}");

    let mut no_base = good.clone();
    no_base.user_base = "ou=nobody,dc=example,dc=org".into();
    let error = check_ldap(&no_base, BIND_PASSWORD, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, IdentityError::NoSuchBase { .. }),
        "{error:?}"
    );

    let mut no_group = good.clone();
    no_group.admin_group = Some("cn=staff,ou=groups,dc=example,dc=org".into());
    let error = check_ldap(&no_group, BIND_PASSWORD, &options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, IdentityError::AdminGroupMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("cn=staff,ou=groups"), "{error}");

    let mut bad_filter = good.clone();
    bad_filter.user_filter = "objectClass=person(".into();
    let error = check_ldap(&bad_filter, BIND_PASSWORD, &options)
        .await
        .unwrap_err();
    assert!(matches!(error, IdentityError::Settings(_)), "{error:?}");

    let plain = settings(&slapd.ldap_url(), false);
    let error = check_ldap(&plain, BIND_PASSWORD, &options)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("set start_tls"), "{error}");

    let error = check_ldap(&good, "", &options).await.unwrap_err();
    assert!(error.to_string().contains("anonymous bind"), "{error}");

    // Through the provider: permanent, and the password appears nowhere.
    let provider = IdentityCheckProvider::new(options);
    let error = provider
        .create(
            &ctx("acme", "secret.identity-ldap"),
            &provider_inputs(&good, "poison-wrong-password"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(!error.message.contains("poison"), "{}", error.message);
    assert!(!format!("{error:?}").contains("poison"));
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_and_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = check_ldap(
        &settings(&format!("ldaps://localhost:{port}"), false),
        BIND_PASSWORD,
        &options(None),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, IdentityError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&port.to_string()), "{error}");
    let provider_error: fediversity_engine::ProviderError = error.into();
    assert_eq!(provider_error.kind, ErrorKind::Transient);
}

/// A Mastodon and a PeerTube admin API that know `bob` (and PeerTube `alice` and `dave`);
/// PeerTube signs `root` in and out. On PeerTube, bob's account is `bob-1` (id 7): a local
/// account had the name `bob` first.
async fn service_recorders() -> (Recorder, Recorder) {
    let mastodon = Recorder::http().await;
    mastodon.answer(
        "GET",
        "/api/v2/admin/accounts",
        200,
        r#"[{"id":"109","username":"bob","domain":null},{"id":"110","username":"bobby","domain":null}]"#,
    );
    mastodon.answer("POST", "/api/v1/admin/accounts/109/action", 200, "{}");
    let peertube = Recorder::http().await;
    peertube.answer_peertube_sign_in(TOKEN);
    peertube.answer(
        "GET",
        "/api/v1/users",
        200,
        &json!({"total": 5, "data": [
            peertube_user(6, "bobby", "bobby@example.org"),
            {"id": 4, "username": "bob", "email": "bob@elsewhere.example", "pluginAuth": null},
            peertube_user(7, "bob-1", "bob@example.org"),
            peertube_user(5, "alice", "alice@example.org"),
            peertube_user(8, "dave", "dave@example.org"),
        ]})
        .to_string(),
    );
    peertube.answer("POST", "/api/v1/users/7/block", 204, "");
    peertube.answer("PUT", "/api/v1/users/5", 204, "");
    peertube.answer("PUT", "/api/v1/users/8", 204, "");
    (mastodon, peertube)
}

/// A PeerTube user as the admin API lists it, made by the LDAP plugin.
fn peertube_user(id: u64, username: &str, email: &str) -> Value {
    json!({"id": id, "username": username, "email": email,
        "pluginAuth": "peertube-plugin-auth-ldap", "blocked": false})
}

const ROOT_PASSWORD: &str = "poison-root-password-5e1a";

fn admins(mastodon: &Recorder, peertube: &Recorder) -> Vec<ServiceAdmin> {
    vec![
        ServiceAdmin {
            service: ServiceKind::Mastodon,
            url: mastodon.url(),
            credential: Credential::Token(SecretString::new(TOKEN)),
            operator_admin: None,
        },
        ServiceAdmin {
            service: ServiceKind::Peertube,
            url: format!("{}/", peertube.url()),
            credential: Credential::PeertubeRoot(SecretString::new(ROOT_PASSWORD)),
            operator_admin: None,
        },
        ServiceAdmin {
            service: ServiceKind::Pixelfed,
            url: "https://pixelfed.example.org".into(),
            credential: Credential::Token(SecretString::new(TOKEN)),
            operator_admin: None,
        },
    ]
}

/// `(method, path, query)` of a request.
fn line(request: &RecordedRequest) -> (&str, &str, &str) {
    (
        request.method.as_str(),
        request.path.as_str(),
        request.query.as_str(),
    )
}

fn outcomes(calls: &[ServiceCall]) -> Vec<(ServiceKind, &str, Action, &Outcome)> {
    calls
        .iter()
        .map(|c| (c.service, c.username.as_str(), c.action, &c.outcome))
        .collect()
}

#[tokio::test]
async fn sync_reports_changes_and_deprovisions_removed_users_with_the_documented_requests() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let settings = settings(&slapd.ldaps_url(), false);
    let (mastodon, peertube) = service_recorders().await;
    let services = admins(&mastodon, &peertube);
    let sync_options = SyncOptions::default();

    let first = sync(
        &settings,
        &password(),
        &Snapshot::default(),
        &services,
        &sync_options,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(first.report.added, ["alice", "bob", "carol"]);
    assert_eq!(first.report.admin_granted, ["alice"]);
    assert!(first.report.removed.is_empty());
    // The first run grants the directory's admins their role: PeerTube by its API, the
    // others by hand.
    let calls = outcomes(&first.calls);
    assert_eq!(
        calls[1],
        (
            ServiceKind::Peertube,
            "alice",
            Action::GrantAdmin,
            &Outcome::RoleSet
        )
    );
    assert!(
        matches!(calls[0], (ServiceKind::Mastodon, "alice", Action::GrantAdmin, Outcome::Manual(what)) if what.contains("tootctl accounts modify alice --role Admin")),
        "{calls:?}"
    );
    assert!(
        matches!(calls[2], (ServiceKind::Pixelfed, "alice", Action::GrantAdmin, Outcome::Manual(what)) if what.contains("php artisan user:admin alice")),
        "{calls:?}"
    );
    assert!(first.snapshot.pending.is_empty());
    let signed_in = peertube.requests().len();
    assert!(
        mastodon.requests().is_empty(),
        "no Mastodon call for a role"
    );

    slapd.add_user("dave");
    slapd.add_admin("dave");
    slapd.remove_admin("alice");
    slapd.remove_user("bob");
    let second = sync(
        &settings,
        &password(),
        &first.snapshot,
        &services,
        &sync_options,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(second.report.added, ["dave"]);
    assert_eq!(second.report.removed, ["bob"]);
    assert_eq!(second.report.admin_granted, ["dave"]);
    assert_eq!(second.report.admin_revoked, ["alice"]);
    assert_eq!(second.held_back, None);
    let calls = outcomes(&second.calls);
    assert_eq!(
        calls[0],
        (
            ServiceKind::Mastodon,
            "bob",
            Action::Remove,
            &Outcome::Suspended
        )
    );
    assert!(
        matches!(calls[2], (ServiceKind::Mastodon, "alice", Action::RevokeAdmin, Outcome::Manual(what)) if what.contains("tootctl accounts modify alice --remove-role")),
        "{calls:?}"
    );
    assert_eq!(
        calls[3..6],
        [
            (
                ServiceKind::Peertube,
                "bob",
                Action::Remove,
                &Outcome::Blocked
            ),
            (
                ServiceKind::Peertube,
                "dave",
                Action::GrantAdmin,
                &Outcome::RoleSet
            ),
            (
                ServiceKind::Peertube,
                "alice",
                Action::RevokeAdmin,
                &Outcome::RoleSet
            ),
        ]
    );
    assert!(
        matches!(calls[6], (ServiceKind::Pixelfed, "bob", Action::Remove, Outcome::Manual(note)) if note.contains("php artisan user:delete bob")),
        "{calls:?}"
    );
    assert_eq!(second.snapshot.users.len(), 3);
    assert!(second.snapshot.pending.is_empty());

    let bearer = Some(format!("Bearer {TOKEN}"));
    let requests = mastodon.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        line(&requests[0]),
        ("GET", "/api/v2/admin/accounts", "origin=local&username=bob")
    );
    assert_eq!(requests[0].authorization, bearer);
    assert_eq!(
        line(&requests[1]),
        ("POST", "/api/v1/admin/accounts/109/action", "")
    );
    assert_eq!(requests[1].authorization, bearer);
    assert_eq!(
        requests[1].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        requests[1]
            .body
            .starts_with("type=suspend&text=Removed+from"),
        "{}",
        requests[1].body
    );

    let requests = &peertube.requests()[signed_in..];
    let lines: Vec<_> = requests.iter().map(line).collect();
    assert_eq!(
        lines,
        [
            ("GET", "/api/v1/oauth-clients/local", ""),
            ("POST", "/api/v1/users/token", ""),
            ("GET", "/api/v1/users", "search=bob&count=100"),
            ("POST", "/api/v1/users/7/block", ""),
            ("GET", "/api/v1/users", "search=dave&count=100"),
            ("PUT", "/api/v1/users/8", ""),
            ("GET", "/api/v1/users", "search=alice&count=100"),
            ("PUT", "/api/v1/users/5", ""),
            ("POST", "/api/v1/users/revoke-token", ""),
        ]
    );
    assert_eq!(requests[0].authorization, None);
    assert_eq!(requests[1].authorization, None);
    for request in &requests[2..] {
        assert_eq!(request.authorization, bearer, "{request:?}");
    }
    assert_eq!(
        requests[3].content_type.as_deref(),
        Some("application/json")
    );
    let body: Value = serde_json::from_str(&requests[3].body).unwrap();
    assert!(body["reason"].as_str().unwrap().len() <= 500, "{body}");
    let grant: Value = serde_json::from_str(&requests[5].body).unwrap();
    assert_eq!(grant, json!({"role": 0, "currentPassword": ROOT_PASSWORD}));
    let revoke: Value = serde_json::from_str(&requests[7].body).unwrap();
    assert_eq!(revoke, json!({"role": 2}));
}

#[tokio::test]
async fn peertube_root_signs_in_with_the_password_grant_and_a_refusal_never_shows_it() {
    let peertube = Recorder::https().await;
    peertube.answer_peertube_sign_in(TOKEN);
    let options = options(peertube.ca_pem());
    let password = SecretString::new(ROOT_PASSWORD);
    let token = peertube::sign_in(&peertube.url(), &password, &options)
        .await
        .unwrap();
    assert_eq!(token.expose(), TOKEN);
    let requests = peertube.requests();
    assert_eq!(
        requests.iter().map(line).collect::<Vec<_>>(),
        [
            ("GET", "/api/v1/oauth-clients/local", ""),
            ("POST", "/api/v1/users/token", "")
        ]
    );
    assert_eq!(
        requests[1].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> =
        reqwest::Url::parse(&format!("http://form/?{}", requests[1].body))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(field("client_id"), Some("v1ikx5hnfop4mdpnci8nsqh93c45rldf"));
    assert_eq!(
        field("client_secret"),
        Some("AjWiOapPltI6EnsWQwlFarRtLh4u8tDt")
    );
    assert_eq!(field("grant_type"), Some("password"));
    assert_eq!(field("username"), Some("root"));
    assert_eq!(field("password"), Some(ROOT_PASSWORD));

    // A refused password: a permanent error naming the endpoint and what to check, and
    // neither the password (even when the answer quotes it) nor a token.
    peertube.answer(
        "POST",
        "/api/v1/users/token",
        401,
        &format!(r#"{{"code":"invalid_grant","detail":"bad password {ROOT_PASSWORD}"}}"#),
    );
    let error = peertube::sign_in(&peertube.url(), &password, &options)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("/api/v1/users/token")
            && text.contains("401")
            && text.contains("admin-password"),
        "{text}"
    );
    assert!(
        !text.contains(ROOT_PASSWORD) && !text.contains(TOKEN),
        "{text}"
    );
    assert!(!error.is_transient());

    // PeerTube down: transient.
    peertube.answer("GET", "/api/v1/oauth-clients/local", 503, "{}");
    let error = peertube::sign_in(&peertube.url(), &password, &options)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn a_failed_call_stays_pending_and_is_made_at_the_next_sync() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let settings = settings(&slapd.ldaps_url(), false);
    let (mastodon, peertube) = service_recorders().await;
    let services = &admins(&mastodon, &peertube)[1..2];
    let previous = read_directory(&settings, &password(), &options)
        .await
        .unwrap();
    slapd.remove_user("bob");
    peertube.answer("POST", "/api/v1/users/7/block", 503, "busy");
    let failed = sync(
        &settings,
        &password(),
        &previous,
        services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    let Outcome::Failed(why) = &failed.calls[0].outcome else {
        panic!("{:?}", failed.calls)
    };
    assert!(why.contains("503") && !why.contains(TOKEN), "{why}");
    assert_eq!(
        failed.snapshot.pending,
        [Pending {
            service: ServiceKind::Peertube,
            username: "bob".into(),
            action: Action::Remove,
            email: Some("bob@example.org".into()),
        }]
    );

    // Nothing changed in the directory, but the block is made again, and then forgotten.
    peertube.answer("POST", "/api/v1/users/7/block", 204, "");
    let retried = sync(
        &settings,
        &password(),
        &failed.snapshot,
        services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    assert!(retried.report.removed.is_empty());
    assert_eq!(
        outcomes(&retried.calls),
        [(
            ServiceKind::Peertube,
            "bob",
            Action::Remove,
            &Outcome::Blocked
        )]
    );
    assert!(retried.snapshot.pending.is_empty());
    let quiet = sync(
        &settings,
        &password(),
        &retried.snapshot,
        services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    assert!(quiet.calls.is_empty());
}

#[tokio::test]
async fn sync_holds_back_mass_removals_and_never_acts_on_a_failed_read() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let settings = settings(&slapd.ldaps_url(), false);
    let (mastodon, peertube) = service_recorders().await;
    let services = admins(&mastodon, &peertube);
    let previous = read_directory(&settings, &password(), &options)
        .await
        .unwrap();

    slapd.remove_user("bob");
    slapd.remove_user("carol");
    let held = sync(
        &settings,
        &password(),
        &previous,
        &services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(held.report.removed, ["bob", "carol"]);
    let why = held.held_back.unwrap();
    assert!(why.contains("2 of 3"), "{why}");
    assert!(held.calls.is_empty());
    assert_eq!(held.snapshot, previous, "the previous snapshot is kept");

    let failed = sync(
        &settings,
        &SecretString::new("wrong"),
        &previous,
        &services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(failed, IdentityError::BadCredentials { .. }));
    let mut emptied = settings.clone();
    emptied.user_filter = "(uid=nobody-at-all)".into();
    let empty = sync(
        &emptied,
        &password(),
        &previous,
        &services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(empty, IdentityError::EmptySearch { .. }));
    assert!(mastodon.requests().is_empty() && peertube.requests().is_empty());

    let allowed = SyncOptions {
        max_removed_fraction: 1.0,
    };
    let done = sync(
        &settings,
        &password(),
        &previous,
        &services,
        &allowed,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(done.held_back, None);
    assert_eq!(done.calls.len(), 6);
}

#[tokio::test]
async fn service_refusals_and_unknown_accounts_are_reported_per_user() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let settings = settings(&slapd.ldaps_url(), false);
    let previous = read_directory(&settings, &password(), &options)
        .await
        .unwrap();
    let mastodon = Recorder::http().await;
    mastodon.answer("GET", "/api/v2/admin/accounts", 200, "[]");
    let peertube = Recorder::http().await;
    peertube.answer_peertube_sign_in(TOKEN);
    peertube.answer("GET", "/api/v1/users", 403, r#"{"error":"forbidden"}"#);
    let services = &admins(&mastodon, &peertube)[..2];
    slapd.remove_user("carol");
    let outcome = sync(
        &settings,
        &password(),
        &previous,
        services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(outcome.calls[0].outcome, Outcome::NoAccount);
    let Outcome::Failed(why) = &outcome.calls[1].outcome else {
        panic!("{:?}", outcome.calls)
    };
    assert!(
        why.contains("PeerTube") && why.contains("403") && why.contains("admin token"),
        "{why}"
    );
    assert!(
        !why.contains(TOKEN) && !why.contains(ROOT_PASSWORD),
        "{why}"
    );
}

fn discovery(issuer: &str, changes: Value) -> String {
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            doc.as_object_mut().unwrap().remove(key);
        } else {
            doc[key] = value.clone();
        }
    }
    doc.to_string()
}

#[tokio::test]
async fn oidc_discovery_is_fetched_and_checked() {
    let server = Recorder::https().await;
    let issuer = server.url();
    let trusted = options(server.ca_pem());
    let url = HttpsUrl::try_from(issuer.as_str()).unwrap();
    let answer = |doc: String| server.answer("GET", oidc::DISCOVERY_PATH, 200, &doc);

    answer(discovery(&issuer, json!({})));
    let found = oidc::discover(&url, &trusted).await.unwrap();
    assert_eq!(found.token_endpoint, format!("{issuer}/token"));
    assert_eq!(found.end_session_endpoint, Some(format!("{issuer}/logout")));
    let provider = IdentityCheckProvider::new(trusted.clone());
    let inputs =
        json!({"oidc": {"issuer": issuer, "client_id": "acme-social", "groups_claim": "groups"}});
    let outputs = provider
        .create(&ctx("acme", "secret.identity-oidc"), &inputs)
        .await
        .unwrap();
    assert_eq!(outputs.values["jwks_uri"], json!(format!("{issuer}/jwks")));
    assert!(
        outputs.values["checked"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    answer(discovery("https://elsewhere.example.org", json!({})));
    let error = oidc::discover(&url, &trusted).await.unwrap_err();
    assert!(error.to_string().contains("identical"), "{error}");

    answer(discovery(&issuer, json!({"userinfo_endpoint": null})));
    let error = oidc::discover(&url, &trusted).await.unwrap_err();
    assert!(
        error.to_string().contains("no `userinfo_endpoint`"),
        "{error}"
    );

    answer(discovery(
        &issuer,
        json!({"token_endpoint": "http://localhost/token"}),
    ));
    let error = provider
        .create(&ctx("acme", "secret.identity-oidc"), &inputs)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(error.message.contains("not https://"), "{}", error.message);

    server.answer("GET", oidc::DISCOVERY_PATH, 503, "{}");
    let error: fediversity_engine::ProviderError =
        oidc::discover(&url, &trusted).await.unwrap_err().into();
    assert_eq!(error.kind, ErrorKind::Transient);

    let untrusted = oidc::discover(&url, &options(None)).await.unwrap_err();
    assert!(
        matches!(untrusted, IdentityError::Tls { .. }),
        "{untrusted:?}"
    );

    let plain = json!({"oidc": {"issuer": issuer.replace("https://", "http://"), "client_id": "x", "groups_claim": "groups"}});
    let error = provider
        .create(&ctx("acme", "secret.identity-oidc"), &plain)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(error.message.contains("https://"), "{}", error.message);
}

#[tokio::test]
async fn the_operators_admin_and_peertubes_root_are_never_removed_nor_demoted() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let settings = settings(&slapd.ldaps_url(), false);
    let (mastodon, peertube) = service_recorders().await;
    let mut services = admins(&mastodon, &peertube)[..2].to_vec();
    services[0].operator_admin = Some("root".into());
    slapd.add_user("root");
    slapd.add_admin("root");
    let previous = read_directory(&settings, &password(), &options)
        .await
        .unwrap();
    slapd.remove_admin("root");
    let demoted = sync(
        &settings,
        &password(),
        &previous,
        &services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    slapd.remove_user("root");
    let removed = sync(
        &settings,
        &password(),
        &demoted.snapshot,
        &services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    for (calls, action) in [
        (&demoted.calls, Action::RevokeAdmin),
        (&removed.calls, Action::Remove),
    ] {
        assert_eq!(
            outcomes(calls),
            [
                (ServiceKind::Mastodon, "root", action, &Outcome::Protected),
                (ServiceKind::Peertube, "root", action, &Outcome::Protected)
            ]
        );
    }
    assert!(mastodon.requests().is_empty() && peertube.requests().is_empty());
}

#[tokio::test]
async fn peertubes_token_is_revoked_after_the_calls_and_a_failed_revocation_changes_nothing() {
    let slapd = Slapd::start();
    let options = options(Some(slapd.ca_pem()));
    let settings = settings(&slapd.ldaps_url(), false);
    let (mastodon, peertube) = service_recorders().await;
    let services = &admins(&mastodon, &peertube)[..2];
    let previous = read_directory(&settings, &password(), &options)
        .await
        .unwrap();
    slapd.remove_user("bob");
    peertube.answer(
        "POST",
        "/api/v1/users/revoke-token",
        503,
        &format!(r#"{{"error":"busy with {TOKEN}"}}"#),
    );
    let outcome = sync(
        &settings,
        &password(),
        &previous,
        services,
        &SyncOptions::default(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes(&outcome.calls),
        [
            (
                ServiceKind::Mastodon,
                "bob",
                Action::Remove,
                &Outcome::Suspended
            ),
            (
                ServiceKind::Peertube,
                "bob",
                Action::Remove,
                &Outcome::Blocked
            ),
        ]
    );
    assert!(outcome.snapshot.pending.is_empty());
    // Once, after the calls, with the token the sign-in gave; no body.
    let requests = peertube.requests();
    let revoke = requests.last().unwrap();
    assert_eq!(line(revoke), ("POST", "/api/v1/users/revoke-token", ""));
    assert_eq!(revoke.authorization, Some(format!("Bearer {TOKEN}")));
    assert!(revoke.body.is_empty(), "{}", revoke.body);
    let revocations = requests
        .iter()
        .filter(|r| r.path == "/api/v1/users/revoke-token")
        .count();
    assert_eq!(revocations, 1);
    // Mastodon's token is the platform's own, provisioned on the host: never revoked.
    assert!(
        mastodon
            .requests()
            .iter()
            .all(|r| !r.path.contains("revoke")),
        "{:?}",
        mastodon.requests()
    );
}
