//! The inputs of buckets and S3 keys as the configurator writes them, the same for every
//! provider that makes them (the sandbox's and Garage's).

use serde::{Deserialize, Serialize};

/// What a key may do with one bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grant {
    /// The bucket's id (the bucket's `id` output).
    pub bucket: String,
    /// Reading its objects.
    #[serde(default)]
    pub read: bool,
    /// Writing and deleting its objects.
    #[serde(default)]
    pub write: bool,
    /// Changing its settings (never given to a service unless asked).
    #[serde(default)]
    pub owner: bool,
}

/// The inputs of a bucket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BucketInputs {
    /// The bucket's global name: its identity.
    pub alias: String,
    /// The most it may hold, in bytes; `None` is no limit.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    /// Whether its objects are served as a website (public media).
    #[serde(default)]
    pub website: bool,
    /// The origins allowed to read it from a browser.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
}

/// The inputs of an S3 key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct S3KeyInputs {
    /// The key's name: its identity.
    pub name: String,
    /// Its permissions, bucket by bucket.
    #[serde(default)]
    pub grants: Vec<Grant>,
}
