//! The whole path: configure, see the plan, deploy, watch the worker finish it.

use reqwest::StatusCode;

use crate::harness::{Panel, configure, deploy_mastodon, follow, mastodon_config};

#[tokio::test]
async fn configure_plan_deploy_and_watch_it_succeed() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;

    // Problems are shown next to their fields, and nothing is saved.
    let mut bad = mastodon_config("Utrecht University", "Not A Domain");
    bad.retain(|(field, _)| *field != "window_0_day_sun");
    bad.push(("window_0_duration", "soon".to_owned()));
    let refused = configure(&browser, "uni", &bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["domain-error", "window_0_duration-error"] {
        assert!(
            refused.body.contains(&format!(r#"id="{field}""#)),
            "{field}: {}",
            refused.body
        );
    }
    assert!(
        refused.body.contains(r#"value="Not A Domain""#),
        "the form keeps what was typed"
    );
    assert!(
        panel
            .store
            .configurations(&"uni".try_into().unwrap())
            .await
            .unwrap()
            .is_empty()
    );

    let plan = browser.get("/operators/uni/plan").await;
    assert_eq!(
        plan.location, "/operators/uni/configure",
        "no plan without a configuration"
    );

    let deployment = deploy_mastodon(&browser, "uni").await;
    assert!(
        deployment.starts_with("/operators/uni/deployments/"),
        "{deployment}"
    );
    let plan = browser.get("/operators/uni/plan").await;
    assert!(
        plan.body.contains("Everything is already as configured")
            || plan.body.contains("Create the virtual machine")
    );

    let stream = follow(&browser, &deployment).await;
    assert!(stream.contains("event: step"), "{stream}");
    assert!(
        stream.contains("Creating the virtual machine vm.mastodon"),
        "{stream}"
    );
    assert!(
        stream.contains("Done in"),
        "per-resource elapsed time: {stream}"
    );
    assert!(stream.contains("event: done"), "{stream}");
    assert!(stream.contains("Succeeded in"), "{stream}");

    let page = browser.get(&deployment).await;
    assert!(
        page.body.contains("<strong>succeeded</strong>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Succeeded in"));

    let dashboard = browser.get("/operators/uni").await;
    assert!(
        dashboard.body.contains("https://mastodon.uni.example.org"),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("running"), "{}", dashboard.body);

    // Deployed: the plan now changes nothing, and the history lists the version.
    let plan = browser.get("/operators/uni/plan").await;
    assert!(
        plan.body.contains("Everything is already as configured"),
        "{}",
        plan.body
    );
    let history = browser.get("/operators/uni/history").await;
    assert!(history.body.contains("Mastodon"), "{}", history.body);
    assert!(history.body.contains("(succeeded)"), "{}", history.body);

    // A second version that turns Mastodon off with "keep": the plan says its data is kept.
    let mut off = mastodon_config("Utrecht University", "uni.example.org");
    off.retain(|(field, _)| *field != "mastodon_enable");
    assert_eq!(
        configure(&browser, "uni", &off).await.status,
        StatusCode::SEE_OTHER
    );
    let plan = browser.get("/operators/uni/plan").await;
    assert!(plan.body.contains("keep its data"), "{}", plan.body);
    assert!(
        plan.body.contains("configuration version 2"),
        "{}",
        plan.body
    );
    let history = browser.get("/operators/uni/history").await;
    assert!(
        history
            .body
            .contains("services.mastodon.enable: true → false"),
        "the diff between versions: {}",
        history.body
    );
    panel.stop().await;
}

#[tokio::test]
async fn deleting_the_account_removes_everything_but_kept_data_and_signs_out() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let deployment = deploy_mastodon(&browser, "uni").await;
    follow(&browser, &deployment).await;

    let confirm = browser.get("/operators/uni/delete").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Mastodon: its data is kept"),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains("Delete the DNS record dns.mastodon-a"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains(
            "Take the media storage bucket.mastodon-media out of service but keep its data"
        ),
        "{}",
        confirm.body
    );

    let refused = browser
        .submit(
            "/operators/uni/delete",
            "/operators/uni/delete",
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("nothing was deleted"),
        "{}",
        refused.body
    );

    let deleted = browser
        .submit(
            "/operators/uni/delete",
            "/operators/uni/delete",
            &[("confirm", "uni")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let stream = follow(&browser, &deleted.location).await;
    assert!(stream.contains("Succeeded in"), "{stream}");
    assert!(
        stream.contains("Kept bucket"),
        "the final report says what was kept: {stream}"
    );

    // The account is gone: its session with it, and signing in again fails.
    assert_eq!(browser.get("/operators/uni").await.location, "/sign-in");
    let again = panel
        .visitor()
        .sign_in("admin@uni.example", crate::harness::PASSWORD)
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    panel.stop().await;
}
