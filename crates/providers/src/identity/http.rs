//! The one place the services' admin API calls go through: the bearer token, a timeout, and
//! failures that name the service, the endpoint and the HTTP status, never the token.

use fediversity_model::ServiceKind;

use super::error::IdentityError;
use super::sync::ServiceAdmin;
use crate::sensitive::SecretString;

/// The longest part of an unexpected answer quoted in an error.
const QUOTE_LIMIT: usize = 200;

/// A service the sync is signed in to: where, and the bearer token its calls carry.
pub(super) struct Session<'a> {
    /// The service and how the platform signs in to it.
    pub admin: &'a ServiceAdmin,
    /// The bearer token.
    pub token: SecretString,
}

impl Session<'_> {
    /// The service's base address, without a final `/`.
    pub fn base(&self) -> &str {
        self.admin.url.trim_end_matches('/')
    }
}

/// Sends `request` (to `url`) with the session's token; `Ok` only for a 2xx answer.
pub(super) async fn send(
    session: &Session<'_>,
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, IdentityError> {
    let request = request.bearer_auth(session.token.expose());
    let hint = " (check that the admin token is valid and has the admin scopes)";
    call(session.admin.service, url, request, hint).await
}

/// Sends `request` (to `url` of `service`); `Ok` only for a 2xx answer. `refused` is added to
/// the error of a 400, 401 or 403 answer: what to check.
pub(super) async fn call(
    service: ServiceKind,
    url: &str,
    request: reqwest::RequestBuilder,
    refused: &str,
) -> Result<reqwest::Response, IdentityError> {
    let response = request.send().await.map_err(|e| IdentityError::Service {
        service: service.title(),
        url: url.to_owned(),
        problem: format!("did not answer: {}", super::causes(&e)),
        transient: true,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let hint = match status.as_u16() {
        400 | 401 | 403 => refused,
        _ => "",
    };
    Err(IdentityError::Service {
        service: service.title(),
        url: url.to_owned(),
        problem: format!("answered HTTP {status}{hint}: {}", quote(&body)),
        transient: status.is_server_error() || status.as_u16() == 429,
    })
}

/// Parses a JSON answer of `service` from `url`.
pub(super) async fn json<T: serde::de::DeserializeOwned>(
    service: ServiceKind,
    url: &str,
    response: reqwest::Response,
) -> Result<T, IdentityError> {
    response.json().await.map_err(|e| IdentityError::Service {
        service: service.title(),
        url: url.to_owned(),
        problem: format!("answered something that is not the documented JSON: {e}"),
        transient: false,
    })
}

/// The start of an answer, on one line.
fn quote(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(QUOTE_LIMIT) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None if line.is_empty() => "(empty answer)".to_owned(),
        None => line,
    }
}
