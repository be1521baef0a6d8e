//! `OperatorConfig`: what an operator asks for, in the words of the panel's form.
//!
//! This is the only input an operator writes. It says *what* (domain, services, sizes, identity
//! provider, maintenance windows), never *how*: VM ids, bucket names and addresses are derived
//! from it by the configurator. Every field is checked by [`crate::validate`]; unknown fields are
//! rejected so that a typo never silently falls back to a default.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{
    Domain, Email, HttpsUrl, LdapUrl, OperatorId, SecretName, Subdomain, TimeOfDay, TimeZone,
    Username,
};

/// The version of the operator configuration format this build reads and writes.
pub const OPERATOR_CONFIG_VERSION: u32 = 1;

/// An operator's whole configuration (format version 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Fediversity operator configuration")]
pub struct OperatorConfig {
    /// Format version, for migrations. This build reads version 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Who the operator is.
    pub operator: Operator,
    /// The operator's domain; each service is published under a subdomain of it.
    pub domain: Domain,
    /// The Fediverse services the operator wants.
    pub services: Services,
    /// The operator's administrator, who gets the admin account on every service.
    pub admin: AdminContact,
    /// The operator's own identity provider, if its members should sign in with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityProvider>,
    /// When the hosting provider may re-deploy this operator's services.
    pub maintenance: Maintenance,
}

impl OperatorConfig {
    /// The name a service is published under: its subdomain (by default the service's name)
    /// in front of the operator's domain.
    pub fn service_fqdn(&self, kind: ServiceKind, service: &ServiceConfig) -> String {
        let subdomain = service
            .subdomain
            .as_ref()
            .map_or(kind.as_str(), Subdomain::as_str);
        format!("{subdomain}.{}", self.domain)
    }
}

/// The operator's identity in the platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Stable identifier; every derived name (VMs, buckets, DNS records) contains it.
    pub id: OperatorId,
    /// Display name, e.g. "Utrecht University".
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
}

/// The services an operator can ask for. Each is optional: leaving one out is the same as
/// `enable: false` with the default retention (`keep`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Mastodon, the microblogging service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mastodon: Option<ServiceConfig>,
    /// Pixelfed, the photo-sharing service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixelfed: Option<ServiceConfig>,
    /// PeerTube, the video service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peertube: Option<ServiceConfig>,
}

impl Services {
    /// The services that appear in the configuration, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceKind, &ServiceConfig)> {
        ServiceKind::ALL
            .into_iter()
            .filter_map(|kind| self.get(kind).map(|config| (kind, config)))
    }

    /// The services that are switched on, in a stable order.
    pub fn enabled(&self) -> impl Iterator<Item = (ServiceKind, &ServiceConfig)> {
        self.iter().filter(|(_, config)| config.enable)
    }

    /// One service's configuration, if the configuration mentions it.
    pub fn get(&self, kind: ServiceKind) -> Option<&ServiceConfig> {
        match kind {
            ServiceKind::Mastodon => self.mastodon.as_ref(),
            ServiceKind::Pixelfed => self.pixelfed.as_ref(),
            ServiceKind::Peertube => self.peertube.as_ref(),
        }
    }
}

/// One of the Fediverse services the platform deploys.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Mastodon.
    Mastodon,
    /// Pixelfed.
    Pixelfed,
    /// PeerTube.
    Peertube,
}

impl ServiceKind {
    /// Every service, in the order the platform lists them.
    pub const ALL: [ServiceKind; 3] = [Self::Mastodon, Self::Pixelfed, Self::Peertube];

    /// The lower-case name used in configurations, resource names and host specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mastodon => "mastodon",
            Self::Pixelfed => "pixelfed",
            Self::Peertube => "peertube",
        }
    }

    /// The name shown to people.
    pub fn title(self) -> &'static str {
        match self {
            Self::Mastodon => "Mastodon",
            Self::Pixelfed => "Pixelfed",
            Self::Peertube => "PeerTube",
        }
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one service should run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Whether the service runs. Turning it off removes its VMs and keeps or deletes its data as
    /// `retention` says.
    pub enable: bool,
    /// Where the service is published under the operator's domain; defaults to the service's
    /// name (`mastodon`, `pixelfed`, `peertube`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<Subdomain>,
    /// A size class offered by the hosting provider (see its `infra.toml`), e.g. `small`.
    #[schemars(length(min = 1, max = 32))]
    pub size: String,
    /// What happens to the service's data (media buckets) when the service is turned off or
    /// the operator's account is deleted.
    #[serde(default)]
    pub retention: Retention,
}

/// What happens to stored data when the service that holds it goes away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep the data (the safe default): its access is revoked and it is recorded as retained,
    /// so that turning the service on again finds it.
    #[default]
    Keep,
    /// Delete the data for good.
    Delete,
}

/// The operator's administrator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminContact {
    /// The admin account's user name on every service.
    pub username: Username,
    /// Where the platform and the services write to the administrator.
    pub email: Email,
}

/// The operator's own identity provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum IdentityProvider {
    /// An LDAP directory.
    Ldap(LdapProvider),
    /// An OpenID Connect provider.
    Oidc(OidcProvider),
}

/// A reference to a secret the operator stored in the panel. Secrets are never written inline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The stored secret's name.
    pub secret: SecretName,
}

/// Connection parameters of an LDAP directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapProvider {
    /// The server, `ldaps://…` or `ldap://…` with `start_tls`.
    pub url: LdapUrl,
    /// Upgrade an `ldap://` connection with StartTLS. Required for `ldap://`: the bind
    /// password must never cross the network in clear.
    #[serde(default)]
    pub start_tls: bool,
    /// The DN the platform and the services bind as, e.g. `cn=fediversity,ou=services,dc=example,dc=org`.
    #[schemars(length(min = 1, max = 1024))]
    pub bind_dn: String,
    /// The bind DN's password.
    pub bind_password: SecretRef,
    /// Where users are searched, e.g. `ou=people,dc=example,dc=org`.
    #[schemars(length(min = 1, max = 1024))]
    pub user_base: String,
    /// Which entries under `user_base` are users.
    #[serde(default = "default_user_filter")]
    #[schemars(length(min = 2, max = 1024))]
    pub user_filter: String,
    /// Where groups are searched, if groups are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub group_base: Option<String>,
    /// The DN of the group whose members become administrators of every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub admin_group: Option<String>,
}

fn default_user_filter() -> String {
    "(objectClass=inetOrgPerson)".to_owned()
}

/// An OpenID Connect provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// The issuer; its discovery document is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: HttpsUrl,
    /// The client id registered for the operator's services.
    #[schemars(length(min = 1, max = 255))]
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretRef,
    /// The ID-token claim that lists a user's groups.
    #[serde(default = "default_groups_claim")]
    #[schemars(length(min = 1, max = 255))]
    pub groups_claim: String,
    /// Members of this group become administrators of every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub admin_group: Option<String>,
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

/// When the hosting provider may re-deploy the operator's services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// The time zone the windows are written in; daylight-saving time follows it.
    pub time_zone: TimeZone,
    /// One or more weekly windows.
    #[schemars(length(min = 1, max = 14))]
    pub windows: Vec<MaintenanceWindow>,
}

/// A weekly maintenance window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// The days on which the window starts.
    #[schemars(length(min = 1, max = 7), extend("uniqueItems" = true))]
    pub days: Vec<Weekday>,
    /// When the window starts, in the operator's time zone.
    pub start: TimeOfDay,
    /// How long the window lasts, in minutes: at least 15 minutes and at most a week (10080).
    #[schemars(range(min = 15, max = 10080))]
    pub duration_minutes: u32,
}

/// A day of the week.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}
