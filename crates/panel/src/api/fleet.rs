//! `/api/v1/fleet`: the hosting provider's view of fleet releases, matching `fediversity fleet
//! status|pause|resume`. Only administrators may use it; an operator's token gets 404, as for
//! every other thing it may not see, so the routes do not reveal that releases exist.

use axum::extract::{Path, State};
use axum::response::Json;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_fleet::rollout::State as RolloutState;
use fediversity_store::{Release, ReleaseId, Role};
use serde_json::{Value, json};

use super::{ApiError, ApiUser};
use crate::AppState;
use crate::error::PanelError;

/// Refuses anyone but an administrator, as a 404.
fn admin_only(user: &ApiUser) -> Result<(), ApiError> {
    if user.0.role == Role::Admin {
        Ok(())
    } else {
        Err(PanelError::NotFound.into())
    }
}

/// A release as JSON, without its infra text (it can be long; the CLI shows none either).
fn release_json(release: &Release) -> Value {
    json!({
        "id": release.id.0,
        "title": release.release.title,
        "severity": release.release.severity.as_str(),
        "deadline": release.release.deadline,
        "state": release.state.as_str(),
        "halt_reason": release.halt_reason,
        "expected_minutes": release.release.expected_minutes,
        "created_at": release.created_at,
        "updated_at": release.updated_at,
    })
}

/// The release `id`, or 404.
async fn known(state: &AppState, id: i64) -> Result<Release, ApiError> {
    match state.store().release(ReleaseId(id)).await {
        Err(fediversity_store::Error::UnknownRelease(_)) => Err(PanelError::NotFound.into()),
        other => Ok(other?),
    }
}

/// Every release, newest first.
pub async fn releases(
    State(state): State<AppState>,
    user: ApiUser,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let releases = state.store().releases().await?;
    Ok(Json(json!(
        releases.iter().map(release_json).collect::<Vec<_>>()
    )))
}

/// One release with every operator's wave, slot and status.
pub async fn release(
    State(state): State<AppState>,
    user: ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let release = known(&state, id).await?;
    let items = state.store().rollout(release.id).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|item| serde_json::to_value(item.item))
        .collect::<Result<_, _>>()
        .map_err(|e| PanelError::internal(format!("serialising a rollout item: {e}")))?;
    let mut body = release_json(&release);
    body["items"] = json!(items);
    Ok(Json(body))
}

/// Pauses a rollout: running deployments finish, nobody new starts.
pub async fn pause(
    state: State<AppState>,
    user: ApiUser,
    id: Path<i64>,
) -> Result<Json<Value>, ApiError> {
    set_state(state, user, id, RolloutState::Paused).await
}

/// Resumes a paused or halted rollout.
pub async fn resume(
    state: State<AppState>,
    user: ApiUser,
    id: Path<i64>,
) -> Result<Json<Value>, ApiError> {
    set_state(state, user, id, RolloutState::Running).await
}

async fn set_state(
    State(state): State<AppState>,
    user: ApiUser,
    Path(id): Path<i64>,
    to: RolloutState,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let release = known(&state, id).await?;
    crate::fleet::set_rollout_state(state.store(), release.id, to, SystemClock.now())
        .await
        .map_err(|e| PanelError::internal(e.to_string()))?;
    Ok(Json(release_json(&known(&state, id).await?)))
}
