//! The sandbox provider (`local`): every resource kind as files under one root directory, so
//! that a whole deployment can be applied, inspected, edited by hand and destroyed on any
//! machine, without a hypervisor, a DNS server or an S3 store.
//!
//! Layout, one directory per operator (`<root>/<operator>/`):
//!
//! | kind | where | what |
//! |---|---|---|
//! | `vm` | `vms/<name>/vm.json`, `vms/<name>/disk/` | size, state, address, host key |
//! | `nixos` | `vms/<vm>/host-spec.json`, `vms/<vm>/secrets/<name>` (0600) | the host spec and its secrets |
//! | `dns` | `dns/<zone>.zone` | record sets in zone-file syntax, shared by every record of the zone |
//! | `bucket` | `buckets/<alias>/.bucket.json`, objects beside it | quota, website, CORS |
//! | `s3key` | `keys/<name>.json` (0600) | the key pair and its grants |
//! | `s3cluster` | `s3clusters/<name>/garage-layout.json` | the layout a Garage cluster would get |
//!
//! `<root>/addresses.json` records every VM's loopback address, so no two VMs of the sandbox
//! share one. Every resource is found by its stable name (the name in its inputs, checked
//! against the address recorded beside it), so `read` with no recorded outputs finds what a
//! crashed run made; `read` reports what is in the files, so hand edits show up as drift.
//! Writes are atomic, a `create` that finds its own resource adopts it, and deleting what is
//! gone succeeds.

mod addresses;
mod bucket;
mod dns;
mod nixos;
mod s3cluster;
mod s3key;
mod vm;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::names::OperatorId;
use serde_json::Value;

use crate::files::blocking;
pub(crate) use crate::inputs::{observed_inputs, parse_inputs};
pub(crate) use crate::outputs::outputs;

/// The provider name resources use to choose the sandbox.
pub const NAME: &str = "local";

/// The sandbox provider, under one root directory.
#[derive(Clone, Debug)]
pub struct LocalProvider {
    root: PathBuf,
}

impl LocalProvider {
    /// The sandbox under `root`; nothing is touched until the first call.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The sandbox's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn place(&self, ctx: &CallContext) -> Place {
        Place {
            root: self.root.clone(),
            operator: ctx.operator.clone(),
            address: ctx.address.clone(),
        }
    }
}

/// Where one resource lives: the sandbox root, its operator and its address.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    root: PathBuf,
    operator: OperatorId,
    address: ResourceAddress,
}

impl Place {
    /// The operator's directory.
    fn operator_dir(&self) -> PathBuf {
        self.root.join(self.operator.as_str())
    }

    /// The address as recorded beside a resource, to tell whose it is.
    fn resource(&self) -> String {
        self.address.to_string()
    }
}

/// What the sandbox does for one resource kind. Every function blocks (file I/O): the provider
/// runs them off the async runtime.
trait Kind: Sync {
    /// The input fields whose change forces a replacement.
    fn replace_on(&self) -> &'static [&'static str];

    /// Makes the resource, or adopts it if this resource already made it.
    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs>;

    /// The resource as the files say it is, or `None`.
    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>>;

    /// Brings the resource to `inputs`. The fields that could not change in place are in
    /// [`Kind::replace_on`], so this is the same as making it: converge to the inputs.
    fn update(&self, at: &Place, inputs: &Value, _recorded: &Outputs) -> ProviderResult<Outputs> {
        self.create(at, inputs)
    }

    /// Removes the resource, or for `keep`, keeps its data and says where.
    fn delete(&self, at: &Place, inputs: &Value, retention: Retention) -> ProviderResult<Deletion>;
}

fn kind_of(address: &ResourceAddress) -> ProviderResult<&'static dyn Kind> {
    Ok(match address.kind() {
        ResourceKind::Vm => &vm::Vm,
        ResourceKind::Dns => &dns::Dns,
        ResourceKind::Bucket => &bucket::Bucket,
        ResourceKind::S3key => &s3key::S3Key,
        ResourceKind::Nixos => &nixos::Nixos,
        ResourceKind::S3cluster => &s3cluster::S3Cluster,
        kind @ (ResourceKind::Sshkey
        | ResourceKind::Secret
        | ResourceKind::Identity
        | ResourceKind::OidcClient) => {
            // The panel's OpenID Connect provider makes its clients; every other kind here has
            // a provider of its own name.
            let provider = match kind {
                ResourceKind::OidcClient => "oidc",
                other => other.as_str(),
            };
            return Err(ProviderError::permanent(format!(
                "{address}: the sandbox provider `local` does not make `{}` resources; the `{provider}` provider does",
                kind.as_str(),
            )));
        }
    })
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn replace_on(&self, address: &ResourceAddress) -> &[&str] {
        kind_of(address).map(|k| k.replace_on()).unwrap_or_default()
    }

    #[tracing::instrument(name = "local.create", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let (kind, at, inputs) = (kind_of(&ctx.address)?, self.place(ctx), inputs.clone());
        blocking(move || kind.create(&at, &inputs)).await
    }

    #[tracing::instrument(name = "local.read", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let (kind, at, inputs) = (kind_of(&ctx.address)?, self.place(ctx), inputs.clone());
        blocking(move || kind.read(&at, &inputs)).await
    }

    #[tracing::instrument(name = "local.update", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        let (kind, at, inputs) = (kind_of(&ctx.address)?, self.place(ctx), inputs.clone());
        let recorded = recorded.clone();
        blocking(move || kind.update(&at, &inputs, &recorded)).await
    }

    #[tracing::instrument(name = "local.delete", skip_all, fields(operator = %ctx.operator, address = %ctx.address, ?retention))]
    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        let (kind, at, inputs) = (kind_of(&ctx.address)?, self.place(ctx), inputs.clone());
        blocking(move || kind.delete(&at, &inputs, retention)).await
    }
}

/// The error for a resource whose stable name is taken by another resource of the operator.
fn taken_by(at: &Place, what: &str, owner: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "{}: the sandbox {what} already belongs to {owner} of operator `{}`: give one of them another name",
        at.address, at.operator
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_the_sandbox_does_not_make_are_refused_clearly() {
        let address: ResourceAddress = "secret.a".parse().unwrap();
        let error = kind_of(&address).err().unwrap();
        assert!(
            error.message.contains("the `secret` provider"),
            "{}",
            error.message
        );
    }
}
