//! The `identity` provider: checks of an operator's own identity provider before anything is
//! deployed, and the user sync that follows the directory afterwards.
//!
//! Resources (contract B, docs/identity.md):
//! - `{"ldap": <LdapSettings>, "bind_password": "…"}` — connect (`ldaps://`, or `ldap://` with
//!   StartTLS; the certificate verified), bind, search the users, read the admin group.
//!   Outputs `users`, `admins` and `checked`;
//! - `{"oidc": <OidcSettings>}` — fetch and check the issuer's discovery document. Outputs its
//!   endpoints and `checked`.
//!
//! `checked` is a digest of the settings (never of the password), so a host spec that
//! references it changes exactly when the settings do, and a failing check stops the
//! deployment before any host changes. Nothing is made in the world: `delete` has nothing to
//! remove, and `read` checks again.
//!
//! Beside the provider, [`check`] is the panel's "check my identity provider" button and
//! [`sync::sync`] the scheduled user sync, with one module per service for its admin API
//! requests — de-provisioning, the administrator role, PeerTube's sign-in and sign-out — or
//! what a person does where there is none ([`mastodon`], [`peertube`], [`pixelfed`]).

pub mod error;
pub mod ldap;
pub mod mastodon;
pub mod oidc;
pub mod peertube;
pub mod pixelfed;
pub mod sync;

mod http;

use std::time::Duration;

use async_trait::async_trait;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::operator::IdentityProvider;
use serde::Deserialize;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use error::IdentityError;
pub use ldap::LdapSettings;
pub use oidc::{Discovery, OidcSettings};

use crate::inputs::parse_inputs;
use crate::outputs::outputs;
use crate::sensitive::SecretString;
use crate::tls::Trust;

/// The provider name resources use.
pub const NAME: &str = "identity";

/// How the platform reaches identity providers.
#[derive(Clone, Debug)]
pub struct IdentityOptions {
    /// PEM CA certificates to trust instead of the public web PKI roots (a directory behind a
    /// private CA; the tests' throwaway servers).
    pub ca_pem: Option<Vec<u8>>,
    /// The limit for one whole check or read, connection included.
    pub timeout: Duration,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        Self {
            ca_pem: None,
            timeout: Duration::from_secs(20),
        }
    }
}

impl IdentityOptions {
    fn trust(&self) -> Trust {
        Trust {
            ca_pem: self.ca_pem.clone(),
            fingerprint: None,
        }
    }

    /// The HTTPS client for discovery documents and the services' admin APIs: the trust
    /// above, the timeout, and no redirects (an `https://` document must not lead elsewhere).
    fn http_client(&self) -> Result<reqwest::Client, IdentityError> {
        let tls = crate::tls::client_config(&self.trust())
            .map_err(|e| IdentityError::Settings(format!("cannot use the CA certificates: {e}")))?;
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .build()
            .map_err(|e| IdentityError::Settings(format!("cannot set up the HTTPS client: {e}")))
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckReport {
    /// An LDAP directory: how many users the search found, and how many are admins.
    Ldap {
        /// Users under `user_base` matching `user_filter` (with a `uid`).
        users: usize,
        /// Of those, members of the admin group.
        admins: usize,
    },
    /// An OpenID Connect issuer: its checked endpoints. (An issuer does not list its users.)
    Oidc(Discovery),
}

/// Checks `provider` as a deployment would: for LDAP, `secret` is the bind password.
pub async fn check(
    provider: &IdentityProvider,
    secret: Option<&SecretString>,
    options: &IdentityOptions,
) -> Result<CheckReport, IdentityError> {
    match provider {
        IdentityProvider::Ldap(ldap) => {
            let password = secret.ok_or_else(|| {
                IdentityError::Settings(format!(
                    "no bind password for {}: store the secret `{}` in the panel",
                    ldap.bind_dn, ldap.bind_password.secret
                ))
            })?;
            let (users, admins) = ldap_counts(&LdapSettings::from(ldap), password, options).await?;
            Ok(CheckReport::Ldap { users, admins })
        }
        IdentityProvider::Oidc(oidc) => Ok(CheckReport::Oidc(
            oidc::discover(&oidc.issuer, options).await?,
        )),
    }
}

/// How many users the directory has, and how many of them are admins.
async fn ldap_counts(
    settings: &LdapSettings,
    password: &SecretString,
    options: &IdentityOptions,
) -> Result<(usize, usize), IdentityError> {
    let snapshot = ldap::read_directory(settings, password, options).await?;
    Ok((snapshot.users.len(), snapshot.admins()))
}

/// The error and its causes, on one line.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = inner.source();
    }
    text
}

/// The rustls error somewhere in `error`'s chain, as text.
fn tls_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = source {
        let rustls_error = inner.downcast_ref::<rustls::Error>().or_else(|| {
            inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|e| e.downcast_ref::<rustls::Error>())
        });
        if let Some(found) = rustls_error {
            return Some(found.to_string());
        }
        source = inner.source();
    }
    None
}

/// A resource's inputs: one of the two shapes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    #[serde(default)]
    ldap: Option<LdapSettings>,
    #[serde(default)]
    bind_password: Option<SecretString>,
    #[serde(default)]
    oidc: Option<OidcSettings>,
}

/// A stable digest of checked settings: hex SHA-256 of their JSON (fields in declaration
/// order), prefixed with the algorithm.
fn digest(settings: &impl Serialize) -> String {
    let text = serde_json::to_string(settings).unwrap_or_default();
    let hash = Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The `identity` provider.
#[derive(Debug, Default)]
pub struct IdentityCheckProvider {
    options: IdentityOptions,
}

impl IdentityCheckProvider {
    /// A provider reaching identity providers with `options` (`IdentityOptions::default()`:
    /// the public web PKI roots and a 20 s limit per check).
    pub fn new(options: IdentityOptions) -> Self {
        Self { options }
    }

    /// Checks the identity provider the inputs describe; every action is this check.
    #[tracing::instrument(name = "identity.check", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn run(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: Inputs = parse_inputs(&ctx.address, NAME, inputs)?;
        match inputs {
            Inputs {
                ldap: Some(settings),
                bind_password: Some(password),
                oidc: None,
            } => {
                let (users, admins) = ldap_counts(&settings, &password, &self.options).await?;
                Ok(outputs([
                    ("users", json!(users)),
                    ("admins", json!(admins)),
                    ("checked", json!(digest(&settings))),
                ]))
            }
            Inputs {
                ldap: None,
                bind_password: None,
                oidc: Some(settings),
            } => {
                let found = oidc::discover(&settings.issuer, &self.options).await?;
                Ok(outputs([
                    (
                        "authorization_endpoint",
                        json!(found.authorization_endpoint),
                    ),
                    ("token_endpoint", json!(found.token_endpoint)),
                    ("userinfo_endpoint", json!(found.userinfo_endpoint)),
                    ("jwks_uri", json!(found.jwks_uri)),
                    (
                        "end_session_endpoint",
                        json!(found.end_session_endpoint.unwrap_or_default()),
                    ),
                    ("checked", json!(digest(&settings))),
                ]))
            }
            _ => Err(ProviderError::permanent(format!(
                "the inputs of {} are not what the `{NAME}` provider expects: either `ldap` with \
                 `bind_password`, or `oidc`",
                ctx.address
            ))),
        }
    }
}

#[async_trait]
impl Provider for IdentityCheckProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        self.run(ctx, inputs).await
    }

    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let outputs = self.run(ctx, inputs).await?;
        Ok(Some(Observed {
            inputs: inputs.clone(),
            outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.run(ctx, inputs).await
    }

    async fn delete(
        &self,
        _ctx: &CallContext,
        _inputs: &Value,
        _recorded: &Outputs,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        Ok(Deletion::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_stable_and_follows_the_settings() {
        let settings: LdapSettings = serde_json::from_value(json!({
            "url": "ldaps://ldap.example.org",
            "bind_dn": "cn=svc,dc=example,dc=org",
            "user_base": "ou=people,dc=example,dc=org",
            "user_filter": "(objectClass=inetOrgPerson)",
        }))
        .unwrap();
        let first = digest(&settings);
        assert_eq!(first, digest(&settings.clone()));
        assert!(
            first.starts_with("sha256:") && first.len() == 7 + 64,
            "{first}"
        );
        let mut other = settings;
        other.user_filter = "(objectClass=person)".into();
        assert_ne!(first, digest(&other));
    }
}
