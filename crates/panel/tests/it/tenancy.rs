//! Operators see only their own: every page and route of another operator is a 404, the same
//! answer as for an operator that does not exist.

use reqwest::StatusCode;

use crate::harness::{Panel, configure, deploy_mastodon, follow, mastodon_config};

#[tokio::test]
async fn an_operator_gets_404_on_every_route_of_another() {
    let panel = Panel::start().await;
    let a = panel.operator("alpha").await;
    let deployment = deploy_mastodon(&a, "alpha").await;
    follow(&a, &deployment).await;
    let id = deployment.rsplit('/').next().unwrap();

    let b = panel.operator("beta").await;
    let token = crate::harness::csrf_of(&b.get("/operators/beta").await.body);
    for path in [
        "/operators/alpha".to_owned(),
        "/operators/alpha/configure".to_owned(),
        "/operators/alpha/plan".to_owned(),
        "/operators/alpha/history".to_owned(),
        "/operators/alpha/delete".to_owned(),
        deployment.clone(),
        format!("{deployment}/events"),
        // Another operator's deployment id under one's own operator.
        format!("/operators/beta/deployments/{id}"),
        format!("/operators/beta/deployments/{id}/events"),
        "/operators/nobody".to_owned(),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "GET {path}");
        assert!(!page.body.contains("alpha.example.org"), "GET {path} leaks");
    }
    for path in [
        "/operators/alpha/configure",
        "/operators/alpha/deployments",
        "/operators/alpha/maintenance/1",
    ] {
        let page = b
            .post(
                path,
                &[("csrf", &token), ("version", "1"), ("domain", "x.org")],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    assert_eq!(
        panel
            .store
            .configurations(&"alpha".try_into().unwrap())
            .await
            .unwrap()
            .len(),
        1,
        "B changed nothing of A's"
    );
    // The list of every operator is the administrators': B is sent to its own.
    assert_eq!(b.get("/operators").await.location, "/operators/beta");
    panel.stop().await;
}

#[tokio::test]
async fn an_administrator_sees_every_operator() {
    let panel = Panel::start().await;
    let alpha = panel.operator("alpha").await;
    let beta = panel.operator("beta").await;
    let saved = configure(
        &alpha,
        "alpha",
        &mastodon_config("Alpha", "alpha.example.org"),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    // Beta cannot take alpha's domain, nor a name under it, and is not told whose it is.
    for domain in ["alpha.example.org", "social.alpha.example.org"] {
        let refused = configure(&beta, "beta", &mastodon_config("Beta", domain)).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(
            refused.body.contains("cannot be used") && !refused.body.contains("/operators/alpha"),
            "{}",
            refused.body
        );
    }
    let hash = fediversity_panel::hash_password(crate::harness::PASSWORD.to_owned())
        .await
        .unwrap();
    panel
        .store
        .create_admin("root@host.example", &hash, 1)
        .await
        .unwrap();
    let admin = panel.visitor();
    let signed_in = admin
        .sign_in("root@host.example", crate::harness::PASSWORD)
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/").await.location, "/operators");
    let list = admin.get("/operators").await;
    assert!(
        list.body.contains("/operators/alpha") && list.body.contains("/operators/beta"),
        "{}",
        list.body
    );
    // What each operator's latest configuration uses of its limits (the sandbox's: small is
    // 2 cores, 4096 MiB and 40 GiB; Mastodon has one bucket).
    assert!(
        list.body.contains(
            "1 of 8 VMs, 2 of 32 vCPUs, 4096 of 65536 MiB of memory, 40 of 1000 GiB of disk, 1 of 16 buckets"
        ) && list.body.contains("nothing configured"),
        "{}",
        list.body
    );
    assert_eq!(admin.get("/operators/beta").await.status, StatusCode::OK);
    panel.stop().await;
}
