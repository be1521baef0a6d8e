//! The `proxmox` provider: operators' VMs on the hosting provider's Proxmox VE cluster.
//!
//! Kind `vm`, inputs as the configurator emits them (`name`, `cores`, `memory_mib`,
//! `disk_gib`, `bridge`, `storage`, `template_vmid`, `ssh_public_key`, `ipv6`, `tags`);
//! outputs `vmid`, `node`, `name`, `ipv4`, `ipv6` (when asked for and the infra has an IPv6
//! pool) and `host_key` (the guest's SSH host key, read through the QEMU guest agent over the
//! authenticated API, for the deployer's `known_hosts`).
//!
//! A VM is a full clone of the template, configured (cores, memory, bridge, cloud-init user,
//! key and static address from the [`pool`]), grown to its disk size, tagged with the operator
//! and the resource, and started. Every step looks before it acts, so a run that crashed
//! anywhere finds the VM by its tags (or, before the tags were set, by the clone's name) and
//! carries on: nothing leaks, nothing is made twice. A changed template or storage, or a
//! smaller disk, means a new VM; everything else changes in place, with a reboot when Proxmox
//! keeps the change pending.

mod client;
pub mod pool;

mod vm;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fediversity_engine::diff::{self, FieldChange};
use fediversity_engine::provider::{
    CallContext, ChangeKind, Deletion, Observed, Outputs, Provider,
};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::infra::{Ipv4Pool, Ipv6Pool, ProxmoxInfra};
use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::tls::Trust;
pub use client::Timing;
pub use pool::{AddressPool, AddressRange, MemoryAddressPool};

use crate::error::Error;
use crate::inputs::parse_inputs;
use crate::sensitive::SecretString;
use vm::{Desired, Identity, Located};

/// The provider name resources use.
pub const NAME: &str = "proxmox";

/// Inputs whose change means a new VM.
const REPLACE_ON: &[&str] = &["template_vmid", "storage"];

/// How to reach the cluster and what to give VMs.
#[derive(Clone, Debug)]
pub struct ProxmoxOptions {
    /// The API's base address, `https://host:8006`.
    pub endpoint: String,
    /// The API token's id, `USER@REALM!TOKENID`.
    pub token_id: String,
    /// The API token's secret.
    pub token_secret: SecretString,
    /// Which server certificate to trust.
    pub trust: Trust,
    /// The nodes new VMs may be placed on.
    pub nodes: Vec<String>,
    /// The IPv4 addresses VMs are given.
    pub ipv4: Ipv4Pool,
    /// The IPv6 addresses VMs are given, if the network has IPv6.
    pub ipv6: Option<Ipv6Pool>,
    /// The user cloud-init installs the deployment key for.
    pub ciuser: String,
    /// Timeouts and polling.
    pub timing: Timing,
}

/// The `proxmox` provider.
#[derive(Debug)]
pub struct ProxmoxProvider {
    client: client::Client,
    options: ProxmoxOptions,
    addresses: Arc<dyn AddressPool>,
}

/// The inputs of a VM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmInputs {
    name: String,
    cores: u32,
    memory_mib: u64,
    disk_gib: u64,
    bridge: String,
    storage: String,
    template_vmid: u32,
    ssh_public_key: String,
    #[serde(default)]
    ipv6: bool,
    #[serde(default)]
    tags: Vec<String>,
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::UnreadableFile {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl ProxmoxProvider {
    /// The provider for the infra's `[proxmox]` section, reading the token secret and the CA
    /// file now and pinning the certificate fingerprint when one is given; addresses come from `addresses` (the store's pool in production).
    pub fn from_infra(
        infra: &ProxmoxInfra,
        addresses: Arc<dyn AddressPool>,
    ) -> Result<Self, Error> {
        let secret = read_file("API token secret file", &infra.token_secret_file)?;
        let secret = String::from_utf8(secret).map_err(|_| Error::UnreadableFile {
            what: "API token secret file",
            path: infra.token_secret_file.clone(),
            reason: "it is not UTF-8 text".to_owned(),
        })?;
        let ca_pem = infra
            .ca_file
            .as_deref()
            .map(|path| read_file("CA file", path))
            .transpose()?;
        let fingerprint = infra
            .fingerprint
            .as_deref()
            .map(crate::tls::parse_fingerprint)
            .transpose()
            .map_err(|reason| Error::Proxmox {
                endpoint: infra.endpoint.to_string(),
                reason: format!("[proxmox] fingerprint in infra.toml: {reason}"),
            })?;
        let options = ProxmoxOptions {
            endpoint: infra.endpoint.to_string(),
            token_id: infra.token_id.clone(),
            token_secret: SecretString::new(secret.trim()),
            trust: Trust {
                ca_pem,
                fingerprint,
            },
            nodes: infra.nodes.clone(),
            ipv4: infra.ipv4.clone(),
            ipv6: infra.ipv6.clone(),
            ciuser: "root".to_owned(),
            timing: Timing::default(),
        };
        Self::new(options, addresses)
    }

    /// The provider with `options`.
    pub fn new(options: ProxmoxOptions, addresses: Arc<dyn AddressPool>) -> Result<Self, Error> {
        let client = client::Client::new(
            &options.endpoint,
            &options.token_id,
            &options.token_secret,
            &options.trust,
            options.timing,
        )
        .map_err(|reason| Error::Proxmox {
            endpoint: options.endpoint.clone(),
            reason,
        })?;
        Ok(Self {
            client,
            options,
            addresses,
        })
    }

    fn identity(ctx: &CallContext, inputs: &VmInputs) -> Identity {
        let mut tags: BTreeSet<String> = BTreeSet::new();
        tags.insert(format!("operator-{}", ctx.operator));
        tags.insert(format!("resource-{}", ctx.address.name()));
        Identity {
            tags,
            name: inputs.name.clone(),
        }
    }

    /// The VM's addresses: allocated in the pool (the same ones again for the same resource).
    async fn addresses(
        &self,
        ctx: &CallContext,
        inputs: &VmInputs,
    ) -> ProviderResult<(IpAddr, Option<IpAddr>)> {
        let v4 = &self.options.ipv4;
        let range = AddressRange {
            pool: "proxmox.ipv4".to_owned(),
            first: v4.first.into(),
            last: v4.last.into(),
        };
        let ipv4 = self
            .addresses
            .allocate(&ctx.operator, &ctx.address, &range)
            .await?;
        let ipv6 = match (&self.options.ipv6, inputs.ipv6) {
            (Some(v6), true) => {
                let range = AddressRange {
                    pool: "proxmox.ipv6".to_owned(),
                    first: v6.first.into(),
                    last: v6.last.into(),
                };
                Some(
                    self.addresses
                        .allocate(&ctx.operator, &ctx.address, &range)
                        .await?,
                )
            }
            _ => None,
        };
        Ok((ipv4, ipv6))
    }

    fn desired(
        &self,
        ctx: &CallContext,
        inputs: &VmInputs,
        (ipv4, ipv6): (IpAddr, Option<IpAddr>),
    ) -> Desired {
        let v4 = &self.options.ipv4;
        let mut ipconfig = format!("ip={ipv4}/{},gw={}", v4.prefix_length, v4.gateway);
        if let (Some(ipv6), Some(v6)) = (ipv6, &self.options.ipv6) {
            ipconfig.push_str(&format!(
                ",ip6={ipv6}/{},gw6={}",
                v6.prefix_length, v6.gateway
            ));
        }
        let mut tags: BTreeSet<String> = inputs.tags.iter().cloned().collect();
        tags.extend(Self::identity(ctx, inputs).tags);
        Desired {
            name: inputs.name.clone(),
            cores: inputs.cores,
            memory_mib: inputs.memory_mib,
            disk_gib: inputs.disk_gib,
            bridge: inputs.bridge.clone(),
            ipconfig,
            ciuser: self.options.ciuser.clone(),
            ssh_public_key: inputs.ssh_public_key.clone(),
            tags,
        }
    }

    /// The VM: where the record says when the VM there is still this resource's (VM ids are
    /// reused), else wherever its identity is found.
    async fn locate(
        &self,
        ctx: &CallContext,
        inputs: &VmInputs,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Located>> {
        let identity = Self::identity(ctx, inputs);
        if let Some(at) = recorded.and_then(recorded_location)
            && vm::status(&self.client, &at)
                .await?
                .is_some_and(|status| identity.recognises(&status).is_some())
        {
            return Ok(Some(at));
        }
        vm::find(&self.client, &identity).await
    }

    /// Configures, starts and waits for the VM at `at`, then reports it.
    async fn finish(
        &self,
        ctx: &CallContext,
        inputs: &VmInputs,
        at: &Located,
    ) -> ProviderResult<Outputs> {
        let addresses = self.addresses(ctx, inputs).await?;
        vm::converge(&self.client, at, &self.desired(ctx, inputs, addresses)).await?;
        ctx.progress
            .report("waiting for the VM's guest agent", None);
        let host_key = vm::wait_reachable(&self.client, at).await?;
        Ok(outputs(at, &inputs.name, addresses, Some(host_key)))
    }

    fn parse(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<VmInputs> {
        parse_inputs(&ctx.address, NAME, inputs)
    }
}

fn recorded_location(recorded: &Outputs) -> Option<Located> {
    Some(Located {
        vmid: u32::try_from(recorded.values.get("vmid")?.as_u64()?).ok()?,
        node: recorded.values.get("node")?.as_str()?.to_owned(),
    })
}

fn outputs(
    at: &Located,
    name: &str,
    (ipv4, ipv6): (IpAddr, Option<IpAddr>),
    host_key: Option<String>,
) -> Outputs {
    let mut outputs = Outputs::default();
    let values = &mut outputs.values;
    values.insert("vmid".to_owned(), json!(at.vmid));
    values.insert("node".to_owned(), json!(at.node));
    values.insert("name".to_owned(), json!(name));
    values.insert("ipv4".to_owned(), json!(ipv4.to_string()));
    if let Some(ipv6) = ipv6 {
        values.insert("ipv6".to_owned(), json!(ipv6.to_string()));
    }
    if let Some(host_key) = host_key {
        values.insert("host_key".to_owned(), json!(host_key));
    }
    outputs
}

#[async_trait]
impl Provider for ProxmoxProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn concurrency(&self) -> usize {
        4
    }

    fn replace_on(&self, _address: &ResourceAddress) -> &[&str] {
        REPLACE_ON
    }

    fn diff(
        &self,
        _address: &ResourceAddress,
        recorded: &Value,
        desired: &Value,
    ) -> Vec<FieldChange> {
        diff::changes(recorded, desired)
            .into_iter()
            .map(|change| {
                let top = change.path.split(['.', '[']).next().unwrap_or_default();
                let shrinks = top == "disk_gib"
                    && matches!((&change.before, &change.after), (Some(b), Some(a)) if a.as_u64() < b.as_u64());
                let kind = if REPLACE_ON.contains(&top) || shrinks {
                    ChangeKind::Replace
                } else {
                    ChangeKind::InPlace
                };
                change.with_kind(kind)
            })
            .collect()
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs = self.parse(ctx, inputs)?;
        // A VM this resource already made (a crashed or retried create) is adopted; a clone
        // that failed meanwhile is gone, and is made anew.
        let found = vm::find(&self.client, &Self::identity(ctx, &inputs)).await?;
        let adopted = match found {
            Some(at) if vm::wait_unlocked(&self.client, &at).await? => Some(at),
            _ => None,
        };
        let at = match adopted {
            Some(at) => {
                tracing::info!(address = %ctx.address, vmid = at.vmid, "adopting the Proxmox VM this resource made before");
                at
            }
            None => {
                let (template_node, target) =
                    vm::placement(&self.client, inputs.template_vmid, &self.options.nodes).await?;
                ctx.progress.report("cloning the template", None);
                vm::clone(
                    &self.client,
                    &vm::CloneSpec {
                        template_vmid: inputs.template_vmid,
                        template_node: &template_node,
                        target: &target,
                        name: &inputs.name,
                        storage: &inputs.storage,
                    },
                )
                .await?
            }
        };
        self.finish(ctx, &inputs, &at).await
    }

    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let inputs = self.parse(ctx, inputs)?;
        let Some(at) = self.locate(ctx, &inputs, recorded).await? else {
            return Ok(None);
        };
        let config = match vm::config(&self.client, &at, true).await {
            Ok(config) => config,
            Err(failure) if failure.is_not_found() => return Ok(None),
            Err(failure) => return Err(failure.into()),
        };
        let (observed, ipv4, ipv6) = vm::observed(&config);
        let recorded_key = recorded
            .and_then(|r| r.values.get("host_key"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let host_key = match recorded_key {
            Some(key) => Some(key),
            None => vm::host_key(&self.client, &at).await.ok(),
        };
        let parse = |a: Option<String>| a.and_then(|a| a.parse::<IpAddr>().ok());
        let mut outputs = match parse(ipv4) {
            Some(ipv4) => outputs(&at, &inputs.name, (ipv4, parse(ipv6)), host_key),
            None => {
                let mut partial = Outputs::default();
                partial.values.insert("vmid".to_owned(), json!(at.vmid));
                partial.values.insert("node".to_owned(), json!(at.node));
                partial
            }
        };
        if let Some(name) = observed.get("name") {
            outputs.values.insert("name".to_owned(), name.clone());
        }
        Ok(Some(Observed {
            inputs: observed,
            outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        let inputs = self.parse(ctx, inputs)?;
        let at = self
            .locate(ctx, &inputs, Some(recorded))
            .await?
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "the Proxmox VM of {} is gone: run `fediversity refresh` so the next apply \
                 makes it anew",
                    ctx.address
                ))
            })?;
        self.finish(ctx, &inputs, &at).await
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        let inputs = self.parse(ctx, inputs)?;
        let Some(at) = self.locate(ctx, &inputs, Some(recorded)).await? else {
            self.addresses.release(&ctx.operator, &ctx.address).await?;
            return Ok(Deletion::Removed);
        };
        if vm::status(&self.client, &at)
            .await?
            .is_some_and(|s| s["status"] == "running")
        {
            vm::stop(&self.client, &at).await?;
        }
        match retention {
            // The kept VM keeps its addresses: started again, it must not clash with another.
            Retention::Keep => Ok(Deletion::Kept {
                note: format!(
                    "Proxmox VM {} ({}) on node {} is stopped and kept with its disk; \
                     destroy it in Proxmox VE once its data is no longer needed",
                    at.vmid, inputs.name, at.node
                ),
            }),
            Retention::Delete => {
                vm::destroy(&self.client, &at).await?;
                self.addresses.release(&ctx.operator, &ctx.address).await?;
                Ok(Deletion::Removed)
            }
        }
    }
}
