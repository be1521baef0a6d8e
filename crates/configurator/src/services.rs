//! What each Fediverse service needs: its buckets, its application secrets, and the host spec
//! its NixOS module reads.

use std::collections::BTreeMap;

use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::infra::SmtpInfra;
use fediversity_model::{Infra, OperatorConfig, Problem, ServiceConfig, ServiceKind};
use serde_json::{Value, json};

use crate::builder::{Builder, Host, merge};
use crate::identity::Identity;
use crate::storage::S3Target;

/// The fixed needs of one service.
struct Profile {
    /// Media buckets, by purpose; each becomes `bucket.<service>-<purpose>`.
    buckets: &'static [&'static str],
    /// Application secrets, by file name, with how to generate them. They live in the platform
    /// rather than on the VM so that a replaced VM comes back with the same keys.
    secrets: &'static [(&'static str, Generate)],
}

#[derive(Clone, Copy)]
pub(crate) enum Generate {
    /// Random characters from `A-Za-z0-9`.
    Password(u32),
    /// Random hexadecimal digits.
    Hex(u32),
    /// Random bytes, written in base64 (Laravel's `APP_KEY`).
    Base64Bytes(u32),
    /// A P-256 key pair for Web Push (Mastodon's VAPID keys).
    VapidKeypair,
}

impl Generate {
    pub(crate) fn inputs(self) -> Value {
        match self {
            Self::Password(length) => json!({"generate": "password", "length": length}),
            Self::Hex(length) => json!({"generate": "hex", "length": length}),
            Self::Base64Bytes(bytes) => json!({"generate": "base64", "bytes": bytes}),
            Self::VapidKeypair => json!({"generate": "vapid-keypair"}),
        }
    }

    /// The outputs a host receives as files, as (file suffix, output name).
    fn outputs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::VapidKeypair => &[("private-key", "private_key"), ("public-key", "public_key")],
            _ => &[("", "value")],
        }
    }
}

/// The Mastodon secret that becomes the platform's admin API token.
const MASTODON_ADMIN_API_TOKEN: &str = "admin-api-token";

/// The name of `kind`'s generated secret `name` (its file name on the host): one naming for
/// the graph and for [`admin_credential`].
fn secret_name(kind: ServiceKind, name: &str) -> String {
    format!("{kind}-{name}")
}

/// The generated secret the platform administers `kind` with, outside deployments (the
/// user sync): Mastodon's admin API token, PeerTube's `root` password; `None` for Pixelfed,
/// which has no admin API. Its `value` output holds it once deployed.
pub fn admin_credential(kind: ServiceKind) -> Option<ResourceAddress> {
    let name = match kind {
        ServiceKind::Mastodon => secret_name(kind, MASTODON_ADMIN_API_TOKEN),
        ServiceKind::Peertube => secret_name(kind, "admin"),
        ServiceKind::Pixelfed => return None,
    };
    ResourceAddress::new(ResourceKind::Secret, name).ok()
}

fn profile(kind: ServiceKind) -> Profile {
    match kind {
        ServiceKind::Mastodon => Profile {
            buckets: &["media"],
            secrets: &[
                ("secret-key-base", Generate::Hex(128)),
                ("otp-secret", Generate::Hex(128)),
                ("vapid", Generate::VapidKeypair),
                ("ar-primary-key", Generate::Password(32)),
                ("ar-deterministic-key", Generate::Password(32)),
                ("ar-key-derivation-salt", Generate::Password(32)),
                // The platform's own admin API token (the user sync's): a unit on the host
                // makes it a Doorkeeper access token of the operator's admin
                // (nix/modules/mastodon.nix).
                (MASTODON_ADMIN_API_TOKEN, Generate::Hex(64)),
            ],
        },
        ServiceKind::Pixelfed => Profile {
            buckets: &["media"],
            secrets: &[("app-key", Generate::Base64Bytes(32))],
        },
        ServiceKind::Peertube => Profile {
            // PeerTube keeps HLS playlists and web videos in separate buckets, each with its own
            // `base_url`.
            buckets: &["playlists", "videos"],
            secrets: &[("secret", Generate::Hex(64))],
        },
    }
}

/// Every enabled service's size must be one the hosting provider offers.
pub fn size_problems(config: &OperatorConfig, infra: &Infra) -> Vec<Problem> {
    config
        .services
        .enabled()
        .filter(|(_, service)| infra.size(&service.size).is_none())
        .map(|(kind, service)| {
            Problem::new(
                format!("services.{kind}.size"),
                format!(
                    "unknown size `{}`: the sizes on offer are {}",
                    service.size,
                    infra.size_names()
                ),
            )
        })
        .collect()
}

/// How many buckets a service has.
pub fn bucket_count(kind: ServiceKind) -> u64 {
    profile(kind).buckets.len() as u64
}

/// The hosting provider's SMTP relay, as every host spec gets it: the `mail` section's shared
/// fields and the secret holding the relay's password, if it needs one. `None` without an
/// `[smtp]` section: the services then send no mail (the sandbox has none).
pub struct Mail {
    relay: SmtpInfra,
    password: Option<ResourceAddress>,
}

/// The secret file the relay's password reaches the hosts as.
const SMTP_PASSWORD_FILE: &str = "smtp-password";

pub fn mail(builder: &mut Builder<'_>) -> Result<Option<Mail>, Problem> {
    let Some(relay) = builder.infra().smtp.clone() else {
        return Ok(None);
    };
    let password = match &relay.password_file {
        Some(file) => {
            Some(builder.generated_secret(SMTP_PASSWORD_FILE, None, json!({ "file": file }))?)
        }
        None => None,
    };
    Ok(Some(Mail { relay, password }))
}

impl Mail {
    /// The `mail` section of `kind`'s host spec; the password, if any, is added to `secrets`.
    fn spec(
        &self,
        config: &OperatorConfig,
        kind: ServiceKind,
        fqdn: &str,
        secrets: &mut BTreeMap<String, String>,
    ) -> Value {
        let from = match &self.relay.from_domain {
            Some(domain) => format!("{}-{kind}@{domain}", config.operator.id),
            None => format!("noreply@{fqdn}"),
        };
        let mut spec = json!({
            "host": self.relay.host,
            "port": self.relay.port,
            "tls": self.relay.tls,
            "from": from,
        });
        if let (Some(username), Some(fields)) = (&self.relay.username, spec.as_object_mut()) {
            fields.insert("username".into(), json!(username));
        }
        if let Some(password) = &self.password {
            secrets.insert(SMTP_PASSWORD_FILE.to_owned(), password.output("value"));
        }
        spec
    }
}

/// One enabled service: admin password, application secrets, VM, DNS, buckets, key and host.
pub fn add_service(
    builder: &mut Builder<'_>,
    kind: ServiceKind,
    service: &ServiceConfig,
    deploy_key: &ResourceAddress,
    s3: &S3Target,
    identity: Option<&Identity>,
    mail: Option<&Mail>,
) -> Result<(), Problem> {
    let config = builder.config();
    let profile = profile(kind);
    let size = builder
        .infra()
        .size(&service.size)
        .ok_or_else(|| Problem::new("", "internal error: size not checked"))?;
    let fqdn = config.service_fqdn(kind, service);

    let mut secrets = BTreeMap::new();
    let admin = builder.generated_secret(
        &secret_name(kind, "admin"),
        Some(kind),
        Generate::Password(32).inputs(),
    )?;
    secrets.insert("admin-password".to_owned(), admin.output("value"));
    for (name, how) in profile.secrets {
        let secret =
            builder.generated_secret(&secret_name(kind, name), Some(kind), how.inputs())?;
        for (suffix, output) in how.outputs() {
            let file = if suffix.is_empty() {
                (*name).to_owned()
            } else {
                format!("{name}-{suffix}")
            };
            secrets.insert(file, secret.output(output));
        }
    }

    let vm = builder.vm(kind.as_str(), Some(kind), size, deploy_key)?;
    builder.address_records(kind.as_str(), Some(kind), &fqdn, std::slice::from_ref(&vm))?;

    let buckets = profile
        .buckets
        .iter()
        .map(|purpose| {
            Ok((
                *purpose,
                s3.bucket(builder, kind, purpose, size.bucket_quota_gib, &fqdn)?,
            ))
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let key = s3.key(builder, kind, &buckets)?;
    secrets.insert(
        "s3-secret-access-key".to_owned(),
        key.output("secret_access_key"),
    );

    let mut spec = json!({
        "version": 1,
        "operator": config.operator.id,
        "service": kind,
        "domain": config.domain,
        "fqdn": fqdn,
        "admin": {"username": config.admin.username, "email": config.admin.email},
        "s3": s3.host_spec(&key, &buckets),
    });
    if let Some(identity) = identity
        && let Some(section) = identity.section(builder, kind, &fqdn, &mut secrets)?
    {
        merge(&mut spec, json!({ "identity": section }));
    }
    if let Some(mail) = mail {
        let section = mail.spec(config, kind, &fqdn, &mut secrets);
        merge(&mut spec, json!({ "mail": section }));
    }
    let host = Host {
        name: kind.as_str(),
        service: Some(kind),
        vm: &vm,
        spec,
        secrets,
    };
    builder.nixos(host, deploy_key)?;
    Ok(())
}
