//! The panel as an OpenID Connect provider for its operators' services, so that an operator's
//! panel account is its admin account on its Mastodon, Pixelfed and PeerTube.
//!
//! - [`discovery`]: `/.well-known/openid-configuration` and the JWKS (`/oidc/jwks`);
//! - [`authorize`]: `/oidc/authorize`, the authorization-code flow with PKCE (S256 only),
//!   for the client's own operator's users only (no consent page: the services are theirs);
//! - [`token`]: `/oidc/token`, client authentication (`client_secret_basic` or
//!   `client_secret_post`), codes spent once and refresh tokens rotated on use;
//! - [`userinfo`]: `/oidc/userinfo`, with the access token only (never the session cookie);
//! - [`claims`]: what the tokens say about a user; [`keys`]: the RS256 signing keys;
//! - [`client`]: the `oidc` provider, which makes the clients (`oidc_client.<service>`) when
//!   an operator deploys.
//!
//! Codes and tokens are random 256-bit values; the store keeps only their SHA-256. These
//! endpoints are not the panel's forms: they are outside its CSRF check, and the token and
//! userinfo endpoints authenticate clients and tokens, not sessions.

mod authorize;
mod claims;
pub mod client;
mod discovery;
mod keys;
mod token;
mod userinfo;

use std::time::Duration;

use axum::Router;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fediversity_engine::clock::Millis;
use fediversity_store::{OidcClient, Role, User};
use serde_json::json;

use crate::AppState;

pub use keys::rotate_signing_key;

/// How long an authorization code may be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long an access token and an ID token are valid.
const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a refresh token is valid (each use gives a new one).
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The scopes the provider knows; others are ignored.
const SCOPES: [&str; 4] = ["openid", "profile", "email", "groups"];

/// The provider's routes, at the paths the services are configured with.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration),
        )
        .route("/oidc/jwks", get(discovery::jwks))
        .route("/oidc/authorize", get(authorize::authorize))
        .route("/oidc/token", axum::routing::post(token::token))
        .route(
            "/oidc/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
}

/// A duration in the store's unit, saturating.
fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// Whether `user` may sign in to `client`: a member of the client's operator. The hosting
/// provider's administrators are not: they are nobody's service account.
fn may_sign_in(user: &User, client: &OidcClient) -> bool {
    matches!(&user.role, Role::Operator(own) if *own == client.operator)
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2), never cached.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// A JSON answer that must not be cached (it carries tokens or is about them).
fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    response
}
