//! User sync: read the directory into a [`Snapshot`], compare it with the previous one
//! ([`diff`], pure), and de-provision on every service the users the directory no longer has.
//!
//! Removing accounts is the one destructive thing this module does, so it is guarded: a read
//! that fails or finds nobody stops the sync before any comparison (see
//! [`super::ldap::read_directory`]), a user is de-provisioned only when the previous snapshot
//! had them, and when more than [`SyncOptions::max_removed_fraction`] of the previous users
//! would go at once (a filter edited by mistake looks exactly like that), nothing is removed,
//! the report says why, and the previous snapshot is kept so the next run sees the same
//! removals until someone looks.

use std::collections::BTreeMap;

use fediversity_model::ServiceKind;
use serde::{Deserialize, Serialize};

use super::error::IdentityError;
use super::ldap::{LdapSettings, read_directory};
use super::{IdentityOptions, mastodon, peertube, pixelfed};
use crate::sensitive::SecretString;

/// One user as the directory describes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// The name the user logs in with on every service (`uid`).
    pub username: String,
    /// The user's address, when the directory has one.
    pub email: Option<String>,
    /// Whether the user is in the admin group.
    pub admin: bool,
}

/// The directory's users at one moment, by stable id (`entryUUID`, else the normalised DN).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every user.
    pub users: BTreeMap<String, DirectoryUser>,
}

impl Snapshot {
    /// How many users are administrators.
    pub fn admins(&self) -> usize {
        self.users.values().filter(|user| user.admin).count()
    }
}

/// What changed between two snapshots, by user name, each list sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Users the directory has now and did not have before.
    pub added: Vec<String>,
    /// Users the directory had and has no more.
    pub removed: Vec<String>,
    /// Users who joined the admin group (including new users who are admins).
    pub admin_granted: Vec<String>,
    /// Users who left the admin group and are still in the directory.
    pub admin_revoked: Vec<String>,
}

/// What changed from `previous` to `current`.
pub fn diff(previous: &Snapshot, current: &Snapshot) -> SyncReport {
    let mut report = SyncReport::default();
    for (id, user) in &current.users {
        match previous.users.get(id) {
            None => {
                report.added.push(user.username.clone());
                if user.admin {
                    report.admin_granted.push(user.username.clone());
                }
            }
            Some(before) if user.admin && !before.admin => {
                report.admin_granted.push(user.username.clone());
            }
            Some(before) if !user.admin && before.admin => {
                report.admin_revoked.push(user.username.clone());
            }
            Some(_) => {}
        }
    }
    report.removed = previous
        .users
        .iter()
        .filter(|(id, _)| !current.users.contains_key(*id))
        .map(|(_, user)| user.username.clone())
        .collect();
    for list in [
        &mut report.added,
        &mut report.removed,
        &mut report.admin_granted,
        &mut report.admin_revoked,
    ] {
        list.sort();
    }
    report
}

/// How far a sync may go on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncOptions {
    /// The largest share of the previous users one run may de-provision (0.0 to 1.0); a run
    /// that would remove more removes nobody and says so. At least one user may always go.
    pub max_removed_fraction: f64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            max_removed_fraction: 0.25,
        }
    }
}

impl SyncOptions {
    /// Why removing `removed` of `previous` users at once is refused, if it is.
    fn refusal(&self, removed: usize, previous: usize) -> Option<String> {
        // Rounding up lets one user of a small directory go; the float is exact for any
        // realistic directory size.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "directory sizes are far below 2^52"
        )]
        let allowed = ((previous as f64) * self.max_removed_fraction)
            .ceil()
            .max(1.0) as usize;
        (removed > allowed).then(|| {
            format!(
                "{removed} of {previous} users would be removed at once, more than the {allowed} allowed \
                 (max_removed_fraction {}): nobody was de-provisioned; check the directory and the user \
                 filter, then raise the limit for one run if the removals are real",
                self.max_removed_fraction
            )
        })
    }
}

/// A service the sync de-provisions on, through its admin API. (For Pixelfed, which has no
/// documented admin API, `url` and `token` are not used: the outcome says what to do by hand.)
#[derive(Clone, Debug)]
pub struct ServiceAdmin {
    /// Which service.
    pub service: ServiceKind,
    /// Its base address, e.g. `https://social.example.org`.
    pub url: String,
    /// An admin access token (Mastodon: scopes `admin:read:accounts admin:write:accounts`;
    /// PeerTube: an administrator's OAuth token).
    pub token: SecretString,
}

/// What de-provisioning did for one user on one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Mastodon: the account is suspended (reversible by an admin for 30 days).
    Suspended,
    /// PeerTube: the user is blocked (reversible by an admin).
    Blocked,
    /// The service has no local account by that name: nothing to do.
    NoAccount,
    /// The service offers no documented API for it: what a person must do.
    Manual(String),
    /// The call failed; the next run tries again, since the user is still missing.
    Failed(String),
}

/// One de-provisioning attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deprovisioning {
    /// The service.
    pub service: ServiceKind,
    /// The user name.
    pub username: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What a sync run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// What changed in the directory.
    pub report: SyncReport,
    /// What was done on the services for the removed users.
    pub deprovisioned: Vec<Deprovisioning>,
    /// Why removals were held back, when they were.
    pub held_back: Option<String>,
    /// The snapshot to keep for the next run: the directory as read, or the previous one
    /// when removals were held back.
    pub snapshot: Snapshot,
}

/// Reads the directory, compares it with `previous` and de-provisions removed users on
/// `services`. A failed or empty read is an error and changes nothing.
pub async fn sync(
    settings: &LdapSettings,
    password: &SecretString,
    previous: &Snapshot,
    services: &[ServiceAdmin],
    options: &SyncOptions,
    identity: &IdentityOptions,
) -> Result<SyncOutcome, IdentityError> {
    let current = read_directory(settings, password, identity).await?;
    let report = diff(previous, &current);
    if let Some(refusal) = options.refusal(report.removed.len(), previous.users.len()) {
        tracing::warn!(url = %settings.url, removed = report.removed.len(), "user sync held back removals");
        return Ok(SyncOutcome {
            report,
            deprovisioned: Vec::new(),
            held_back: Some(refusal),
            snapshot: previous.clone(),
        });
    }
    let http = identity.http_client()?;
    let mut deprovisioned = Vec::new();
    for username in &report.removed {
        for admin in services {
            let outcome = deprovision(&http, admin, username)
                .await
                .unwrap_or_else(|e| Outcome::Failed(e.to_string()));
            deprovisioned.push(Deprovisioning {
                service: admin.service,
                username: username.clone(),
                outcome,
            });
        }
    }
    Ok(SyncOutcome {
        report,
        deprovisioned,
        held_back: None,
        snapshot: current,
    })
}

async fn deprovision(
    http: &reqwest::Client,
    admin: &ServiceAdmin,
    username: &str,
) -> Result<Outcome, IdentityError> {
    match admin.service {
        ServiceKind::Mastodon => mastodon::suspend(http, admin, username).await,
        ServiceKind::Peertube => peertube::block(http, admin, username).await,
        ServiceKind::Pixelfed => Ok(pixelfed::deprovision(username)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(users: &[(&str, bool)]) -> Snapshot {
        Snapshot {
            users: users
                .iter()
                .map(|(name, admin)| {
                    (
                        format!("id-{name}"),
                        DirectoryUser {
                            username: (*name).to_owned(),
                            email: None,
                            admin: *admin,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_diff_names_added_removed_granted_and_revoked_users() {
        let before = snapshot(&[("alice", true), ("bob", false), ("carol", false)]);
        let after = snapshot(&[
            ("alice", false),
            ("carol", true),
            ("dave", true),
            ("erin", false),
        ]);
        assert_eq!(
            diff(&before, &after),
            SyncReport {
                added: vec!["dave".into(), "erin".into()],
                removed: vec!["bob".into()],
                admin_granted: vec!["carol".into(), "dave".into()],
                admin_revoked: vec!["alice".into()],
            }
        );
        assert_eq!(diff(&after, &after), SyncReport::default());
    }

    #[test]
    fn a_rename_keeps_the_id_and_is_no_removal() {
        let before = snapshot(&[("alice", false)]);
        let mut after = before.clone();
        after.users.get_mut("id-alice").unwrap().username = "alice2".into();
        assert_eq!(diff(&before, &after), SyncReport::default());
    }

    #[test]
    fn removing_more_than_the_fraction_is_refused_but_one_user_may_always_go() {
        let options = SyncOptions::default();
        assert_eq!(options.refusal(1, 2), None);
        assert_eq!(options.refusal(25, 100), None);
        let refusal = options.refusal(26, 100).unwrap();
        assert!(
            refusal.contains("26 of 100") && refusal.contains("25 allowed"),
            "{refusal}"
        );
        assert!(options.refusal(2, 3).is_some());
    }
}
