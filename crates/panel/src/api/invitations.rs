//! `/api/v1/invitations`: invitations to sign up made by automation (e.g. the hosting
//! provider's billing system, when a customer pays). Only administrators may use it; an
//! operator's token gets 404, as for the fleet routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::json;

use super::fleet::admin_only;
use super::{ApiError, ApiUser};
use crate::AppState;
use crate::invitations::invite;

/// The body of `POST /api/v1/invitations`; unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvitationBody {
    #[serde(default)]
    note: String,
}

/// Makes an invitation and answers its one-time link (201), which is not shown again.
pub async fn create(
    State(state): State<AppState>,
    user: ApiUser,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin_only(&user)?;
    let body: InvitationBody = if body.is_empty() {
        InvitationBody {
            note: String::new(),
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadInput(format!("the body is not an invitation request: {e}"))
        })?
    };
    let made = invite(&state, &body.note).await?;
    let reply = json!({
        "id": made.id.0,
        "note": made.note,
        "link": made.link,
        "expires_at": made.expires_at,
    });
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}
