//! Bad input gets a clear answer and never a panic: oversized bodies, malformed forms,
//! markup in text fields (escaped on output), unknown pages.

use reqwest::StatusCode;

use crate::harness::{Panel, configure, csrf_of, mastodon_config};

#[tokio::test]
async fn oversized_and_malformed_bodies_get_clear_errors() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let token = csrf_of(&browser.get("/operators/uni/configure").await.body);

    let huge = "x".repeat(1 << 20);
    let page = browser
        .post(
            "/operators/uni/configure",
            &[("csrf", &token), ("name", &huge)],
        )
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.body.contains("too large"), "{}", page.body);

    let page = browser
        .post(
            "/operators/uni/deployments",
            &[("csrf", &token), ("version", "one")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("could not be read"), "{}", page.body);
    let page = browser
        .post(
            "/operators/uni/deployments",
            &[("csrf", &token), ("version", "99")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::NOT_FOUND,
        "no such configuration version"
    );

    let raw = browser
        .client
        .post(format!("{}/operators/uni/configure", browser.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&name=%ZZ%&&="))
        .send()
        .await
        .unwrap();
    assert!(raw.status().is_client_error(), "{}", raw.status());

    for path in [
        "/no/such/page",
        "/operators/uni/deployments/not-a-number",
        "/static/../Cargo.toml",
    ] {
        assert_eq!(
            browser.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(browser.get("/healthz").await.status, StatusCode::OK);
    let response = browser
        .client
        .get(format!("{}/operators/uni", browser.base))
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    panel.stop().await;
}

#[tokio::test]
async fn markup_in_text_fields_is_escaped_on_output() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let script = "<script>alert('x')</script>";

    // A valid name with markup is saved and shown as text.
    let fields = mastodon_config(script, "uni.example.org");
    assert_eq!(
        configure(&browser, "uni", &fields).await.status,
        StatusCode::SEE_OTHER
    );
    let dashboard = browser.get("/operators/uni").await;
    assert!(!dashboard.body.contains(script), "{}", dashboard.body);
    assert!(
        dashboard.body.contains("&#60;script&#62;") || dashboard.body.contains("&lt;script&gt;"),
        "{}",
        dashboard.body
    );

    // Refused values are shown back escaped, in every field.
    let mut fields = mastodon_config(script, script);
    for field in [
        "admin_username",
        "admin_email",
        "time_zone",
        "window_0_start",
        "mastodon_size",
    ] {
        fields.retain(|(name, _)| *name != field);
        fields.push((field, script.to_owned()));
    }
    let refused = configure(&browser, "uni", &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!refused.body.contains(script), "{}", refused.body);
    assert!(!refused.body.contains("<script>alert"), "{}", refused.body);

    let signed_up = panel
        .visitor()
        .sign_up(script, "x@y.example", "short")
        .await;
    assert_eq!(signed_up.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!signed_up.body.contains(script), "{}", signed_up.body);
    panel.stop().await;
}
