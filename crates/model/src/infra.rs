//! `Infra`: the hosting provider's description of its infrastructure, read from `infra.toml`.
//!
//! Written once by the hosting provider, it says where VMs, buckets, DNS records and NixOS
//! systems are made, which size classes operators may choose and how much each operator may use.
//! A section left out means the matching resources live in the local sandbox (see
//! [`Infra::sandbox`]), which is how `fediversity` runs on a laptop with no infrastructure at all.
//! Secrets (API tokens, TSIG keys) are named by file, never written here.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{Domain, Email, HttpUrl, HttpsUrl, OperatorId};
use crate::validate::Problem;

/// The version of the `infra.toml` format this build reads and writes.
pub const INFRA_VERSION: u32 = 1;

/// The hosting provider's infrastructure (format version 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Fediversity infrastructure (infra.toml)")]
pub struct Infra {
    /// Format version, for migrations. This build reads version 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// The size classes operators choose from, by name (e.g. `small`, `medium`, `large`).
    #[schemars(length(min = 1))]
    pub sizes: BTreeMap<String, Size>,
    /// How much each operator may use.
    pub limits: Limits,
    /// Proxmox VE, where service and S3 VMs run. Without it, VMs are sandbox directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<ProxmoxInfra>,
    /// Garage, where media buckets live. Without it, buckets are sandbox directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garage: Option<GarageInfra>,
    /// The authoritative DNS server. Without it, records go to a sandbox zone file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfra>,
    /// Where NixOS systems are built. Without it, host specs are written to the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nix: Option<NixInfra>,
    /// The SMTP relay services send their mail through (sign-up confirmations, password
    /// resets, notifications). Without it, services send no mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpInfra>,
    /// The panel as the operators' services reach it. With it, the panel is the OpenID Connect
    /// provider of every operator that names no identity provider of its own, so that an
    /// operator's panel account is its admin account on each service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panel: Option<PanelInfra>,
}

/// The panel's public face.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PanelInfra {
    /// The address operators and services reach the panel at, e.g. `https://panel.example.net`;
    /// it is the OpenID Connect issuer, so it never changes once services use it.
    pub public_url: HttpsUrl,
}

/// One size class: what a service VM of this size gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    /// Virtual CPUs.
    #[schemars(range(min = 1, max = 512))]
    pub cores: u32,
    /// Memory in MiB.
    #[schemars(range(min = 512))]
    pub memory_mib: u64,
    /// System disk in GiB.
    #[schemars(range(min = 4))]
    pub disk_gib: u64,
    /// Quota of each of the service's media buckets, in GiB.
    #[schemars(range(min = 1))]
    pub bucket_quota_gib: u64,
}

/// Per-operator limits: a default and overrides for particular operators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// What every operator may use unless overridden.
    pub default: ResourceLimits,
    /// Overrides by operator id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operators: BTreeMap<OperatorId, ResourceLimits>,
}

impl Limits {
    /// The limits that apply to `operator`.
    pub fn for_operator(&self, operator: &OperatorId) -> &ResourceLimits {
        self.operators.get(operator).unwrap_or(&self.default)
    }
}

/// The most one operator may use, summed over all its VMs and buckets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Number of VMs.
    pub vms: u64,
    /// Virtual CPUs over all VMs.
    pub vcpus: u64,
    /// Memory over all VMs, in MiB.
    pub memory_mib: u64,
    /// Disk over all VMs, in GiB.
    pub disk_gib: u64,
    /// Number of S3 buckets.
    pub buckets: u64,
}

/// A Proxmox VE cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxInfra {
    /// The API's base address, e.g. `https://pve.example.net:8006`.
    pub endpoint: HttpsUrl,
    /// The API token's id, `USER@REALM!TOKENID`.
    #[schemars(length(min = 3, max = 255))]
    pub token_id: String,
    /// A file holding the API token's secret.
    pub token_secret_file: PathBuf,
    /// A CA certificate (PEM) to trust for the API, when it is not publicly trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 fingerprint of the API's certificate, pinned: any other certificate is
    /// refused, even one the CA signed. Written as `pvenode cert info` shows it (`AB:CD:…`, 32
    /// bytes in hexadecimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$"))]
    pub fingerprint: Option<String>,
    /// Nodes VMs may be placed on.
    #[schemars(length(min = 1))]
    pub nodes: Vec<String>,
    /// The VM id of the NixOS template that VMs are cloned from.
    #[schemars(range(min = 100, max = 999_999_999))]
    pub template_vmid: u32,
    /// The storage VM disks are cloned onto, e.g. a Linstor-backed storage id.
    #[schemars(length(min = 1, max = 255))]
    pub storage: String,
    /// The bridge VM network interfaces attach to.
    #[schemars(length(min = 1, max = 255))]
    pub bridge: String,
    /// The IPv4 addresses VMs are given.
    pub ipv4: Ipv4Pool,
    /// The IPv6 addresses VMs are given, if the network has IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Pool>,
}

/// A range of IPv4 addresses inside one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipv4Pool {
    /// The network's prefix length, e.g. 24.
    #[schemars(range(min = 8, max = 30))]
    pub prefix_length: u8,
    /// The default gateway.
    pub gateway: Ipv4Addr,
    /// The first address VMs may be given.
    pub first: Ipv4Addr,
    /// The last address VMs may be given.
    pub last: Ipv4Addr,
}

/// A range of IPv6 addresses inside one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipv6Pool {
    /// The network's prefix length, e.g. 64.
    #[schemars(range(min = 16, max = 126))]
    pub prefix_length: u8,
    /// The default gateway.
    pub gateway: Ipv6Addr,
    /// The first address VMs may be given.
    pub first: Ipv6Addr,
    /// The last address VMs may be given.
    pub last: Ipv6Addr,
}

/// Where operators' S3 buckets live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum S3Mode {
    /// One Garage cluster run by the hosting provider, one bucket and key per operator service
    /// (the default).
    #[default]
    Shared,
    /// Garage deployed on the operator's own S3 VMs, separate from its service VMs.
    Dedicated,
}

/// The Garage S3 store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GarageInfra {
    /// `shared` (the hosting provider's cluster, the default) or `dedicated` (Garage on the
    /// operator's VMs).
    #[serde(default)]
    pub mode: S3Mode,
    /// The S3 region name Garage is configured with.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Shared mode: the admin API, e.g. `http://garage.example.net:3903`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_endpoint: Option<HttpUrl>,
    /// Shared mode: a file holding the admin API's bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Shared mode: the S3 API the services use, e.g. `https://s3.example.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<HttpsUrl>,
    /// Shared mode: Garage's website root domain (`[s3_web] root_domain`); public media is served
    /// from `<bucket>.<web_root_domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_root_domain: Option<Domain>,
    /// Dedicated mode: how many S3 VMs each operator gets (1, or 3 for replication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3))]
    pub dedicated_nodes: Option<u8>,
    /// Dedicated mode: the size class of each S3 VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_size: Option<String>,
}

fn default_region() -> String {
    "garage".to_owned()
}

/// The authoritative DNS server, updated with RFC 2136 dynamic updates signed with TSIG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsInfra {
    /// The server's address and port, e.g. `192.0.2.53:53`.
    pub server: SocketAddr,
    /// The hosting provider's zone. Operator domains under it are updated in it; other operator
    /// domains must be delegated to this server as zones of their own.
    pub zone: Domain,
    /// The TSIG key's name.
    #[schemars(length(min = 1, max = 253))]
    pub tsig_key_name: String,
    /// The TSIG algorithm.
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// A file holding the TSIG key's secret (base64).
    pub tsig_secret_file: PathBuf,
    /// Time to live of the records the platform writes, in seconds.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 30, max = 86400))]
    pub ttl: u32,
}

fn default_ttl() -> u32 {
    300
}

/// A TSIG algorithm (RFC 8945).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum TsigAlgorithm {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// The hosting provider's SMTP relay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpInfra {
    /// The relay's host name, e.g. `smtp.example.net`.
    pub host: Domain,
    /// The relay's port: usually 587 with `starttls`, 465 with `tls`.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// How the connection is encrypted.
    #[serde(default)]
    pub tls: SmtpTls,
    /// The user name services log in with; leave it out for a relay that trusts the services'
    /// addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub username: Option<String>,
    /// A file holding the password (required with `username`). It reaches the hosts as a
    /// secret file, never in a host spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The domain services send from, as `<operator>-<service>@<from_domain>`: one the relay may
    /// send for (SPF, DKIM). Without it, each service sends from `noreply@<its own domain>`,
    /// which the operator's DNS must then allow the relay to send for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_domain: Option<Domain>,
    /// The address the platform itself writes to operators from (maintenance notices). Without
    /// it, `fediversity@<from_domain>`; one of the two is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_from: Option<Email>,
}

impl SmtpInfra {
    /// The address the platform's own e-mails come from: `platform_from`, else
    /// `fediversity@<from_domain>`; `None` when neither is set (an infra check problem).
    pub fn platform_from(&self) -> Option<String> {
        match (&self.platform_from, &self.from_domain) {
            (Some(address), _) => Some(address.to_string()),
            (None, Some(domain)) => Some(format!("fediversity@{domain}")),
            (None, None) => None,
        }
    }
}

/// How the connection to the SMTP relay is encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (the default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on a trusted local network.
    None,
}

/// Where and how NixOS systems are built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NixInfra {
    /// The flake holding the service modules: a path or a flake reference.
    #[schemars(length(min = 1, max = 1024))]
    pub flake: String,
    /// Build each system on the deployer (then copy it) or on the target host.
    #[serde(default)]
    pub build_on: BuildOn,
}

/// Where a NixOS system is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildOn {
    /// On the machine running the orchestrator, then copied to the host.
    #[default]
    Deployer,
    /// On the target host itself.
    Target,
}

impl Infra {
    /// The size class `name`, if the hosting provider offers it.
    pub fn size(&self, name: &str) -> Option<&Size> {
        self.sizes.get(name)
    }

    /// The size classes on offer, for messages: `large, medium, small`.
    pub fn size_names(&self) -> String {
        self.sizes.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The infrastructure `fediversity` uses when no `infra.toml` is given: every resource lives
    /// in the local sandbox, with the usual three size classes and generous limits.
    pub fn sandbox() -> Self {
        Self {
            version: INFRA_VERSION,
            sizes: standard_sizes(),
            limits: Limits {
                default: ResourceLimits {
                    vms: 8,
                    vcpus: 32,
                    memory_mib: 65_536,
                    disk_gib: 1_000,
                    buckets: 16,
                },
                operators: BTreeMap::new(),
            },
            proxmox: None,
            garage: None,
            dns: None,
            nix: None,
            smtp: None,
            panel: None,
        }
    }

    /// Whole-document checks that the schema cannot express; empty when all is well.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for name in self.sizes.keys() {
            let ok = (1..=32).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                problems.push(Problem::new(
                    format!("sizes.{name}"),
                    "a size name has 1 to 32 characters from a-z, 0-9 and '-'",
                ));
            }
        }
        if let Some(proxmox) = &self.proxmox {
            problems.extend(proxmox.ipv4.problems("proxmox.ipv4"));
            if let Some(ipv6) = &proxmox.ipv6 {
                problems.extend(ipv6.problems("proxmox.ipv6"));
            }
            if self.nix.is_none() {
                problems.push(Problem::new(
                    "nix",
                    "missing: with [proxmox], VMs need their NixOS systems built; add a [nix] section",
                ));
            }
        }
        if let Some(garage) = &self.garage {
            problems.extend(self.garage_problems(garage));
        }
        if let Some(smtp) = &self.smtp
            && smtp.username.is_some() != smtp.password_file.is_some()
        {
            problems.push(Problem::new(
                "smtp",
                "give `username` and `password_file` together, or neither for a relay that \
                 needs no login",
            ));
        }
        if let Some(smtp) = &self.smtp
            && smtp.platform_from().is_none()
        {
            problems.push(Problem::new(
                "smtp",
                "give `platform_from` (or `from_domain`): the address the platform's own \
                 maintenance e-mails come from",
            ));
        }
        problems
    }

    fn garage_problems(&self, garage: &GarageInfra) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut require = |present: bool, field: &str, why: &str| {
            if !present {
                problems.push(Problem::new(format!("garage.{field}"), why.to_owned()));
            }
        };
        match garage.mode {
            S3Mode::Shared => {
                let why = "missing: required in shared mode";
                require(garage.admin_endpoint.is_some(), "admin_endpoint", why);
                require(garage.admin_token_file.is_some(), "admin_token_file", why);
                require(garage.s3_endpoint.is_some(), "s3_endpoint", why);
                require(garage.web_root_domain.is_some(), "web_root_domain", why);
                let why = "only used in dedicated mode: remove it, or set mode = \"dedicated\"";
                require(garage.dedicated_nodes.is_none(), "dedicated_nodes", why);
                require(garage.dedicated_size.is_none(), "dedicated_size", why);
            }
            S3Mode::Dedicated => {
                require(
                    matches!(garage.dedicated_nodes, Some(1 | 3)),
                    "dedicated_nodes",
                    "dedicated mode needs 1 S3 VM, or 3 for Garage's replication factor 3",
                );
                match &garage.dedicated_size {
                    None => require(
                        false,
                        "dedicated_size",
                        "missing: required in dedicated mode",
                    ),
                    Some(size) if self.size(size).is_none() => require(
                        false,
                        "dedicated_size",
                        &format!(
                            "unknown size `{size}`: the sizes on offer are {}",
                            self.size_names()
                        ),
                    ),
                    Some(_) => {}
                }
                require(
                    self.proxmox.is_some(),
                    "mode",
                    "dedicated mode puts Garage on VMs: it needs a [proxmox] section",
                );
                let why = "only used in shared mode: a dedicated cluster lives on the operator's VMs, under its domain";
                require(garage.admin_endpoint.is_none(), "admin_endpoint", why);
                require(garage.admin_token_file.is_none(), "admin_token_file", why);
                require(garage.s3_endpoint.is_none(), "s3_endpoint", why);
                require(garage.web_root_domain.is_none(), "web_root_domain", why);
            }
        }
        problems
    }
}

fn standard_sizes() -> BTreeMap<String, Size> {
    [
        ("small", 2, 4_096, 40, 100),
        ("medium", 4, 8_192, 80, 500),
        ("large", 8, 16_384, 160, 2_000),
    ]
    .into_iter()
    .map(|(name, cores, memory_mib, disk_gib, bucket_quota_gib)| {
        let size = Size {
            cores,
            memory_mib,
            disk_gib,
            bucket_quota_gib,
        };
        (name.to_owned(), size)
    })
    .collect()
}

/// The pool checks shared by IPv4 and IPv6: the range is in order, inside the gateway's
/// network, and does not contain the gateway.
trait AddressPool {
    fn bits(&self) -> (u128, u128, u128, u32, u8);

    fn problems(&self, path: &str) -> Vec<Problem> {
        let (gateway, first, last, width, prefix_length) = self.bits();
        let host_bits = width.saturating_sub(u32::from(prefix_length));
        let network = |address: u128| address.checked_shr(host_bits).unwrap_or(0);
        let mut problems = Vec::new();
        if first > last {
            problems.push(Problem::new(format!("{path}.last"), "comes before `first`"));
        }
        for (field, address) in [("first", first), ("last", last)] {
            if network(address) != network(gateway) {
                problems.push(Problem::new(
                    format!("{path}.{field}"),
                    format!("is outside the gateway's /{prefix_length} network"),
                ));
            }
        }
        if (first..=last).contains(&gateway) {
            problems.push(Problem::new(
                format!("{path}.gateway"),
                "lies inside the range given to VMs",
            ));
        }
        problems
    }
}

impl AddressPool for Ipv4Pool {
    fn bits(&self) -> (u128, u128, u128, u32, u8) {
        let bits = |a: Ipv4Addr| u128::from(u32::from(a));
        (
            bits(self.gateway),
            bits(self.first),
            bits(self.last),
            32,
            self.prefix_length,
        )
    }
}

impl AddressPool for Ipv6Pool {
    fn bits(&self) -> (u128, u128, u128, u32, u8) {
        (
            u128::from(self.gateway),
            u128::from(self.first),
            u128::from(self.last),
            128,
            self.prefix_length,
        )
    }
}

/// The documented example `infra.toml`: [`Infra::example`] with every field explained. The
/// project's `examples/infra.toml` is this text, checked by a test.
pub fn annotated_example() -> Result<String, String> {
    crate::schema::annotated_toml(
        &Infra::example()?,
        "infra.toml: the hosting provider's infrastructure, given to fediversity commands as `--infra infra.toml`.\n\
         Generated by `fediversity infra example`; every field is explained above it.\n\
         Secrets are never written here: name the files that hold them.",
    )
}

impl Infra {
    /// A realistic infrastructure: a three-node Proxmox VE cluster on Linstor storage, a shared
    /// Garage cluster, a DNS server taking TSIG-signed updates, a local flake and an SMTP relay. Addresses are
    /// from the documentation ranges (RFC 5737, RFC 3849).
    pub fn example() -> Result<Self, String> {
        let operator_limits = ResourceLimits {
            vms: 8,
            vcpus: 40,
            memory_mib: 81_920,
            disk_gib: 2_000,
            buckets: 16,
        };
        Ok(Self {
            version: INFRA_VERSION,
            sizes: standard_sizes(),
            limits: Limits {
                default: ResourceLimits {
                    vms: 4,
                    vcpus: 16,
                    memory_mib: 32_768,
                    disk_gib: 500,
                    buckets: 8,
                },
                operators: BTreeMap::from([(
                    OperatorId::try_from("uni-utrecht")?,
                    operator_limits,
                )]),
            },
            proxmox: Some(ProxmoxInfra {
                endpoint: HttpsUrl::try_from("https://pve.example.net:8006")?,
                token_id: "fediversity@pve!deploy".to_owned(),
                token_secret_file: "/etc/fediversity/proxmox-token".into(),
                ca_file: Some("/etc/fediversity/proxmox-ca.pem".into()),
                fingerprint: None,
                nodes: vec!["pve1".to_owned(), "pve2".to_owned(), "pve3".to_owned()],
                template_vmid: 9000,
                storage: "linstor-nvme".to_owned(),
                bridge: "vmbr0".to_owned(),
                ipv4: Ipv4Pool {
                    prefix_length: 24,
                    gateway: Ipv4Addr::new(192, 0, 2, 1),
                    first: Ipv4Addr::new(192, 0, 2, 10),
                    last: Ipv4Addr::new(192, 0, 2, 250),
                },
                ipv6: Some(Ipv6Pool {
                    prefix_length: 64,
                    gateway: Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 1),
                    first: Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 0x100),
                    last: Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 0xffff),
                }),
            }),
            garage: Some(GarageInfra {
                mode: S3Mode::Shared,
                region: default_region(),
                admin_endpoint: Some(HttpUrl::try_from("https://garage-admin.example.net")?),
                admin_token_file: Some("/etc/fediversity/garage-admin-token".into()),
                s3_endpoint: Some(HttpsUrl::try_from("https://s3.example.net")?),
                web_root_domain: Some(Domain::try_from("web.example.net")?),
                dedicated_nodes: None,
                dedicated_size: None,
            }),
            dns: Some(DnsInfra {
                server: SocketAddr::new(Ipv4Addr::new(192, 0, 2, 53).into(), 53),
                zone: Domain::try_from("fedi.example.net")?,
                tsig_key_name: "fediversity".to_owned(),
                tsig_algorithm: TsigAlgorithm::HmacSha256,
                tsig_secret_file: "/etc/fediversity/tsig.key".into(),
                ttl: default_ttl(),
            }),
            nix: Some(NixInfra {
                flake: "/var/lib/fediversity/nix".to_owned(),
                build_on: BuildOn::Deployer,
            }),
            smtp: Some(SmtpInfra {
                host: Domain::try_from("smtp.example.net")?,
                port: 587,
                tls: SmtpTls::Starttls,
                username: Some("fediversity".to_owned()),
                password_file: Some("/etc/fediversity/smtp-password".into()),
                from_domain: Some(Domain::try_from("mail.example.net")?),
                platform_from: Some(Email::try_from("fediversity@mail.example.net")?),
            }),
            panel: Some(PanelInfra {
                public_url: HttpsUrl::try_from("https://panel.example.net")?,
            }),
        })
    }
}
