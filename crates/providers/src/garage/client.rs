//! A client of one Garage cluster's admin API v2: bearer-token authentication, JSON in and out,
//! and failures classified once, here, for every kind.
//!
//! No message this module makes carries the admin token or a secret key: errors name the
//! endpoint, the operation and what Garage answered (its error code and message, which hold
//! names and ids, never secrets).

use std::time::Duration;

use fediversity_engine::ProviderError;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    BucketInfo, BucketUpdate, ClusterHealth, ClusterLayout, ClusterStatus, KeyInfo, KeyListItem,
    PermissionChange, RoleChange,
};
use crate::sensitive::SecretString;

/// The longest a piece of an unexpected answer quoted in an error may be.
const QUOTE_LIMIT: usize = 200;

/// Why a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No answer: connection refused or reset, a timeout, a name that does not resolve.
    #[error("Garage admin API at {endpoint}: {cause}")]
    Unreachable {
        /// The admin API's base URL.
        endpoint: String,
        /// What went wrong, without the URL.
        cause: String,
    },
    /// 401 or 403: the token is wrong, or lacks a scope.
    #[error(
        "Garage admin API at {endpoint} refused the admin token (HTTP {status}): check the token \
         configured for this cluster ([garage] admin_token_file in infra.toml for the shared one)"
    )]
    TokenRefused {
        /// The admin API's base URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },
    /// 5xx: Garage (or a proxy in front of it) failed for now.
    #[error("Garage admin API at {endpoint} failed {operation} (HTTP {status}): {message}")]
    Server {
        /// The admin API's base URL.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// Garage's message, or the start of the answer.
        message: String,
    },
    /// Another 4xx: Garage refused the request.
    #[error(
        "Garage admin API at {endpoint} refused {operation} (HTTP {status}, {code}): {message}"
    )]
    Refused {
        /// The admin API's base URL.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// Garage's error code (`NoSuchBucket`, `BucketAlreadyExists`, …).
        code: String,
        /// Garage's message.
        message: String,
    },
    /// A success whose body is not what the API documents: another version of Garage?
    #[error(
        "Garage admin API at {endpoint} answered {operation} with something unexpected ({cause}): \
         is it Garage 2.x?"
    )]
    BadAnswer {
        /// The admin API's base URL.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// Why the answer could not be read.
        cause: String,
    },
}

impl AdminError {
    /// Garage's error code, for a refused request.
    pub fn code(&self) -> Option<&str> {
        match self {
            AdminError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the thing asked about does not exist: Garage said so with one of its `NoSuch…`
    /// codes. A bare 404 (a proxy, a wrong port or path prefix) is not taken for "gone", or a
    /// delete would claim success and a read would make the platform create again.
    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|code| code.starts_with("NoSuch"))
    }
}

impl From<AdminError> for ProviderError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Unreachable { .. } | AdminError::Server { .. } => {
                ProviderError::transient(error.to_string())
            }
            AdminError::TokenRefused { .. }
            | AdminError::Refused { .. }
            | AdminError::BadAnswer { .. } => ProviderError::permanent(error.to_string()),
        }
    }
}

/// A result of an admin API call.
pub type AdminResult<T> = Result<T, AdminError>;

/// Garage's error body: `{"code": …, "message": …, …}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// The admin API of one cluster.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    endpoint: String,
    token: SecretString,
}

impl AdminClient {
    /// A client of the admin API at `endpoint` (`http://host:3903`), authenticated with `token`.
    pub fn new(http: reqwest::Client, endpoint: &str, token: SecretString) -> Self {
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The admin API's base URL, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `operation` and reads its answer as `T`.
    async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        operation: &'static str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> AdminResult<T> {
        let url = format!("{}/v2/{operation}", self.endpoint);
        let mut request = self
            .http
            .request(method, url)
            .query(query)
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            return Err(self.failure(operation, status, &text));
        }
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|e| AdminError::BadAnswer {
            endpoint: self.endpoint.clone(),
            operation,
            cause: crate::inputs::without_values(&e.to_string()),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &[(&str, &str)],
    ) -> AdminResult<T> {
        self.call(Method::GET, operation, query, None::<&()>).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &[(&str, &str)],
        body: &(impl Serialize + Sync),
    ) -> AdminResult<T> {
        self.call(Method::POST, operation, query, Some(body)).await
    }

    fn unreachable(&self, error: &reqwest::Error) -> AdminError {
        AdminError::Unreachable {
            endpoint: self.endpoint.clone(),
            cause: cause_of(error),
        }
    }

    fn failure(&self, operation: &'static str, status: StatusCode, text: &str) -> AdminError {
        let endpoint = self.endpoint.clone();
        let code = status.as_u16();
        let parsed: Option<ErrorBody> = serde_json::from_str(text).ok();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return AdminError::TokenRefused {
                endpoint,
                status: code,
            };
        }
        if status.is_server_error() {
            return AdminError::Server {
                endpoint,
                operation,
                status: code,
                message: parsed.map_or_else(|| quote(text), |b| b.message),
            };
        }
        match parsed {
            Some(body) => AdminError::Refused {
                endpoint,
                operation,
                status: code,
                code: body.code,
                message: body.message,
            },
            None => AdminError::Refused {
                endpoint,
                operation,
                status: code,
                code: status.canonical_reason().unwrap_or("error").to_owned(),
                message: quote(text),
            },
        }
    }

    // ---- Cluster ----

    /// `GetClusterHealth`.
    pub async fn health(&self) -> AdminResult<ClusterHealth> {
        self.get("GetClusterHealth", &[]).await
    }

    /// `GetClusterStatus`.
    pub async fn status(&self) -> AdminResult<ClusterStatus> {
        self.get("GetClusterStatus", &[]).await
    }

    /// `GetClusterLayout`.
    pub async fn layout(&self) -> AdminResult<ClusterLayout> {
        self.get("GetClusterLayout", &[]).await
    }

    /// `UpdateClusterLayout`: stages role changes.
    pub async fn stage_roles(&self, roles: &[RoleChange]) -> AdminResult<ClusterLayout> {
        self.post(
            "UpdateClusterLayout",
            &[],
            &serde_json::json!({ "roles": roles }),
        )
        .await
    }

    /// `ApplyClusterLayout`: makes the staged changes layout `version`.
    pub async fn apply_layout(&self, version: u64) -> AdminResult<serde::de::IgnoredAny> {
        self.post(
            "ApplyClusterLayout",
            &[],
            &serde_json::json!({ "version": version }),
        )
        .await
    }

    // ---- Buckets ----

    /// `GetBucketInfo` by global alias; `None` when no bucket has it.
    pub async fn bucket_by_alias(&self, alias: &str) -> AdminResult<Option<BucketInfo>> {
        found(self.get("GetBucketInfo", &[("globalAlias", alias)]).await)
    }

    /// `CreateBucket` with a global alias.
    pub async fn create_bucket(&self, alias: &str) -> AdminResult<BucketInfo> {
        self.post(
            "CreateBucket",
            &[],
            &serde_json::json!({ "globalAlias": alias }),
        )
        .await
    }

    /// `UpdateBucket`: website access, quotas and CORS rules.
    pub async fn update_bucket(&self, id: &str, update: &BucketUpdate) -> AdminResult<BucketInfo> {
        self.post("UpdateBucket", &[("id", id)], update).await
    }

    /// `CleanupIncompleteUploads` of every age.
    pub async fn cleanup_uploads(&self, bucket_id: &str) -> AdminResult<serde::de::IgnoredAny> {
        self.post(
            "CleanupIncompleteUploads",
            &[],
            &serde_json::json!({ "bucketId": bucket_id, "olderThanSecs": 0 }),
        )
        .await
    }

    /// `DeleteBucket`; the bucket must be empty.
    pub async fn delete_bucket(&self, id: &str) -> AdminResult<()> {
        self.post::<serde::de::IgnoredAny>("DeleteBucket", &[("id", id)], &serde_json::json!({}))
            .await
            .map(drop)
    }

    // ---- Keys ----

    /// The ids of every key named `name` (Garage does not make names unique).
    pub async fn keys_named(&self, name: &str) -> AdminResult<Vec<String>> {
        let keys: Vec<KeyListItem> = self.get("ListKeys", &[]).await?;
        Ok(keys
            .into_iter()
            .filter(|k| k.name == name)
            .map(|k| k.id)
            .collect())
    }

    /// `GetKeyInfo` with its secret; `None` when there is no such key.
    pub async fn key_with_secret(&self, id: &str) -> AdminResult<Option<KeyInfo>> {
        found(
            self.get("GetKeyInfo", &[("id", id), ("showSecretKey", "true")])
                .await,
        )
    }

    /// `CreateKey` named `name`; the answer holds its secret.
    pub async fn create_key(&self, name: &str) -> AdminResult<KeyInfo> {
        self.post("CreateKey", &[], &serde_json::json!({ "name": name }))
            .await
    }

    /// `DeleteKey`; deleting a key that is gone succeeds.
    pub async fn delete_key(&self, id: &str) -> AdminResult<()> {
        let deleted = self
            .post::<serde::de::IgnoredAny>("DeleteKey", &[("id", id)], &serde_json::json!({}))
            .await;
        found(deleted).map(drop)
    }

    /// `AllowBucketKey`.
    pub async fn allow(&self, change: &PermissionChange<'_>) -> AdminResult<()> {
        self.post::<serde::de::IgnoredAny>("AllowBucketKey", &[], change)
            .await
            .map(drop)
    }

    /// `DenyBucketKey`.
    pub async fn deny(&self, change: &PermissionChange<'_>) -> AdminResult<()> {
        self.post::<serde::de::IgnoredAny>("DenyBucketKey", &[], change)
            .await
            .map(drop)
    }
}

/// A "not found" answer as `None`.
fn found<T>(result: AdminResult<T>) -> AdminResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What went wrong in a request, from the error's causes, without the URL (which the message
/// names as the endpoint already).
pub fn cause_of(error: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    if error.is_timeout() {
        causes.push("timed out".to_owned());
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        // The URL holds the endpoint and ids, never the token (a header) or a secret key.
        causes.push(error.to_string());
    }
    causes.join(": ")
}

/// The start of an unexpected answer, on one line.
fn quote(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty answer)".to_owned();
    }
    match one_line.char_indices().nth(QUOTE_LIMIT) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

/// The HTTP client every cluster shares: timeouts on every call, so a hung Garage is a
/// transient failure and never a hung run; HTTPS endpoints are checked against the public web
/// PKI roots.
pub fn http_client() -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(&crate::tls::Trust::default())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> AdminClient {
        AdminClient::new(
            http_client().unwrap(),
            "http://garage.test:3903/",
            SecretString::new("poison-token"),
        )
    }

    #[test]
    fn failures_are_classified() {
        let c = client();
        let refused = c.failure("ListKeys", StatusCode::FORBIDDEN, "{}");
        assert!(matches!(
            refused,
            AdminError::TokenRefused { status: 403, .. }
        ));
        let server = c.failure(
            "ListKeys",
            StatusCode::SERVICE_UNAVAILABLE,
            "<html>busy</html>",
        );
        assert_eq!(
            ProviderError::from(server).kind,
            fediversity_engine::provider::ErrorKind::Transient
        );
        let missing = c.failure(
            "GetBucketInfo",
            StatusCode::NOT_FOUND,
            r#"{"code":"NoSuchBucket","message":"Bucket not found: x","region":"garage","path":"/"}"#,
        );
        assert!(missing.is_not_found());
        let elsewhere = c.failure("GetBucketInfo", StatusCode::NOT_FOUND, "<h1>Not Found</h1>");
        assert!(
            !elsewhere.is_not_found(),
            "a 404 that is not Garage's answer says nothing about the bucket"
        );
        let error = ProviderError::from(missing);
        assert_eq!(
            error.kind,
            fediversity_engine::provider::ErrorKind::Permanent
        );
        assert_eq!(
            error.message,
            "Garage admin API at http://garage.test:3903 refused GetBucketInfo (HTTP 404, NoSuchBucket): Bucket not found: x"
        );
    }

    #[test]
    fn the_token_never_shows() {
        let shown = format!("{:?}", client());
        assert!(!shown.contains("poison-token"), "{shown}");
    }

    #[test]
    fn long_answers_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(quote(&long).chars().count(), QUOTE_LIMIT + 1);
        assert_eq!(quote("  \n"), "(empty answer)");
    }
}
