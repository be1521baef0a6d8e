//! Emptying a bucket through the S3 API, which is the only way to delete objects: Garage's
//! admin API removes only empty buckets.
//!
//! The provider makes a temporary key, granted read and write on just that bucket, lists and
//! deletes the objects in batches, and deletes the key afterwards, also when emptying failed.
//! The key's name is derived from the bucket, so a key left by a run that crashed meanwhile is
//! found and deleted by the next one.

use std::time::Duration;

use fediversity_engine::{ProviderError, ProviderResult};
use rusty_s3::actions::{ListObjectsV2, ObjectIdentifier};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::Target;
use super::api::{PermissionChange, Permissions};
use super::client::cause_of;

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// Objects listed and deleted per request (S3's own limit).
const BATCH: usize = 1000;

/// The name of the temporary key that empties the bucket `alias`.
fn emptying_key_name(alias: &str) -> String {
    format!("fediversity-empty-{alias}")
}

/// Deletes every object of the bucket, and its unfinished uploads.
pub(super) async fn empty_bucket(
    target: &Target,
    bucket_id: &str,
    alias: &str,
) -> ProviderResult<()> {
    let endpoint = target.s3_endpoint.as_deref().ok_or_else(|| {
        ProviderError::permanent(format!(
            "bucket `{alias}` holds objects and no S3 endpoint is known to empty it: give the \
             bucket an `s3_endpoint` input, or set [garage] s3_endpoint in infra.toml"
        ))
    })?;
    let admin = &target.admin;
    let name = emptying_key_name(alias);
    for leftover in admin.keys_named(&name).await? {
        admin.delete_key(&leftover).await?;
    }
    let key = admin.create_key(&name).await?;
    let emptied = async {
        let secret = key.secret_access_key.as_ref().ok_or_else(|| {
            ProviderError::permanent(format!(
                "Garage admin API at {} made a key without telling its secret",
                admin.endpoint()
            ))
        })?;
        admin
            .allow(&PermissionChange {
                bucket_id,
                access_key_id: &key.access_key_id,
                permissions: Permissions {
                    read: true,
                    write: true,
                    owner: false,
                },
            })
            .await?;
        let client = S3Client {
            http: &target.http,
            endpoint,
            bucket: s3_bucket(endpoint, alias, &target.region)?,
            credentials: Credentials::new(&key.access_key_id, secret.expose()),
        };
        client.delete_all().await?;
        admin.cleanup_uploads(bucket_id).await?;
        Ok::<(), ProviderError>(())
    }
    .await;
    let revoked = admin.delete_key(&key.access_key_id).await;
    emptied?;
    revoked?;
    Ok(())
}

/// The bucket `alias` at `endpoint`, addressed by path (`endpoint/alias/…`), which works with
/// any Garage configuration.
fn s3_bucket(endpoint: &str, alias: &str, region: &str) -> ProviderResult<Bucket> {
    let bad = |why: String| {
        ProviderError::permanent(format!("the S3 endpoint `{endpoint}` is not usable: {why}"))
    };
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    Bucket::new(url, UrlStyle::Path, alias.to_owned(), region.to_owned())
        .map_err(|e| bad(e.to_string()))
}

/// One bucket through the S3 API.
struct S3Client<'a> {
    http: &'a reqwest::Client,
    endpoint: &'a str,
    bucket: Bucket,
    credentials: Credentials,
}

impl S3Client<'_> {
    /// Lists and deletes objects until none is left.
    async fn delete_all(&self) -> ProviderResult<()> {
        loop {
            let mut list = self.bucket.list_objects_v2(Some(&self.credentials));
            list.with_max_keys(BATCH);
            let url = list.sign(SIGNED_FOR);
            let text = self.send(self.http.get(url), "ListObjectsV2").await?;
            let listed = ListObjectsV2::parse_response(&text).map_err(|e| {
                ProviderError::permanent(format!(
                    "S3 API at {}: cannot read the object list of `{}`: {e}",
                    self.endpoint,
                    self.bucket.name()
                ))
            })?;
            if listed.contents.is_empty() {
                return Ok(());
            }
            let objects: Vec<ObjectIdentifier> = listed
                .contents
                .into_iter()
                .map(|object| ObjectIdentifier::new(object.key))
                .collect();
            let delete = self
                .bucket
                .delete_objects(Some(&self.credentials), objects.iter());
            let url = delete.sign(SIGNED_FOR);
            let (body, md5) = delete.body_with_md5();
            let request = self.http.post(url).header("content-md5", md5).body(body);
            let text = self.send(request, "DeleteObjects").await?;
            if text.contains("<Error>") {
                return Err(ProviderError::transient(format!(
                    "S3 API at {}: some objects of `{}` could not be deleted; trying again may help",
                    self.endpoint,
                    self.bucket.name()
                )));
            }
        }
    }

    /// Sends a signed request; 5xx and connection failures are transient.
    async fn send(&self, request: reqwest::RequestBuilder, action: &str) -> ProviderResult<String> {
        let unreachable = |e: reqwest::Error| {
            ProviderError::transient(format!("S3 API at {}: {}", self.endpoint, cause_of(&e)))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        let message = format!(
            "S3 API at {} refused {action} on `{}` (HTTP {}): {}",
            self.endpoint,
            self.bucket.name(),
            status.as_u16(),
            s3_error_code(&text)
        );
        Err(if status.is_server_error() {
            ProviderError::transient(message)
        } else {
            ProviderError::permanent(message)
        })
    }
}

/// The `<Code>` of an S3 error answer, which names the error without quoting anything secret.
fn s3_error_code(text: &str) -> &str {
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("no error code", |(code, _)| code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_codes_are_read() {
        assert_eq!(
            s3_error_code("<Error><Code>AccessDenied</Code><Message>x</Message></Error>"),
            "AccessDenied"
        );
        assert_eq!(s3_error_code("<html>"), "no error code");
    }

    #[test]
    fn buckets_are_addressed_by_path() {
        let bucket = s3_bucket("http://127.0.0.1:3900", "fedi-a-media", "garage").unwrap();
        assert_eq!(
            bucket.base_url().as_str(),
            "http://127.0.0.1:3900/fedi-a-media/"
        );
        assert!(s3_bucket("not a url", "b", "garage").is_err());
    }
}
