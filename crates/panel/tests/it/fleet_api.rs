//! `/api/v1/fleet`: administrators publish, list and read releases and pause and resume them,
//! like `fediversity fleet release|status|pause|resume`; operators' tokens get 404; unknown
//! releases 404; a release request that is wrong gets 400 saying why.

use std::collections::BTreeMap;

use fediversity_fleet::rollout::{Policy, State};
use fediversity_fleet::schedule::Severity;
use fediversity_model::names::OperatorId;
use fediversity_store::NewRelease;
use reqwest::{Method, StatusCode};

use serde_json::{Value, json};

use crate::api::{call, token};
use crate::harness::{Browser, Panel, configure, mastodon_config};

/// Signs in a new administrator and makes it an API token (on `operator`'s dashboard, which
/// an administrator may see).
async fn admin_token(panel: &Panel, operator: &str) -> (Browser, String) {
    let admin = panel.admin().await;
    let token = token(&admin, operator).await;
    (admin, token)
}

/// An operator signed up and configured with Mastodon.
async fn configured_operator(panel: &Panel, operator: &str) -> Browser {
    let browser = panel.operator(operator).await;
    let domain = format!("{operator}.example.org");
    let saved = configure(&browser, operator, &mastodon_config("Org", &domain)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    browser
}

#[tokio::test]
async fn administrators_list_read_pause_and_resume_releases_operators_get_404() {
    let panel = Panel::start().await;
    let alpha = configured_operator(&panel, "alpha").await;
    let operator_token = token(&alpha, "alpha").await;
    let store = &panel.store;
    let release = NewRelease {
        title: "OpenSSL fix".to_owned(),
        severity: Severity::Security,
        deadline: Some(1_000),
        infra: "# the release's infra.toml\n".to_owned(),
        policy: Policy::new(10, 2, 0.2).unwrap(),
        expected_minutes: 30,
    };
    let waves = BTreeMap::from([(OperatorId::try_from("alpha").unwrap(), 0)]);
    let id = store.create_release(&release, &waves, 0).await.unwrap().0;
    let (admin, admin_token) = admin_token(&panel, "alpha").await;

    let (status, list) = call(
        &admin,
        Some(&admin_token),
        Method::GET,
        "/api/v1/fleet/releases",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["title"], "OpenSSL fix");
    assert_eq!(list[0]["severity"], "security");
    assert_eq!(list[0]["deadline"], 1_000);
    assert_eq!(list[0]["state"], "running");

    let one = format!("/api/v1/fleet/releases/{id}");
    let (status, read) = call(&admin, Some(&admin_token), Method::GET, &one, None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["items"].as_array().unwrap().len(), 1);
    assert_eq!(read["items"][0]["operator"], "alpha");
    assert_eq!(read["items"][0]["wave"], 0);

    for (action, shown, stored) in [
        ("pause", "paused", State::Paused),
        ("resume", "running", State::Running),
    ] {
        let (status, answer) = call(
            &admin,
            Some(&admin_token),
            Method::POST,
            &format!("{one}/{action}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{action}: {answer}");
        assert_eq!(answer["state"], shown);
        let release = store
            .release(fediversity_store::ReleaseId(id))
            .await
            .unwrap();
        assert_eq!(release.state, stored, "{action}");
    }

    let (status, unknown) = call(
        &admin,
        Some(&admin_token),
        Method::GET,
        "/api/v1/fleet/releases/999",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    let (status, _) = call(
        &admin,
        Some(&admin_token),
        Method::POST,
        "/api/v1/fleet/releases/999/pause",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for (method, path) in [
        (Method::GET, "/api/v1/fleet/releases".to_owned()),
        (Method::GET, one.clone()),
        (Method::POST, format!("{one}/pause")),
    ] {
        let (status, body) = call(&alpha, Some(&operator_token), method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    assert_eq!(
        store
            .release(fediversity_store::ReleaseId(id))
            .await
            .unwrap()
            .state,
        State::Running
    );
    panel.stop().await;
}

/// A release's infra.toml, with a comment the store must keep: it stores the text as given.
fn release_infra() -> String {
    format!(
        "# NixOS 26.05: `small` grows\n{}",
        crate::fleet_jobs::RELEASE_INFRA
    )
}

const RELEASES: &str = "/api/v1/fleet/releases";

/// Posts a release request with `token`.
async fn post_release(browser: &Browser, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    call(
        browser,
        token,
        Method::POST,
        RELEASES,
        Some(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn administrators_publish_a_release_after_its_dry_run_summary() {
    let panel = Panel::start().await;
    let alpha = configured_operator(&panel, "alpha").await;
    configured_operator(&panel, "beta").await;
    panel.operator("gamma").await;
    let (admin, admin_token) = admin_token(&panel, "alpha").await;
    let store = &panel.store;

    let dry_run = json!({
        "infra": release_infra(), "title": "NixOS 26.05", "severity": "routine", "dry_run": true,
    });
    let (status, dry) = post_release(&admin, Some(&admin_token), &dry_run).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry.get("id"), None, "{dry}");
    // gamma has no configuration: the rollout does not cover it.
    assert_eq!(dry["summary"]["operators"], 2, "{dry}");
    let affected = dry["summary"]["affected"].as_array().unwrap();
    let names: Vec<&str> = affected
        .iter()
        .map(|o| o["operator"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"], "{dry}");
    assert!(affected.iter().all(|o| o["problem"].is_null()), "{dry}");
    assert!(store.releases().await.unwrap().is_empty());

    // The summary is planned against the release's infra, not the one the panel serves with:
    // without the `small` size, nobody's configuration fits.
    let no_small = json!({
        "infra": release_infra().replace("[sizes.small]", "[sizes.large]"),
        "title": "NixOS 26.05", "severity": "routine", "dry_run": true,
    });
    let (status, dry) = post_release(&admin, Some(&admin_token), &no_small).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    let problem = dry["summary"]["affected"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("does not fit the release"), "{dry}");
    assert!(store.releases().await.unwrap().is_empty());

    let publish = json!({
        "infra": release_infra(), "title": "NixOS 26.05", "severity": "security",
        "deadline": "2100-01-01T00:00:00Z", "canaries": ["beta"], "batch": 1,
        "concurrency": 2, "max_failure_rate": 0.5, "expected_minutes": 45,
    });
    let response = admin
        .client
        .post(format!("{}{RELEASES}", admin.base))
        .bearer_auth(&admin_token)
        .json(&publish)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["summary"]["affected"].as_array().unwrap().len(), 2);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["url"], format!("{RELEASES}/{id}"));
    assert_eq!(location, format!("{RELEASES}/{id}"));
    let stored = store
        .release(fediversity_store::ReleaseId(id))
        .await
        .unwrap();
    assert_eq!(stored.release.infra, release_infra());
    assert_eq!(stored.release.title, "NixOS 26.05");
    assert_eq!(stored.release.severity, Severity::Security);
    assert_eq!(stored.release.deadline, Some(4_102_444_800_000));
    assert_eq!(stored.release.policy, Policy::new(1, 2, 0.5).unwrap());
    assert_eq!(stored.release.expected_minutes, 45);

    let (status, list) = call(&admin, Some(&admin_token), Method::GET, RELEASES, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id);
    let one = format!("{RELEASES}/{id}");
    let (status, read) = call(&admin, Some(&admin_token), Method::GET, &one, None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let waves: BTreeMap<&str, i64> = read["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["operator"].as_str().unwrap(),
                item["wave"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(waves, BTreeMap::from([("beta", 0), ("alpha", 1)]), "{read}");
    for (action, state) in [("pause", "paused"), ("resume", "running")] {
        let path = format!("{one}/{action}");
        let (status, body) = call(&admin, Some(&admin_token), Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], state);
    }

    // The OpenAPI document describes every field the route takes.
    let (_, document) = call(&admin, None, Method::GET, "/api/v1/openapi.json", None).await;
    assert!(document["paths"][RELEASES]["post"]["responses"]["201"].is_object());
    let mut described: Vec<String> =
        document["components"]["schemas"]["ReleaseRequest"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    let mut sent: Vec<String> = publish.as_object().unwrap().keys().cloned().collect();
    sent.push("dry_run".to_owned());
    described.sort();
    sent.sort();
    assert_eq!(described, sent);

    // An operator's token cannot publish, nor learn that publishing exists.
    let operator_token = token(&alpha, "alpha").await;
    let (status, body) = post_release(&alpha, Some(&operator_token), &publish).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(store.releases().await.unwrap().len(), 1);
    panel.stop().await;
}

#[tokio::test]
async fn release_requests_that_are_wrong_are_refused_with_why() {
    let panel = Panel::start().await;
    configured_operator(&panel, "alpha").await;
    let (admin, admin_token) = admin_token(&panel, "alpha").await;
    let good = json!({"infra": release_infra(), "title": "Fix", "severity": "routine"});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };

    let (status, body) = post_release(&admin, None, &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    for (body, expected) in [
        (
            with("infra", json!("version = 1\n[sizes.small\n")),
            "not valid TOML: TOML parse error at line 2",
        ),
        (with("canaries", json!(["nobody"])), "no operator `nobody`"),
        (
            with("deadline", json!("2001-01-01T00:00:00Z")),
            "the deadline 2001-01-01T00:00:00+00:00 has already passed",
        ),
        (with("max_failure_rate", json!(2.0)), "not between 0 and 1"),
        (
            with("severity", json!("urgent")),
            "unknown variant `urgent`",
        ),
        (with("canary", json!("alpha")), "unknown field `canary`"),
    ] {
        let (status, answer) = post_release(&admin, Some(&admin_token), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{body}: {error}");
    }
    assert!(panel.store.releases().await.unwrap().is_empty());
    panel.stop().await;
}
