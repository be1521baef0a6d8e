//! A small Proxmox VE API client: token auth, the `{"data": …}` envelope, Proxmox's error
//! shape (the message in the HTTP reason phrase, `errors` on parameter checks), the
//! transient/permanent split, and waiting for UPID tasks.
//!
//! Parameters go in the query for `GET`/`DELETE` and form-encoded in the body for
//! `POST`/`PUT`, as the API expects. No secret is ever part of a URL, a log or a message: the
//! token travels only in the `Authorization` header.

use std::time::Duration;

use fediversity_engine::ProviderError;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::sensitive::SecretString;
use crate::tls::{self, Trust};

/// Parameters of one request, in order.
pub(crate) type Params = Vec<(&'static str, String)>;

/// A failed API call: the provider error, and the HTTP status when there was an answer.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub status: Option<StatusCode>,
    pub error: ProviderError,
}

impl ApiFailure {
    /// Whether Proxmox said the thing asked about does not exist (a `500` whose message says
    /// so: Proxmox has no `404` for a missing VM).
    pub fn is_not_found(&self) -> bool {
        self.status == Some(StatusCode::INTERNAL_SERVER_ERROR)
            && self.error.message.contains("does not exist")
    }
}

impl From<ApiFailure> for ProviderError {
    fn from(failure: ApiFailure) -> Self {
        failure.error
    }
}

/// How long the client waits.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// One HTTP request.
    pub request: Duration,
    /// Between two looks at a task or a booting VM.
    pub poll: Duration,
    /// One task (a clone of a large disk takes minutes).
    pub task: Duration,
    /// A started VM's guest agent to answer and its host key to appear.
    pub boot: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            task: Duration::from_secs(30 * 60),
            boot: Duration::from_secs(10 * 60),
        }
    }
}

/// The client of one Proxmox VE cluster.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    endpoint: String,
    authorization: SecretString,
    pub timing: Timing,
}

/// Percent-encodes every byte but the unreserved ones: for path segments (a UPID holds `:`
/// and `@`) and for parameters Proxmox takes `urlencoded` (`sshkeys`).
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Client {
    /// A client of `endpoint` (`https://host:8006`) with the token `token_id` / `secret`.
    pub fn new(
        endpoint: &str,
        token_id: &str,
        secret: &SecretString,
        trust: &Trust,
        timing: Timing,
    ) -> Result<Self, String> {
        let tls = tls::client_config(trust)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timing.request)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot set up the HTTPS client: {e}"))?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            authorization: SecretString::new(format!("PVEAPIToken={token_id}={}", secret.expose())),
            timing,
        })
    }

    /// `GET path` (below `/api2/json`).
    pub async fn get(&self, path: &str, params: Params) -> Result<Value, ApiFailure> {
        self.call(Method::GET, path, params).await
    }

    /// `POST path` with form parameters.
    pub async fn post(&self, path: &str, params: Params) -> Result<Value, ApiFailure> {
        self.call(Method::POST, path, params).await
    }

    /// `PUT path` with form parameters.
    pub async fn put(&self, path: &str, params: Params) -> Result<Value, ApiFailure> {
        self.call(Method::PUT, path, params).await
    }

    /// `DELETE path` with query parameters.
    pub async fn delete(&self, path: &str, params: Params) -> Result<Value, ApiFailure> {
        self.call(Method::DELETE, path, params).await
    }

    async fn call(&self, method: Method, path: &str, params: Params) -> Result<Value, ApiFailure> {
        let what = format!("{method} {path}");
        let url = format!("{}/api2/json{path}", self.endpoint);
        let request = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, self.authorization.expose());
        let request = if matches!(method, Method::POST | Method::PUT) {
            request.form(&params)
        } else {
            request.query(&params)
        };
        tracing::debug!(request = %what, "Proxmox VE API call");
        let response = request.send().await.map_err(|e| self.unsent(&what, &e))?;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let body: Value = response.json().await.map_err(|e| ApiFailure {
            status: Some(status),
            error: ProviderError::transient(format!(
                "Proxmox VE at {} answered {what} with an unreadable body: {e}",
                self.endpoint
            )),
        })?;
        if status.is_success() {
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
        Err(self.refused(&what, status, reason, &body))
    }

    /// The failure of a request that got no answer.
    fn unsent(&self, what: &str, error: &reqwest::Error) -> ApiFailure {
        let cause = chain(error);
        let message = format!(
            "Proxmox VE at {} did not answer {what}: {cause}",
            self.endpoint
        );
        let error = if is_certificate_error(error, &cause) {
            ProviderError::permanent(format!(
                "{message} (the server's certificate is not the one configured: check \
                 [proxmox] ca_file or the pinned fingerprint)"
            ))
        } else {
            ProviderError::transient(message)
        };
        ApiFailure {
            status: None,
            error,
        }
    }

    /// The failure of a request Proxmox answered with an error status.
    fn refused(
        &self,
        what: &str,
        status: StatusCode,
        reason: Option<String>,
        body: &Value,
    ) -> ApiFailure {
        let reason = reason
            .or_else(|| body["message"].as_str().map(|m| m.trim().to_owned()))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let details = body["errors"]
            .as_object()
            .map(|errors| {
                let listed: Vec<String> = errors
                    .iter()
                    .map(|(name, problem)| {
                        format!("{name}: {}", problem.as_str().unwrap_or_default().trim())
                    })
                    .collect();
                format!(" ({})", listed.join("; "))
            })
            .unwrap_or_default();
        let message = format!(
            "Proxmox VE at {} refused {what}: {} {reason}{details}",
            self.endpoint,
            status.as_u16()
        );
        let error = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::permanent(format!(
                "{message}: check [proxmox] token_id and token_secret_file, and the token's \
                 privileges"
            )),
            s if s.is_server_error() => ProviderError::transient(message),
            _ => ProviderError::permanent(message),
        };
        ApiFailure {
            status: Some(status),
            error,
        }
    }

    /// Waits for the task `upid` on `node` to finish; a failed task's error carries its exit
    /// status and the tail of its log.
    pub async fn wait_task(&self, node: &str, upid: &str) -> Result<(), ProviderError> {
        let path = format!("/nodes/{node}/tasks/{}", percent_encode(upid));
        let deadline = tokio::time::Instant::now() + self.timing.task;
        loop {
            let status = self.get(&format!("{path}/status"), Vec::new()).await?;
            if status["status"] == "stopped" {
                let exit = status["exitstatus"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned();
                if exit == "OK" || exit.starts_with("WARNINGS") {
                    return Ok(());
                }
                return Err(self.task_failed(&path, upid, &exit).await);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::transient(format!(
                    "Proxmox VE task {upid} did not finish within {} s",
                    self.timing.task.as_secs()
                )));
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }

    async fn task_failed(&self, path: &str, upid: &str, exit: &str) -> ProviderError {
        const TAIL: usize = 10;
        let log = self
            .get(
                &format!("{path}/log"),
                vec![("start", "0".to_owned()), ("limit", "1000".to_owned())],
            )
            .await;
        let lines: Vec<String> = match &log {
            Ok(Value::Array(lines)) => lines
                .iter()
                .filter_map(|l| l["t"].as_str().map(str::to_owned))
                .collect(),
            _ => vec!["(the task log could not be read)".to_owned()],
        };
        let tail = lines[lines.len().saturating_sub(TAIL)..].join(" | ");
        let message =
            format!("Proxmox VE task {upid} failed with exit status `{exit}`; log tail: {tail}");
        // A task that timed out waiting for a lock may pass on a later try.
        if exit.contains("got timeout") || exit.contains("locked") {
            ProviderError::transient(message)
        } else {
            ProviderError::permanent(message)
        }
    }
}

/// An error and its sources, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Whether the request failed because the server's certificate was refused: that will not
/// pass by trying again. The rustls error is looked for in the source chain and, where a
/// layer boxed it out of reach, in the chain's text.
fn is_certificate_error(error: &reqwest::Error, cause: &str) -> bool {
    if cause.contains("invalid peer certificate") || cause.contains("not the pinned one") {
        return true;
    }
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(inner) = source {
        let rustls_error = inner.downcast_ref::<rustls::Error>().or_else(|| {
            inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|e| e.downcast_ref::<rustls::Error>())
        });
        if matches!(
            rustls_error,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::General(_))
        ) {
            return true;
        }
        source = inner.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_leaves_only_unreserved_bytes() {
        assert_eq!(
            percent_encode("ssh-ed25519 AAAA+/= me@host"),
            "ssh-ed25519%20AAAA%2B%2F%3D%20me%40host"
        );
        assert_eq!(percent_encode("UPID:pve1:1:"), "UPID%3Apve1%3A1%3A");
    }
}
