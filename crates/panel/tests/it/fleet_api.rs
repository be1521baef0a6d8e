//! `/api/v1/fleet`: administrators list and read releases and pause and resume them, like
//! `fediversity fleet status|pause|resume`; operators' tokens get 404; unknown releases 404.

use std::collections::BTreeMap;

use fediversity_fleet::rollout::{Policy, State};
use fediversity_fleet::schedule::Severity;
use fediversity_model::names::OperatorId;
use fediversity_store::NewRelease;
use reqwest::{Method, StatusCode};

use crate::api::{call, token};
use crate::harness::{PASSWORD, Panel, configure, mastodon_config};

#[tokio::test]
async fn administrators_list_read_pause_and_resume_releases_operators_get_404() {
    let panel = Panel::start().await;
    let alpha = panel.operator("alpha").await;
    let saved = configure(
        &alpha,
        "alpha",
        &mastodon_config("Org", "alpha.example.org"),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
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
    let hash = fediversity_panel::hash_password(PASSWORD.to_owned())
        .await
        .unwrap();
    store
        .create_admin("root@host.example", &hash, 1)
        .await
        .unwrap();
    let admin = panel.visitor();
    admin.sign_in("root@host.example", PASSWORD).await;
    let admin_token = token(&admin, "alpha").await;

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

    let (status, paused) = call(
        &admin,
        Some(&admin_token),
        Method::POST,
        &format!("{one}/pause"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["state"], "paused");
    assert_eq!(
        store
            .release(fediversity_store::ReleaseId(id))
            .await
            .unwrap()
            .state,
        State::Paused
    );
    let (status, resumed) = call(
        &admin,
        Some(&admin_token),
        Method::POST,
        &format!("{one}/resume"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["state"], "running");
    assert_eq!(
        store
            .release(fediversity_store::ReleaseId(id))
            .await
            .unwrap()
            .state,
        State::Running
    );

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
