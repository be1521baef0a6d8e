//! The one place the services' admin API calls go through: the bearer token, a timeout, and
//! failures that name the service, the endpoint and the HTTP status, never the token.

use super::error::IdentityError;
use super::sync::ServiceAdmin;

/// The longest part of an unexpected answer quoted in an error.
const QUOTE_LIMIT: usize = 200;

/// Sends `request` (to `url`) with `admin`'s token; `Ok` only for a 2xx answer.
pub(super) async fn send(
    admin: &ServiceAdmin,
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, IdentityError> {
    let service = admin.service.title();
    let response = request
        .bearer_auth(admin.token.expose())
        .send()
        .await
        .map_err(|e| IdentityError::Service {
            service,
            url: url.to_owned(),
            problem: format!("did not answer: {}", super::causes(&e)),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let hint = match status.as_u16() {
        401 | 403 => " (check that the admin token is valid and has the admin scopes)",
        _ => "",
    };
    Err(IdentityError::Service {
        service,
        url: url.to_owned(),
        problem: format!("answered HTTP {status}{hint}: {}", quote(&body)),
    })
}

/// Parses a JSON answer from `url`.
pub(super) async fn json<T: serde::de::DeserializeOwned>(
    admin: &ServiceAdmin,
    url: &str,
    response: reqwest::Response,
) -> Result<T, IdentityError> {
    response.json().await.map_err(|e| IdentityError::Service {
        service: admin.service.title(),
        url: url.to_owned(),
        problem: format!("answered something that is not the documented JSON: {e}"),
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
