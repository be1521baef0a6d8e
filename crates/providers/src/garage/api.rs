//! The parts of Garage's admin API v2 this provider uses, as typed requests and answers.
//!
//! Field names are Garage's (camelCase on the wire). Answers keep only the fields the provider
//! reads: Garage adds fields between versions, and unknown fields are ignored.

use serde::{Deserialize, Serialize};

use crate::sensitive::SecretString;

/// `GetClusterHealth`: whether the cluster can serve requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    /// `healthy`, `degraded` (serving, some nodes down) or `unavailable`.
    pub status: String,
    pub storage_nodes: usize,
    pub storage_nodes_up: usize,
    pub partitions: usize,
    pub partitions_quorum: usize,
}

/// `GetClusterStatus`: the nodes the cluster knows and their roles.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub nodes: Vec<Node>,
}

/// One node of [`ClusterStatus`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The node's public key, hex: its identity in the layout.
    pub id: String,
    /// The RPC address it is reached at (`ip:port`), when known.
    #[serde(default)]
    pub addr: Option<String>,
    /// Its role in the current layout; `None` for a node that stores nothing yet.
    #[serde(default)]
    pub role: Option<Role>,
}

/// A node's role: where it is and how much it stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub zone: String,
    /// Bytes; `None` for a gateway node.
    #[serde(default)]
    pub capacity: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `GetClusterLayout`: the current layout version and what is staged on top of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLayout {
    pub version: u64,
    #[serde(default)]
    pub staged_role_changes: Vec<serde_json::Value>,
}

/// One role change of `UpdateClusterLayout`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleChange {
    pub id: String,
    #[serde(flatten)]
    pub role: Role,
}

/// `GetBucketInfo`, and the answer of every call that changes a bucket.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketInfo {
    pub id: String,
    #[serde(default)]
    pub website_access: bool,
    #[serde(default)]
    pub cors_rules: Option<Vec<CorsRule>>,
    pub quotas: Quotas,
    #[serde(default)]
    pub objects: i64,
}

/// A bucket's limits; `None` is no limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    pub max_size: Option<u64>,
    pub max_objects: Option<u64>,
}

/// A CORS rule, with the S3 names Garage uses for it in JSON too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(rename = "AllowedOrigin", default)]
    pub allowed_origins: Vec<String>,
    #[serde(rename = "AllowedMethod", default)]
    pub allowed_methods: Vec<String>,
    #[serde(rename = "AllowedHeader", default)]
    pub allowed_headers: Vec<String>,
    #[serde(rename = "ExposeHeader", default)]
    pub expose_headers: Vec<String>,
    #[serde(
        rename = "MaxAgeSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age_seconds: Option<i64>,
}

/// Website access of `UpdateBucket`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteAccess {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_document: Option<String>,
}

/// The body of `UpdateBucket`: every setting the provider manages, set at once.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketUpdate {
    pub website_access: WebsiteAccess,
    pub quotas: Quotas,
    /// An empty list removes the bucket's CORS configuration.
    pub cors_rules: Vec<CorsRule>,
}

/// One key of `ListKeys`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyListItem {
    pub id: String,
    pub name: String,
}

/// `GetKeyInfo` and `CreateKey`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub access_key_id: String,
    /// Only when asked for (`showSecretKey`), or on creation.
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
    #[serde(default)]
    pub buckets: Vec<KeyBucket>,
}

/// A bucket a key has permissions on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBucket {
    pub id: String,
    pub permissions: Permissions,
}

/// What a key may do with a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub owner: bool,
}

impl Permissions {
    /// Whether it allows anything.
    pub fn any(self) -> bool {
        self.read || self.write || self.owner
    }

    /// The permissions `self` has and `wanted` does not.
    pub fn beyond(self, wanted: Permissions) -> Permissions {
        Permissions {
            read: self.read && !wanted.read,
            write: self.write && !wanted.write,
            owner: self.owner && !wanted.owner,
        }
    }
}

/// The body of `AllowBucketKey` and `DenyBucketKey`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionChange<'a> {
    pub bucket_id: &'a str,
    pub access_key_id: &'a str,
    pub permissions: Permissions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_beyond_what_is_wanted() {
        let all = Permissions {
            read: true,
            write: true,
            owner: true,
        };
        let read_write = Permissions {
            read: true,
            write: true,
            owner: false,
        };
        assert_eq!(
            all.beyond(read_write),
            Permissions {
                owner: true,
                ..Permissions::default()
            }
        );
        assert!(!read_write.beyond(all).any());
    }

    #[test]
    fn cors_rules_use_the_s3_names() {
        let rule = CorsRule {
            allowed_origins: vec!["https://a.example".into()],
            allowed_methods: vec!["GET".into()],
            allowed_headers: vec![],
            expose_headers: vec![],
            max_age_seconds: None,
        };
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["AllowedOrigin"][0], "https://a.example");
        assert_eq!(serde_json::from_value::<CorsRule>(json).unwrap(), rule);
    }
}
