//! De-provisioning on Mastodon, through its documented admin API
//! (docs.joinmastodon.org/methods/admin/accounts):
//!
//! 1. `GET /api/v2/admin/accounts?origin=local&username=<name>` (scope
//!    `admin:read:accounts`) lists local accounts matching the name; the one whose `username`
//!    is exactly the name is taken (the v1 listing with `local=true` is deprecated);
//! 2. `POST /api/v1/admin/accounts/<id>/action` with the form `type=suspend` and a `text`
//!    for the audit log (scope `admin:write:accounts`) suspends it: the user can no longer log
//!    in, and an admin can undo it for 30 days before the data is deleted.
//!
//! The admin role cannot be given through the API: the documented admin account actions are
//! approve, reject, the moderation actions (none, sensitive, disable, silence, suspend), enable,
//! unsilence, unsuspend, unsensitive and delete, and no method sets a role. So a change in the
//! admin group is reported for a person, with the `tootctl accounts modify` command that
//! does it ([`set_role`]).
//!
//! The token is the platform's own: a generated secret that a unit on the Mastodon host makes
//! an access token of the operator's admin (nix/modules/mastodon.nix). Mastodon's Doorkeeper
//! configuration (config/initializers/doorkeeper.rb) sets no `hash_token_secrets`, so tokens
//! are stored as they are and the secret is the bearer token itself.
//!
//! Not yet exercised against a real Mastodon: the request shapes are tested against a
//! loopback recorder only (docs/identity.md).

use serde::Deserialize;

use super::error::IdentityError;
use super::http::{Session, json, send};
use super::sync::Outcome;

/// The characters of a directory `uid` Mastodon replaces, and with what, when it makes the
/// account of an LDAP user: nix/lib/mastodon.nix turns `LDAP_UID_CONVERSION_ENABLED` on with
/// Mastodon's default search (`.-`) and replacement (`_`), since its user names may hold
/// neither (User::LdapAuthenticable#ldap_get_user).
const CONVERTED: [char; 2] = ['.', '-'];

/// The name of the Mastodon account of the directory user `uid`.
pub(super) fn account_name(uid: &str) -> String {
    uid.replace(CONVERTED, "_")
}

/// The note Mastodon keeps with the moderation action.
const REASON: &str = "Removed from the operator's directory (Fediversity user sync)";

/// The fields of an `Admin::Account` the sync uses.
#[derive(Debug, Deserialize)]
struct AdminAccount {
    id: String,
    username: String,
}

/// Suspends the local account of the directory user `uid`, if there is one.
pub(super) async fn suspend(
    http: &reqwest::Client,
    session: &Session<'_>,
    uid: &str,
) -> Result<Outcome, IdentityError> {
    let username = &account_name(uid);
    let base = session.base();
    let list = format!("{base}/api/v2/admin/accounts");
    let request = http
        .get(&list)
        .query(&[("origin", "local"), ("username", username)]);
    let response = send(session, &list, request).await?;
    let accounts: Vec<AdminAccount> = json(session.admin.service, &list, response).await?;
    let Some(account) = accounts
        .into_iter()
        .find(|a| a.username.eq_ignore_ascii_case(username))
    else {
        return Ok(Outcome::NoAccount);
    };
    if !account.id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(IdentityError::Service {
            service: session.admin.service.title(),
            url: list,
            problem: format!("gave the account id `{}`, which is not an id", account.id),
            transient: false,
        });
    }
    let action = format!("{base}/api/v1/admin/accounts/{}/action", account.id);
    let request = http
        .post(&action)
        .form(&[("type", "suspend"), ("text", REASON)]);
    send(session, &action, request).await?;
    Ok(Outcome::Suspended)
}

/// What a person does to suspend the account of the directory user `uid` when the platform
/// cannot (it holds no token for this Mastodon yet).
pub fn suspend_by_hand(uid: &str) -> String {
    let username = account_name(uid);
    format!(
        "suspend `{username}` in Mastodon's moderation dashboard (Moderation → Accounts), or \
         with `tootctl accounts modify {username} --disable` on the Mastodon host"
    )
}

/// What a person does to give (`admin`) or take Mastodon's administrator role from
/// `username`: the API cannot.
pub fn set_role(uid: &str, admin: bool) -> String {
    let username = account_name(uid);
    let what = if admin {
        format!(
            "give `{username}` the Admin role with `tootctl accounts modify {username} --role Admin`"
        )
    } else {
        format!(
            "take the Admin role from `{username}` with `tootctl accounts modify {username} --remove-role`"
        )
    };
    format!(
        "Mastodon's admin API cannot change roles: {what} on the Mastodon host, or in \
         Moderation → Accounts"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_become_mastodons_account_names() {
        assert_eq!(account_name("jane.doe-smith"), "jane_doe_smith");
        assert_eq!(account_name("bob"), "bob");
        let what = set_role("jane.doe", true);
        assert!(
            what.contains("tootctl accounts modify jane_doe --role Admin"),
            "{what}"
        );
    }
}
