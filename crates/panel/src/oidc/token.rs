//! `POST /oidc/token`: codes and refresh tokens exchanged for tokens (RFC 6749 §4.1.3, §6).
//!
//! The client authenticates with `client_secret_basic` or `client_secret_post` (one of them,
//! not both). A code is bound to its client, its redirect URI and its PKCE challenge, and is
//! spent on first use; presenting it again revokes everything it gave. A refresh token is
//! spent on use too and replaced by a new one; presenting a spent one revokes the grant
//! (the token was stolen, or the client is confused: either way the user signs in again).

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fediversity_store::{Grant, NewToken, OidcClient, Redemption, TokenKind};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::claims::user_claims;
use super::{
    ID_TOKEN_LIFETIME, REFRESH_LIFETIME, keys, may_sign_in, millis, no_store, oauth_error,
};
use crate::AppState;
use crate::auth::{id_hash, random_token, same_token};
use crate::error::PanelError;

/// The form fields of a token request.
#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A refusal, as RFC 6749 §5.2 words it.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    /// Ask for HTTP Basic credentials (a failed `client_secret_basic`).
    challenge: bool,
}

fn refused(error: &'static str, description: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        error,
        description,
        challenge: false,
    }
}

fn invalid_grant(description: &'static str) -> Refusal {
    refused("invalid_grant", description)
}

impl Refusal {
    fn into_response(self) -> Response {
        let mut response = oauth_error(self.status, self.error, self.description);
        if self.challenge {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fediversity\""),
            );
        }
        response
    }
}

pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PanelError> {
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return Ok(refused("invalid_request", "the body must be a form").into_response());
    };
    match answer(&state, &headers, form).await? {
        Ok(tokens) => Ok(no_store(StatusCode::OK, tokens)),
        Err(refusal) => Ok(refusal.into_response()),
    }
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<Result<Value, Refusal>, PanelError> {
    let client = match authenticated_client(state, headers, &form).await? {
        Ok(client) => client,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let redemption = match form.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(code) = form.code.as_deref() else {
                return Ok(Err(refused("invalid_request", "code is missing")));
            };
            state
                .store()
                .redeem_oidc_code(&id_hash(code), state.now())
                .await?
        }
        Some("refresh_token") => {
            let Some(token) = form.refresh_token.as_deref() else {
                return Ok(Err(refused("invalid_request", "refresh_token is missing")));
            };
            state
                .store()
                .redeem_refresh_token(&id_hash(token), &client.client_id, state.now())
                .await?
        }
        _ => {
            return Ok(Err(refused(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )));
        }
    };
    let grant = match redemption {
        Redemption::Redeemed(grant) => *grant,
        Redemption::Replayed => {
            tracing::warn!(client = %client.client_id, "a spent code or refresh token was presented again: its grant is revoked");
            return Ok(Err(invalid_grant(
                "this code or refresh token was already used; everything issued with it is revoked",
            )));
        }
        Redemption::Unknown => {
            return Ok(Err(invalid_grant(
                "the code or refresh token is unknown or expired",
            )));
        }
    };
    let code_flow = form.grant_type.as_deref() == Some("authorization_code");
    if let Err(refusal) = check_grant(&client, &grant, &form, code_flow) {
        return Ok(Err(refusal));
    }
    issue(state, &grant, code_flow).await.map(Ok)
}

/// The client, if its credentials are right.
async fn authenticated_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<Result<OidcClient, Refusal>, PanelError> {
    let basic = headers.get(AUTHORIZATION).map(basic_credentials);
    let (id, secret, challenge) = match (basic, &form.client_secret) {
        (Some(_), Some(_)) => {
            return Ok(Err(refused(
                "invalid_request",
                "use one client authentication method, not two",
            )));
        }
        (Some(Some((id, secret))), None) => (id, secret, true),
        (None, Some(secret)) => (
            form.client_id.clone().unwrap_or_default(),
            secret.clone(),
            false,
        ),
        (Some(None), None) | (None, None) => (String::new(), String::new(), false),
    };
    let client = state.store().oidc_client(&id).await?;
    let matches = client
        .as_ref()
        .is_some_and(|client| same_token(&client.secret_hash, &id_hash(&secret)));
    match client {
        Some(client) if matches && form.client_id.as_ref().is_none_or(|given| *given == id) => {
            Ok(Ok(client))
        }
        _ => Ok(Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "client authentication failed",
            challenge,
        })),
    }
}

/// The client id and secret of an `Authorization: Basic` header (each form-urlencoded, RFC
/// 6749 §2.3.1), or `None` when it is not one.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |text: &str| -> Option<String> {
        let pair = format!("x={text}");
        let (_, value) = url::form_urlencoded::parse(pair.as_bytes()).next()?;
        Some(value.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// Whether the grant may be used by this client and request.
fn check_grant(
    client: &OidcClient,
    grant: &Grant,
    form: &TokenForm,
    code_flow: bool,
) -> Result<(), Refusal> {
    if grant.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if !may_sign_in(&grant.user, client) {
        return Err(invalid_grant(
            "the user may no longer sign in to this service",
        ));
    }
    if !code_flow {
        return Ok(());
    }
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if grant.code_challenge.is_empty() {
        // Asked without PKCE: the client's secret, checked already, is what binds the code.
        return match form.code_verifier {
            None => Ok(()),
            Some(_) => Err(invalid_grant(
                "a code_verifier was sent for a code requested without PKCE",
            )),
        };
    }
    let verifier = form.code_verifier.as_deref().unwrap_or("");
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !well_formed || !same_token(&challenge, &grant.code_challenge) {
        return Err(invalid_grant("the PKCE code_verifier does not match"));
    }
    Ok(())
}

/// New access and refresh tokens and an ID token for the grant.
async fn issue(state: &AppState, grant: &Grant, with_nonce: bool) -> Result<Value, PanelError> {
    let now = state.now();
    let access = random_token();
    let refresh = random_token();
    let expires_in = ID_TOKEN_LIFETIME.as_secs();
    state
        .store()
        .add_oidc_tokens(
            grant.id,
            &[
                NewToken {
                    hash: id_hash(&access),
                    kind: TokenKind::Access,
                    expires_at: now.saturating_add(millis(ID_TOKEN_LIFETIME)),
                },
                NewToken {
                    hash: id_hash(&refresh),
                    kind: TokenKind::Refresh,
                    expires_at: now.saturating_add(millis(REFRESH_LIFETIME)),
                },
            ],
            now,
        )
        .await?;
    let mut claims = user_claims(&grant.user, &grant.scope);
    let seconds = now.div_euclid(1000);
    let extra = json!({
        "iss": state.inner.options.issuer(),
        "aud": grant.client_id,
        "iat": seconds,
        "exp": seconds.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX)),
        "auth_time": grant.auth_time.div_euclid(1000),
        "at_hash": access_token_hash(&access),
    });
    if let Value::Object(extra) = extra {
        claims.extend(extra);
    }
    if let (true, Some(nonce)) = (with_nonce, &grant.nonce) {
        claims.insert("nonce".to_owned(), json!(nonce));
    }
    let id_token = keys::current(state).await?.sign(&Value::Object(claims))?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": refresh,
        "id_token": id_token,
        "scope": grant.scope,
    }))
}

/// `at_hash`: the left half of the access token's SHA-256, base64url (OpenID Connect Core
/// §3.1.3.6), binding the ID token to the access token issued with it.
fn access_token_hash(access: &str) -> String {
    let digest = Sha256::digest(access.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = |text: &str| {
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(text))).unwrap()
        };
        assert_eq!(
            basic_credentials(&header("uni-mastodon:s%3Acret+x")),
            Some(("uni-mastodon".to_owned(), "s:cret x".to_owned()))
        );
        assert_eq!(basic_credentials(&header("no-colon")), None);
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer abc")),
            None
        );
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_sha256() {
        // The example of OpenID Connect Core's test vectors is for RS256 too.
        assert_eq!(
            access_token_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
