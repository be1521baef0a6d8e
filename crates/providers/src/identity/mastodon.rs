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
//! Not yet exercised against a real Mastodon: the request shapes are tested against a
//! loopback recorder only (docs/identity.md).

use serde::Deserialize;

use super::error::IdentityError;
use super::http::{json, send};
use super::sync::{Outcome, ServiceAdmin};

/// The note Mastodon keeps with the moderation action.
const REASON: &str = "Removed from the operator's directory (Fediversity user sync)";

/// The fields of an `Admin::Account` the sync uses.
#[derive(Debug, Deserialize)]
struct AdminAccount {
    id: String,
    username: String,
}

/// Suspends the local account `username`, if there is one.
pub async fn suspend(
    http: &reqwest::Client,
    admin: &ServiceAdmin,
    username: &str,
) -> Result<Outcome, IdentityError> {
    let base = admin.url.trim_end_matches('/');
    let list = format!("{base}/api/v2/admin/accounts");
    let request = http
        .get(&list)
        .query(&[("origin", "local"), ("username", username)]);
    let response = send(admin, &list, request).await?;
    let accounts: Vec<AdminAccount> = json(admin, &list, response).await?;
    let Some(account) = accounts
        .into_iter()
        .find(|a| a.username.eq_ignore_ascii_case(username))
    else {
        return Ok(Outcome::NoAccount);
    };
    if !account.id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(IdentityError::Service {
            service: admin.service.title(),
            url: list,
            problem: format!("gave the account id `{}`, which is not an id", account.id),
        });
    }
    let action = format!("{base}/api/v1/admin/accounts/{}/action", account.id);
    let request = http
        .post(&action)
        .form(&[("type", "suspend"), ("text", REASON)]);
    send(admin, &action, request).await?;
    Ok(Outcome::Suspended)
}
