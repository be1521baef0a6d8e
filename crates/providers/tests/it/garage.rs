//! The Garage provider against real Garage (the testkit starts it on loopback): buckets and
//! keys made, adopted, updated, read and repaired; retention; tenant isolation proved with a
//! real S3 client; an account removed through the engine; failures (unreachable, wrong token,
//! 5xx) classified, retried and converging; and a dedicated three-node cluster initialised.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fediversity_engine::clock::SystemClock;
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::provider::{Deletion, ErrorKind, Outputs, Provider};
use fediversity_engine::retry::RetryPolicy;
use fediversity_engine::{Engine, EngineOptions};
use fediversity_model::Retention;
use fediversity_model::graph::{DesiredGraph, ResourceAddress};
use fediversity_providers::{GarageCluster, GarageProvider, SecretString, sandbox_providers};
use fediversity_testkit::garage::{self, Garage, GarageNode};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{apply, ctx, workspace};

/// The provider with `node` as the shared cluster.
fn shared_provider(node: &GarageNode) -> GarageProvider {
    shared_provider_at(node, &node.admin_endpoint(), node.admin_token())
}

/// The provider with `node` as the shared cluster, reached at `admin_endpoint` with `token`.
fn shared_provider_at(node: &GarageNode, admin_endpoint: &str, token: &str) -> GarageProvider {
    let cluster = GarageCluster {
        admin_endpoint: admin_endpoint.to_owned(),
        admin_token: SecretString::new(token),
        s3_endpoint: node.s3_endpoint(),
    };
    GarageProvider::new(node.region(), Some(cluster)).unwrap()
}

fn bucket_inputs(alias: &str, quota_bytes: u64) -> Value {
    json!({
        "alias": alias,
        "quota_bytes": quota_bytes,
        "website": true,
        "cors_allowed_origins": ["https://social.example.org"],
    })
}

fn key_inputs(name: &str, bucket_id: &str) -> Value {
    json!({
        "name": name,
        "grants": [{"bucket": bucket_id, "read": true, "write": true, "owner": false}],
    })
}

/// Deletes operator alpha's resource at `address`.
async fn delete(
    provider: &GarageProvider,
    address: &str,
    inputs: &Value,
    recorded: &Outputs,
    retention: Retention,
) -> Deletion {
    provider
        .delete(&ctx("alpha", address), inputs, recorded, retention)
        .await
        .unwrap()
}

fn id_of(outputs: &Outputs) -> String {
    outputs.values["id"].as_str().unwrap().to_owned()
}

/// A direct admin API call, as someone working behind the platform's back would make.
async fn admin_call(node: &GarageNode, method: &str, operation: &str, query: &str) -> Value {
    let url = format!("{}/v2/{operation}?{query}", node.admin_endpoint());
    let request = match method {
        "GET" => http().get(url),
        _ => http().post(url).json(&json!({})),
    };
    let response = request
        .bearer_auth(node.admin_token())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{operation}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Every key Garage has, by name.
async fn key_names(node: &GarageNode) -> Vec<String> {
    let keys = admin_call(node, "GET", "ListKeys", "").await;
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

/// One key's view of the S3 API.
struct S3User {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Credentials,
}

impl S3User {
    fn new(node: &GarageNode, key: &Outputs) -> S3User {
        S3User {
            http: http(),
            endpoint: node.s3_endpoint(),
            region: node.region().to_owned(),
            credentials: Credentials::new(
                key.values["access_key_id"].as_str().unwrap(),
                key.values["secret_access_key"].as_str().unwrap(),
            ),
        }
    }

    fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(
            self.endpoint.parse().unwrap(),
            UrlStyle::Path,
            name.to_owned(),
            self.region.clone(),
        )
        .unwrap()
    }

    async fn put(&self, bucket: &str, object: &str, body: &str) -> u16 {
        let bucket = self.bucket(bucket);
        let url = bucket
            .put_object(Some(&self.credentials), object)
            .sign(Duration::from_secs(60));
        let response = self
            .http
            .put(url)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    async fn get(&self, bucket: &str, object: &str) -> (u16, String) {
        let bucket = self.bucket(bucket);
        let url = bucket
            .get_object(Some(&self.credentials), object)
            .sign(Duration::from_secs(60));
        let response = self.http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn list(&self, bucket: &str) -> u16 {
        let bucket = self.bucket(bucket);
        let url = bucket
            .list_objects_v2(Some(&self.credentials))
            .sign(Duration::from_secs(60));
        self.http.get(url).send().await.unwrap().status().as_u16()
    }
}

#[tokio::test]
async fn buckets_and_keys_are_made_adopted_updated_and_read() {
    let garage = Garage::start();
    let provider = shared_provider(&garage);
    let bucket_ctx = ctx("alpha", "bucket.mastodon-media");
    let alias = "fedi-alpha-mastodon-media";

    let inputs = bucket_inputs(alias, 1 << 30);
    let made = provider.create(&bucket_ctx, &inputs).await.unwrap();
    assert_eq!(made.values["alias"], alias);
    // A run that crashed after making it finds it by its alias, and making it again adopts it.
    let found = provider
        .read(&bucket_ctx, &inputs, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.outputs, made);
    assert_eq!(found.inputs, inputs, "what Garage has is what was asked");
    let again = provider.create(&bucket_ctx, &inputs).await.unwrap();
    assert_eq!(again, made);

    // The quota is updated in place.
    let bigger = bucket_inputs(alias, 2 << 30);
    let updated = provider.update(&bucket_ctx, &bigger, &made).await.unwrap();
    assert_eq!(updated, made);
    let info = admin_call(
        &garage,
        "GET",
        "GetBucketInfo",
        &format!("id={}", id_of(&made)),
    )
    .await;
    assert_eq!(info["quotas"]["maxSize"], 2u64 << 30);
    assert_eq!(info["websiteAccess"], true);
    assert_eq!(
        info["corsRules"][0]["AllowedOrigin"],
        json!(["https://social.example.org"])
    );
    let refreshed = provider
        .read(&bucket_ctx, &inputs, Some(&made))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        refreshed.inputs["quota_bytes"],
        2u64 << 30,
        "the change shows as drift from the old inputs"
    );

    // The key: read and write on exactly its bucket, its secret found again after a crash.
    let key_ctx = ctx("alpha", "s3key.mastodon");
    let key = key_inputs("fedi-alpha-mastodon", &id_of(&made));
    let made_key = provider.create(&key_ctx, &key).await.unwrap();
    assert!(made_key.sensitive.contains("secret_access_key"));
    assert!(
        !format!("{made_key:?}").contains(made_key.values["secret_access_key"].as_str().unwrap())
    );
    let found_key = provider.read(&key_ctx, &key, None).await.unwrap().unwrap();
    assert_eq!(
        found_key.outputs, made_key,
        "the secret is recovered from Garage"
    );
    assert_eq!(found_key.inputs, key);
    assert_eq!(provider.create(&key_ctx, &key).await.unwrap(), made_key);
    assert_eq!(
        key_names(&garage).await,
        ["fedi-alpha-mastodon"],
        "one key, not two"
    );

    // A permission granted behind the platform's back is drift, and the next apply removes it.
    let key_id = made_key.values["access_key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    http()
        .post(format!("{}/v2/AllowBucketKey", garage.admin_endpoint()))
        .bearer_auth(garage.admin_token())
        .json(&json!({"bucketId": id_of(&made), "accessKeyId": key_id, "permissions": {"owner": true}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let drifted = provider
        .read(&key_ctx, &key, Some(&made_key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drifted.inputs["grants"][0]["owner"], true);
    provider.update(&key_ctx, &key, &made_key).await.unwrap();
    let repaired = provider
        .read(&key_ctx, &key, Some(&made_key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repaired.inputs, key);
}

#[tokio::test]
async fn a_bucket_deleted_behind_the_platforms_back_reads_as_gone_and_is_made_again() {
    let garage = Garage::start();
    let provider = shared_provider(&garage);
    let bucket_ctx = ctx("alpha", "bucket.pixelfed-media");
    let inputs = bucket_inputs("fedi-alpha-pixelfed-media", 1 << 30);
    let made = provider.create(&bucket_ctx, &inputs).await.unwrap();

    admin_call(
        &garage,
        "POST",
        "DeleteBucket",
        &format!("id={}", id_of(&made)),
    )
    .await;
    assert_eq!(
        provider
            .read(&bucket_ctx, &inputs, Some(&made))
            .await
            .unwrap(),
        None
    );

    let remade = provider.create(&bucket_ctx, &inputs).await.unwrap();
    assert_ne!(id_of(&remade), id_of(&made), "a new bucket");
    assert!(
        provider
            .read(&bucket_ctx, &inputs, Some(&remade))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn operators_are_isolated_and_a_kept_bucket_outlives_its_revoked_key() {
    let garage = Garage::start();
    let provider = shared_provider(&garage);
    let mut keys = BTreeMap::new();
    let mut buckets = BTreeMap::new();
    for operator in ["alpha", "beta"] {
        let alias = format!("fedi-{operator}-mastodon-media");
        let bucket = provider
            .create(
                &ctx(operator, "bucket.mastodon-media"),
                &bucket_inputs(&alias, 1 << 30),
            )
            .await
            .unwrap();
        let key = provider
            .create(
                &ctx(operator, "s3key.mastodon"),
                &key_inputs(&format!("fedi-{operator}-mastodon"), &id_of(&bucket)),
            )
            .await
            .unwrap();
        buckets.insert(operator, (alias, bucket));
        keys.insert(operator, key);
    }
    let alpha = S3User::new(&garage, &keys["alpha"]);
    let beta = S3User::new(&garage, &keys["beta"]);
    let alpha_bucket = &buckets["alpha"].0;

    assert_eq!(alpha.put(alpha_bucket, "media/cat.txt", "meow").await, 200);
    assert_eq!(
        alpha.get(alpha_bucket, "media/cat.txt").await,
        (200, "meow".to_owned())
    );
    assert_eq!(alpha.list(alpha_bucket).await, 200);

    // Operator B's key can neither list, read nor write A's bucket.
    assert_eq!(beta.list(alpha_bucket).await, 403);
    assert_eq!(beta.get(alpha_bucket, "media/cat.txt").await.0, 403);
    assert_eq!(beta.put(alpha_bucket, "media/dog.txt", "woof").await, 403);
    assert_eq!(alpha.get(alpha_bucket, "media/dog.txt").await.0, 404);

    // Turning mastodon off with `keep`: the key is revoked, the bucket and its object stay.
    let key_inputs_alpha = key_inputs("fedi-alpha-mastodon", &id_of(&buckets["alpha"].1));
    let bucket_inputs_alpha = bucket_inputs(alpha_bucket, 1 << 30);
    let revoked = delete(
        &provider,
        "s3key.mastodon",
        &key_inputs_alpha,
        &keys["alpha"],
        Retention::Keep,
    )
    .await;
    assert_eq!(revoked, Deletion::Removed, "the key itself is never kept");
    let kept = delete(
        &provider,
        "bucket.mastodon-media",
        &bucket_inputs_alpha,
        &buckets["alpha"].1,
        Retention::Keep,
    )
    .await;
    match kept {
        Deletion::Kept { note } => assert!(note.contains(alpha_bucket.as_str()), "{note}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alpha.get(alpha_bucket, "media/cat.txt").await.0,
        403,
        "the revoked key no longer works"
    );
    assert_eq!(alpha.put(alpha_bucket, "media/new.txt", "x").await, 403);
    let info = admin_call(
        &garage,
        "GET",
        "GetBucketInfo",
        &format!("globalAlias={alpha_bucket}"),
    )
    .await;
    assert_eq!(info["objects"], 1, "the object is kept");
    assert_eq!(
        info["websiteAccess"],
        json!(false),
        "a kept bucket is no longer served to the public: {info:#}"
    );
    assert!(
        info["corsRules"].is_null() || info["corsRules"] == json!([]),
        "nor open to other sites: {info:#}"
    );

    // Turned on again, the kept bucket is adopted and a new key reads the kept object.
    let bucket = provider
        .create(&ctx("alpha", "bucket.mastodon-media"), &bucket_inputs_alpha)
        .await
        .unwrap();
    assert_eq!(bucket, buckets["alpha"].1, "the same bucket");
    let info = admin_call(
        &garage,
        "GET",
        "GetBucketInfo",
        &format!("globalAlias={alpha_bucket}"),
    )
    .await;
    assert_eq!(
        info["websiteAccess"], bucket_inputs_alpha["website"],
        "turned on again, the bucket is served as its inputs say"
    );
    let key = provider
        .create(&ctx("alpha", "s3key.mastodon"), &key_inputs_alpha)
        .await
        .unwrap();
    assert_ne!(
        key.values["access_key_id"],
        keys["alpha"].values["access_key_id"]
    );
    let again = S3User::new(&garage, &key);
    assert_eq!(
        again.get(alpha_bucket, "media/cat.txt").await,
        (200, "meow".to_owned())
    );
}

#[tokio::test]
async fn retention_delete_empties_and_removes_the_bucket() {
    let garage = Garage::start();
    let provider = shared_provider(&garage);
    let alias = "fedi-alpha-peertube-videos";
    let inputs = bucket_inputs(alias, 1 << 30);
    let bucket = provider
        .create(&ctx("alpha", "bucket.peertube-videos"), &inputs)
        .await
        .unwrap();
    let key_inputs = key_inputs("fedi-alpha-peertube", &id_of(&bucket));
    let key = provider
        .create(&ctx("alpha", "s3key.peertube"), &key_inputs)
        .await
        .unwrap();
    let user = S3User::new(&garage, &key);
    for i in 0..5 {
        assert_eq!(
            user.put(alias, &format!("videos/{i}.mp4"), "frames").await,
            200
        );
    }

    let removed = delete(
        &provider,
        "s3key.peertube",
        &key_inputs,
        &key,
        Retention::Delete,
    )
    .await;
    assert_eq!(removed, Deletion::Removed);
    let removed = delete(
        &provider,
        "bucket.peertube-videos",
        &inputs,
        &bucket,
        Retention::Delete,
    )
    .await;
    assert_eq!(removed, Deletion::Removed);
    assert_eq!(
        provider
            .read(
                &ctx("alpha", "bucket.peertube-videos"),
                &inputs,
                Some(&bucket)
            )
            .await
            .unwrap(),
        None
    );
    assert!(
        key_names(&garage).await.is_empty(),
        "the temporary key is gone too"
    );
    // Deleting what is gone succeeds.
    let again = delete(
        &provider,
        "bucket.peertube-videos",
        &inputs,
        &bucket,
        Retention::Delete,
    )
    .await;
    assert_eq!(again, Deletion::Removed);
}

/// `examples/infra.toml` with a shared Garage at `node` and the sandbox for everything else.
fn infra_with_garage(node: &GarageNode) -> fediversity_model::Infra {
    let text = std::fs::read_to_string(workspace().join("examples/infra.toml")).unwrap();
    let mut infra: toml::Table = toml::from_str(&text).unwrap();
    // Everything but Garage goes to the sandbox, and no mail relay is needed.
    for sandboxed in ["proxmox", "dns", "nix", "smtp"] {
        infra.remove(sandboxed);
    }
    let garage = infra["garage"].as_table().cloned().unwrap();
    let mut garage = garage;
    garage.insert("admin_endpoint".into(), node.admin_endpoint().into());
    infra.insert("garage".into(), garage.into());
    fediversity_model::parse_infra(&toml::to_string(&infra).unwrap()).unwrap()
}

fn engine_with(provider: GarageProvider, root: &Path, retry: RetryPolicy) -> Engine {
    let mut providers = sandbox_providers(root);
    providers.insert(provider.name().to_owned(), Arc::new(provider));
    Engine::new(
        providers,
        Arc::new(MemoryStore::default()),
        Arc::new(SystemClock),
        EngineOptions {
            retry,
            ..EngineOptions::default()
        },
    )
}

#[tokio::test]
async fn an_account_is_applied_repaired_and_deleted_keeping_what_retention_says() {
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let operator_text = std::fs::read_to_string(
        workspace().join("crates/configurator/tests/golden/inputs/all-services.json"),
    )
    .unwrap();
    let operator = fediversity_model::parse_operator_config(&operator_text).unwrap();
    let stored = dir.path().join("example-org/operator-secrets/ldap-bind");
    std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
    std::fs::write(&stored, "bind-password\n").unwrap();
    let graph =
        fediversity_configurator::configure(&operator, &infra_with_garage(&garage)).unwrap();
    assert!(
        graph.resources.values().any(|r| r.provider == "garage"),
        "the graph uses the Garage provider"
    );
    let engine = engine_with(shared_provider(&garage), dir.path(), RetryPolicy::default());

    let report = apply(&engine, &graph).await;
    assert!(report.succeeded(), "{report:#?}");
    let mut buckets: Vec<String> = graph
        .resources
        .iter()
        .filter(|(a, _)| a.to_string().starts_with("bucket."))
        .map(|(_, r)| r.inputs["alias"].as_str().unwrap().to_owned())
        .collect();
    buckets.sort();
    assert_eq!(buckets.len(), 4, "{buckets:?}");
    for alias in &buckets {
        admin_call(
            &garage,
            "GET",
            "GetBucketInfo",
            &format!("globalAlias={alias}"),
        )
        .await;
    }

    // Drift: a bucket deleted behind the platform's back is found missing and made again.
    let info = admin_call(
        &garage,
        "GET",
        "GetBucketInfo",
        "globalAlias=fedi-example-org-pixelfed-media",
    )
    .await;
    admin_call(
        &garage,
        "POST",
        "DeleteBucket",
        &format!("id={}", info["id"].as_str().unwrap()),
    )
    .await;
    let drift = engine.refresh(&graph.operator).await.unwrap();
    let missing: Vec<String> = drift.missing.iter().map(ToString::to_string).collect();
    assert_eq!(missing, ["bucket.pixelfed-media"], "{drift:#?}");
    let repaired = apply(&engine, &graph).await;
    assert!(repaired.succeeded(), "{repaired:#?}");
    admin_call(
        &garage,
        "GET",
        "GetBucketInfo",
        "globalAlias=fedi-example-org-pixelfed-media",
    )
    .await;

    // The account is deleted: every key goes, the buckets of `keep` services stay.
    let nothing = DesiredGraph {
        resources: BTreeMap::new(),
        ..graph.clone()
    };
    let removed = apply(&engine, &nothing).await;
    assert!(removed.succeeded(), "{removed:#?}");
    let kept_buckets: Vec<String> = removed
        .kept
        .keys()
        .map(ToString::to_string)
        .filter(|a| a.starts_with("bucket."))
        .collect();
    assert_eq!(
        kept_buckets,
        [
            "bucket.mastodon-media",
            "bucket.peertube-playlists",
            "bucket.peertube-videos"
        ]
    );
    let address: ResourceAddress = "bucket.mastodon-media".parse().unwrap();
    assert!(
        removed.kept[&address].contains("fedi-example-org-mastodon-media"),
        "{removed:#?}"
    );
    assert!(key_names(&garage).await.is_empty(), "every key is revoked");
    let listed = admin_call(&garage, "GET", "ListBuckets", "").await;
    let mut left: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["globalAliases"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "fedi-example-org-mastodon-media",
            "fedi-example-org-peertube-playlists",
            "fedi-example-org-peertube-videos"
        ]
    );
}

#[tokio::test]
async fn an_unreachable_garage_is_a_transient_failure_naming_it() {
    let garage = Garage::start();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{closed}");
    let provider = shared_provider_at(&garage, &endpoint, garage.admin_token());
    let error = provider
        .create(
            &ctx("alpha", "bucket.media"),
            &bucket_inputs("fedi-alpha-media", 1 << 30),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error:?}");
    assert!(
        error
            .message
            .starts_with(&format!("Garage admin API at {endpoint}: ")),
        "{}",
        error.message
    );
    assert!(
        error.message.to_lowercase().contains("connect"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_permanently_without_showing_it() {
    let garage = Garage::start();
    let provider = shared_provider_at(&garage, &garage.admin_endpoint(), "wrong-poison-token");
    let error = provider
        .create(
            &ctx("alpha", "bucket.media"),
            &bucket_inputs("fedi-alpha-media", 1 << 30),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error:?}");
    assert!(
        error.message.contains(&garage.admin_endpoint()),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("refused the admin token"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("wrong-poison-token"));
    assert!(!error.message.contains(garage.admin_token()));
}

/// A proxy on loopback that answers `503` to the first `failures` connections and forwards the
/// others to `target`. Returns its endpoint.
async fn flaky_proxy(target: u16, failures: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if n < failures {
                    let mut buffer = [0u8; 8192];
                    let _ = client.read(&mut buffer).await;
                    let _ = client
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 11\r\nConnection: close\r\n\r\nmaintenance")
                        .await;
                } else if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (endpoint, seen)
}

fn one_bucket_graph(alias: &str) -> DesiredGraph {
    serde_json::from_value(json!({
        "version": 1,
        "operator": "alpha",
        "retention": {"mastodon": "keep"},
        "resources": {
            "bucket.mastodon-media": {
                "provider": "garage",
                "service": "mastodon",
                "holds_data": true,
                "inputs": bucket_inputs(alias, 1 << 30),
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_garage_answering_503_fails_the_run_transiently_and_the_next_run_converges() {
    let garage = Garage::start();
    let admin_port: u16 = garage
        .admin_endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (endpoint, seen) = flaky_proxy(admin_port, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
    let engine = engine_with(
        shared_provider_at(&garage, &endpoint, garage.admin_token()),
        dir.path(),
        retry,
    );
    let graph = one_bucket_graph("fedi-alpha-mastodon-media");

    // Two attempts, both answered 503: the run fails, naming the endpoint and the status.
    let failed = apply(&engine, &graph).await;
    let address: ResourceAddress = "bucket.mastodon-media".parse().unwrap();
    let why = &failed.failed[&address];
    assert!(why.contains(&endpoint) && why.contains("503"), "{why}");
    assert!(seen.load(Ordering::SeqCst) >= 2, "it was retried");

    // The third answer is a 503 too, then Garage answers: the retry inside the run succeeds.
    let converged = apply(&engine, &graph).await;
    assert!(converged.succeeded(), "{converged:#?}");
    admin_call(
        &garage,
        "GET",
        "GetBucketInfo",
        "globalAlias=fedi-alpha-mastodon-media",
    )
    .await;
    let again = apply(&engine, &graph).await;
    assert!(again.done.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn a_dedicated_cluster_gets_its_layout_and_then_a_replicated_bucket() {
    let cluster = garage::GarageCluster::start(3);
    let first = &cluster.nodes()[0];
    let provider = GarageProvider::new(first.region(), None).unwrap();
    let connection = json!({
        "admin_endpoint": first.admin_endpoint(),
        "admin_token": first.admin_token(),
    });
    let mut layout = json!({
        "zone": garage::ZONE,
        "capacity_bytes": 1u64 << 30,
        "replication_factor": 3,
        "nodes": cluster.nodes().iter().map(GarageNode::rpc_addr).collect::<Vec<_>>(),
    });
    layout
        .as_object_mut()
        .unwrap()
        .extend(connection.as_object().unwrap().clone());
    let cluster_ctx = ctx("alpha", "s3cluster.garage");

    assert_eq!(
        provider.read(&cluster_ctx, &layout, None).await.unwrap(),
        None,
        "no layout yet"
    );
    // A bucket cannot be made before the layout: the cluster says it is unavailable, and the
    // provider says so, transiently, before asking for anything.
    let mut bucket = bucket_inputs("fedi-alpha-mastodon-media", 1 << 30);
    bucket
        .as_object_mut()
        .unwrap()
        .extend(connection.as_object().unwrap().clone());
    bucket["s3_endpoint"] = json!(first.s3_endpoint());
    let bucket_ctx = ctx("alpha", "bucket.mastodon-media");
    let early = provider.create(&bucket_ctx, &bucket).await.unwrap_err();
    assert_eq!(early.kind, ErrorKind::Transient, "{early:?}");
    assert!(
        early.message.starts_with(&format!(
            "Garage cluster at {} is unavailable",
            first.admin_endpoint()
        )),
        "{}",
        early.message
    );

    let made = provider.create(&cluster_ctx, &layout).await.unwrap();
    assert_eq!(made.values["layout_version"], 1);
    let status = admin_call(first, "GET", "GetClusterStatus", "").await;
    for node in status["nodes"].as_array().unwrap() {
        assert_eq!(node["role"]["zone"], garage::ZONE, "{status:#}");
    }
    let found = provider
        .read(&cluster_ctx, &layout, Some(&made))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.inputs["nodes"], layout["nodes"]);
    assert_eq!(
        provider.create(&cluster_ctx, &layout).await.unwrap(),
        made,
        "applying again changes nothing"
    );

    // Then the bucket is made on the operator's own cluster, its inputs naming it.
    let made_bucket = provider.create(&bucket_ctx, &bucket).await.unwrap();
    let mut key = key_inputs("fedi-alpha-mastodon", &id_of(&made_bucket));
    key.as_object_mut()
        .unwrap()
        .extend(connection.as_object().unwrap().clone());
    let made_key = provider
        .create(&ctx("alpha", "s3key.mastodon"), &key)
        .await
        .unwrap();
    let user = S3User::new(first, &made_key);
    assert_eq!(
        user.put("fedi-alpha-mastodon-media", "a.txt", "replicated")
            .await,
        200
    );
    // Replication factor 3 on three nodes: every node stores every partition, and serves the
    // object. Nodes report what they store as they sync the new layout, so wait for it.
    let every_partition_everywhere = |layout: &Value| {
        layout["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().all(|role| role["storedPartitions"] == 256))
    };
    let layout_now = once_settled(
        Duration::from_secs(60),
        || admin_call(first, "GET", "GetClusterLayout", ""),
        every_partition_everywhere,
    )
    .await;
    assert!(
        every_partition_everywhere(&layout_now),
        "every node stores every partition: {layout_now:#}"
    );
    // A node under load may briefly lose its RPC links to the others (Garage then answers
    // 503 "not connected" until it reconnects): what is checked is that every node serves the
    // object once connected.
    for node in cluster.nodes() {
        let reader = S3User::new(node, &made_key);
        let answer = once_settled(
            Duration::from_secs(30),
            || reader.get("fedi-alpha-mastodon-media", "a.txt"),
            |answer| answer.0 != 503,
        )
        .await;
        assert_eq!(answer, (200, "replicated".to_owned()));
    }
    let removed = provider
        .delete(&bucket_ctx, &bucket, &made_bucket, Retention::Delete)
        .await
        .unwrap();
    assert_eq!(removed, Deletion::Removed);
}

/// An HTTP client for the tests' own calls, with the TLS set-up the providers use (reqwest is
/// built without a default TLS provider).
fn http() -> reqwest::Client {
    let tls =
        fediversity_providers::tls::client_config(&fediversity_providers::tls::Trust::default())
            .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// Asks `probe` again every 200 ms until `settled` holds of its answer or `within` has passed,
/// and returns the last answer for the caller to check: for what a cluster reaches only once
/// its nodes have synced.
async fn once_settled<T, F>(
    within: Duration,
    mut probe: impl FnMut() -> F,
    settled: impl Fn(&T) -> bool,
) -> T
where
    F: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = probe().await;
        if settled(&answer) || tokio::time::Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
