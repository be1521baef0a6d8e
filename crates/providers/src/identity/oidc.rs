//! The OpenID Connect side: fetch the issuer's discovery document
//! (`<issuer>/.well-known/openid-configuration`, OpenID Connect Discovery 1.0 §4) over HTTPS
//! with the server's certificate verified and no redirects followed, and check it the way the
//! services' relying-party libraries will: the `issuer` it states is exactly the configured
//! one (§4.3), and the endpoints the services call are present and `https://`.

use fediversity_model::names::HttpsUrl;
use fediversity_model::operator::OidcProvider;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::IdentityOptions;
use super::error::IdentityError;
use super::{causes, tls_cause};

/// The path of the discovery document below the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The fields the services need, each an `https://` address.
const REQUIRED_ENDPOINTS: [&str; 4] = [
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
];

/// An OpenID Connect provider's settings: the operator's [`OidcProvider`] without the client
/// secret, as the `identity.oidc` resource's `oidc` input carries them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer, exactly as its discovery document states it.
    pub issuer: HttpsUrl,
    /// The client id registered for the operator's services.
    pub client_id: String,
    /// The ID-token claim that lists a user's groups.
    pub groups_claim: String,
    /// Members of this group administer every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_group: Option<String>,
}

impl From<&OidcProvider> for OidcSettings {
    fn from(provider: &OidcProvider) -> Self {
        Self {
            issuer: provider.issuer.clone(),
            client_id: provider.client_id.clone(),
            groups_claim: provider.groups_claim.clone(),
            admin_group: provider.admin_group.clone(),
        }
    }
}

/// The endpoints of a checked discovery document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Where users log in.
    pub authorization_endpoint: String,
    /// Where codes become tokens.
    pub token_endpoint: String,
    /// Where a token becomes the user's claims.
    pub userinfo_endpoint: String,
    /// The issuer's signing keys.
    pub jwks_uri: String,
    /// Where users log out (RP-initiated logout), when the issuer offers it.
    pub end_session_endpoint: Option<String>,
}

/// Fetches and checks `issuer`'s discovery document.
pub async fn discover(
    issuer: &HttpsUrl,
    options: &IdentityOptions,
) -> Result<Discovery, IdentityError> {
    let url = format!("{}{DISCOVERY_PATH}", issuer.as_str().trim_end_matches('/'));
    let problem = |problem: String, transient: bool| IdentityError::Discovery {
        url: url.clone(),
        problem,
        transient,
    };
    let http = options.http_client()?;
    let response = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| request_error(&url, &e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(problem(
            format!("answered HTTP {status} instead of the document"),
            status.is_server_error(),
        ));
    }
    let document: Map<String, Value> = response
        .json()
        .await
        .map_err(|e| problem(format!("is not a JSON object: {e}"), false))?;
    check_document(issuer, &document).map_err(|p| problem(p, false))
}

/// The document's endpoints, or what is wrong with it.
fn check_document(issuer: &HttpsUrl, document: &Map<String, Value>) -> Result<Discovery, String> {
    let text = |field: &str| document.get(field).and_then(Value::as_str);
    match text("issuer") {
        Some(stated) if stated == issuer.as_str() => {}
        Some(stated) => {
            return Err(format!(
                "states the issuer `{stated}`, not `{issuer}`: OpenID Connect requires them to be identical (check the issuer URL, including any trailing slash)"
            ));
        }
        None => return Err("has no `issuer`".to_owned()),
    }
    let endpoint = |field: &str| -> Result<String, String> {
        match text(field) {
            Some(url) if url.starts_with("https://") => Ok(url.to_owned()),
            Some(url) => Err(format!(
                "gives `{field}` as `{url}`, which is not https://: tokens must never cross the network in clear"
            )),
            None => Err(format!("has no `{field}`, which the services need")),
        }
    };
    let [
        authorization_endpoint,
        token_endpoint,
        userinfo_endpoint,
        jwks_uri,
    ] = REQUIRED_ENDPOINTS.map(endpoint);
    let end_session_endpoint = match text("end_session_endpoint") {
        Some(_) => Some(endpoint("end_session_endpoint")?),
        None => None,
    };
    Ok(Discovery {
        authorization_endpoint: authorization_endpoint?,
        token_endpoint: token_endpoint?,
        userinfo_endpoint: userinfo_endpoint?,
        jwks_uri: jwks_uri?,
        end_session_endpoint,
    })
}

/// A request that got no answer: a TLS failure (permanent) or a network one (transient).
pub(super) fn request_error(url: &str, error: &reqwest::Error) -> IdentityError {
    let cause = causes(error);
    match tls_cause(error) {
        Some(tls) => IdentityError::Tls {
            url: url.to_owned(),
            cause: tls,
        },
        None if cause.contains("invalid peer certificate") => IdentityError::Tls {
            url: url.to_owned(),
            cause,
        },
        None => IdentityError::Unreachable {
            url: url.to_owned(),
            cause,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer() -> HttpsUrl {
        HttpsUrl::try_from("https://id.example.org/realms/staff").unwrap()
    }

    fn document(changes: Value) -> Map<String, Value> {
        let mut doc = json!({
            "issuer": "https://id.example.org/realms/staff",
            "authorization_endpoint": "https://id.example.org/auth",
            "token_endpoint": "https://id.example.org/token",
            "userinfo_endpoint": "https://id.example.org/userinfo",
            "jwks_uri": "https://id.example.org/jwks",
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                doc.as_object_mut().unwrap().remove(key);
            } else {
                doc[key] = value.clone();
            }
        }
        doc.as_object().unwrap().clone()
    }

    #[test]
    fn a_complete_document_gives_its_endpoints() {
        let found = check_document(&issuer(), &document(json!({}))).unwrap();
        assert_eq!(found.token_endpoint, "https://id.example.org/token");
        assert_eq!(found.end_session_endpoint, None);
    }

    #[test]
    fn the_issuer_must_match_exactly() {
        let wrong = document(json!({"issuer": "https://id.example.org/realms/staff/"}));
        let error = check_document(&issuer(), &wrong).unwrap_err();
        assert!(
            error.contains("not `https://id.example.org/realms/staff`"),
            "{error}"
        );
    }

    #[test]
    fn missing_and_plain_http_endpoints_are_named() {
        let error = check_document(&issuer(), &document(json!({"jwks_uri": null}))).unwrap_err();
        assert!(error.contains("no `jwks_uri`"), "{error}");
        let plain = document(json!({"end_session_endpoint": "http://id.example.org/logout"}));
        let error = check_document(&issuer(), &plain).unwrap_err();
        assert!(
            error.contains("`end_session_endpoint`") && error.contains("not https://"),
            "{error}"
        );
    }
}
