//! Sign-up, sign-in, sign-out, wrong passwords, rate limiting and CSRF.

use reqwest::StatusCode;

use crate::harness::{PASSWORD, Panel};

#[tokio::test]
async fn sign_up_sign_out_and_sign_in_again() {
    let panel = Panel::start().await;
    let browser = panel.visitor();
    assert_eq!(browser.get("/").await.location, "/sign-in");

    let signed_up = browser.sign_up("uni", "Admin@Uni.Example", PASSWORD).await;
    assert_eq!(
        signed_up.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_up.body
    );
    assert_eq!(signed_up.location, "/operators/uni/configure");
    let cookie = signed_up
        .set_cookies
        .iter()
        .find(|c| c.starts_with("fediversity_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure on loopback: {cookie}"
    );
    assert_eq!(panel.store.operators().await.unwrap().len(), 1);

    let dashboard = browser.get("/operators/uni").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.body.contains("admin@uni.example"),
        "lower-cased address shown"
    );
    assert!(dashboard.body.contains("Nothing is configured yet"));

    let signed_out = browser.submit("/operators/uni", "/sign-out", &[]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/operators/uni").await.location, "/sign-in");

    let signed_in = browser.sign_in("admin@uni.example", PASSWORD).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(browser.get("/").await.location, "/operators/uni");

    // The same operator id or address again is refused, with the reason.
    let again = panel
        .visitor()
        .sign_up("uni", "other@uni.example", PASSWORD)
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.body.contains("operator id is taken"),
        "{}",
        again.body
    );
    let again = panel
        .visitor()
        .sign_up("news", "admin@uni.example", PASSWORD)
        .await;
    assert!(again.body.contains("sign in instead"), "{}", again.body);
    let short = panel
        .visitor()
        .sign_up("news", "n@news.example", "short")
        .await;
    assert!(
        short.body.contains("12 to 1024 characters"),
        "{}",
        short.body
    );
    assert_eq!(panel.store.operators().await.unwrap().len(), 1);
    panel.stop().await;
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_then_rate_limited() {
    let panel = Panel::start().await;
    panel.operator("uni").await;
    let browser = panel.visitor();
    for _ in 0..5 {
        let page = browser
            .sign_in("admin@uni.example", "not the password")
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(
            page.body
                .contains("e-mail address or the password is wrong")
        );
    }
    // Past the limit even the right password is refused, without being checked.
    let limited = browser.sign_in("admin@uni.example", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.body.contains("try again in 15 minute"),
        "{}",
        limited.body
    );
    // An unknown address fails like a wrong password: nobody learns who has an account.
    let unknown = browser.sign_in("nobody@uni.example", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    // Per client address: after 20 failures from here, every account is refused.
    for n in 0..14 {
        browser.sign_in(&format!("guess{n}@uni.example"), "x").await;
    }
    let from_here = browser.sign_in("someone@else.example", PASSWORD).await;
    assert_eq!(from_here.status, StatusCode::TOO_MANY_REQUESTS);
    panel.stop().await;
}

#[tokio::test]
async fn posts_without_the_forms_csrf_token_are_forbidden() {
    let panel = Panel::start().await;
    let visitor = panel.visitor();
    visitor.get("/sign-in").await;
    let fields = [("email", "a@b.example"), ("password", PASSWORD)];
    assert_eq!(
        visitor.post("/sign-in", &fields).await.status,
        StatusCode::FORBIDDEN
    );
    let mut forged = fields.to_vec();
    forged.push(("csrf", "forged"));
    let page = visitor.post("/sign-in", &forged).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("reload the page"), "{}", page.body);

    let browser = panel.operator("uni").await;
    for path in [
        "/operators/uni/configure",
        "/operators/uni/deployments",
        "/sign-out",
    ] {
        assert_eq!(
            browser.post(path, &[("version", "1")]).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
        let wrong = browser
            .post(path, &[("csrf", "wrong"), ("version", "1")])
            .await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Still signed in: the forged sign-out did nothing.
    assert_eq!(browser.get("/operators/uni").await.status, StatusCode::OK);
    panel.stop().await;
}
