//! S3 storage: buckets and keys per service, on the hosting provider's shared Garage cluster,
//! on a Garage cluster of the operator's own (dedicated mode), or in the sandbox.
//!
//! In dedicated mode the S3 VMs are always separate from the service VMs, so that replacing a
//! service VM never touches stored media.

use std::collections::BTreeMap;

use fediversity_model::ServiceKind;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::infra::{GarageInfra, S3Mode};
use fediversity_model::{Infra, OperatorConfig, Problem};
use serde_json::{Value, json};

use crate::builder::{Builder, Host, Spec, merge};

/// Placeholders for the sandbox, where buckets are directories and no S3 server runs.
const SANDBOX_ENDPOINT: &str = "http://s3.sandbox.localhost";
const SANDBOX_REGION: &str = "sandbox";
const SANDBOX_WEB_ROOT: &str = "web.sandbox.localhost";

/// Garage's ports (its defaults): S3 API and admin API.
const GARAGE_S3_PORT: u16 = 3900;
const GARAGE_ADMIN_PORT: u16 = 3903;

/// Where one operator's buckets live and how services reach them.
pub struct S3Target {
    endpoint: String,
    region: String,
    /// Public media is served from `<bucket alias>.<web_root_domain>` by Garage's web endpoint.
    web_root_domain: String,
    /// Inputs every bucket and key needs to reach a dedicated cluster; empty otherwise.
    cluster_inputs: Value,
    /// What a bucket needs besides, to be emptied before it is deleted: the dedicated
    /// cluster's S3 API (the shared cluster's is in `infra.toml`); empty otherwise.
    bucket_inputs: Value,
    /// The dedicated cluster's layout, which must exist before any bucket.
    cluster: Option<ResourceAddress>,
}

/// The names a dedicated cluster is published under, derived from the operator's domain.
fn dedicated_names(domain: &str) -> (String, String) {
    (format!("s3.{domain}"), format!("s3-web.{domain}"))
}

/// In dedicated mode, `s3.<domain>` and everything under `s3-web.<domain>` belong to the
/// operator's Garage cluster, so no service may be published there.
pub fn reserved_name_problems(config: &OperatorConfig, infra: &Infra) -> Vec<Problem> {
    if !infra
        .garage
        .as_ref()
        .is_some_and(|g| g.mode == S3Mode::Dedicated)
    {
        return Vec::new();
    }
    let (endpoint, web_root) = dedicated_names(config.domain.as_str());
    config
        .services
        .enabled()
        .filter(|(kind, service)| {
            let fqdn = config.service_fqdn(*kind, service);
            fqdn == endpoint || fqdn == web_root || fqdn.ends_with(&format!(".{web_root}"))
        })
        .map(|(kind, _)| {
            Problem::new(
                format!("services.{kind}.subdomain"),
                format!("`{endpoint}` and `{web_root}` are reserved for the operator's own S3 storage: choose another subdomain"),
            )
        })
        .collect()
}

/// The S3 target of this operator, adding the dedicated cluster's resources when there is one.
pub fn target(
    builder: &mut Builder<'_>,
    deploy_key: &ResourceAddress,
) -> Result<S3Target, Problem> {
    let region = |garage: &GarageInfra| garage.region.clone();
    match &builder.infra().garage {
        None => Ok(S3Target {
            endpoint: SANDBOX_ENDPOINT.to_owned(),
            region: SANDBOX_REGION.to_owned(),
            web_root_domain: SANDBOX_WEB_ROOT.to_owned(),
            cluster_inputs: json!({}),
            bucket_inputs: json!({}),
            cluster: None,
        }),
        Some(garage) if garage.mode == S3Mode::Shared => Ok(S3Target {
            endpoint: garage
                .s3_endpoint
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            region: region(garage),
            web_root_domain: garage
                .web_root_domain
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            cluster_inputs: json!({}),
            bucket_inputs: json!({}),
            cluster: None,
        }),
        Some(garage) => dedicated(builder, garage, deploy_key),
    }
}

/// Garage on the operator's own VMs: an RPC secret and admin token, the VMs, a NixOS host per
/// VM, DNS for the S3 and web endpoints, and the cluster layout that ties the nodes together.
fn dedicated(
    builder: &mut Builder<'_>,
    garage: &GarageInfra,
    deploy_key: &ResourceAddress,
) -> Result<S3Target, Problem> {
    let domain = builder.config().domain.to_string();
    let nodes = garage.dedicated_nodes.unwrap_or(1);
    let size = garage
        .dedicated_size
        .as_deref()
        .and_then(|name| builder.infra().size(name))
        .ok_or_else(|| Problem::new("", "internal error: dedicated S3 size not checked"))?;
    // The cluster's secrets are kept with its data: kept S3 VMs are no use without them.
    let secret = |how| Spec::new(None, how).holding_data();
    let rpc_secret = builder.add(
        ResourceKind::Secret,
        "garage-rpc-secret",
        secret(json!({"generate": "hex", "length": 64})),
    )?;
    let admin_token = builder.add(
        ResourceKind::Secret,
        "garage-admin-token",
        secret(json!({"generate": "password", "length": 48})),
    )?;
    let vms = (1..=nodes)
        .map(|i| builder.vm(&format!("s3-{i}"), None, size, deploy_key))
        .collect::<Result<Vec<_>, _>>()?;
    let (endpoint_host, web_root_domain) = dedicated_names(&domain);
    let mut hosts = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        let spec = json!({
            "version": 1,
            "operator": builder.config().operator.id,
            "service": "garage",
            "fqdn": endpoint_host,
            "node": i + 1,
            "region": garage.region,
            "replication_factor": nodes,
            "web_root_domain": web_root_domain,
            "peers": vms.iter().map(|v| v.output("ipv4")).collect::<Vec<_>>(),
        });
        let secrets = BTreeMap::from([
            ("garage-rpc-secret".to_owned(), rpc_secret.output("value")),
            ("garage-admin-token".to_owned(), admin_token.output("value")),
        ]);
        let host = Host {
            name: vm.name(),
            service: None,
            vm,
            spec,
            secrets,
        };
        hosts.push(builder.nixos(host, deploy_key)?);
    }
    builder.address_records("s3", None, &endpoint_host, &vms)?;
    builder.address_records("s3-web", None, &format!("*.{web_root_domain}"), &vms)?;
    let first = vms.first().map(|vm| vm.output("ipv4")).unwrap_or_default();
    let cluster_inputs = json!({
        "admin_endpoint": format!("http://{first}:{GARAGE_ADMIN_PORT}"),
        "admin_token": admin_token.output("value"),
    });
    let mut layout = json!({
        "zone": "dc1",
        "capacity_bytes": gib(size.disk_gib),
        "replication_factor": nodes,
        "nodes": vms.iter().map(|v| v.output("ipv4")).collect::<Vec<_>>(),
    });
    merge(&mut layout, cluster_inputs.clone());
    let cluster = builder.add(
        ResourceKind::S3cluster,
        "garage",
        Spec::new(None, layout).after(hosts),
    )?;
    Ok(S3Target {
        endpoint: format!("https://{endpoint_host}"),
        region: garage.region.clone(),
        web_root_domain,
        cluster_inputs,
        bucket_inputs: json!({"s3_endpoint": format!("http://{first}:{GARAGE_S3_PORT}")}),
        cluster: Some(cluster),
    })
}

impl S3Target {
    /// A media bucket of `service`, served publicly through Garage's web endpoint (Garage has
    /// no object ACLs), readable cross-origin from the service's own site.
    pub fn bucket(
        &self,
        builder: &mut Builder<'_>,
        service: ServiceKind,
        purpose: &str,
        quota_gib: u64,
        site: &str,
    ) -> Result<ResourceAddress, Problem> {
        let mut inputs = json!({
            "alias": builder.derived_name(&format!("{service}-{purpose}")),
            "quota_bytes": gib(quota_gib),
            "website": true,
            "cors_allowed_origins": [format!("https://{site}")],
        });
        merge(&mut inputs, self.cluster_inputs.clone());
        merge(&mut inputs, self.bucket_inputs.clone());
        let spec = Spec::new(Some(service), inputs)
            .holding_data()
            .after(self.cluster.clone());
        builder.add(ResourceKind::Bucket, &format!("{service}-{purpose}"), spec)
    }

    /// The service's access key: read and write on exactly its own buckets, never owner.
    pub fn key(
        &self,
        builder: &mut Builder<'_>,
        service: ServiceKind,
        buckets: &[(&str, ResourceAddress)],
    ) -> Result<ResourceAddress, Problem> {
        let grants: Vec<Value> = buckets
            .iter()
            .map(|(_, bucket)| json!({"bucket": bucket.output("id"), "read": true, "write": true, "owner": false}))
            .collect();
        let mut inputs = json!({"name": builder.derived_name(service.as_str()), "grants": grants});
        merge(&mut inputs, self.cluster_inputs.clone());
        builder.add(
            ResourceKind::S3key,
            service.as_str(),
            Spec::new(Some(service), inputs),
        )
    }

    /// The `s3` section of a service's host spec. The secret key is a file (`s3-secret-access-key`).
    pub fn host_spec(&self, key: &ResourceAddress, buckets: &[(&str, ResourceAddress)]) -> Value {
        let buckets: serde_json::Map<String, Value> = buckets
            .iter()
            .map(|(purpose, bucket)| {
                let section = json!({
                    "name": bucket.output("alias"),
                    "public_url": format!("https://{}.{}", bucket.output("alias"), self.web_root_domain),
                });
                ((*purpose).to_owned(), section)
            })
            .collect();
        json!({
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key_id": key.output("access_key_id"),
            "buckets": buckets,
        })
    }
}

fn gib(gib: u64) -> u64 {
    gib.saturating_mul(1 << 30)
}
