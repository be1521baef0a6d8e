//! The discovery document (OpenID Connect Discovery 1.0) and the JWKS it points to.

use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

use super::{SCOPES, keys};
use crate::AppState;
use crate::error::PanelError;

/// What the provider offers, for relying parties to configure themselves.
fn document(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oidc/authorize"),
        "token_endpoint": format!("{issuer}/oidc/token"),
        "userinfo_endpoint": format!("{issuer}/oidc/userinfo"),
        "jwks_uri": format!("{issuer}/oidc/jwks"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
            "preferred_username", "name", "email", "email_verified", "groups",
            super::claims::PEERTUBE_ROLE_CLAIM
        ],
        "authorization_response_iss_parameter_supported": true,
    })
}

pub(crate) async fn configuration(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.inner.options.issuer()))
}

pub(crate) async fn jwks(State(state): State<AppState>) -> Result<Response, PanelError> {
    Ok(Json(keys::jwks(&state).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_under_the_issuer() {
        let doc = document("https://panel.example.net");
        for field in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
        ] {
            let url = doc[field].as_str().unwrap();
            assert!(
                url.starts_with("https://panel.example.net/oidc/"),
                "{field}: {url}"
            );
        }
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    }
}
