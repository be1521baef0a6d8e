//! Buckets: one per service purpose, found by its global alias (`fedi-<operator>-<service>-…`,
//! unique to the operator), with website access, CORS for GET from the service's site and a
//! size quota. Retention `keep` leaves the bucket and its objects where they are, and turning
//! the service on again adopts it by its alias; `delete` empties it and removes it.

use fediversity_engine::provider::{CallContext, Deletion, Outputs};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use serde_json::{Map, Value, json};

use super::api::{BucketInfo, BucketUpdate, CorsRule, Quotas, WebsiteAccess};
use super::{NAME, Target, s3};
use crate::inputs::parse_inputs;
use crate::outputs::outputs;
use crate::s3_inputs::BucketInputs;

/// The page Garage's website endpoint serves for a directory.
const INDEX_DOCUMENT: &str = "index.html";

/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE_SECONDS: i64 = 3600;

/// The settings of `UpdateBucket` the inputs ask for.
fn update(inputs: &BucketInputs) -> BucketUpdate {
    let cors_rules = if inputs.cors_allowed_origins.is_empty() {
        Vec::new()
    } else {
        vec![CorsRule {
            allowed_origins: inputs.cors_allowed_origins.clone(),
            allowed_methods: vec!["GET".to_owned(), "HEAD".to_owned()],
            allowed_headers: vec!["*".to_owned()],
            expose_headers: vec!["ETag".to_owned()],
            max_age_seconds: Some(CORS_MAX_AGE_SECONDS),
        }]
    };
    BucketUpdate {
        website_access: WebsiteAccess {
            enabled: inputs.website,
            index_document: inputs.website.then(|| INDEX_DOCUMENT.to_owned()),
        },
        quotas: Quotas {
            max_size: inputs.quota_bytes,
            max_objects: None,
        },
        cors_rules,
    }
}

fn bucket_outputs(bucket: &BucketInfo, alias: &str) -> Outputs {
    outputs([("id", json!(bucket.id)), ("alias", json!(alias))])
}

/// Makes the bucket, or adopts the one with its alias (made by an earlier, crashed run, or
/// kept when the service was turned off), and sets its website access, quota and CORS.
pub(super) async fn apply(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Outputs> {
    let inputs: BucketInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    target.check_health().await?;
    let admin = &target.admin;
    let bucket = match admin.bucket_by_alias(&inputs.alias).await? {
        Some(found) => found,
        None => match admin.create_bucket(&inputs.alias).await {
            Ok(made) => made,
            // Made meanwhile by a run that crashed after asking: adopt it.
            Err(e) if e.code() == Some("BucketAlreadyExists") => admin
                .bucket_by_alias(&inputs.alias)
                .await?
                .ok_or_else(|| ProviderError::from(e))?,
            Err(e) => return Err(e.into()),
        },
    };
    let bucket = admin.update_bucket(&bucket.id, &update(&inputs)).await?;
    tracing::info!(bucket = %inputs.alias, id = %bucket.id, "bucket ready");
    Ok(bucket_outputs(&bucket, &inputs.alias))
}

/// The bucket as Garage has it, by its alias; `None` when no bucket has the alias (deleted
/// behind the platform's back: the next apply makes it again).
pub(super) async fn read(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Option<(Map<String, Value>, Outputs)>> {
    let inputs: BucketInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    let Some(bucket) = target.admin.bucket_by_alias(&inputs.alias).await? else {
        return Ok(None);
    };
    let origins: Vec<&String> = bucket
        .cors_rules
        .iter()
        .flatten()
        .filter(|rule| rule.allowed_methods.iter().any(|m| m == "GET"))
        .flat_map(|rule| &rule.allowed_origins)
        .collect();
    let observed = Map::from_iter([
        ("alias".to_owned(), json!(inputs.alias)),
        ("quota_bytes".to_owned(), json!(bucket.quotas.max_size)),
        ("website".to_owned(), json!(bucket.website_access)),
        ("cors_allowed_origins".to_owned(), json!(origins)),
    ]);
    Ok(Some((observed, bucket_outputs(&bucket, &inputs.alias))))
}

/// `keep`: leaves the bucket and says where it is; `delete`: empties it and removes it.
pub(super) async fn delete(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
    retention: Retention,
) -> ProviderResult<Deletion> {
    let inputs: BucketInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    target.check_health().await?;
    let admin = &target.admin;
    let Some(bucket) = admin.bucket_by_alias(&inputs.alias).await? else {
        return Ok(Deletion::Removed);
    };
    match retention {
        Retention::Keep => {
            // Website access is Garage's anonymous read path: a kept bucket must not go on
            // serving its media to anyone once the service is off.
            let closed = BucketUpdate {
                website_access: WebsiteAccess {
                    enabled: false,
                    index_document: None,
                },
                cors_rules: Vec::new(),
                ..update(&inputs)
            };
            admin.update_bucket(&bucket.id, &closed).await?;
            Ok(Deletion::Kept {
                note: format!(
                    "bucket `{}` (id {}) is kept with its {} objects on the Garage cluster at {}, \
                     closed to the public; no key of the service can reach it any more",
                    inputs.alias,
                    bucket.id,
                    bucket.objects,
                    admin.endpoint()
                ),
            })
        }
        Retention::Delete => {
            // Garage's object counters lag behind writes, so they cannot say whether the bucket
            // is empty: Garage's refusal to delete it can.
            match admin.delete_bucket(&bucket.id).await {
                Err(e) if e.code() == Some("BucketNotEmpty") => {
                    s3::empty_bucket(target, &bucket.id, &inputs.alias).await?;
                    admin.delete_bucket(&bucket.id).await?;
                }
                deleted => deleted?,
            }
            tracing::info!(bucket = %inputs.alias, id = %bucket.id, "bucket emptied and deleted");
            Ok(Deletion::Removed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_inputs() {
        let inputs: BucketInputs = serde_json::from_value(json!({
            "alias": "fedi-a-mastodon-media",
            "quota_bytes": 1024,
            "website": true,
            "cors_allowed_origins": ["https://social.example.org"],
        }))
        .unwrap();
        let update = serde_json::to_value(update(&inputs)).unwrap();
        assert_eq!(
            update["quotas"],
            json!({"maxSize": 1024, "maxObjects": null})
        );
        assert_eq!(
            update["websiteAccess"],
            json!({"enabled": true, "indexDocument": "index.html"})
        );
        assert_eq!(
            update["corsRules"][0]["AllowedOrigin"],
            json!(["https://social.example.org"])
        );
        assert_eq!(
            update["corsRules"][0]["AllowedMethod"],
            json!(["GET", "HEAD"])
        );
    }

    #[test]
    fn no_origins_means_no_cors() {
        let inputs: BucketInputs = serde_json::from_value(json!({"alias": "fedi-a-b"})).unwrap();
        let update = serde_json::to_value(update(&inputs)).unwrap();
        assert_eq!(update["corsRules"], json!([]));
        assert_eq!(update["websiteAccess"], json!({"enabled": false}));
    }
}
