//! How an operator's members sign in to its services, and so who administers them.
//!
//! Three cases, decided once per operator:
//! - the operator names an LDAP directory or an OpenID Connect provider (`identity` in its
//!   configuration): its secret comes from the operator's stored secrets, and a check of the
//!   directory or provider (`identity.ldap`, `identity.oidc`) runs before any host changes;
//! - it names none and the hosting provider publishes its panel (`[panel] public_url`): the
//!   panel is the OpenID Connect provider, with one client per service (`oidc_client.<service>`),
//!   so that an operator's panel account is its admin account on every service;
//! - neither: every service keeps its own local accounts.
//!
//! Each service's host spec then gets an `identity` section the NixOS modules read (see
//! docs/nix-modules.md), with the secret as a file, never as a value.

use std::collections::BTreeMap;

use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::operator::IdentityProvider;
use fediversity_model::{Problem, ServiceKind};
use serde_json::{Value, json};

use crate::builder::{Builder, Spec, merge};
use crate::services::Generate;

/// The secret file a host reads the LDAP bind password from.
const BIND_PASSWORD_FILE: &str = "identity-bind-password";
/// The secret file a host reads its OpenID Connect client secret from.
const CLIENT_SECRET_FILE: &str = "identity-client-secret";

/// The claim and group the panel's OpenID Connect provider marks the operator's members with:
/// every panel member of an operator administers its services.
const PANEL_GROUPS_CLAIM: &str = "groups";
const PANEL_ADMIN_GROUP: &str = "admins";

/// How the operator's services sign their members in.
pub enum Identity {
    /// The operator's LDAP directory.
    Ldap {
        /// The directory's settings, without the bind password.
        settings: Value,
        /// The operator's stored bind password.
        secret: ResourceAddress,
        /// The check every host waits for; `None` in the sandbox.
        check: Option<ResourceAddress>,
    },
    /// The operator's OpenID Connect provider.
    Oidc {
        /// The provider's settings, without the client secret.
        settings: Value,
        /// The operator's stored client secret.
        secret: ResourceAddress,
        /// The check (discovery) whose outputs are the endpoints; `None` in the sandbox.
        check: Option<ResourceAddress>,
    },
    /// The panel as OpenID Connect provider, at this issuer (no trailing slash).
    Panel { issuer: String },
}

/// The operator's identity provider and its check, or the panel, or `None` for local accounts.
pub fn identity(builder: &mut Builder<'_>) -> Result<Option<Identity>, Problem> {
    let Some(provider) = &builder.config().identity else {
        return Ok(builder.infra().panel.as_ref().map(|panel| Identity::Panel {
            issuer: panel.public_url.as_str().trim_end_matches('/').to_owned(),
        }));
    };
    // The check protects real hosts from a broken directory; sandbox hosts are files, and the
    // sandbox reaches no network, so it has no check (and no provider that could run one).
    let checked = builder.infra().nix.is_some();
    Ok(Some(match provider {
        IdentityProvider::Ldap(ldap) => {
            let secret = operator_secret(builder, BIND_PASSWORD_FILE, &ldap.bind_password)?;
            let settings = without(json!(ldap), "bind_password");
            let check = checked
                .then(|| {
                    let inputs = json!({
                        "ldap": settings,
                        "bind_password": secret.output("value"),
                    });
                    builder.add(ResourceKind::Identity, "ldap", Spec::new(None, inputs))
                })
                .transpose()?;
            Identity::Ldap {
                settings,
                secret,
                check,
            }
        }
        IdentityProvider::Oidc(oidc) => {
            let secret = operator_secret(builder, CLIENT_SECRET_FILE, &oidc.client_secret)?;
            let settings = without(json!(oidc), "client_secret");
            let check = checked
                .then(|| {
                    let inputs = json!({ "oidc": settings });
                    builder.add(ResourceKind::Identity, "oidc", Spec::new(None, inputs))
                })
                .transpose()?;
            Identity::Oidc {
                settings,
                secret,
                check,
            }
        }
    }))
}

/// The operator's stored secret `reference`, as the platform's secret `name`.
fn operator_secret(
    builder: &mut Builder<'_>,
    name: &str,
    reference: &fediversity_model::operator::SecretRef,
) -> Result<ResourceAddress, Problem> {
    builder.generated_secret(name, None, json!({"operator_secret": reference.secret}))
}

/// `value` without its field `field`.
fn without(mut value: Value, field: &str) -> Value {
    if let Some(fields) = value.as_object_mut() {
        fields.remove(field);
    }
    value
}

/// Where each service's OpenID Connect sign-in comes back to, after its domain:
/// - Mastodon: OmniAuth's `openid_connect` strategy under Mastodon's `/auth` scope;
/// - Pixelfed: its `RemoteOidcController` route;
/// - PeerTube: the router of `peertube-plugin-auth-openid-connect`.
pub fn callback_path(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Mastodon => "/auth/auth/openid_connect/callback",
        ServiceKind::Pixelfed => "/auth/oidc/callback",
        ServiceKind::Peertube => "/plugins/auth-openid-connect/router/code-cb",
    }
}

impl Identity {
    /// The `identity` section of `kind`'s host spec at `fqdn`, its secret file added to
    /// `secrets`; `None` when the service cannot use this provider and keeps local accounts.
    pub fn section(
        &self,
        builder: &mut Builder<'_>,
        kind: ServiceKind,
        fqdn: &str,
        secrets: &mut BTreeMap<String, String>,
    ) -> Result<Option<Value>, Problem> {
        match self {
            Self::Ldap {
                settings,
                secret,
                check,
            } => {
                if !ldap_supported(kind, settings) {
                    return Ok(None);
                }
                secrets.insert(BIND_PASSWORD_FILE.to_owned(), secret.output("value"));
                let mut ldap = settings.clone();
                if let Some(check) = check {
                    merge(&mut ldap, json!({"checked": check.output("checked")}));
                }
                Ok(Some(json!({ "ldap": ldap })))
            }
            Self::Oidc {
                settings,
                secret,
                check,
            } => {
                secrets.insert(CLIENT_SECRET_FILE.to_owned(), secret.output("value"));
                let mut oidc = settings.clone();
                if let Some(check) = check {
                    let outputs = [
                        "authorization_endpoint",
                        "token_endpoint",
                        "userinfo_endpoint",
                        "checked",
                    ];
                    let found = outputs.map(|name| (name.to_owned(), json!(check.output(name))));
                    merge(&mut oidc, Value::Object(found.into_iter().collect()));
                }
                Ok(Some(json!({ "oidc": oidc })))
            }
            Self::Panel { issuer } => {
                let client = panel_client(builder, kind, fqdn)?;
                secrets.insert(CLIENT_SECRET_FILE.to_owned(), client.secret.output("value"));
                let oidc = json!({
                    "issuer": client.address.output("issuer"),
                    "client_id": client.address.output("client_id"),
                    "groups_claim": PANEL_GROUPS_CLAIM,
                    "admin_group": PANEL_ADMIN_GROUP,
                    "authorization_endpoint": format!("{issuer}/oidc/authorize"),
                    "token_endpoint": format!("{issuer}/oidc/token"),
                    "userinfo_endpoint": format!("{issuer}/oidc/userinfo"),
                    "panel": true,
                });
                Ok(Some(json!({ "oidc": oidc })))
            }
        }
    }
}

/// Whether `kind` can sign in against the LDAP directory `settings`. Pixelfed cannot (its LDAP
/// support is not one upstream calls ready, and it has no user filter); PeerTube's LDAP plugin
/// connects with `ldaps://` only (it has no StartTLS), so a directory behind StartTLS would
/// receive the bind password in clear. Both then keep local accounts.
fn ldap_supported(kind: ServiceKind, settings: &Value) -> bool {
    match kind {
        ServiceKind::Mastodon => true,
        ServiceKind::Pixelfed => false,
        ServiceKind::Peertube => settings["url"]
            .as_str()
            .is_some_and(|url| url.starts_with("ldaps://")),
    }
}

/// One service's client of the panel's OpenID Connect provider.
struct PanelClient {
    address: ResourceAddress,
    secret: ResourceAddress,
}

/// The client secret (the service's own, kept with its data like its other secrets) and the
/// client registered with the panel under it.
fn panel_client(
    builder: &mut Builder<'_>,
    kind: ServiceKind,
    fqdn: &str,
) -> Result<PanelClient, Problem> {
    let secret = builder.generated_secret(
        &format!("{kind}-oidc-client"),
        Some(kind),
        Generate::Password(48).inputs(),
    )?;
    let inputs = json!({
        "redirect_uris": [format!("https://{fqdn}{}", callback_path(kind))],
        "client_secret": secret.output("value"),
    });
    let address = builder.add(
        ResourceKind::OidcClient,
        kind.as_str(),
        Spec::new(Some(kind), inputs),
    )?;
    Ok(PanelClient { address, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldap_reaches_only_the_services_that_can_bind_safely() {
        let ldaps = json!({"url": "ldaps://ldap.example.org", "start_tls": false});
        let start_tls = json!({"url": "ldap://ldap.example.org", "start_tls": true});
        assert!(ldap_supported(ServiceKind::Mastodon, &ldaps));
        assert!(ldap_supported(ServiceKind::Mastodon, &start_tls));
        assert!(ldap_supported(ServiceKind::Peertube, &ldaps));
        assert!(!ldap_supported(ServiceKind::Peertube, &start_tls));
        assert!(!ldap_supported(ServiceKind::Pixelfed, &ldaps));
    }

    #[test]
    fn secrets_are_left_out_of_copied_settings() {
        let copied = without(
            json!({"client_id": "x", "client_secret": {"secret": "s"}}),
            "client_secret",
        );
        assert_eq!(copied, json!({"client_id": "x"}));
    }
}
