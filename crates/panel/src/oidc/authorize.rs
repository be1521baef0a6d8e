//! `GET /oidc/authorize`: the start of the authorization-code flow.
//!
//! Until the client and its redirect URI are known to be genuine, an error is shown as a page:
//! redirecting then would send the user (and the error) wherever the request said. After that,
//! errors go back to the client's redirect URI (RFC 6749 §4.1.2.1), with `state` and `iss`.
//!
//! A visitor without a session is sent to sign in and comes back here afterwards. The session
//! cookie is `SameSite=Strict`, so a browser arriving from the service's site (cross-site) does
//! not send it: such a request (`Sec-Fetch-Site: cross-site`) is answered with a page that
//! loads this URL again from the panel itself ([`crate::pages::continue_to`]), which does
//! carry the cookie, so that a signed-in user is not asked for their password again.

use axum::extract::{Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fediversity_store::{NewGrant, OidcClient, Session};
use serde::Deserialize;

use super::{CODE_LIFETIME, SCOPES, may_sign_in, millis};
use crate::AppState;
use crate::auth::{MaybeSignedIn, id_hash, random_token, signed_in_at};
use crate::error::PanelError;
use crate::pages::escape_html;

/// The request's parameters, all optional here so that each missing one gets its own answer.
#[derive(Deserialize)]
pub(crate) struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    response_mode: Option<String>,
    prompt: Option<String>,
}

/// How the answer reaches the client: in the redirect's query (the default), or posted by the
/// browser as a form (`response_mode=form_post`, what PeerTube's OpenID Connect plugin asks
/// for), which keeps the code out of the service's access logs and the browser's history.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    Query,
    FormPost,
}

/// Where answers go once the client is known: the redirect URI, with `state` and `iss`.
struct Reply<'a> {
    redirect_uri: url::Url,
    state: Option<&'a str>,
    issuer: String,
    mode: ResponseMode,
}

impl Reply<'_> {
    fn with(&self, pairs: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        if let Some(state) = self.state {
            all.push(("state", state));
        }
        all.push(("iss", &self.issuer));
        let mut response = match self.mode {
            ResponseMode::Query => {
                let mut url = self.redirect_uri.clone();
                url.query_pairs_mut().extend_pairs(&all);
                Redirect::to(url.as_str()).into_response()
            }
            ResponseMode::FormPost => form_post(&self.redirect_uri, &all),
        };
        response.headers_mut().insert(
            CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        response
    }

    fn error(&self, error: &str, description: &str) -> Response {
        self.with(&[("error", error), ("error_description", description)])
    }
}

pub(crate) async fn authorize(
    State(state): State<AppState>,
    MaybeSignedIn(session): MaybeSignedIn,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    query: Result<Query<AuthorizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PanelError> {
    let Query(query) =
        query.map_err(|e| PanelError::BadRequest(format!("the sign-in request: {e}")))?;
    let (client, redirect_uri) = genuine_client(&state, &query).await?;
    let mode = match query.response_mode.as_deref() {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") => ResponseMode::FormPost,
        Some(_) => {
            return Err(PanelError::BadRequest(
                "the service asked for a response mode this panel does not offer (query or \
                 form_post); nothing was sent"
                    .to_owned(),
            ));
        }
    };
    let reply = Reply {
        redirect_uri,
        state: query.state.as_deref(),
        issuer: state.inner.options.issuer(),
        mode,
    };
    let scope = match checked_request(&query) {
        Ok(scope) => scope,
        Err((error, description)) => return Ok(reply.error(error, description)),
    };
    let Some(session) = session else {
        return Ok(without_session(&query, &headers, raw.as_deref(), &reply));
    };
    if !may_sign_in(&session.user, &client) {
        return Ok(reply.error(
            "access_denied",
            "this account is not a member of the operator this service belongs to",
        ));
    }
    let code = issue_code(&state, &client, &session, &query, scope).await?;
    Ok(reply.with(&[("code", &code)]))
}

/// The client and the redirect URI, if both are genuine; otherwise the error page.
async fn genuine_client(
    state: &AppState,
    query: &AuthorizeQuery,
) -> Result<(OidcClient, url::Url), PanelError> {
    let unknown = || {
        PanelError::BadRequest(
            "the service that sent you here is not registered with this panel; go back to it \
             and tell its administrator"
                .to_owned(),
        )
    };
    let client_id = query.client_id.as_deref().ok_or_else(unknown)?;
    let client = state
        .store()
        .oidc_client(client_id)
        .await?
        .ok_or_else(unknown)?;
    let redirect_uri = query
        .redirect_uri
        .as_deref()
        .filter(|uri| client.redirect_uris.iter().any(|known| known == uri))
        .and_then(|uri| url::Url::parse(uri).ok())
        .ok_or_else(|| {
            PanelError::BadRequest(
                "the service asked to send you back to an address it has not registered; \
                 nothing was sent"
                    .to_owned(),
            )
        })?;
    Ok((client, redirect_uri))
}

/// The granted scopes, or the error to send back: a code flow, an `openid` scope and, when the
/// client uses PKCE, S256 (`plain` would let whoever sees the redirect redeem the code).
/// PKCE is optional because every client here is confidential: the token endpoint demands
/// its secret, and Pixelfed's client sends no challenge.
fn checked_request(query: &AuthorizeQuery) -> Result<String, (&'static str, &'static str)> {
    if query.response_type.as_deref() != Some("code") {
        return Err((
            "unsupported_response_type",
            "only the authorization code flow (response_type=code) is supported",
        ));
    }
    let requested: Vec<&str> = query.scope.as_deref().unwrap_or("").split(' ').collect();
    if !requested.contains(&"openid") {
        return Err(("invalid_scope", "the scope must include openid"));
    }
    let granted: Vec<&str> = SCOPES
        .into_iter()
        .filter(|scope| requested.contains(scope))
        .collect();
    if query.code_challenge.is_none() && query.code_challenge_method.is_none() {
        return Ok(granted.join(" "));
    }
    if query.code_challenge_method.as_deref() != Some("S256") {
        return Err((
            "invalid_request",
            "PKCE must use code_challenge_method=S256",
        ));
    }
    let challenge = query.code_challenge.as_deref().unwrap_or("");
    let is_sha256 = URL_SAFE_NO_PAD
        .decode(challenge)
        .is_ok_and(|bytes| bytes.len() == 32);
    if !is_sha256 {
        return Err((
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the code verifier",
        ));
    }
    Ok(granted.join(" "))
}

/// The script that posts the form: the page's only one, allowed by its hash alone.
const SUBMIT_SCRIPT: &str = "document.forms[0].submit();";

/// A page whose form the browser posts to `target` at once (OAuth 2.0 Form Post Response
/// Mode). Its own policy lets the form go to the service's origin, and nowhere else; without
/// scripts, the visitor presses the button.
fn form_post(target: &url::Url, pairs: &[(&str, &str)]) -> Response {
    use sha2::{Digest as _, Sha256};
    let inputs: String = pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            )
        })
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signing in…</title>\
         </head><body><form method=\"post\" action=\"{}\">{inputs}\
         <noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script>{SUBMIT_SCRIPT}</script></body></html>",
        escape_html(target.as_str())
    );
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SUBMIT_SCRIPT));
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{hash}'; form-action {}; frame-ancestors 'none'; \
         base-uri 'none'",
        target.origin().ascii_serialization()
    );
    let mut response = axum::response::Html(html).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert("content-security-policy", value);
    }
    response
}

/// The answer to a request without a session: `login_required` when the client asked for no
/// interaction, the reload page for a cross-site arrival, else the sign-in page.
fn without_session(
    query: &AuthorizeQuery,
    headers: &HeaderMap,
    raw: Option<&str>,
    reply: &Reply<'_>,
) -> Response {
    if query.prompt.as_deref() == Some("none") {
        return reply.error("login_required", "no one is signed in to the panel");
    }
    let here = format!("/oidc/authorize?{}", raw.unwrap_or(""));
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|value| value.as_bytes() == b"cross-site");
    if cross_site {
        return crate::pages::continue_to(&here);
    }
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Redirect::to(&format!("/sign-in?next={next}")).into_response()
}

/// Records the grant and returns its code.
async fn issue_code(
    state: &AppState,
    client: &OidcClient,
    session: &Session,
    query: &AuthorizeQuery,
    scope: String,
) -> Result<String, PanelError> {
    let code = random_token();
    let now = state.now();
    let grant = NewGrant {
        code_hash: id_hash(&code),
        client_id: client.client_id.clone(),
        user: session.user.id,
        // As the client wrote it: its token request must repeat it exactly.
        redirect_uri: query.redirect_uri.clone().unwrap_or_default(),
        code_challenge: query.code_challenge.clone().unwrap_or_default(),
        scope,
        nonce: query.nonce.clone(),
        auth_time: signed_in_at(session),
        code_expires_at: now.saturating_add(millis(CODE_LIFETIME)),
    };
    state.store().create_oidc_grant(&grant, now).await?;
    Ok(code)
}
