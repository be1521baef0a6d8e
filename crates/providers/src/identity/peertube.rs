//! PeerTube through its documented REST API (docs.joinpeertube.org/api-rest-reference), as
//! `root`, the administrator PeerTube's installer makes with the password the platform
//! generated (the `admin-password` secret):
//!
//! - sign-in, OAuth 2 password grant ("Session": "Login prerequisite" and "Login", confirmed
//!   against the REST reference and PeerTube's quick start): `GET /api/v1/oauth-clients/local`
//!   answers `{"client_id", "client_secret"}` (PeerTube's own front-end client); then
//!   `POST /api/v1/users/token` with the form `client_id, client_secret, grant_type=password,
//!   username=root, password` answers `{"access_token", "token_type": "Bearer", …}`. Wrong
//!   credentials are a 400 (`invalid_grant`) or 401;
//! - de-provisioning ("Users"): `GET /api/v1/users?search=<name>&count=100` lists users
//!   matching the name, the one whose `username` is exactly the name is taken; then
//!   `POST /api/v1/users/<id>/block` with the JSON `{"reason": …}` blocks it: the user can no
//!   longer log in, and an admin can unblock them. Blocking rather than deleting keeps the
//!   videos until a person decides;
//! - the administrator role ("Users", `UpdateUser`): `PUT /api/v1/users/<id>` with
//!   `{"role": 0}` (administrator; the reference's `UserRole`: Admin = 0, Moderator = 1,
//!   User = 2) or `{"role": 2}` (user). Giving the administrator role needs the signed-in
//!   administrator's password again (`currentPassword`, "password confirmation"), so the grant
//!   carries root's.
//!
//! `root` itself is never blocked nor demoted: it is the platform's way in
//! ([`ServiceAdmin::protects`](super::sync::ServiceAdmin::protects)).
//!
//! Not yet exercised against a real PeerTube: the request shapes are tested against a
//! loopback recorder only (docs/identity.md).

use fediversity_model::ServiceKind;
use serde::Deserialize;
use serde_json::json;

use super::IdentityOptions;
use super::error::IdentityError;
use super::http::{Session, call, json, send};
use super::sync::{Credential, Outcome};
use crate::sensitive::SecretString;

/// The administrator PeerTube's installer makes; the platform signs in as it.
pub const ROOT: &str = "root";

/// The reason PeerTube shows with the block (at most 500 characters).
const REASON: &str = "Removed from the operator's directory (Fediversity user sync)";

/// PeerTube's `UserRole` for an administrator.
const ROLE_ADMINISTRATOR: u8 = 0;

/// PeerTube's `UserRole` for a plain user.
const ROLE_USER: u8 = 2;

#[derive(Debug, Deserialize)]
struct UserList {
    data: Vec<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    username: String,
}

/// PeerTube's own OAuth client.
#[derive(Deserialize)]
struct LocalClient {
    client_id: String,
    client_secret: String,
}

/// The part of the token answer the platform uses.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
}

/// Signs in to the PeerTube at `url` as `root` with `password`: an access token. For the
/// panel and tests; the sync signs in itself when it has calls to make.
pub async fn sign_in(
    url: &str,
    password: &SecretString,
    options: &IdentityOptions,
) -> Result<SecretString, IdentityError> {
    sign_in_with(&options.http_client()?, url, password).await
}

/// [`sign_in`] with the sync's HTTP client. No error carries the password.
pub(super) async fn sign_in_with(
    http: &reqwest::Client,
    url: &str,
    password: &SecretString,
) -> Result<SecretString, IdentityError> {
    let base = url.trim_end_matches('/');
    let service = ServiceKind::Peertube;
    let clients = format!("{base}/api/v1/oauth-clients/local");
    let refused = " (PeerTube gives its client only to requests for its own host name)";
    let response = call(service, &clients, http.get(&clients), refused).await?;
    let client: LocalClient = json(service, &clients, response).await?;
    let token_url = format!("{base}/api/v1/users/token");
    let request = http.post(&token_url).form(&[
        ("client_id", client.client_id.as_str()),
        ("client_secret", client.client_secret.as_str()),
        ("grant_type", "password"),
        ("username", ROOT),
        ("password", password.expose()),
    ]);
    let refused = " (check root's password: the service's generated admin-password secret)";
    let response = call(service, &token_url, request, refused)
        .await
        .map_err(|e| without(e, password))?;
    let token: TokenAnswer = json(service, &token_url, response).await?;
    Ok(token.access_token)
}

/// `error` with `secret` masked, should an answer have quoted it.
fn without(error: IdentityError, secret: &SecretString) -> IdentityError {
    match error {
        IdentityError::Service {
            service,
            url,
            problem,
            transient,
        } if !secret.expose().is_empty() => IdentityError::Service {
            service,
            url,
            problem: problem.replace(secret.expose(), "(secret)"),
            transient,
        },
        other => other,
    }
}

/// The user named exactly `username`, if PeerTube has one.
async fn find(
    http: &reqwest::Client,
    session: &Session<'_>,
    username: &str,
) -> Result<Option<User>, IdentityError> {
    let list = format!("{}/api/v1/users", session.base());
    let request = http
        .get(&list)
        .query(&[("search", username), ("count", "100")]);
    let response = send(session, &list, request).await?;
    let users: UserList = json(session.admin.service, &list, response).await?;
    Ok(users
        .data
        .into_iter()
        .find(|u| u.username.eq_ignore_ascii_case(username)))
}

/// Blocks the user `username`, if there is one.
pub(super) async fn block(
    http: &reqwest::Client,
    session: &Session<'_>,
    username: &str,
) -> Result<Outcome, IdentityError> {
    let Some(user) = find(http, session, username).await? else {
        return Ok(Outcome::NoAccount);
    };
    let url = format!("{}/api/v1/users/{}/block", session.base(), user.id);
    let request = http.post(&url).json(&json!({ "reason": REASON }));
    send(session, &url, request).await?;
    Ok(Outcome::Blocked)
}

/// Gives `username` the administrator role (`admin`), or the plain user role.
pub(super) async fn set_role(
    http: &reqwest::Client,
    session: &Session<'_>,
    username: &str,
    admin: bool,
) -> Result<Outcome, IdentityError> {
    let Some(user) = find(http, session, username).await? else {
        return Ok(Outcome::NoAccount);
    };
    let url = format!("{}/api/v1/users/{}", session.base(), user.id);
    let body = match (&session.admin.credential, admin) {
        (Credential::PeertubeRoot(password), true) => {
            json!({ "role": ROLE_ADMINISTRATOR, "currentPassword": password.expose() })
        }
        (_, true) => json!({ "role": ROLE_ADMINISTRATOR }),
        (_, false) => json!({ "role": ROLE_USER }),
    };
    send(session, &url, http.put(&url).json(&body)).await?;
    Ok(Outcome::RoleSet)
}
