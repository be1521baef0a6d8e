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
//! - de-provisioning ("Users"): `GET /api/v1/users?search=<uid>&count=100` lists users whose
//!   name or address contains the directory's `uid` (`account_of` picks the one PeerTube
//!   made for that directory user, below); then `POST /api/v1/users/<id>/block` with the JSON
//!   `{"reason": …}` blocks it: the user can no longer log in, and an admin can unblock them.
//!   Blocking rather than deleting keeps the videos until a person decides;
//! - the administrator role ("Users", `UpdateUser`): `PUT /api/v1/users/<id>` with
//!   `{"role": 0}` (administrator; the reference's `UserRole`: Admin = 0, Moderator = 1,
//!   User = 2) or `{"role": 2}` (user). Giving the administrator role needs the signed-in
//!   administrator's password again (`currentPassword`, "password confirmation"), so the grant
//!   carries root's;
//! - sign-out: once the sync's calls are done, `POST /api/v1/users/revoke-token` with the
//!   token as bearer (no body; PeerTube revokes the token that authenticated the request,
//!   `revokeOAuthToken` in `server/core/controllers/api/users/token.ts`), so that no live `root`
//!   token is left behind by each run. Best-effort: a failure is logged, the sync's outcome
//!   stands, and the token expires on its own (PeerTube's access tokens live for hours).
//!
//! **Which account is a directory user's.** Read in PeerTube's source and its LDAP plugin
//! (`peertube-plugin-auth-ldap/main.js` of Framasoft's official plugins;
//! `server/core/lib/auth/external-auth.ts`, `oauth-model.ts`, `local-actor.ts` and
//! `helpers/custom-validators/users.ts` of Chocobozzz/PeerTube):
//!
//! 1. the plugin offers the `uid` attribute as the user name verbatim (no lower-casing, no
//!    replacement), with the `mail` attribute, and refuses a directory entry without either;
//! 2. PeerTube refuses the sign-in when the name is not a valid PeerTube user name
//!    (`^[a-z0-9_]+([a-z0-9_.-]+[a-z0-9_]+)?$`, at most 50 characters): a `uid` such as
//!    `Jane.Doe` never gets an account;
//! 3. PeerTube then finds the account **by e-mail address** (case-insensitively); only when
//!    there is none does it create one, named after the `uid`, or `<uid>-1` … `<uid>-29` when
//!    the name is taken (by a local account, a channel, or a deleted account's reserved name),
//!    and records the plugin's name (`pluginAuth`) on it.
//!
//! So the account of a directory user is the one the LDAP plugin made (`pluginAuth` is
//! `peertube-plugin-auth-ldap`) with the user's address, named after the `uid`: never a local
//! account of the same name, which belongs to someone else (`account_of`). (The OpenID
//! Connect plugin, which the sync does not use, replaces every character outside
//! `[a-z0-9._]` of the claimed name with `_` instead, upper-case letters included.)
//!
//! `root` itself is never blocked nor demoted: it is the platform's way in
//! ([`ServiceAdmin::protects`](super::sync::ServiceAdmin::protects)); it is a local account, so
//! `account_of` never picks it either.
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

/// The `pluginAuth` PeerTube records on the accounts the LDAP plugin made.
const LDAP_PLUGIN: &str = "peertube-plugin-auth-ldap";

/// The longest user name PeerTube accepts (`CONSTRAINTS_FIELDS.USERS.USERNAME`).
const NAME_LIMIT: usize = 50;

/// The suffixes PeerTube tries when a name is taken (`findAvailableLocalActorName`).
const SUFFIXES: std::ops::RangeInclusive<u32> = 1..=29;

/// The fields of a PeerTube `User` the sync uses.
#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default, rename = "pluginAuth")]
    plugin_auth: Option<String>,
}

/// The account PeerTube's LDAP plugin made for the directory user `uid` with the address
/// `email`, among `users` (see the module doc for the rules, read in PeerTube's source):
/// one the plugin made, named `uid` or `<uid>-<n>` (1 ≤ n ≤ 29), whose address is `email`.
/// Without an address (a pending call recorded before addresses were kept), only an account
/// named exactly `uid` is taken: a suffixed one may be another directory user's.
fn account_of<'u>(users: &'u [User], uid: &str, email: Option<&str>) -> Option<&'u User> {
    if !valid_name(uid) {
        return None;
    }
    let named_after = |name: &str| {
        name == uid
            || name
                .strip_prefix(uid)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|n| n.parse::<u32>().ok().filter(|k| k.to_string() == n))
                .is_some_and(|n| SUFFIXES.contains(&n))
    };
    users.iter().find(|user| {
        user.plugin_auth.as_deref() == Some(LDAP_PLUGIN)
            && match email {
                Some(email) => {
                    named_after(&user.username)
                        && user
                            .email
                            .as_deref()
                            .is_some_and(|known| known.eq_ignore_ascii_case(email))
                }
                None => user.username == uid,
            }
    })
}

/// Whether PeerTube accepts `name` as a user name (`isUserUsernameValid`): lower-case letters,
/// digits, `_`, and `.` or `-` inside, at most [`NAME_LIMIT`] characters.
fn valid_name(name: &str) -> bool {
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    name.len() <= NAME_LIMIT
        && name.starts_with(edge)
        && name.ends_with(edge)
        && name.chars().all(|c| edge(c) || c == '.' || c == '-')
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

/// The id of the account of the directory user `uid` ([`account_of`]), if PeerTube has one.
async fn find(
    http: &reqwest::Client,
    session: &Session<'_>,
    uid: &str,
    email: Option<&str>,
) -> Result<Option<u64>, IdentityError> {
    let list = format!("{}/api/v1/users", session.base());
    let request = http.get(&list).query(&[("search", uid), ("count", "100")]);
    let response = send(session, &list, request).await?;
    let users: UserList = json(session.admin.service, &list, response).await?;
    Ok(account_of(&users.data, uid, email).map(|user| user.id))
}

/// Blocks the account of the directory user `uid`, if there is one.
pub(super) async fn block(
    http: &reqwest::Client,
    session: &Session<'_>,
    uid: &str,
    email: Option<&str>,
) -> Result<Outcome, IdentityError> {
    let Some(id) = find(http, session, uid, email).await? else {
        return Ok(Outcome::NoAccount);
    };
    let url = format!("{}/api/v1/users/{id}/block", session.base());
    let request = http.post(&url).json(&json!({ "reason": REASON }));
    send(session, &url, request).await?;
    Ok(Outcome::Blocked)
}

/// Gives the account of the directory user `uid` the administrator role (`admin`), or the
/// plain user role.
pub(super) async fn set_role(
    http: &reqwest::Client,
    session: &Session<'_>,
    uid: &str,
    email: Option<&str>,
    admin: bool,
) -> Result<Outcome, IdentityError> {
    let Some(id) = find(http, session, uid, email).await? else {
        return Ok(Outcome::NoAccount);
    };
    let url = format!("{}/api/v1/users/{id}", session.base());
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

/// Revokes the session's token (`POST /api/v1/users/revoke-token`), so that the sync leaves
/// no live `root` token behind. No error carries the token.
pub(super) async fn sign_out(
    http: &reqwest::Client,
    session: &Session<'_>,
) -> Result<(), IdentityError> {
    let url = format!("{}/api/v1/users/revoke-token", session.base());
    send(session, &url, http.post(&url))
        .await
        .map(drop)
        .map_err(|e| without(e, &session.token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64, username: &str, email: &str, plugin: Option<&str>) -> User {
        User {
            id,
            username: username.to_owned(),
            email: Some(email.to_owned()),
            plugin_auth: plugin.map(str::to_owned),
        }
    }

    fn picked(users: &[User], uid: &str, email: Option<&str>) -> Option<u64> {
        account_of(users, uid, email).map(|user| user.id)
    }

    #[test]
    fn the_account_is_the_one_the_ldap_plugin_made_for_the_uid_and_address() {
        let ldap = Some(LDAP_PLUGIN);
        let users = [
            // A local account that had the name first: someone else's.
            user(1, "bob", "bob@elsewhere.example", None),
            // Another directory user, `bob-1`, with their own account.
            user(2, "bob-1", "bob-1@example.org", ldap),
            // bob's: PeerTube suffixed the name, as `bob` and `bob-1` were taken.
            user(3, "bob-2", "Bob@Example.org", ldap),
            user(4, "bobby", "bobby@example.org", ldap),
            user(
                5,
                "carol",
                "carol@example.org",
                Some("peertube-plugin-auth-openid-connect"),
            ),
            user(6, "dave", "dave@example.org", ldap),
        ];
        assert_eq!(picked(&users, "bob", Some("bob@example.org")), Some(3));
        assert_eq!(picked(&users, "bob-1", Some("bob-1@example.org")), Some(2));
        // Same address, but a name PeerTube would not have given `bob`.
        assert_eq!(picked(&users, "bob", Some("bobby@example.org")), None);
        // Made by another plugin, or a local account: not the directory user's.
        assert_eq!(picked(&users, "carol", Some("carol@example.org")), None);
        assert_eq!(picked(&users, "bob", Some("bob@elsewhere.example")), None);
        // The address changed in the directory: PeerTube will make a new account at the
        // next sign-in; the old one is not taken for it.
        assert_eq!(picked(&users, "dave", Some("dave@new.example")), None);
        // Without an address, only the exact name.
        assert_eq!(picked(&users, "dave", None), Some(6));
        assert_eq!(picked(&users, "bob", None), None);
    }

    #[test]
    fn peertube_keeps_the_uid_as_it_is_and_refuses_names_it_cannot_hold() {
        let ldap = Some(LDAP_PLUGIN);
        let users = [
            user(1, "jane.doe", "jane@example.org", ldap),
            user(2, "jane_doe", "jane@example.org", ldap),
            user(3, "bob-30", "bob@example.org", ldap),
            user(4, "bob-01", "bob@example.org", ldap),
        ];
        // No conversion: `jane.doe` stays `jane.doe`.
        assert_eq!(
            picked(&users, "jane.doe", Some("jane@example.org")),
            Some(1)
        );
        // PeerTube refuses these at sign-in, so they never have an account.
        for uid in [
            "Jane.Doe",
            "jane doe",
            ".jane",
            "jane-",
            "",
            &"a".repeat(51),
        ] {
            assert!(!valid_name(uid), "{uid:?}");
            assert_eq!(picked(&users, uid, Some("jane@example.org")), None);
        }
        assert!(valid_name("j") && valid_name("_j.a-n_e9") && valid_name(&"a".repeat(50)));
        // PeerTube tries `-1` to `-29` only, written without leading zeros.
        assert_eq!(picked(&users, "bob", Some("bob@example.org")), None);
    }
}
