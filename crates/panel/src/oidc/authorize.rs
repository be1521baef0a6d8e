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
    prompt: Option<String>,
}

/// Where answers go once the client is known: the redirect URI, with `state` and `iss`.
struct Reply<'a> {
    redirect_uri: url::Url,
    state: Option<&'a str>,
    issuer: String,
}

impl Reply<'_> {
    fn with(&self, pairs: &[(&str, &str)]) -> Response {
        let mut url = self.redirect_uri.clone();
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.issuer);
        }
        let mut response = Redirect::to(url.as_str()).into_response();
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
    let reply = Reply {
        redirect_uri,
        state: query.state.as_deref(),
        issuer: state.inner.options.issuer(),
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

/// The granted scopes, or the error to send back: a code flow, an `openid` scope and PKCE
/// with S256 (`plain` would let whoever sees the redirect redeem the code).
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
    if query.code_challenge_method.as_deref() != Some("S256") {
        return Err((
            "invalid_request",
            "PKCE is required, with code_challenge_method=S256",
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
    let granted: Vec<&str> = SCOPES
        .into_iter()
        .filter(|scope| requested.contains(scope))
        .collect();
    Ok(granted.join(" "))
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
