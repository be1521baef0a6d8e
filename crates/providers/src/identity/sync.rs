//! User sync: read the directory into a [`Snapshot`], compare it with the previous one
//! ([`diff`], pure), de-provision on every service the users the directory no longer has, and
//! give or take the services' administrator role as users join or leave the admin group.
//!
//! Removing accounts is the one destructive thing this module does, so it is guarded: a read
//! that fails or finds nobody stops the sync before any comparison (see
//! [`super::ldap::read_directory`]), a user is de-provisioned only when the previous snapshot
//! had them, and when more than [`SyncOptions::max_removed_fraction`] of the previous users
//! would go at once (a filter edited by mistake looks exactly like that), nothing is removed,
//! the report says why, and the previous snapshot is kept so the next run sees the same
//! removals until someone looks.
//!
//! A call that fails (the service is down, answers 5xx, refuses the token) does not lose the
//! change: it is kept in the new snapshot as [`Pending`] and made again at the next sync, for as
//! long as it still matches the directory (a user removed and then added back is not blocked).
//! Granting the administrator role to a user the service has no account for yet is kept
//! the same way: the services make accounts at a user's first sign-in.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use fediversity_model::ServiceKind;
use serde::{Deserialize, Serialize};

use super::error::IdentityError;
use super::http::Session;
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

/// The directory's users at one moment, by stable id (`entryUUID`, else the normalised DN),
/// and the service calls still to make for earlier changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every user.
    pub users: BTreeMap<String, DirectoryUser>,
    /// Calls that failed (or found no account to give a role to yet): made again next sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
}

impl Snapshot {
    /// How many users are administrators.
    pub fn admins(&self) -> usize {
        self.users.values().filter(|user| user.admin).count()
    }

    /// The user named `username`, if the directory has them.
    fn named(&self, username: &str) -> Option<&DirectoryUser> {
        self.users.values().find(|user| user.username == username)
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

/// What the sync asks of a service for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The user left the directory: suspend or block the account.
    Remove,
    /// The user joined the admin group: give the administrator role.
    GrantAdmin,
    /// The user left the admin group: back to the plain user role.
    RevokeAdmin,
}

impl Action {
    /// Whether the action still matches the directory `current`: a user added back is not
    /// removed, and a role change the group has undone is not made.
    fn still_wanted(self, username: &str, current: &Snapshot) -> bool {
        let user = current.named(username);
        match self {
            Self::Remove => user.is_none(),
            Self::GrantAdmin => user.is_some_and(|user| user.admin),
            Self::RevokeAdmin => user.is_some_and(|user| !user.admin),
        }
    }
}

/// A call still to make on a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pending {
    /// The service.
    pub service: ServiceKind,
    /// The user name.
    pub username: String,
    /// What to do.
    pub action: Action,
    /// The user's address as the directory last had it: PeerTube knows a directory user's
    /// account by it ([`peertube`]). Kept here because a removed user is in no later snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// How the platform signs in to a service's admin API.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A bearer token with the admin scopes (Mastodon's: `admin:read:accounts
    /// admin:write:accounts`, provisioned on the host from a platform secret).
    Token(SecretString),
    /// PeerTube's `root` password: the sync signs in through PeerTube's OAuth password grant
    /// ([`peertube::sign_in`]) when it has calls to make, and PeerTube asks for the password
    /// again to grant the administrator role.
    PeertubeRoot(SecretString),
}

/// A service the sync calls through its admin API. (For Pixelfed, which has no documented
/// admin API, `url` and `credential` are not used: the outcome says what to do by hand.)
#[derive(Clone, Debug)]
pub struct ServiceAdmin {
    /// Which service.
    pub service: ServiceKind,
    /// Its base address, e.g. `https://social.example.org`.
    pub url: String,
    /// How to sign in.
    pub credential: Credential,
    /// The account the platform made for the operator's admin (Mastodon's Owner, whose
    /// token the sync uses; Pixelfed's admin), if any.
    pub operator_admin: Option<String>,
}

impl ServiceAdmin {
    /// Whether the sync leaves the account of the directory user `username` alone
    /// ([`protected`]).
    pub fn protects(&self, username: &str) -> bool {
        protected(self.service, self.operator_admin.as_deref(), username)
    }
}

/// Whether the account of the directory user `uid` on `service` is one the sync never
/// suspends, blocks nor gives another role, nor asks a person to: `operator_admin`, the
/// account the platform made for the operator's admin, or PeerTube's `root`, the platform's
/// way in. Removing either would lock the operator, or the platform and the sync, out of the
/// service. The directory's name is compared as the service names the account (Mastodon
/// turns `.` and `-` into `_`).
pub fn protected(service: ServiceKind, operator_admin: Option<&str>, uid: &str) -> bool {
    let account = match service {
        ServiceKind::Mastodon => mastodon::account_name(uid),
        ServiceKind::Peertube | ServiceKind::Pixelfed => uid.to_owned(),
    };
    let root = service == ServiceKind::Peertube && account.eq_ignore_ascii_case(peertube::ROOT);
    root || operator_admin.is_some_and(|admin| admin.eq_ignore_ascii_case(&account))
}

/// What one call did for one user on one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Mastodon: the account is suspended (reversible by an admin for 30 days).
    Suspended,
    /// PeerTube: the user is blocked (reversible by an admin).
    Blocked,
    /// The account now has the role asked for.
    RoleSet,
    /// The service has no local account by that name: nothing to do (for a grant: tried again
    /// next sync, since the account is made at the user's first sign-in).
    NoAccount,
    /// The account is the operator's admin or the platform's way in (PeerTube's `root`):
    /// left alone ([`ServiceAdmin::protects`]).
    Protected,
    /// The service offers no documented API for it: what a person must do.
    Manual(String),
    /// The call failed; the next sync tries again.
    Failed(String),
}

/// One call to a service for one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCall {
    /// The service.
    pub service: ServiceKind,
    /// The user name.
    pub username: String,
    /// What was asked (records from before role changes hold removals only).
    #[serde(default = "removal")]
    pub action: Action,
    /// What happened.
    pub outcome: Outcome,
}

fn removal() -> Action {
    Action::Remove
}

impl ServiceCall {
    /// Whether the call is to be made again next sync.
    fn again(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
            || (self.action == Action::GrantAdmin && self.outcome == Outcome::NoAccount)
    }
}

/// What a sync run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// What changed in the directory.
    pub report: SyncReport,
    /// The calls made (or reported as manual) on the services: for this run's changes and
    /// for earlier ones still pending, removals first.
    pub calls: Vec<ServiceCall>,
    /// Why removals were held back, when they were.
    pub held_back: Option<String>,
    /// The snapshot to keep for the next run: the directory as read with the calls still to
    /// make, or the previous one when removals were held back.
    pub snapshot: Snapshot,
}

/// Reads the directory, compares it with `previous`, and makes the calls the changes (and the
/// previous run's pending calls) need on `services`. A failed or empty read is an error and
/// changes nothing.
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
            calls: Vec::new(),
            held_back: Some(refusal),
            snapshot: previous.clone(),
        });
    }
    let kinds: Vec<ServiceKind> = services.iter().map(|admin| admin.service).collect();
    let work = work(previous, &current, &report, &kinds);
    let http = identity.http_client()?;
    let (calls, pending) = carry_out(&http, services, work).await;
    Ok(SyncOutcome {
        report,
        calls,
        held_back: None,
        snapshot: Snapshot {
            users: current.users,
            pending,
        },
    })
}

/// The calls to make on `services` (in that order; per service removals, then grants, then
/// revocations, each by user name): the previous run's pending calls that still match the
/// directory, and this run's changes, the newer one winning for a user and service. Each
/// carries the user's address as the directory last had it.
fn work(
    previous: &Snapshot,
    current: &Snapshot,
    report: &SyncReport,
    services: &[ServiceKind],
) -> Vec<Pending> {
    let mut wanted: BTreeMap<(ServiceKind, String), (Action, Option<String>)> = previous
        .pending
        .iter()
        .filter(|p| services.contains(&p.service) && p.action.still_wanted(&p.username, current))
        .map(|p| ((p.service, p.username.clone()), (p.action, p.email.clone())))
        .collect();
    let email = |username: &str| {
        current
            .named(username)
            .or_else(|| previous.named(username))
            .and_then(|user| user.email.clone())
    };
    let changes = [
        (Action::Remove, &report.removed),
        (Action::GrantAdmin, &report.admin_granted),
        (Action::RevokeAdmin, &report.admin_revoked),
    ];
    for service in services {
        for (action, names) in changes {
            for username in names {
                wanted.insert((*service, username.clone()), (action, email(username)));
            }
        }
    }
    let mut work: Vec<Pending> = wanted
        .into_iter()
        .map(|((service, username), (action, email))| Pending {
            service,
            username,
            action,
            email,
        })
        .collect();
    work.sort_by_key(|p| {
        let at = services.iter().position(|s| *s == p.service);
        (at, p.action, p.username.clone())
    });
    work
}

/// Makes `work`'s calls, signing in to each service once, when it first needs to, and signing
/// out of the sessions it opened once they are done: the calls, and those to make again.
async fn carry_out(
    http: &reqwest::Client,
    services: &[ServiceAdmin],
    work: Vec<Pending>,
) -> (Vec<ServiceCall>, Vec<Pending>) {
    let mut sessions: BTreeMap<ServiceKind, Result<Session<'_>, String>> = BTreeMap::new();
    let (mut calls, mut pending) = (Vec::new(), Vec::new());
    for item in work {
        let admin = services.iter().find(|a| a.service == item.service);
        let manual = by_hand(item.service, &item.username, item.action);
        let outcome = match (manual, admin) {
            (_, Some(admin)) if admin.protects(&item.username) => Outcome::Protected,
            (Some(what), _) => Outcome::Manual(what),
            (None, None) => continue,
            (None, Some(admin)) => {
                let session = match sessions.entry(admin.service) {
                    Entry::Occupied(known) => known.into_mut(),
                    Entry::Vacant(new) => {
                        new.insert(sign_in(http, admin).await.map_err(|e| e.to_string()))
                    }
                };
                match session {
                    Ok(session) => call(http, session, &item)
                        .await
                        .unwrap_or_else(|e| Outcome::Failed(e.to_string())),
                    Err(error) => Outcome::Failed(error.clone()),
                }
            }
        };
        if let Outcome::Failed(error) = &outcome {
            tracing::warn!(
                service = %item.service, username = %item.username, action = ?item.action, %error,
                "user sync call failed; made again next sync"
            );
        }
        let call = ServiceCall {
            service: item.service,
            username: item.username.clone(),
            action: item.action,
            outcome,
        };
        if call.again() {
            pending.push(item);
        }
        calls.push(call);
    }
    for session in sessions
        .values()
        .filter_map(|session| session.as_ref().ok())
    {
        sign_out(http, session).await;
    }
    (calls, pending)
}

/// What a person must do instead, where `service` has no documented API for `action`
/// (Mastodon's roles, everything on Pixelfed); `None` where the sync calls the API.
pub fn by_hand(service: ServiceKind, username: &str, action: Action) -> Option<String> {
    match (service, action) {
        (ServiceKind::Pixelfed, Action::Remove) => Some(pixelfed::deprovision(username)),
        (ServiceKind::Pixelfed, action) => {
            Some(pixelfed::set_role(username, action == Action::GrantAdmin))
        }
        (ServiceKind::Mastodon, Action::GrantAdmin | Action::RevokeAdmin) => {
            Some(mastodon::set_role(username, action == Action::GrantAdmin))
        }
        (ServiceKind::Mastodon | ServiceKind::Peertube, _) => None,
    }
}

/// Signs in to `admin`'s service.
async fn sign_in<'a>(
    http: &reqwest::Client,
    admin: &'a ServiceAdmin,
) -> Result<Session<'a>, IdentityError> {
    let token = match &admin.credential {
        Credential::Token(token) => token.clone(),
        Credential::PeertubeRoot(password) => {
            peertube::sign_in_with(http, &admin.url, password).await?
        }
    };
    Ok(Session { admin, token })
}

/// Ends a session the sync opened by signing in (PeerTube's), so that its token does not
/// outlive the sync; a session on a token the platform provisioned (Mastodon's) is left as
/// it is. Best-effort: a failure is logged, and the token expires on its own.
async fn sign_out(http: &reqwest::Client, session: &Session<'_>) {
    if !matches!(session.admin.credential, Credential::PeertubeRoot(_)) {
        return;
    }
    if let Err(error) = peertube::sign_out(http, session).await {
        tracing::warn!(
            service = %session.admin.service, %error,
            "could not revoke the user sync's access token; it expires on its own"
        );
    }
}

/// Makes one call through the service's API.
async fn call(
    http: &reqwest::Client,
    session: &Session<'_>,
    item: &Pending,
) -> Result<Outcome, IdentityError> {
    let (username, email) = (&item.username, item.email.as_deref());
    match (session.admin.service, item.action) {
        (ServiceKind::Mastodon, Action::Remove) => mastodon::suspend(http, session, username).await,
        (ServiceKind::Peertube, Action::Remove) => {
            peertube::block(http, session, username, email).await
        }
        (ServiceKind::Peertube, action) => {
            let admin = action == Action::GrantAdmin;
            peertube::set_role(http, session, username, email, admin).await
        }
        (service, action) => Err(IdentityError::Settings(format!(
            "internal error: {} has no admin API call for {action:?}",
            service.title()
        ))),
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
                            email: Some(format!("{name}@example.org")),
                            admin: *admin,
                        },
                    )
                })
                .collect(),
            pending: Vec::new(),
        }
    }

    fn pending(service: ServiceKind, username: &str, action: Action) -> Pending {
        Pending {
            service,
            username: username.to_owned(),
            action,
            email: Some(format!("{username}@example.org")),
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

    #[test]
    fn the_work_is_this_runs_changes_and_the_pending_calls_the_directory_still_wants() {
        use Action::{GrantAdmin, Remove, RevokeAdmin};
        use ServiceKind::{Mastodon, Peertube};
        let mut before = snapshot(&[("alice", false), ("bob", false), ("carol", true)]);
        before.pending = vec![
            // Failed last time, still gone: made again.
            pending(Peertube, "zoe", Remove),
            // Failed last time, but back in the directory: dropped.
            pending(Peertube, "alice", Remove),
            // A grant the group has since undone: dropped.
            pending(Peertube, "bob", GrantAdmin),
            // For a service no longer given: dropped.
            pending(ServiceKind::Pixelfed, "zoe", Remove),
        ];
        let mut after = snapshot(&[("alice", false), ("bob", false), ("dave", true)]);
        after.users.remove("id-carol");
        let report = diff(&before, &after);
        assert_eq!(report.removed, ["carol"]);
        let planned = work(&before, &after, &report, &[Mastodon, Peertube]);
        assert_eq!(
            planned,
            [
                pending(Mastodon, "carol", Remove),
                pending(Mastodon, "dave", GrantAdmin),
                pending(Peertube, "carol", Remove),
                pending(Peertube, "zoe", Remove),
                pending(Peertube, "dave", GrantAdmin),
            ]
        );

        // A newer change replaces a pending one for the same user and service.
        let mut admin_then_not = snapshot(&[("erin", true)]);
        admin_then_not.pending = vec![pending(Peertube, "erin", GrantAdmin)];
        let now = snapshot(&[("erin", false)]);
        let report = diff(&admin_then_not, &now);
        assert_eq!(
            work(&admin_then_not, &now, &report, &[Peertube]),
            [pending(Peertube, "erin", RevokeAdmin)]
        );
    }

    #[test]
    fn failed_calls_and_grants_without_an_account_yet_are_made_again() {
        let call = |action, outcome| ServiceCall {
            service: ServiceKind::Peertube,
            username: "bob".into(),
            action,
            outcome,
        };
        assert!(call(Action::Remove, Outcome::Failed("HTTP 503".into())).again());
        assert!(call(Action::GrantAdmin, Outcome::NoAccount).again());
        assert!(!call(Action::Remove, Outcome::NoAccount).again());
        assert!(!call(Action::Remove, Outcome::Blocked).again());
        assert!(!call(Action::RevokeAdmin, Outcome::Manual("tootctl".into())).again());
    }

    #[test]
    fn records_from_before_role_changes_read_as_removals() {
        let old =
            serde_json::json!({"service": "mastodon", "username": "bob", "outcome": "suspended"});
        let call: ServiceCall = serde_json::from_value(old).unwrap();
        assert_eq!(call.action, Action::Remove);
        let snapshot: Snapshot = serde_json::from_value(serde_json::json!({"users": {}})).unwrap();
        assert!(snapshot.pending.is_empty());
        // Pending calls from before addresses were kept have none.
        let old = serde_json::json!({"service": "peertube", "username": "bob", "action": "remove"});
        let pending: Pending = serde_json::from_value(old).unwrap();
        assert_eq!(pending.email, None);
    }

    #[test]
    fn the_operators_admin_and_peertubes_root_are_protected_by_the_services_account_name() {
        use ServiceKind::{Mastodon, Peertube, Pixelfed};
        // Pixelfed's admin, like Mastodon's, whatever the case.
        assert!(protected(Pixelfed, Some("admin"), "admin"));
        assert!(protected(Pixelfed, Some("admin"), "Admin"));
        assert!(!protected(Pixelfed, Some("admin"), "bob"));
        assert!(!protected(Pixelfed, None, "admin"));
        // Mastodon compares its own account name: `jane.doe` signs in as `jane_doe`.
        assert!(protected(Mastodon, Some("jane_doe"), "jane.doe"));
        assert!(!protected(Mastodon, Some("jane.doe"), "jane_doe_2"));
        // PeerTube's root, with or without an operator admin; `root` is no one on the others.
        assert!(protected(Peertube, None, "root"));
        assert!(protected(Peertube, Some("admin"), "ROOT"));
        assert!(!protected(Mastodon, None, "root"));
        assert!(!protected(Peertube, None, "root-1"));
        let admin = ServiceAdmin {
            service: Pixelfed,
            url: "https://photos.example.org".into(),
            credential: Credential::Token(SecretString::new("unused")),
            operator_admin: Some("admin".into()),
        };
        assert!(admin.protects("admin") && !admin.protects("bob"));
    }
}
