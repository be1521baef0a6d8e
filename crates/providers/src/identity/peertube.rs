//! De-provisioning on PeerTube, through its documented users API
//! (docs.joinpeertube.org/api-rest-reference, "Users"; an administrator's OAuth token):
//!
//! 1. `GET /api/v1/users?search=<name>&count=100` lists users matching the name; the one
//!    whose `username` is exactly the name is taken;
//! 2. `POST /api/v1/users/<id>/block` with the JSON `{"reason": …}` blocks it: the user can
//!    no longer log in, and an admin can unblock them. Blocking rather than deleting keeps
//!    the videos until a person decides.
//!
//! Not yet exercised against a real PeerTube: the request shapes are tested against a
//! loopback recorder only (docs/identity.md).

use serde::Deserialize;
use serde_json::json;

use super::error::IdentityError;
use super::http::{json, send};
use super::sync::{Outcome, ServiceAdmin};

/// The reason PeerTube shows with the block (at most 500 characters).
const REASON: &str = "Removed from the operator's directory (Fediversity user sync)";

#[derive(Debug, Deserialize)]
struct UserList {
    data: Vec<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    username: String,
}

/// Blocks the user `username`, if there is one.
pub async fn block(
    http: &reqwest::Client,
    admin: &ServiceAdmin,
    username: &str,
) -> Result<Outcome, IdentityError> {
    let base = admin.url.trim_end_matches('/');
    let list = format!("{base}/api/v1/users");
    let request = http
        .get(&list)
        .query(&[("search", username), ("count", "100")]);
    let response = send(admin, &list, request).await?;
    let users: UserList = json(admin, &list, response).await?;
    let Some(user) = users
        .data
        .into_iter()
        .find(|u| u.username.eq_ignore_ascii_case(username))
    else {
        return Ok(Outcome::NoAccount);
    };
    let url = format!("{base}/api/v1/users/{}/block", user.id);
    let request = http.post(&url).json(&json!({ "reason": REASON }));
    send(admin, &url, request).await?;
    Ok(Outcome::Blocked)
}
