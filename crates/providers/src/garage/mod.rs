//! The Garage provider (`garage`): S3 buckets, access keys and cluster layouts on Garage,
//! through its admin API v2.
//!
//! Two modes, as `infra.toml` chooses:
//!
//! - **shared** — one cluster run by the hosting provider, given at construction
//!   ([`GarageProvider::from_infra`]); resource inputs name no cluster;
//! - **dedicated** — a cluster on the operator's own S3 VMs: every resource's inputs carry
//!   `admin_endpoint` and `admin_token` (and a bucket's `s3_endpoint`), and the `s3cluster`
//!   kind assigns the new cluster's layout before any bucket is made.
//!
//! | kind | what | found by |
//! |---|---|---|
//! | `bucket` | a bucket with a global alias, website access, CORS for GET, a size quota | its alias |
//! | `s3key` | an access key, read/write (owner only when asked) on exactly the granted buckets | its name |
//! | `s3cluster` | roles for the listed nodes, the layout applied | the nodes' roles |
//!
//! Names are derived from the operator and service by the configurator (`fedi-<operator>-…`),
//! so a run that crashed after Garage made something finds it again and adopts it. Every call
//! that changes something first checks the cluster's health, so an unavailable cluster is a
//! transient failure naming the endpoint rather than a half-made resource.
//!
//! Modules: `client` speaks the admin API (and classifies its failures), `api` holds its wire
//! types, `s3` empties a bucket through the S3 API, and one module per kind.

mod api;
mod bucket;
mod client;
mod s3;
mod s3cluster;
mod s3key;

use async_trait::async_trait;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::infra::{GarageInfra, S3Mode};
use serde_json::Value;

use self::client::AdminClient;
use crate::sensitive::SecretString;

/// The provider name resources use to choose Garage.
pub const NAME: &str = "garage";

/// One Garage cluster: where its APIs are and the admin token.
#[derive(Clone, Debug)]
pub struct GarageCluster {
    /// The admin API, e.g. `http://garage.example.net:3903`.
    pub admin_endpoint: String,
    /// The admin API's bearer token.
    pub admin_token: SecretString,
    /// The S3 API, used to empty a bucket before deleting it.
    pub s3_endpoint: String,
}

/// Why a Garage provider could not be set up from `infra.toml`.
#[derive(Debug, thiserror::Error)]
pub enum GarageSetupError {
    /// Shared mode needs a field that is missing.
    #[error("[garage] {0} is missing in infra.toml: shared mode needs it")]
    Missing(&'static str),
    /// The admin token file cannot be read, or is empty.
    #[error("cannot read Garage's admin token from {path} ([garage] admin_token_file): {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP client could not be built (no TLS roots, …).
    #[error("cannot set up the HTTP client for Garage: {0}")]
    Http(String),
}

/// The Garage provider.
#[derive(Clone, Debug)]
pub struct GarageProvider {
    http: reqwest::Client,
    region: String,
    shared: Option<GarageCluster>,
}

impl GarageProvider {
    /// A provider for clusters whose S3 region is `region`; `shared` is the hosting provider's
    /// cluster, used by resources whose inputs name no cluster of their own.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        region: impl Into<String>,
        shared: Option<GarageCluster>,
    ) -> Result<Self, GarageSetupError> {
        let http = client::http_client().map_err(|e| GarageSetupError::Http(e.to_string()))?;
        Ok(Self {
            http,
            region: region.into(),
            shared,
        })
    }

    /// The provider `infra.toml`'s `[garage]` section describes: in shared mode, with the
    /// cluster it names and the token read from `admin_token_file`.
    ///
    /// # Errors
    /// When a field shared mode needs is missing or the token file cannot be read.
    pub fn from_infra(infra: &GarageInfra) -> Result<Self, GarageSetupError> {
        let shared = match infra.mode {
            S3Mode::Dedicated => None,
            S3Mode::Shared => Some(shared_cluster(infra)?),
        };
        Self::new(infra.region.clone(), shared)
    }

    /// The cluster a resource's inputs name, or the shared one.
    fn target(&self, address: &ResourceAddress, named: &ClusterRef) -> ProviderResult<Target> {
        let (admin_endpoint, token, s3_endpoint) = match (&named.admin_endpoint, &named.admin_token)
        {
            (Some(endpoint), Some(token)) => {
                (endpoint.as_str(), token.clone(), named.s3_endpoint.clone())
            }
            (None, None) => {
                let shared = self.shared.as_ref().ok_or_else(|| {
                    ProviderError::permanent(format!(
                        "{address}: its inputs name no Garage cluster and no shared cluster is \
                         configured: set [garage] admin_endpoint, admin_token_file and s3_endpoint \
                         in infra.toml"
                    ))
                })?;
                (
                    shared.admin_endpoint.as_str(),
                    shared.admin_token.clone(),
                    Some(shared.s3_endpoint.clone()),
                )
            }
            _ => {
                return Err(ProviderError::permanent(format!(
                    "{address}: `admin_endpoint` and `admin_token` go together: give both or neither"
                )));
            }
        };
        Ok(Target {
            admin: AdminClient::new(self.http.clone(), admin_endpoint, token),
            http: self.http.clone(),
            s3_endpoint,
            region: self.region.clone(),
        })
    }
}

fn shared_cluster(infra: &GarageInfra) -> Result<GarageCluster, GarageSetupError> {
    let admin_endpoint = infra
        .admin_endpoint
        .as_ref()
        .ok_or(GarageSetupError::Missing("admin_endpoint"))?;
    let token_file = infra
        .admin_token_file
        .as_ref()
        .ok_or(GarageSetupError::Missing("admin_token_file"))?;
    let s3_endpoint = infra
        .s3_endpoint
        .as_ref()
        .ok_or(GarageSetupError::Missing("s3_endpoint"))?;
    let token_error = |reason: String| GarageSetupError::TokenFile {
        path: token_file.display().to_string(),
        reason,
    };
    let token = std::fs::read_to_string(token_file).map_err(|e| token_error(e.to_string()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(token_error("the file is empty".to_owned()));
    }
    Ok(GarageCluster {
        admin_endpoint: admin_endpoint.to_string(),
        admin_token: SecretString::new(token),
        s3_endpoint: s3_endpoint.to_string(),
    })
}

/// The cluster fields a resource's inputs may carry (dedicated mode).
#[derive(Debug, Default, serde::Deserialize)]
struct ClusterRef {
    #[serde(default)]
    admin_endpoint: Option<String>,
    #[serde(default)]
    admin_token: Option<SecretString>,
    #[serde(default)]
    s3_endpoint: Option<String>,
}

/// The cluster one call talks to.
#[derive(Debug)]
struct Target {
    admin: AdminClient,
    http: reqwest::Client,
    s3_endpoint: Option<String>,
    region: String,
}

impl Target {
    /// Fails, transiently, when the cluster cannot serve requests: checked before any change.
    async fn check_health(&self) -> ProviderResult<()> {
        let health = self.admin.health().await?;
        if health.status == "unavailable" {
            return Err(ProviderError::transient(format!(
                "Garage cluster at {} is unavailable: {} of {} storage nodes up, {} of {} \
                 partitions with a quorum",
                self.admin.endpoint(),
                health.storage_nodes_up,
                health.storage_nodes,
                health.partitions_quorum,
                health.partitions
            )));
        }
        Ok(())
    }
}

/// Which kind a resource is, for this provider.
enum Kind {
    Bucket,
    S3Key,
    S3Cluster,
}

fn kind_of(address: &ResourceAddress) -> ProviderResult<Kind> {
    match address.kind() {
        ResourceKind::Bucket => Ok(Kind::Bucket),
        ResourceKind::S3key => Ok(Kind::S3Key),
        ResourceKind::S3cluster => Ok(Kind::S3Cluster),
        other => Err(ProviderError::permanent(format!(
            "{address}: the `{NAME}` provider makes buckets, S3 keys and S3 cluster layouts, not \
             `{}` resources",
            other.as_str()
        ))),
    }
}

/// Splits the cluster fields out of `inputs`, returning the rest.
fn split_cluster(address: &ResourceAddress, inputs: &Value) -> ProviderResult<(ClusterRef, Value)> {
    let mut rest = inputs.clone();
    let mut cluster = serde_json::Map::new();
    if let Some(map) = rest.as_object_mut() {
        for field in ["admin_endpoint", "admin_token", "s3_endpoint"] {
            if let Some(value) = map.remove(field) {
                cluster.insert(field.to_owned(), value);
            }
        }
    }
    let cluster = crate::inputs::parse_inputs(address, NAME, &Value::Object(cluster))?;
    Ok((cluster, rest))
}

#[async_trait]
impl Provider for GarageProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn replace_on(&self, address: &ResourceAddress) -> &[&str] {
        match kind_of(address) {
            Ok(Kind::Bucket) => &["alias"],
            Ok(Kind::S3Key) => &["name"],
            Ok(Kind::S3Cluster) | Err(_) => &[],
        }
    }

    #[tracing::instrument(name = "garage.create", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let kind = kind_of(&ctx.address)?;
        let (cluster, inputs) = split_cluster(&ctx.address, inputs)?;
        let target = self.target(&ctx.address, &cluster)?;
        match kind {
            Kind::Bucket => bucket::apply(&target, ctx, &inputs).await,
            Kind::S3Key => s3key::apply(&target, ctx, &inputs).await,
            Kind::S3Cluster => s3cluster::apply(&target, ctx, &inputs).await,
        }
    }

    #[tracing::instrument(name = "garage.read", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let kind = kind_of(&ctx.address)?;
        let (cluster, rest) = split_cluster(&ctx.address, inputs)?;
        let target = self.target(&ctx.address, &cluster)?;
        let observed = match kind {
            Kind::Bucket => bucket::read(&target, ctx, &rest).await?,
            Kind::S3Key => s3key::read(&target, ctx, &rest).await?,
            Kind::S3Cluster => s3cluster::read(&target, ctx, &rest).await?,
        };
        Ok(observed.map(|(fields, outputs)| Observed {
            inputs: crate::inputs::observed_inputs(inputs, fields),
            outputs,
        }))
    }

    /// Every kind converges to its inputs, so updating is applying again: what could not
    /// change in place is in [`Provider::replace_on`].
    #[tracing::instrument(name = "garage.update", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.create(ctx, inputs).await
    }

    #[tracing::instrument(name = "garage.delete", skip_all, fields(operator = %ctx.operator, address = %ctx.address, ?retention))]
    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        let kind = kind_of(&ctx.address)?;
        let (cluster, inputs) = split_cluster(&ctx.address, inputs)?;
        let target = self.target(&ctx.address, &cluster)?;
        match kind {
            Kind::Bucket => bucket::delete(&target, ctx, &inputs, retention).await,
            Kind::S3Key => s3key::delete(&target, ctx, &inputs).await,
            Kind::S3Cluster => Ok(s3cluster::delete()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(shared: Option<GarageCluster>) -> GarageProvider {
        GarageProvider::new("garage", shared).unwrap()
    }

    #[test]
    fn a_resource_without_a_cluster_needs_the_shared_one() {
        let address: ResourceAddress = "bucket.media".parse().unwrap();
        let error = provider(None)
            .target(&address, &ClusterRef::default())
            .unwrap_err();
        assert!(
            error.message.contains("[garage] admin_endpoint"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_resource_naming_its_cluster_uses_it() {
        let shared = GarageCluster {
            admin_endpoint: "http://shared:3903".into(),
            admin_token: SecretString::new("shared-token"),
            s3_endpoint: "http://shared:3900".into(),
        };
        let address: ResourceAddress = "bucket.media".parse().unwrap();
        let inputs = serde_json::json!({
            "alias": "a",
            "admin_endpoint": "http://10.0.0.5:3903",
            "admin_token": "dedicated-token",
            "s3_endpoint": "http://10.0.0.5:3900",
        });
        let (cluster, rest) = split_cluster(&address, &inputs).unwrap();
        assert_eq!(rest, serde_json::json!({"alias": "a"}));
        let target = provider(Some(shared)).target(&address, &cluster).unwrap();
        assert_eq!(target.admin.endpoint(), "http://10.0.0.5:3903");
        assert_eq!(target.s3_endpoint.as_deref(), Some("http://10.0.0.5:3900"));
        let half = ClusterRef {
            admin_endpoint: Some("http://10.0.0.5:3903".into()),
            ..ClusterRef::default()
        };
        assert!(provider(None).target(&address, &half).is_err());
    }

    fn shared_infra(token_file: &std::path::Path) -> GarageInfra {
        toml::from_str(&format!(
            r#"
            admin_endpoint = "http://garage.example.net:3903"
            admin_token_file = "{}"
            s3_endpoint = "https://s3.example.net"
            web_root_domain = "web.example.net"
            "#,
            token_file.display()
        ))
        .unwrap()
    }

    #[test]
    fn the_shared_cluster_comes_from_infra_with_its_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("garage-token");
        std::fs::write(&file, "  the-token\n").unwrap();
        let provider = GarageProvider::from_infra(&shared_infra(&file)).unwrap();
        let shared = provider.shared.as_ref().unwrap();
        assert_eq!(shared.admin_token.expose(), "the-token");
        assert_eq!(shared.s3_endpoint, "https://s3.example.net");
        assert_eq!(provider.region, "garage");
        assert!(!format!("{provider:?}").contains("the-token"));
    }

    #[test]
    fn an_unreadable_or_empty_token_file_is_named() {
        let missing = GarageProvider::from_infra(&shared_infra(std::path::Path::new(
            "/nonexistent/garage-token",
        )))
        .unwrap_err()
        .to_string();
        assert!(missing.contains("/nonexistent/garage-token"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty-token");
        std::fs::write(&empty, "\n").unwrap();
        let error = GarageProvider::from_infra(&shared_infra(&empty))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("empty-token") && error.contains("empty"),
            "{error}"
        );
    }
}
