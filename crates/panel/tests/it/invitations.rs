//! Sign-up by invitation: refused without one, each invitation used once, expired and revoked
//! ones refused, and only the hosting provider's administrators make them (on their page or
//! with the API).

use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::clock::{Clock, ManualClock};
use fediversity_panel::{PanelOptions, SignUp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{call, token};
use crate::harness::{Browser, PASSWORD, Page, Panel, value_of};

/// A panel whose sign-up is by invitation, on a clock the test moves.
async fn invitation_panel() -> (Panel, Arc<ManualClock>) {
    let manual = Arc::new(ManualClock::at(1_800_000_000_000));
    let clock: Arc<dyn Clock> = manual.clone();
    let panel = Panel::start_with(|options| PanelOptions {
        clock,
        ..options.with_sign_up(SignUp::Invitation)
    })
    .await;
    (panel, manual)
}

/// Makes an invitation for `note` on the administrators' page; returns its link.
async fn invite(admin: &Browser, note: &str) -> String {
    let made = admin
        .submit("/operators", "/invitations", &[("note", note)])
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let start = made.body.find(r#"<pre id="link">"#).expect("the link") + 15;
    made.body[start..].split('<').next().unwrap().to_owned()
}

/// Signs up as `operator` through the invitation link `link`, as a browser would.
async fn sign_up_with(panel: &Panel, link: &str, operator: &str) -> Page {
    let path = link
        .strip_prefix(&panel.base)
        .expect("a link to this panel");
    let browser = panel.visitor();
    let form = browser.get(path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let invitation = value_of(&form.body, "invitation");
    let email = format!("admin@{operator}.example");
    let fields = [
        ("operator", operator),
        ("email", email.as_str()),
        ("password", PASSWORD),
        ("invitation", invitation.as_str()),
    ];
    browser.submit(path, "/sign-up", &fields).await
}

fn assert_signed_up(page: &Page) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

/// `POST /api/v1/invitations` with `token` and `body`.
async fn post_invitation(browser: &Browser, token: &str, body: Value) -> (StatusCode, Value) {
    let path = "/api/v1/invitations";
    call(
        browser,
        Some(token),
        Method::POST,
        path,
        Some(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn without_an_invitation_sign_up_is_refused_and_makes_nothing() {
    let (panel, _clock) = invitation_panel().await;
    let browser = panel.visitor();
    let page = browser.get("/sign-up").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Sign-up is by invitation"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(r#"name="password""#),
        "no form: {}",
        page.body
    );

    // Posted anyway (with the CSRF token of the sign-in form): refused, in the form.
    let fields = [
        ("operator", "uni"),
        ("email", "a@uni.example"),
        ("password", PASSWORD),
    ];
    let refused = browser.submit("/sign-in", "/sign-up", &fields).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("Sign-up is by invitation"),
        "{}",
        refused.body
    );
    let forged = [("invitation", "made-up"), fields[0], fields[1], fields[2]];
    let refused = browser.submit("/sign-in", "/sign-up", &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("used, revoked or expired"),
        "{}",
        refused.body
    );
    assert!(panel.store.operators().await.unwrap().is_empty());
    let spent = browser.get("/sign-up?invitation=made-up").await;
    assert_eq!(spent.status, StatusCode::FORBIDDEN);
    assert!(!spent.body.contains(r#"name="password""#), "{}", spent.body);
}

#[tokio::test]
async fn an_invitation_link_works_once_and_is_listed_as_used() {
    let (panel, _clock) = invitation_panel().await;
    let admin = panel.admin().await;
    let link = invite(&admin, "University <Uni>").await;
    assert!(
        link.starts_with(&format!("{}/sign-up?invitation=", panel.base)),
        "{link}"
    );
    let listed = admin.get("/operators").await.body;
    assert!(
        listed.contains("University &#60;Uni&#62;"),
        "escaped: {listed}"
    );
    assert!(
        listed.contains("open") && listed.contains("Revoke"),
        "{listed}"
    );

    let signed_up = sign_up_with(&panel, &link, "uni").await;
    assert_signed_up(&signed_up);
    assert_eq!(signed_up.location, "/operators/uni/configure");

    let path = link.strip_prefix(&panel.base).unwrap();
    assert_eq!(
        panel.visitor().get(path).await.status,
        StatusCode::FORBIDDEN
    );
    let browser = panel.visitor();
    let token = path.split('=').nth(1).unwrap();
    let fields = [
        ("operator", "news"),
        ("email", "a@news.example"),
        ("password", PASSWORD),
        ("invitation", token),
    ];
    let again = browser.submit("/sign-in", "/sign-up", &fields).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    assert_eq!(panel.store.operators().await.unwrap().len(), 1);
    let listed = admin.get("/operators").await.body;
    assert!(listed.contains("used by uni on"), "{listed}");
    assert!(
        !listed.contains("Revoke"),
        "a used invitation is not revocable"
    );
}

#[tokio::test]
async fn expired_and_revoked_invitations_are_refused() {
    let (panel, clock) = invitation_panel().await;
    let admin = panel.admin().await;
    let expiring = invite(&admin, "Late").await;
    let revoked = invite(&admin, "Changed their mind").await;
    let id = panel.store.invitations().await.unwrap()[0].id.0;
    let done = admin
        .submit("/operators", &format!("/invitations/{id}/revoke"), &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let path = revoked.strip_prefix(&panel.base).unwrap();
    assert_eq!(
        panel.visitor().get(path).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(admin.get("/operators").await.body.contains("revoked on"));

    // Usable for 7 days, and not one millisecond more.
    clock.advance(Duration::from_secs(7 * 24 * 3600));
    let path = expiring.strip_prefix(&panel.base).unwrap();
    let page = panel.visitor().get(path).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("used, revoked or expired"),
        "{}",
        page.body
    );
    assert!(panel.store.operators().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_operator_cannot_make_or_revoke_invitations() {
    let panel = Panel::start().await;
    let admin = panel.admin().await;
    invite(&admin, "").await;
    let id = panel.store.invitations().await.unwrap()[0].id.0;
    let operator = panel.operator("uni").await;
    let made = operator
        .submit("/operators/uni", "/invitations", &[("note", "friend")])
        .await;
    assert_eq!(made.status, StatusCode::NOT_FOUND);
    let revoked = operator
        .submit("/operators/uni", &format!("/invitations/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::NOT_FOUND);
    let invitations = panel.store.invitations().await.unwrap();
    assert_eq!(invitations.len(), 1);
    assert_eq!(invitations[0].revoked_at, None);
}

#[tokio::test]
async fn administrators_tokens_make_invitations_through_the_api_operators_get_404() {
    let (panel, _clock) = invitation_panel().await;
    let admin = panel.admin().await;
    let first = invite(&admin, "First customer").await;
    let signed_up = sign_up_with(&panel, &first, "uni").await;
    assert_signed_up(&signed_up);
    let admin_token = token(&admin, "uni").await;
    let uni = panel.visitor();
    uni.sign_in("admin@uni.example", PASSWORD).await;
    let operator_token = token(&uni, "uni").await;

    let body = json!({"note": "Second customer"});
    let (status, refused) = post_invitation(&uni, &operator_token, body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    let (status, made) = post_invitation(&admin, &admin_token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["note"], "Second customer");
    let link = made["link"].as_str().unwrap();
    let signed_up = sign_up_with(&panel, link, "news").await;
    assert_signed_up(&signed_up);

    let misspelt = json!({"notes": "x"});
    let (status, error) = post_invitation(&admin, &admin_token, misspelt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(panel.store.invitations().await.unwrap().len(), 2);
}
