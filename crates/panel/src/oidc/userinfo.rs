//! `GET|POST /oidc/userinfo`: the claims about the user an access token was issued for.
//!
//! Only `Authorization: Bearer` authenticates here: a session cookie is never read, so a page
//! on another site cannot use the browser's session to read a user's details.

use axum::extract::State;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::claims::user_claims;
use super::{no_store, oauth_error};
use crate::AppState;
use crate::auth::{bearer_token, id_hash};
use crate::error::PanelError;

pub(crate) async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PanelError> {
    let grant = match bearer_token(&headers) {
        Some(token) => {
            state
                .store()
                .oidc_access_token(&id_hash(token), state.now())
                .await?
        }
        None => None,
    };
    let Some(grant) = grant else {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is missing, unknown, expired or revoked",
        );
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return Ok(response);
    };
    Ok(no_store(
        StatusCode::OK,
        Value::Object(user_claims(&grant.user, &grant.scope)),
    ))
}
