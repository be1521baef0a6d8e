//! Accumulates resources and knows the shapes shared by every service: VMs, DNS record sets,
//! secrets and NixOS hosts, and which provider makes each kind on this infrastructure.

use std::collections::{BTreeMap, BTreeSet};

use fediversity_model::graph::{
    DesiredGraph, GRAPH_VERSION, Resource, ResourceAddress, ResourceKind,
};
use fediversity_model::infra::Size;
use fediversity_model::{Infra, OperatorConfig, Problem, ServiceKind};
use serde_json::{Map, Value, json};

use crate::SECRETS_DIR;

/// The provider that realises resources in the local sandbox.
pub const LOCAL: &str = "local";

/// A resource about to be added: everything but its address.
pub struct Spec {
    pub service: Option<ServiceKind>,
    pub holds_data: bool,
    pub inputs: Value,
    pub depends_on: BTreeSet<ResourceAddress>,
}

impl Spec {
    /// A resource of `service` (or of the whole operator, with `None`) holding no data.
    pub fn new(service: Option<ServiceKind>, inputs: Value) -> Self {
        Self {
            service,
            holds_data: false,
            inputs,
            depends_on: BTreeSet::new(),
        }
    }

    /// Marks the resource as holding data, so retention applies when it is removed.
    pub fn holding_data(mut self) -> Self {
        self.holds_data = true;
        self
    }

    /// Adds ordering-only dependencies.
    pub fn after(mut self, addresses: impl IntoIterator<Item = ResourceAddress>) -> Self {
        self.depends_on.extend(addresses);
        self
    }
}

/// A NixOS host about to be added.
pub struct Host<'s> {
    pub name: &'s str,
    pub service: Option<ServiceKind>,
    pub vm: &'s ResourceAddress,
    /// The host spec the service modules read; `secret_files` is added from `secrets`.
    pub spec: Value,
    /// Secret file name → reference to the secret output to upload under that name.
    pub secrets: BTreeMap<String, String>,
}

pub struct Builder<'a> {
    config: &'a OperatorConfig,
    infra: &'a Infra,
    resources: BTreeMap<ResourceAddress, Resource>,
}

impl<'a> Builder<'a> {
    pub fn new(config: &'a OperatorConfig, infra: &'a Infra) -> Self {
        Self {
            config,
            infra,
            resources: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &'a OperatorConfig {
        self.config
    }

    pub fn infra(&self) -> &'a Infra {
        self.infra
    }

    /// `fedi-<operator>-<suffix>`: the prefix keeps the platform's names apart from anything
    /// else on shared infrastructure, and the operator id keeps tenants apart.
    pub fn derived_name(&self, suffix: &str) -> String {
        format!("fedi-{}-{suffix}", self.config.operator.id)
    }

    /// The provider that makes resources of `kind` on this infrastructure: the real one when
    /// `infra.toml` describes it, the local sandbox otherwise.
    fn provider(&self, kind: ResourceKind) -> &'static str {
        let infra = self.infra;
        match kind {
            ResourceKind::Sshkey => "sshkey",
            ResourceKind::Secret => "secret",
            ResourceKind::Identity => "identity",
            // The panel is the OpenID Connect provider, and its provider makes the clients.
            ResourceKind::OidcClient => "oidc",
            ResourceKind::Vm if infra.proxmox.is_some() => "proxmox",
            ResourceKind::Dns if infra.dns.is_some() => "dns",
            ResourceKind::Bucket | ResourceKind::S3key | ResourceKind::S3cluster
                if infra.garage.is_some() =>
            {
                "garage"
            }
            ResourceKind::Nixos if infra.nix.is_some() => "nixos",
            ResourceKind::Vm
            | ResourceKind::Dns
            | ResourceKind::Bucket
            | ResourceKind::S3key
            | ResourceKind::S3cluster
            | ResourceKind::Nixos => LOCAL,
        }
    }

    pub fn add(
        &mut self,
        kind: ResourceKind,
        name: &str,
        spec: Spec,
    ) -> Result<ResourceAddress, Problem> {
        let address = ResourceAddress::new(kind, name)
            .map_err(|e| Problem::new("", format!("internal error: {e}")))?;
        let resource = Resource {
            provider: self.provider(kind).to_owned(),
            service: spec.service,
            holds_data: spec.holds_data,
            inputs: spec.inputs,
            depends_on: spec.depends_on,
        };
        self.resources.insert(address.clone(), resource);
        Ok(address)
    }

    /// The operator's deployment key: its public half goes into every VM's cloud-init, its
    /// private half is what the NixOS provider connects with.
    pub fn deploy_key(&mut self) -> Result<ResourceAddress, Problem> {
        let comment = format!("fediversity-deploy@{}", self.config.operator.id);
        let inputs = json!({"algorithm": "ed25519", "comment": comment});
        self.add(ResourceKind::Sshkey, "deploy", Spec::new(None, inputs))
    }

    /// A secret the platform generates once; `how` says what to generate. A service's secrets
    /// count as its data: the kept database of a service turned off with retention `keep` is
    /// only readable again with the same keys, so they are kept with it.
    pub fn generated_secret(
        &mut self,
        name: &str,
        service: Option<ServiceKind>,
        how: Value,
    ) -> Result<ResourceAddress, Problem> {
        let spec = Spec::new(service, how);
        let spec = if service.is_some() {
            spec.holding_data()
        } else {
            spec
        };
        self.add(ResourceKind::Secret, name, spec)
    }

    /// A VM of `size`, reachable with the deployment key. On Proxmox it is a full clone of the
    /// hosting provider's template; its tags let the provider find it again after a crash.
    pub fn vm(
        &mut self,
        name: &str,
        service: Option<ServiceKind>,
        size: &Size,
        deploy_key: &ResourceAddress,
    ) -> Result<ResourceAddress, Problem> {
        let mut inputs = json!({
            "name": self.derived_name(name),
            "cores": size.cores,
            "memory_mib": size.memory_mib,
            "disk_gib": size.disk_gib,
            "ssh_public_key": deploy_key.output("public_key"),
        });
        if let Some(proxmox) = &self.infra.proxmox {
            let extra = json!({
                "template_vmid": proxmox.template_vmid,
                "storage": proxmox.storage,
                "bridge": proxmox.bridge,
                "ipv6": proxmox.ipv6.is_some(),
                "tags": ["fediversity", format!("operator-{}", self.config.operator.id), format!("resource-{name}")],
            });
            merge(&mut inputs, extra);
        }
        self.add(
            ResourceKind::Vm,
            name,
            Spec::new(service, inputs).holding_data(),
        )
    }

    /// Address records for `fqdn` pointing at `vms`: A always, AAAA when the VMs have IPv6.
    pub fn address_records(
        &mut self,
        name: &str,
        service: Option<ServiceKind>,
        fqdn: &str,
        vms: &[ResourceAddress],
    ) -> Result<(), Problem> {
        let ipv6 = self
            .infra
            .proxmox
            .as_ref()
            .is_some_and(|p| p.ipv6.is_some());
        let families: &[(&str, &str)] = if ipv6 {
            &[("a", "ipv4"), ("aaaa", "ipv6")]
        } else {
            &[("a", "ipv4")]
        };
        for (record_type, output) in families {
            let values: Vec<String> = vms.iter().map(|vm| vm.output(output)).collect();
            // The operator's domain bounds what the record may touch: the dns provider refuses
            // any name outside it before sending, whatever the zone.
            let inputs = json!({
                "zone": self.zone_for(fqdn),
                "delegation": self.config.domain,
                "name": fqdn,
                "type": record_type.to_ascii_uppercase(),
                "ttl": self.infra.dns.as_ref().map_or(300, |dns| dns.ttl),
                "values": values,
            });
            self.add(
                ResourceKind::Dns,
                &format!("{name}-{record_type}"),
                Spec::new(service, inputs),
            )?;
        }
        Ok(())
    }

    /// The zone a record is updated in: the hosting provider's zone when the name lies under it,
    /// otherwise the operator's own domain, delegated to the hosting provider's DNS server.
    fn zone_for(&self, fqdn: &str) -> String {
        let operator_domain = self.config.domain.to_string();
        match &self.infra.dns {
            Some(dns) if fqdn.ends_with(&format!(".{}", dns.zone)) => dns.zone.to_string(),
            _ => operator_domain,
        }
    }

    /// A NixOS host on `host.vm`. The spec names each secret's file; the values travel
    /// separately (`secrets`) and never enter the spec or the Nix store.
    pub fn nixos(
        &mut self,
        host: Host<'_>,
        deploy_key: &ResourceAddress,
    ) -> Result<ResourceAddress, Problem> {
        let mut spec = host.spec;
        let files: Map<String, Value> = host
            .secrets
            .keys()
            .map(|name| (name.clone(), Value::from(format!("{SECRETS_DIR}/{name}"))))
            .collect();
        // The system authorizes exactly these keys for root, so rotating the deployment key
        // (`--replace sshkey.deploy`) drops the old one from the host once the new one works.
        merge(
            &mut spec,
            json!({ "secret_files": files, "deploy_keys": [deploy_key.output("public_key")] }),
        );
        let mut inputs = json!({
            "host": host.vm.output("ipv4"),
            "host_key": host.vm.output("host_key"),
            "ssh_private_key": deploy_key.output("private_key"),
            "secrets": host.secrets,
            "spec": spec,
        });
        if let Some(nix) = &self.infra.nix {
            merge(
                &mut inputs,
                json!({"flake": nix.flake, "build_on": nix.build_on}),
            );
        }
        self.add(
            ResourceKind::Nixos,
            host.name,
            Spec::new(host.service, inputs),
        )
    }

    pub fn finish(self) -> DesiredGraph {
        DesiredGraph {
            version: GRAPH_VERSION,
            operator: self.config.operator.id.clone(),
            retention: self
                .config
                .services
                .iter()
                .map(|(kind, service)| (kind, service.retention))
                .collect(),
            resources: self.resources,
        }
    }
}

/// Adds `extra`'s fields to the object `target` (both are objects by construction).
pub fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}
