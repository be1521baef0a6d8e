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
//! The sync calls the admin APIs of the services the operator runs and the platform has
//! deployed, signed in with what the platform generated for them, read from the operator's
//! recorded state ([`service_admins`]): Mastodon's admin API token, PeerTube's `root` password.
//! It suspends or blocks removed users, and gives or takes PeerTube's administrator role as
//! users join or leave the admin group. What no API does (Mastodon's roles, everything on
//! Pixelfed, a service not deployed yet) is reported for a person ([`Awaiting`]). Calls that
//! fail are made again at the next sync (the snapshot keeps them as pending).

use std::collections::BTreeMap;
use std::time::Duration;

use fediversity_engine::clock::{Clock, Millis, SystemClock};
use fediversity_engine::state::{RecordStatus, RecordedState};
use fediversity_engine::store::StateStore as _;
use fediversity_engine::value::as_secret;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::names::OperatorId;
use fediversity_model::operator::{IdentityProvider, LdapProvider};
use fediversity_model::{OperatorConfig, ServiceKind};
use fediversity_providers::SecretString;
use fediversity_providers::identity::sync::{
    Action, Credential, Outcome, ServiceAdmin, ServiceCall, Snapshot, SyncOptions, SyncReport,
    by_hand, protected, sync,
};
use fediversity_providers::identity::{CheckReport, LdapSettings, check, mastodon};
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
    /// The base address of a service's admin API, by kind, instead of `https://<its fqdn>`
    /// (tests point the sync at loopback stand-ins); empty by default.
    pub service_urls: BTreeMap<ServiceKind, String>,
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
            service_urls: BTreeMap::new(),
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
        /// The calls made on the services for removed users (including earlier removals
        /// still pending).
        deprovisioned: Vec<ServiceCall>,
        /// The calls made on the services to give or take the administrator role.
        #[serde(default)]
        roles: Vec<ServiceCall>,
        /// Why removals were held back, when they were.
        held_back: Option<String>,
        /// Changes a person must carry out, per service.
        awaiting: Vec<Awaiting>,
    },
    /// The directory could not be read: nothing was compared, the previous snapshot is kept.
    Failed {
        /// Why.
        error: String,
    },
}

/// A change no API call carried out: what a person must do, on which service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// The service.
    pub service: ServiceKind,
    /// The user the change is about.
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
    let (snapshot, record) =
        run_sync(store, platform, schedule, operator, config, ldap, previous).await;
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

/// Reads the directory, compares it with `previous` and makes the calls the changes need:
/// the snapshot to keep and the record.
async fn run_sync(
    store: &Store,
    platform: &Platform,
    schedule: &SyncSchedule,
    operator: &OperatorId,
    config: &OperatorConfig,
    ldap: &LdapProvider,
    previous: Snapshot,
) -> (Snapshot, SyncRecord) {
    let password = match bind_password(platform, operator, ldap).await {
        Ok(password) => password,
        Err(error) => return (previous, SyncRecord::Failed { error }),
    };
    let services = match store.load_state(operator).await {
        Ok(state) => service_admins(&state, config, &schedule.service_urls),
        Err(error) => {
            let error = format!("the operator's recorded state could not be read: {error}");
            return (previous, SyncRecord::Failed { error });
        }
    };
    let settings = LdapSettings::from(ldap);
    let outcome = match sync(
        &settings,
        &password,
        &previous,
        &services,
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
    let counted = outcome.held_back.is_none();
    let mut awaiting = if counted {
        awaiting(config, &services, &outcome.report)
    } else {
        Vec::new()
    };
    let (mut deprovisioned, mut roles) = (Vec::new(), Vec::new());
    for call in outcome.calls {
        match call.outcome {
            Outcome::Manual(what) => awaiting.push(Awaiting {
                service: call.service,
                username: call.username,
                what,
            }),
            _ if call.action == Action::Remove => deprovisioned.push(call),
            _ => roles.push(call),
        }
    }
    let record = SyncRecord::Synced {
        users: counted.then_some(outcome.snapshot.users.len()),
        admins: counted.then_some(outcome.snapshot.admins()),
        changes: outcome.report,
        deprovisioned,
        roles,
        held_back: outcome.held_back,
        awaiting,
    };
    (outcome.snapshot, record)
}

/// The services of `config` the sync can call, signed in with what the platform generated
/// for them: those with an admin API, enabled, whose credential secret and host are recorded
/// as deployed in `state`. Their address is `https://<fqdn>` unless `urls` says otherwise.
pub fn service_admins(
    state: &RecordedState,
    config: &OperatorConfig,
    urls: &BTreeMap<ServiceKind, String>,
) -> Vec<ServiceAdmin> {
    config
        .services
        .iter()
        .filter(|(_, service)| service.enable)
        .filter_map(|(kind, service)| {
            let secret = recorded_credential(state, kind)?;
            let credential = match kind {
                ServiceKind::Mastodon => Credential::Token(secret),
                ServiceKind::Peertube => Credential::PeertubeRoot(secret),
                ServiceKind::Pixelfed => return None,
            };
            let url = urls
                .get(&kind)
                .cloned()
                .unwrap_or_else(|| format!("https://{}", config.service_fqdn(kind, service)));
            Some(ServiceAdmin {
                service: kind,
                url,
                credential,
                operator_admin: operator_admin(config, kind),
            })
        })
        .collect()
}

/// The account the platform made for the operator's admin on `kind`: Mastodon's Owner and
/// Pixelfed's admin, both named after the configuration's admin (PeerTube's admin is `root`,
/// which the sync protects anyway).
fn operator_admin(config: &OperatorConfig, kind: ServiceKind) -> Option<String> {
    matches!(kind, ServiceKind::Mastodon | ServiceKind::Pixelfed)
        .then(|| config.admin.username.to_string())
}

/// `kind`'s admin credential from `state`, if it and the service's host are deployed (the
/// host is what turns Mastodon's secret into a token).
fn recorded_credential(state: &RecordedState, kind: ServiceKind) -> Option<SecretString> {
    let address = fediversity_configurator::admin_credential(kind)?;
    let host = ResourceAddress::new(ResourceKind::Nixos, kind.as_str()).ok()?;
    let active = |address: &ResourceAddress| {
        state
            .resources
            .get(address)
            .filter(|record| record.status == RecordStatus::Active)
    };
    active(&host)?;
    let value = as_secret(active(&address)?.outputs.get("value")?)?.as_str()?;
    Some(SecretString::new(value))
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

/// For each change, each service the operator runs that the sync could not call: what a
/// person must do there. Never about an account the sync protects ([`protected`]).
fn awaiting(
    config: &OperatorConfig,
    called: &[ServiceAdmin],
    report: &SyncReport,
) -> Vec<Awaiting> {
    let by_hand: Vec<ServiceKind> = config
        .services
        .iter()
        .filter(|(kind, service)| {
            service.enable && !called.iter().any(|admin| admin.service == *kind)
        })
        .map(|(kind, _)| kind)
        .collect();
    let changes = [
        (Action::Remove, &report.removed),
        (Action::GrantAdmin, &report.admin_granted),
        (Action::RevokeAdmin, &report.admin_revoked),
    ];
    changes
        .into_iter()
        .flat_map(|(action, names)| names.iter().map(move |name| (action, name)))
        .flat_map(|(action, username)| {
            by_hand
                .iter()
                .filter(move |service| {
                    !protected(
                        **service,
                        operator_admin(config, **service).as_deref(),
                        username,
                    )
                })
                .map(move |service| Awaiting {
                    service: *service,
                    username: username.clone(),
                    what: by_hand_on(*service, username, action),
                })
        })
        .collect()
}

/// What a person does on `service` about `username`, when the sync could not call it.
fn by_hand_on(service: ServiceKind, username: &str, action: Action) -> String {
    if let Some(what) = by_hand(service, username, action) {
        return what;
    }
    let what = match action {
        Action::Remove if service == ServiceKind::Mastodon => mastodon::suspend_by_hand(username),
        Action::Remove => format!(
            "block `{username}` in {}'s administration (Overview → Users)",
            service.title()
        ),
        Action::GrantAdmin | Action::RevokeAdmin => format!(
            "set the role of `{username}` to {} in {}'s administration (Overview → Users)",
            if action == Action::GrantAdmin {
                "Administrator"
            } else {
                "User"
            },
            service.title()
        ),
    };
    format!(
        "the platform holds no {} admin credential for this operator yet (the service is not \
         deployed yet; its next deployment makes one): {what}",
        service.title()
    )
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
    /// One line per change a person must carry out.
    pub awaiting: Vec<String>,
    /// What the calls to services' admin APIs did: removals, then role changes.
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

/// One call, in a line: "PeerTube: `bob` blocked".
fn describe_call(call: &ServiceCall) -> String {
    let user = &call.username;
    let asked = match call.action {
        Action::Remove => format!("removing `{user}`"),
        Action::GrantAdmin => format!("making `{user}` administrator"),
        Action::RevokeAdmin => format!("making `{user}` a plain user"),
    };
    let done = match (&call.outcome, call.action) {
        (Outcome::Suspended, _) => format!("`{user}` suspended"),
        (Outcome::Blocked, _) => format!("`{user}` blocked"),
        (Outcome::RoleSet, Action::GrantAdmin) => format!("`{user}` made administrator"),
        (Outcome::RoleSet, _) => format!("`{user}` made a plain user"),
        (Outcome::NoAccount, Action::GrantAdmin) => {
            format!("{asked}: no account yet (tried again next sync)")
        }
        (Outcome::NoAccount, _) => format!("{asked}: no account, nothing to do"),
        (Outcome::Protected, _) => {
            format!("{asked}: left alone, it is the operator's admin or the platform's way in")
        }
        (Outcome::Manual(what), _) => format!("{asked}: {what}"),
        (Outcome::Failed(why), _) => format!("{asked} failed (tried again next sync): {why}"),
    };
    format!("{}: {done}", call.service.title())
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
                roles,
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
                    .iter()
                    .chain(&roles)
                    .map(describe_call)
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
    fn what_awaits_a_person_names_the_command_and_why() {
        let what = by_hand_on(ServiceKind::Pixelfed, "bob", Action::Remove);
        assert!(what.contains("php artisan user:delete bob"), "{what}");
        let what = by_hand_on(ServiceKind::Pixelfed, "bob", Action::GrantAdmin);
        assert!(what.contains("php artisan user:admin bob"), "{what}");
        let what = by_hand_on(ServiceKind::Mastodon, "bob", Action::Remove);
        assert!(
            what.contains("not deployed yet") && what.contains("suspend `bob`"),
            "{what}"
        );
        let what = by_hand_on(ServiceKind::Mastodon, "bob", Action::RevokeAdmin);
        assert!(
            what.contains("tootctl accounts modify bob --remove-role"),
            "{what}"
        );
    }

    fn record(
        provider: &str,
        outputs: serde_json::Value,
    ) -> fediversity_engine::state::ResourceRecord {
        fediversity_engine::state::ResourceRecord {
            provider: provider.into(),
            service: None,
            holds_data: false,
            retention: None,
            inputs: serde_json::json!({}),
            outputs,
            depends_on: Default::default(),
            status: RecordStatus::Active,
            updated_at: 0,
        }
    }

    /// A configuration running every service, whose admin is `admin`.
    fn every_service() -> OperatorConfig {
        serde_json::from_value(serde_json::json!({
            "version": 1,
            "operator": {"id": "uni", "name": "University"},
            "domain": "uni.example",
            "services": {
                "mastodon": {"enable": true, "size": "small", "subdomain": "social"},
                "pixelfed": {"enable": true, "size": "small"},
                "peertube": {"enable": true, "size": "small", "subdomain": "video"},
            },
            "admin": {"username": "admin", "email": "admin@uni.example"},
            "maintenance": {"time_zone": "UTC", "windows": []},
        }))
        .unwrap()
    }

    #[test]
    fn what_awaits_a_person_never_touches_the_operators_admin_nor_root() {
        let config = every_service();
        let report = SyncReport {
            removed: vec!["admin".into(), "bob".into(), "root".into()],
            admin_revoked: vec!["Admin".into()],
            ..SyncReport::default()
        };
        let called = service_admins(
            &RecordedState::empty(config.operator.id.clone()),
            &config,
            &BTreeMap::new(),
        );
        assert!(called.is_empty());
        let asked: Vec<_> = awaiting(&config, &called, &report)
            .into_iter()
            .map(|a| (a.service, a.username))
            .collect();
        let asked_about = |service, name: &str| (service, name.to_owned());
        use ServiceKind::{Mastodon, Peertube, Pixelfed};
        // Mastodon's and Pixelfed's admin are left alone, like PeerTube's root; elsewhere the
        // names are anybody's.
        assert_eq!(
            asked,
            [
                asked_about(Peertube, "admin"),
                asked_about(Mastodon, "bob"),
                asked_about(Pixelfed, "bob"),
                asked_about(Peertube, "bob"),
                asked_about(Mastodon, "root"),
                asked_about(Pixelfed, "root"),
                asked_about(Peertube, "Admin"),
            ]
        );
    }

    #[test]
    fn the_services_called_are_those_deployed_with_their_recorded_credentials() {
        let config = every_service();
        let operator = config.operator.id.clone();
        let mut state = RecordedState::empty(operator);
        let secret = |value: &str| serde_json::json!({"value": {"$secret": value}});
        for (address, record) in [
            (
                "secret.mastodon-admin-api-token",
                record("secret", secret("token-1")),
            ),
            ("nixos.mastodon", record("nixos", serde_json::json!({}))),
            ("secret.peertube-admin", record("secret", secret("root-pw"))),
            ("secret.pixelfed-admin", record("secret", secret("unused"))),
            ("nixos.pixelfed", record("nixos", serde_json::json!({}))),
        ] {
            state.resources.insert(address.parse().unwrap(), record);
        }
        let urls = BTreeMap::from([(ServiceKind::Mastodon, "https://localhost:1".to_owned())]);
        // PeerTube's host is not deployed yet: not called.
        let admins = service_admins(&state, &config, &urls);
        assert_eq!(admins.len(), 1, "{admins:?}");
        assert_eq!(admins[0].service, ServiceKind::Mastodon);
        assert_eq!(admins[0].url, "https://localhost:1");
        assert_eq!(admins[0].operator_admin.as_deref(), Some("admin"));
        assert!(matches!(&admins[0].credential, Credential::Token(t) if t.expose() == "token-1"));
        assert!(!format!("{admins:?}").contains("token-1"));

        state.resources.insert(
            "nixos.peertube".parse().unwrap(),
            record("nixos", serde_json::json!({})),
        );
        let admins = service_admins(&state, &config, &BTreeMap::new());
        assert_eq!(admins[0].url, "https://social.uni.example");
        assert_eq!(admins[1].service, ServiceKind::Peertube);
        assert_eq!(admins[1].url, "https://video.uni.example");
        assert_eq!(admins[1].operator_admin, None);
        assert!(
            matches!(&admins[1].credential, Credential::PeertubeRoot(p) if p.expose() == "root-pw")
        );
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
            deprovisioned: vec![ServiceCall {
                service: ServiceKind::Mastodon,
                username: "bob".into(),
                action: Action::Remove,
                outcome: Outcome::Failed(
                    "Mastodon at https://social.example answered HTTP 503".into(),
                ),
            }],
            roles: vec![ServiceCall {
                service: ServiceKind::Peertube,
                username: "carol".into(),
                action: Action::GrantAdmin,
                outcome: Outcome::RoleSet,
            }],
            held_back: None,
            awaiting: vec![Awaiting {
                service: ServiceKind::Peertube,
                username: "bob".into(),
                what: by_hand_on(ServiceKind::Peertube, "bob", Action::Remove),
            }],
        };
        let view = SyncView::new("then".into(), record);
        assert_eq!(view.counts.as_deref(), Some("2 users, 1 administrators"));
        assert_eq!(view.changes, ["Removed: bob", "Made administrator: carol"]);
        assert!(
            view.awaiting[0]
                .starts_with("PeerTube: the platform holds no PeerTube admin credential"),
            "{:?}",
            view.awaiting
        );
        assert_eq!(
            view.deprovisioned,
            [
                "Mastodon: removing `bob` failed (tried again next sync): Mastodon at https://social.example answered HTTP 503",
                "PeerTube: `carol` made administrator",
            ]
        );
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
