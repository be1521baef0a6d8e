//! Access keys: one per service, found by its name (`fedi-<operator>-<service>`), with
//! exactly the permissions its grants give on exactly the granted buckets: a permission Garage
//! has beyond them (on a granted bucket or any other) is denied. The secret half is recovered
//! from Garage (`showSecretKey`) when a crashed run made the key, and is a sensitive output.
//! Deleting the key revokes the service's access whatever the retention: a kept bucket is
//! kept by the bucket resource.

use std::collections::BTreeMap;

use fediversity_engine::provider::{CallContext, Deletion, Outputs};
use fediversity_engine::{ProviderError, ProviderResult};
use serde_json::{Map, Value, json};

use super::api::{KeyInfo, PermissionChange, Permissions};
use super::{NAME, Target};
use crate::inputs::parse_inputs;
use crate::outputs::outputs;
use crate::s3_inputs::{Grant, S3KeyInputs};

fn permissions(grant: &Grant) -> Permissions {
    Permissions {
        read: grant.read,
        write: grant.write,
        owner: grant.owner,
    }
}

fn key_outputs(key: &KeyInfo, address: &str) -> ProviderResult<Outputs> {
    let secret = key.secret_access_key.as_ref().ok_or_else(|| {
        ProviderError::permanent(format!(
            "{address}: Garage did not give the secret of key {}",
            key.access_key_id
        ))
    })?;
    let mut outputs = outputs([
        ("access_key_id", json!(key.access_key_id)),
        ("secret_access_key", json!(secret.expose())),
    ]);
    outputs.sensitive.insert("secret_access_key".to_owned());
    Ok(outputs)
}

/// The key named `name`, with its secret, if there is one. Should there be several (made by
/// hand), the first in Garage's order is the one this resource uses.
async fn find(target: &Target, name: &str) -> ProviderResult<Option<KeyInfo>> {
    for id in target.admin.keys_named(name).await? {
        if let Some(key) = target.admin.key_with_secret(&id).await? {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Makes the key, or adopts the one with its name, and sets its permissions to the grants.
pub(super) async fn apply(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Outputs> {
    let inputs: S3KeyInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    target.check_health().await?;
    let key = match find(target, &inputs.name).await? {
        Some(key) => key,
        None => target.admin.create_key(&inputs.name).await?,
    };
    converge_grants(target, &key, &inputs.grants).await?;
    tracing::info!(key = %inputs.name, access_key_id = %key.access_key_id, "key ready");
    key_outputs(&key, &ctx.address.to_string())
}

/// Allows what the grants give and denies whatever else the key may do.
async fn converge_grants(target: &Target, key: &KeyInfo, grants: &[Grant]) -> ProviderResult<()> {
    let wanted: BTreeMap<&str, Permissions> = grants
        .iter()
        .map(|g| (g.bucket.as_str(), permissions(g)))
        .collect();
    for bucket in &key.buckets {
        let extra = bucket
            .permissions
            .beyond(wanted.get(bucket.id.as_str()).copied().unwrap_or_default());
        if extra.any() {
            target
                .admin
                .deny(&PermissionChange {
                    bucket_id: &bucket.id,
                    access_key_id: &key.access_key_id,
                    permissions: extra,
                })
                .await?;
        }
    }
    for (bucket_id, permissions) in wanted {
        let has = key
            .buckets
            .iter()
            .find(|b| b.id == bucket_id)
            .map(|b| b.permissions)
            .unwrap_or_default();
        if permissions.beyond(has).any() {
            target
                .admin
                .allow(&PermissionChange {
                    bucket_id,
                    access_key_id: &key.access_key_id,
                    permissions,
                })
                .await?;
        }
    }
    Ok(())
}

/// The key as Garage has it, by its name, with its grants in the order the inputs list them
/// (so that the same grants are no drift).
pub(super) async fn read(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Option<(Map<String, Value>, Outputs)>> {
    let inputs: S3KeyInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    let Some(key) = find(target, &inputs.name).await? else {
        return Ok(None);
    };
    let position = |bucket: &str| {
        inputs
            .grants
            .iter()
            .position(|g| g.bucket == bucket)
            .unwrap_or(usize::MAX)
    };
    let mut grants: Vec<Grant> = key
        .buckets
        .iter()
        .filter(|b| b.permissions.any())
        .map(|b| Grant {
            bucket: b.id.clone(),
            read: b.permissions.read,
            write: b.permissions.write,
            owner: b.permissions.owner,
        })
        .collect();
    grants.sort_by(|a, b| (position(&a.bucket), &a.bucket).cmp(&(position(&b.bucket), &b.bucket)));
    let observed = Map::from_iter([
        ("name".to_owned(), json!(inputs.name)),
        ("grants".to_owned(), json!(grants)),
    ]);
    Ok(Some((
        observed,
        key_outputs(&key, &ctx.address.to_string())?,
    )))
}

/// Deletes every key with the resource's name: the service's access ends here.
pub(super) async fn delete(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Deletion> {
    let inputs: S3KeyInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    target.check_health().await?;
    for id in target.admin.keys_named(&inputs.name).await? {
        target.admin.delete_key(&id).await?;
        tracing::info!(key = %inputs.name, access_key_id = %id, "key deleted");
    }
    Ok(Deletion::Removed)
}
