//! The panel as an OpenID Connect provider, driven by an independent relying party (the
//! `openidconnect` crate): discovery, the PKCE code flow, ID token signature and claims,
//! userinfo, refresh, tenancy between operators, the token endpoint's refusals and key
//! rotation. Clients are made by the `oidc` provider, as a deployment makes them.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fediversity_engine::clock::{Clock, ManualClock, SystemClock};
use fediversity_engine::events::{Discard, ProgressReporter};
use fediversity_engine::provider::{CallContext, Outputs};
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_panel::{oidc_client_provider, rotate_signing_key};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse as _,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Browser, PASSWORD, Panel};

/// A relying party's client, as discovery makes it.
type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Every client secret here (the configurator generates 48 characters).
const SECRET: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL";

/// The HTTP client the relying party uses: plain reqwest, no cookies, no redirects.
async fn http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = axum::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    Ok(answer.body(response.bytes().await?.to_vec()).unwrap())
}

/// The redirect URI of `operator`'s Mastodon.
fn callback(operator: &str) -> String {
    format!("https://social.{operator}.example/auth/auth/openid_connect/callback")
}

/// Makes `operator`'s Mastodon client through the `oidc` provider, as a deployment does.
async fn register(panel: &Panel, operator: &str) -> Outputs {
    let address = ResourceAddress::new(ResourceKind::OidcClient, "mastodon").unwrap();
    let ctx = CallContext {
        operator: operator.try_into().unwrap(),
        address: address.clone(),
        idempotency_key: format!("{operator}/create"),
        progress: ProgressReporter::new(Arc::new(Discard), address),
    };
    let provider = oidc_client_provider(panel.store.clone(), &format!("{}/", panel.base));
    let inputs = json!({"redirect_uris": [callback(operator)], "client_secret": SECRET});
    let outputs = provider.create(&ctx, &inputs).await.unwrap();
    assert_eq!(
        provider.create(&ctx, &inputs).await.unwrap(),
        outputs,
        "a create run again (after a crash) finds the same client"
    );
    outputs
}

/// The relying party of `operator`'s Mastodon, configured by discovery.
async fn relying_party(panel: &Panel, operator: &str) -> Rp {
    let outputs = register(panel, operator).await;
    assert_eq!(outputs.values["client_id"], format!("{operator}-mastodon"));
    assert_eq!(outputs.values["issuer"], panel.base.as_str());
    let issuer = IssuerUrl::new(panel.base.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .unwrap();
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(format!("{operator}-mastodon")),
        Some(ClientSecret::new(SECRET.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(callback(operator)).unwrap())
}

/// One sign-in's request, as the relying party remembers it.
struct Started {
    url: url::Url,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

fn start(rp: &Rp) -> Started {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".to_owned()))
        .add_scope(Scope::new("email".to_owned()))
        .add_scope(Scope::new("groups".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    Started {
        url,
        state,
        nonce,
        verifier,
    }
}

/// `url`'s path and query, for the browser.
fn path_of(url: &url::Url) -> String {
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

/// The query parameter `name` of a redirect's `location`.
fn param(location: &str, name: &str) -> Option<String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Follows the authorization request in `browser` and returns the code it was given.
async fn code_for(browser: &Browser, started: &Started, operator: &str, base: &str) -> String {
    let page = browser.get(&path_of(&started.url)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        page.location.starts_with(&callback(operator)),
        "{}",
        page.location
    );
    assert_eq!(
        param(&page.location, "state").as_deref(),
        Some(started.state.secret().as_str())
    );
    assert_eq!(param(&page.location, "iss").as_deref(), Some(base));
    param(&page.location, "code").unwrap_or_else(|| panic!("no code: {}", page.location))
}

/// Part `index` of a compact JWT (0 the header, 1 the claims), as JSON.
fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A token request sent by hand, for the refusals a library would not let one make.
async fn token_request(panel: &Panel, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = panel
        .visitor()
        .client
        .post(format!("{}/oidc/token", panel.base))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (status, response.json().await.unwrap())
}

/// A browser signed up as operator `operator`'s first user, `email`.
async fn member(panel: &Panel, operator: &str, email: &str) -> Browser {
    let browser = panel.visitor();
    let page = browser.sign_up(operator, email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    browser
}

#[tokio::test]
async fn a_full_login_with_an_independent_relying_party() {
    let panel = Panel::start().await;
    let ann = member(&panel, "alpha", "Ann.Lee-Smith@alpha.example").await;
    let rp = relying_party(&panel, "alpha").await;

    let started = start(&rp);
    let code = code_for(&ann, &started, "alpha", &panel.base).await;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(started.verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    let claims = id_token
        .claims(&rp.id_token_verifier(), &started.nonce)
        .unwrap();
    assert_eq!(claims.issuer().as_str(), panel.base);
    assert_eq!(claims.audiences().len(), 1);
    assert_eq!(claims.audiences()[0].as_str(), "alpha-mastodon");
    let user = panel
        .store
        .user_by_email("ann.lee-smith@alpha.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims.subject().as_str(), user.id.0.to_string());
    assert_eq!(
        claims.preferred_username().unwrap().as_str(),
        "ann_lee_smith",
        "normalised for Mastodon"
    );
    assert_eq!(
        claims.email().unwrap().as_str(),
        "ann.lee-smith@alpha.example"
    );
    let payload = jwt_part(&id_token.to_string(), 1);
    assert_eq!(payload["groups"], json!(["admins"]));
    assert_eq!(
        payload["peertube_role"],
        json!({"tube": {"roles": ["Administrator#tube"]}}),
        "in the shape PeerTube's plugin reads: the operator's members administer PeerTube"
    );
    assert_eq!(jwt_part(&id_token.to_string(), 0)["alg"], "RS256");

    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.preferred_username().unwrap().as_str(), "ann_lee_smith");

    // Userinfo takes the access token only: the browser's session is no credential there.
    let by_cookie = ann.get("/oidc/userinfo").await;
    assert_eq!(by_cookie.status, StatusCode::UNAUTHORIZED);

    // Refresh: new tokens, and the spent refresh token is refused (which revokes the grant).
    let old_refresh = tokens.refresh_token().unwrap().clone();
    let refreshed = rp
        .exchange_refresh_token(&old_refresh)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    let renewed = refreshed.id_token().unwrap();
    let renewed_claims = renewed
        .claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(renewed_claims.subject(), claims.subject());
    let (status, body) = token_request(
        &panel,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh.secret()),
            ("client_id", "alpha-mastodon"),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let revoked: Result<CoreUserInfoClaims, _> = rp
        .user_info(refreshed.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(revoked.is_err(), "the reuse revoked the grant's tokens");

    // Operator B's service: A's user is refused there, and A's ID token is not B's.
    let _bob = member(&panel, "beta", "bob@beta.example").await;
    let rp_b = relying_party(&panel, "beta").await;
    let started_b = start(&rp_b);
    let refused = ann.get(&path_of(&started_b.url)).await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert!(
        refused.location.starts_with(&callback("beta")),
        "{}",
        refused.location
    );
    assert_eq!(
        param(&refused.location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(param(&refused.location, "code"), None);
    let as_b = id_token.claims(&rp_b.id_token_verifier(), &started.nonce);
    assert!(as_b.is_err(), "B's client accepted A's token: {as_b:?}");
    panel.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_refuses_what_is_not_bound_to_the_code() {
    let clock = Arc::new(ManualClock::at(SystemClock.now()));
    let panel_clock: Arc<dyn Clock> = clock.clone();
    let panel = Panel::start_with(|options| fediversity_panel::PanelOptions {
        clock: panel_clock,
        ..options
    })
    .await;
    let ann = member(&panel, "alpha", "ann@alpha.example").await;
    let rp = relying_party(&panel, "alpha").await;
    let redirect = callback("alpha");
    let exchange = |code: String, verifier: String, redirect: String, secret: &'static str| {
        let panel = &panel;
        async move {
            let fields = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect.as_str()),
                ("code_verifier", verifier.as_str()),
                ("client_id", "alpha-mastodon"),
                ("client_secret", secret),
            ];
            token_request(panel, &fields).await
        }
    };

    // A wrong verifier, redirect URI or secret is refused; each refusal spends the code
    // except the secret's (the client is not authenticated, so nothing is looked at).
    let started = start(&rp);
    let code = code_for(&ann, &started, "alpha", &panel.base).await;
    let verifier = started.verifier.secret().clone();
    let (status, body) = exchange(
        code.clone(),
        verifier.clone(),
        redirect.clone(),
        "wrong-secret",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let wrong_verifier = PkceCodeChallenge::new_random_sha256().1.secret().clone();
    let (status, body) = exchange(code.clone(), wrong_verifier, redirect.clone(), SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(
        body["error_description"].as_str().unwrap().contains("PKCE"),
        "{body}"
    );

    let started = start(&rp);
    let code = code_for(&ann, &started, "alpha", &panel.base).await;
    let verifier = started.verifier.secret().clone();
    let other = "https://social.alpha.example/elsewhere".to_owned();
    let (status, body) = exchange(code.clone(), verifier.clone(), other, SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri"),
        "{body}"
    );

    // A good exchange, then the same code again: refused, and the tokens it gave are revoked.
    let started = start(&rp);
    let code = code_for(&ann, &started, "alpha", &panel.base).await;
    let verifier = started.verifier.secret().clone();
    let (status, tokens) = exchange(code.clone(), verifier.clone(), redirect.clone(), SECRET).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, body) = exchange(code, verifier, redirect.clone(), SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let userinfo = panel
        .visitor()
        .client
        .get(format!("{}/oidc/userinfo", panel.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);

    // A code lives a minute.
    let started = start(&rp);
    let code = code_for(&ann, &started, "alpha", &panel.base).await;
    clock.advance(Duration::from_secs(61));
    let verifier = started.verifier.secret().clone();
    let (status, body) = exchange(code, verifier, redirect, SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    panel.stop().await;
}

#[tokio::test]
async fn authorization_requests_are_checked_before_anything_is_sent_back() {
    let panel = Panel::start().await;
    let ann = member(&panel, "alpha", "ann@alpha.example").await;
    let rp = relying_party(&panel, "alpha").await;
    let good = start(&rp).url;
    let with = |name: &str, value: &str| {
        let mut url = good.clone();
        let pairs: Vec<(String, String)> = good
            .query_pairs()
            .filter(|(key, _)| key != name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair(name, value);
        path_of(&url)
    };

    // Before the client and its redirect URI are known: a page, never a redirect.
    for path in [
        with("client_id", "nobody-mastodon"),
        with("redirect_uri", "https://evil.example/callback"),
    ] {
        let page = ann.get(&path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            page.location.is_empty(),
            "{path} redirected to {}",
            page.location
        );
    }
    // After: the error goes back to the client.
    for (path, error) in [
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("response_type", "token"), "unsupported_response_type"),
        (with("scope", "profile email"), "invalid_scope"),
    ] {
        let page = ann.get(&path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            param(&page.location, "error").as_deref(),
            Some(error),
            "{path}"
        );
    }

    // A visitor signs in first and comes back; `prompt=none` says so instead.
    let visitor = panel.visitor();
    let page = visitor.get(&with("prompt", "none")).await;
    assert_eq!(
        param(&page.location, "error").as_deref(),
        Some("login_required")
    );
    let started = start(&rp);
    let page = visitor.get(&path_of(&started.url)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let sign_in = page.location.clone();
    assert!(
        sign_in.starts_with("/sign-in?next=%2Foidc%2Fauthorize%3F"),
        "{sign_in}"
    );
    let form = visitor.get(&sign_in).await;
    let next = crate::harness::value_of(&form.body, "next");
    assert!(
        next.starts_with("/oidc/authorize?"),
        "the form carries it on: {next}"
    );
    let signed_in = visitor
        .post(
            "/sign-in",
            &[
                ("csrf", &crate::harness::csrf_of(&form.body)),
                ("email", "ann@alpha.example"),
                ("password", PASSWORD),
                ("next", &path_of(&started.url)),
            ],
        )
        .await;
    // Onward by a page of its own: a redirect would continue the form's navigation, which
    // the CSP's form-action keeps on the panel, and the authorization ends on the service.
    assert_eq!(signed_in.status, StatusCode::OK);
    assert!(
        signed_in.body.contains("http-equiv=\"refresh\""),
        "{}",
        signed_in.body
    );
    code_for(&visitor, &started, "alpha", &panel.base).await;

    // A browser arriving from the service's site does not send its SameSite=Strict cookie:
    // it gets a page that reloads the request from the panel itself.
    let bounced = panel
        .visitor()
        .client
        .get(format!("{}{}", panel.base, path_of(&started.url)))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(bounced.status(), StatusCode::OK);
    let body = bounced.text().await.unwrap();
    assert!(body.contains("http-equiv=\"refresh\""), "{body}");
    assert!(body.contains("/oidc/authorize?"), "{body}");

    // The hosting provider's administrator is nobody's service account.
    let hash = fediversity_panel::hash_password(PASSWORD.to_owned())
        .await
        .unwrap();
    panel
        .store
        .create_admin("root@host.example", &hash, 1)
        .await
        .unwrap();
    let admin = panel.visitor();
    admin.sign_in("root@host.example", PASSWORD).await;
    let page = admin.get(&path_of(&start(&rp).url)).await;
    assert_eq!(
        param(&page.location, "error").as_deref(),
        Some("access_denied")
    );
    panel.stop().await;
}

#[tokio::test]
async fn rotated_keys_stay_published_until_their_tokens_expired() {
    let clock = Arc::new(ManualClock::at(SystemClock.now()));
    let panel_clock: Arc<dyn Clock> = clock.clone();
    let panel = Panel::start_with(|options| fediversity_panel::PanelOptions {
        clock: panel_clock,
        signing_key_max_age: Duration::from_secs(24 * 3600),
        ..options
    })
    .await;
    let ann = member(&panel, "alpha", "ann@alpha.example").await;
    let rp = relying_party(&panel, "alpha").await;
    let sign_in = |rp: Rp| {
        let ann = &ann;
        let base = panel.base.clone();
        async move {
            let started = start(&rp);
            let code = code_for(ann, &started, "alpha", &base).await;
            let tokens = rp
                .exchange_code(AuthorizationCode::new(code))
                .unwrap()
                .set_pkce_verifier(started.verifier)
                .request_async(&http)
                .await
                .unwrap();
            (tokens.id_token().unwrap().clone(), started.nonce)
        }
    };
    let kid = |token: &CoreIdToken| {
        jwt_part(&token.to_string(), 0)["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let (first, first_nonce) = sign_in(rp.clone()).await;
    // Rotated by hand: the new key signs, the old one is still published.
    rotate_signing_key(&panel.store, clock.now()).await.unwrap();
    let rp = relying_party(&panel, "alpha").await;
    let (second, _) = sign_in(rp.clone()).await;
    assert_ne!(kid(&first), kid(&second));
    first
        .claims(&rp.id_token_verifier(), &first_nonce)
        .expect("a token of the retired key still verifies");

    // Rotated by age: a day later the next token has a third key.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    let (third, _) = sign_in(rp.clone()).await;
    assert_ne!(kid(&third), kid(&second));
    let published = |panel: &Panel| {
        let url = format!("{}/oidc/jwks", panel.base);
        let client = panel.visitor().client;
        async move {
            let jwks: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| key["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let kids = published(&panel).await;
    assert!(
        kids.contains(&kid(&second)) && kids.contains(&kid(&third)),
        "{kids:?}"
    );
    assert!(
        !kids.contains(&kid(&first)),
        "retired a day ago: its tokens expired"
    );
    panel.stop().await;
}

/// Pixelfed's client sends no PKCE challenge (it authenticates with its secret in the body);
/// PeerTube's plugin asks for the answer as a posted form. Both are served as they ask.
#[tokio::test]
async fn clients_without_pkce_or_asking_for_a_form_post_are_answered_as_they_ask() {
    let panel = Panel::start().await;
    let ann = member(&panel, "alpha", "ann@alpha.example").await;
    let rp = relying_party(&panel, "alpha").await;
    let redirect = callback("alpha");
    let without_pkce = |extra: &[(&str, &str)]| {
        let mut url = start(&rp).url;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| !key.starts_with("code_challenge"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.query_pairs_mut().extend_pairs(extra);
        path_of(&url)
    };

    let page = ann.get(&without_pkce(&[])).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let code = param(&page.location, "code").unwrap();
    let exchange = |code: String, verifier: Option<&'static str>| {
        let (panel, redirect) = (&panel, redirect.clone());
        async move {
            let mut fields = vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", redirect),
                ("client_id", "alpha-mastodon".to_owned()),
                ("client_secret", SECRET.to_owned()),
            ];
            if let Some(verifier) = verifier {
                fields.push(("code_verifier", verifier.to_owned()));
            }
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token_request(panel, &fields).await
        }
    };
    let (status, tokens) = exchange(code, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
    // A verifier for a code asked without a challenge is a confused client: refused.
    let page = ann.get(&without_pkce(&[])).await;
    let code = param(&page.location, "code").unwrap();
    let verifier = "a-verifier-of-at-least-forty-three-characters-long-x";
    let (status, body) = exchange(code, Some(verifier)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // form_post: a page whose form goes to the callback, and only there.
    let page = ann
        .get(&without_pkce(&[("response_mode", "form_post")]))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(&format!("action=\"{redirect}\"")),
        "{}",
        page.body
    );
    let code = crate::harness::value_of(&page.body, "code");
    assert_eq!(crate::harness::value_of(&page.body, "iss"), panel.base);
    let (status, tokens) = exchange(code, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let policy = panel
        .visitor()
        .client
        .get(format!(
            "{}{}",
            panel.base,
            without_pkce(&[("response_mode", "form_post"), ("prompt", "none")])
        ))
        .send()
        .await
        .unwrap()
        .headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("form-action https://social.alpha.example;"),
        "{policy}"
    );
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    // An unknown response mode is refused on a page, before anything is sent.
    let page = ann
        .get(&without_pkce(&[("response_mode", "fragment")]))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.location.is_empty(), "{}", page.location);
    panel.stop().await;
}
