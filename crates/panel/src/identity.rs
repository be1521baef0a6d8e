//! The operator's own identity provider, seen from the panel: the scheduled user sync
//! (docs/identity.md) and the configuration page's "Check identity provider" button.
//!
//! The sync runs in every worker ([`SyncSchedule::tick`]): each period, each operator whose
//! latest configuration names an LDAP directory is synced once. Several workers share the
//! schedule through the store: a worker first claims the operator's sync (a lease apart from
//! its deployments'), then looks whether the last recorded sync is a period old, so a directory
//! is never read and compared twice at once nor twice in one period. A read that fails is
//! recorded as a failed sync with its error, beside the previous snapshot, and is tried again
//! next period.
//!
//! No service admin token is provisioned yet, so the sync de-provisions nowhere by itself: for
//! each removed user and each service the operator runs, its report says what a person has
//! to do ([`Awaiting`]).

use std::time::Duration;

use fediversity_engine::clock::{Clock, Millis, SystemClock};
use fediversity_model::names::OperatorId;
use fediversity_model::operator::{IdentityProvider, LdapProvider};
use fediversity_model::{OperatorConfig, ServiceKind};
use fediversity_providers::SecretString;
use fediversity_providers::identity::sync::{
    Deprovisioning, Outcome, ServiceAdmin, Snapshot, SyncOptions, SyncReport, sync,
};
use fediversity_providers::identity::{CheckReport, LdapSettings, check, pixelfed};
use fediversity_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::Platform;

/// How often each operator's directory is synced unless told otherwise.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60 * 60);

/// How long a worker holds an operator's sync: longer than a directory read (20 s by
/// default) and the de-provisioning calls; a worker that dies leaves it to the next period.
const CLAIM: Duration = Duration::from_secs(10 * 60);

/// How often an idle worker looks for operators due a sync.
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// When the user syncs run.
#[derive(Clone)]
pub struct SyncSchedule {
    /// The time between two syncs of one operator.
    pub period: Duration,
    /// Where the time is read.
    pub clock: Arc<dyn Clock>,
    /// When this worker looks for due syncs next.
    next_look: Millis,
}

impl Default for SyncSchedule {
    fn default() -> Self {
        Self::new(DEFAULT_PERIOD, Arc::new(SystemClock))
    }
}

impl SyncSchedule {
    /// Each operator synced every `period`, the time read from `clock`.
    pub fn new(period: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            period,
            clock,
            next_look: Millis::MIN,
        }
    }

    /// For an idle worker: at most once a minute (or once a period, if shorter), syncs every
    /// operator that is due. Failures are logged, never fatal to the worker.
    pub async fn tick(&mut self, store: &Store, platform: &Platform, worker: &str) {
        let now = self.clock.now();
        if now < self.next_look {
            return;
        }
        self.next_look = now.saturating_add(millis(LOOK_EVERY.min(self.period)));
        if let Err(error) = sync_due(store, platform, worker, self).await {
            tracing::error!(%error, "could not run the identity syncs");
        }
    }
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// What the panel records as the report of a sync, and shows on the dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SyncRecord {
    /// The directory was read and compared with the previous snapshot.
    Synced {
        /// Users in the directory (`None` when removals were held back: the kept snapshot
        /// is the previous one).
        users: Option<usize>,
        /// Of those, administrators.
        admins: Option<usize>,
        /// Who was added, removed, made or unmade admin.
        changes: SyncReport,
        /// What was done on the services for removed users.
        deprovisioned: Vec<Deprovisioning>,
        /// Why removals were held back, when they were.
        held_back: Option<String>,
        /// Removals a person must carry out, per service.
        awaiting: Vec<Awaiting>,
    },
    /// The directory could not be read: nothing was compared, the previous snapshot is kept.
    Failed {
        /// Why.
        error: String,
    },
}

/// A removal no API call carried out: what a person must do, on which service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// The service.
    pub service: ServiceKind,
    /// The user the directory no longer has.
    pub username: String,
    /// What to do.
    pub what: String,
}

/// Syncs every operator that is due under `schedule`, as `worker`; returns those synced.
/// One operator's failure to be recorded is logged and does not stop the others.
pub async fn sync_due(
    store: &Store,
    platform: &Platform,
    worker: &str,
    schedule: &SyncSchedule,
) -> Result<Vec<OperatorId>, String> {
    let mut synced = Vec::new();
    for operator in store.operators().await.map_err(|e| e.to_string())? {
        match sync_if_due(store, platform, worker, schedule, &operator).await {
            Ok(true) => synced.push(operator),
            Ok(false) => {}
            Err(error) => tracing::error!(%operator, %error, "identity sync not recorded"),
        }
    }
    Ok(synced)
}

/// The operator's latest configuration, if it has saved one.
async fn latest_config(
    store: &Store,
    operator: &OperatorId,
) -> Result<Option<OperatorConfig>, String> {
    let Some(stored) = store
        .configurations(operator)
        .await
        .map_err(|e| e.to_string())?
        .pop()
    else {
        return Ok(None);
    };
    serde_json::from_value(stored.config)
        .map(Some)
        .map_err(|e| format!("configuration {} unreadable: {e}", stored.version))
}

async fn sync_if_due(
    store: &Store,
    platform: &Platform,
    worker: &str,
    schedule: &SyncSchedule,
    operator: &OperatorId,
) -> Result<bool, String> {
    let Some(config) = latest_config(store, operator).await? else {
        return Ok(false);
    };
    let Some(IdentityProvider::Ldap(ldap)) = &config.identity else {
        return Ok(false);
    };
    let now = schedule.clock.now();
    let claimed = store
        .claim_identity_sync(operator, worker, now, CLAIM)
        .await
        .map_err(|e| e.to_string())?;
    if !claimed {
        return Ok(false);
    }
    let result = sync_claimed(store, platform, schedule, operator, &config, ldap).await;
    if let Err(error) = store.release_identity_sync(operator, worker).await {
        tracing::warn!(%operator, %error, "could not release the identity sync claim; it lapses");
    }
    result
}

/// Under the claim: syncs unless the last sync is less than a period old, and records it.
async fn sync_claimed(
    store: &Store,
    platform: &Platform,
    schedule: &SyncSchedule,
    operator: &OperatorId,
    config: &OperatorConfig,
    ldap: &LdapProvider,
) -> Result<bool, String> {
    let last = store
        .identity_sync(operator)
        .await
        .map_err(|e| e.to_string())?;
    let now = schedule.clock.now();
    if last
        .as_ref()
        .is_some_and(|last| now.saturating_sub(last.synced_at) < millis(schedule.period))
    {
        return Ok(false);
    }
    let previous: Snapshot = match last {
        Some(last) => serde_json::from_value(last.snapshot)
            .map_err(|e| format!("the recorded identity snapshot is unreadable: {e}"))?,
        None => Snapshot::default(),
    };
    let (snapshot, record) = run_sync(platform, operator, config, ldap, previous).await;
    if let SyncRecord::Failed { error } = &record {
        tracing::warn!(%operator, %error, "identity sync failed; tried again next period");
    }
    let snapshot = serde_json::to_value(&snapshot).map_err(|e| e.to_string())?;
    let record = serde_json::to_value(&record).map_err(|e| e.to_string())?;
    store
        .record_identity_sync(operator, &snapshot, &record, schedule.clock.now())
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Reads the directory and compares it with `previous`: the snapshot to keep and the record.
async fn run_sync(
    platform: &Platform,
    operator: &OperatorId,
    config: &OperatorConfig,
    ldap: &LdapProvider,
    previous: Snapshot,
) -> (Snapshot, SyncRecord) {
    let password = match bind_password(platform, operator, ldap).await {
        Ok(password) => password,
        Err(error) => return (previous, SyncRecord::Failed { error }),
    };
    // No service admin token is provisioned anywhere yet: no service is called, and every
    // removal awaits a person (below). `sync` calls the services' modules for those it is given.
    let services: &[ServiceAdmin] = &[];
    let settings = LdapSettings::from(ldap);
    let outcome = match sync(
        &settings,
        &password,
        &previous,
        services,
        &SyncOptions::default(),
        &platform.identity,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            let error = error.to_string();
            return (previous, SyncRecord::Failed { error });
        }
    };
    let awaiting = if outcome.held_back.is_some() {
        Vec::new()
    } else {
        awaiting(config, services, &outcome.report.removed)
    };
    let counted = outcome.held_back.is_none();
    let record = SyncRecord::Synced {
        users: counted.then_some(outcome.snapshot.users.len()),
        admins: counted.then_some(outcome.snapshot.admins()),
        changes: outcome.report,
        deprovisioned: outcome.deprovisioned,
        held_back: outcome.held_back,
        awaiting,
    };
    (outcome.snapshot, record)
}

/// The LDAP bind password from the operator's secrets, or what to do when it is missing.
async fn bind_password(
    platform: &Platform,
    operator: &OperatorId,
    ldap: &LdapProvider,
) -> Result<SecretString, String> {
    let name = &ldap.bind_password.secret;
    platform
        .operator_secrets
        .get(operator, name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the bind password of {} is not stored: the operator secret `{name}` is missing; {}",
                ldap.bind_dn,
                platform.operator_secrets.how_to_store(operator, name)
            )
        })
}

/// For each removed user, each service the operator runs that no admin API call covered:
/// what a person must do there.
fn awaiting(config: &OperatorConfig, called: &[ServiceAdmin], removed: &[String]) -> Vec<Awaiting> {
    let by_hand: Vec<ServiceKind> = config
        .services
        .iter()
        .filter(|(kind, service)| {
            service.enable && !called.iter().any(|admin| admin.service == *kind)
        })
        .map(|(kind, _)| kind)
        .collect();
    removed
        .iter()
        .flat_map(|username| {
            by_hand.iter().map(|service| Awaiting {
                service: *service,
                username: username.clone(),
                what: by_hand_on(*service, username),
            })
        })
        .collect()
}

/// What a person does to remove `username` from `service`.
fn by_hand_on(service: ServiceKind, username: &str) -> String {
    match service {
        ServiceKind::Mastodon => format!(
            "no Mastodon admin token is provisioned yet: suspend `{username}` in Mastodon's \
             moderation dashboard (Moderation → Accounts), or with \
             `tootctl accounts modify {username} --disable` on the Mastodon host"
        ),
        ServiceKind::Peertube => format!(
            "no PeerTube admin token is provisioned yet: block `{username}` in PeerTube's \
             administration (Overview → Users)"
        ),
        ServiceKind::Pixelfed => match pixelfed::deprovision(username) {
            Outcome::Manual(what) => what,
            other => format!("{other:?}"),
        },
    }
}

/// The panel's "Check identity provider" button: the check a deployment would make, with the
/// operator's stored secret; the text to show, and whether it passed.
pub async fn check_identity(
    platform: &Platform,
    operator: &OperatorId,
    config: Option<&OperatorConfig>,
) -> (bool, String) {
    let Some(provider) = config.and_then(|c| c.identity.as_ref()) else {
        return (
            false,
            "No identity provider is configured: the services use the panel's accounts.".to_owned(),
        );
    };
    let secret = match provider {
        IdentityProvider::Ldap(ldap) => match bind_password(platform, operator, ldap).await {
            Ok(password) => Some(password),
            Err(error) => return (false, error),
        },
        IdentityProvider::Oidc(_) => None,
    };
    match check(provider, secret.as_ref(), &platform.identity).await {
        Ok(CheckReport::Ldap { users, admins }) => (
            true,
            format!("The directory answered: {users} users, {admins} of them administrators."),
        ),
        Ok(CheckReport::Oidc(discovery)) => (
            true,
            format!(
                "The issuer's discovery document is valid: authorization at {}, tokens at {}.",
                discovery.authorization_endpoint, discovery.token_endpoint
            ),
        ),
        Err(error) => (false, error.to_string()),
    }
}

/// The identity provider, in a few words, for the configuration page.
pub(crate) fn describe(provider: &IdentityProvider) -> String {
    match provider {
        IdentityProvider::Ldap(ldap) => format!(
            "the LDAP directory at {}, searched under {} as {}",
            ldap.url, ldap.user_base, ldap.bind_dn
        ),
        IdentityProvider::Oidc(oidc) => format!("the OpenID Connect issuer {}", oidc.issuer),
    }
}

/// The last sync, as the dashboard shows it.
pub(crate) struct SyncView {
    /// When it ran (UTC).
    pub when: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// "N users, M administrators", when counted.
    pub counts: Option<String>,
    /// One line per kind of change there was: "Added: alice, bob".
    pub changes: Vec<String>,
    /// Why removals were held back.
    pub held_back: Option<String>,
    /// One line per removal a person must carry out, and per de-provisioning call made.
    pub awaiting: Vec<String>,
    /// What the calls to services' admin APIs did.
    pub deprovisioned: Vec<String>,
}

/// The operator's last sync, for its dashboard; `None` before the first.
pub(crate) async fn last_sync(
    store: &Store,
    operator: &OperatorId,
) -> Result<Option<SyncView>, crate::error::PanelError> {
    let Some(last) = store.identity_sync(operator).await? else {
        return Ok(None);
    };
    let record: SyncRecord = serde_json::from_value(last.report).map_err(|e| {
        crate::error::PanelError::internal(format!("identity sync report unreadable: {e}"))
    })?;
    Ok(Some(SyncView::new(
        crate::pages::operators::format_time(last.synced_at),
        record,
    )))
}

impl SyncView {
    fn new(when: String, record: SyncRecord) -> Self {
        let mut view = Self {
            when,
            error: None,
            counts: None,
            changes: Vec::new(),
            held_back: None,
            awaiting: Vec::new(),
            deprovisioned: Vec::new(),
        };
        match record {
            SyncRecord::Failed { error } => view.error = Some(error),
            SyncRecord::Synced {
                users,
                admins,
                changes,
                deprovisioned,
                held_back,
                awaiting,
            } => {
                view.counts = users
                    .zip(admins)
                    .map(|(users, admins)| format!("{users} users, {admins} administrators"));
                view.changes = [
                    ("Added", changes.added),
                    ("Removed", changes.removed),
                    ("Made administrator", changes.admin_granted),
                    ("No longer administrator", changes.admin_revoked),
                ]
                .into_iter()
                .filter(|(_, names)| !names.is_empty())
                .map(|(title, names)| format!("{title}: {}", names.join(", ")))
                .collect();
                view.held_back = held_back;
                view.awaiting = awaiting
                    .into_iter()
                    .map(|a| format!("{}: {}", a.service.title(), a.what))
                    .collect();
                view.deprovisioned = deprovisioned
                    .into_iter()
                    .map(|d| format!("{}, `{}`: {:?}", d.service.title(), d.username, d.outcome))
                    .collect();
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixelfed_removals_say_what_pixelfed_needs() {
        let what = by_hand_on(ServiceKind::Pixelfed, "bob");
        assert!(what.contains("php artisan user:delete bob"), "{what}");
        let what = by_hand_on(ServiceKind::Mastodon, "bob");
        assert!(what.contains("suspend `bob`"), "{what}");
    }

    #[test]
    fn the_dashboard_lists_only_the_changes_there_were_and_what_awaits_a_person() {
        let record = SyncRecord::Synced {
            users: Some(2),
            admins: Some(1),
            changes: SyncReport {
                removed: vec!["bob".into()],
                admin_granted: vec!["carol".into()],
                ..SyncReport::default()
            },
            deprovisioned: Vec::new(),
            held_back: None,
            awaiting: vec![Awaiting {
                service: ServiceKind::Peertube,
                username: "bob".into(),
                what: by_hand_on(ServiceKind::Peertube, "bob"),
            }],
        };
        let view = SyncView::new("then".into(), record);
        assert_eq!(view.counts.as_deref(), Some("2 users, 1 administrators"));
        assert_eq!(view.changes, ["Removed: bob", "Made administrator: carol"]);
        assert!(view.awaiting[0].starts_with("PeerTube: no PeerTube admin token"));
        let failed = SyncView::new(
            "then".into(),
            SyncRecord::Failed {
                error: "cannot reach ldaps://ldap.example.org".into(),
            },
        );
        assert_eq!(
            failed.error.as_deref(),
            Some("cannot reach ldaps://ldap.example.org")
        );
        assert!(failed.counts.is_none() && failed.changes.is_empty());
    }
}
