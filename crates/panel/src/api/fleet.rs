//! `/api/v1/fleet`: the hosting provider's fleet releases, matching `fediversity fleet
//! release|status|pause|resume`. Only administrators may use it; an operator's token gets 404,
//! as for every other thing it may not see, so the routes do not reveal that releases exist.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Json, Response};
use chrono::{DateTime, Utc};
use fediversity_fleet::rollout::State as RolloutState;
use fediversity_fleet::schedule::Severity;
use fediversity_store::{Release, ReleaseId, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiUser};
use crate::AppState;
use crate::error::PanelError;
use crate::fleet_release::{self, PublishError, ReleaseRequest};

/// Refuses anyone but an administrator, as a 404.
pub(super) fn admin_only(user: &ApiUser) -> Result<(), ApiError> {
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
    crate::fleet::set_rollout_state(state.store(), release.id, to, state.now())
        .await
        .map_err(|e| PanelError::internal(e.to_string()))?;
    Ok(Json(release_json(&known(&state, id).await?)))
}

/// The body of `POST /api/v1/fleet/releases`: the flags of `fediversity fleet release`, with
/// the same defaults, and the infra.toml as text. Unknown fields are refused, so that a
/// misspelt option is not silently left at its default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    infra: String,
    title: String,
    severity: Severity,
    #[serde(default)]
    deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    canaries: Vec<String>,
    #[serde(default = "default_batch")]
    batch: usize,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_max_failure_rate")]
    max_failure_rate: f64,
    #[serde(default = "default_expected_minutes")]
    expected_minutes: u32,
    #[serde(default)]
    dry_run: bool,
}

fn default_batch() -> usize {
    fleet_release::DEFAULT_BATCH
}

fn default_concurrency() -> usize {
    fleet_release::DEFAULT_CONCURRENCY
}

fn default_max_failure_rate() -> f64 {
    fleet_release::DEFAULT_MAX_FAILURE_RATE
}

fn default_expected_minutes() -> u32 {
    fleet_release::DEFAULT_EXPECTED_MINUTES
}

impl From<PublishBody> for ReleaseRequest {
    fn from(body: PublishBody) -> Self {
        Self {
            infra_toml: body.infra,
            title: body.title,
            severity: body.severity,
            deadline: body.deadline,
            canaries: body.canaries,
            batch: body.batch,
            concurrency: body.concurrency,
            max_failure_rate: body.max_failure_rate,
            expected_minutes: body.expected_minutes,
            dry_run: body.dry_run,
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        if error.is_bad_input() {
            Self::BadInput(error.to_string())
        } else {
            PanelError::internal(error.to_string()).into()
        }
    }
}

/// Publishes a release, as `fediversity fleet release` does: 201 with its id, its URL (also as
/// `Location`) and its fleet summary, or, for a dry run, 200 with the summary alone and nothing
/// stored.
pub async fn publish(
    State(state): State<AppState>,
    user: ApiUser,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin_only(&user)?;
    let body: PublishBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadInput(format!("the body is not a release request: {e}")))?;
    let request = ReleaseRequest::from(body);
    let published =
        fleet_release::publish(state.store(), state.platform(), &request, state.now()).await?;
    Ok(match published.id {
        None => Json(json!({"summary": published.summary})).into_response(),
        Some(id) => {
            let url = format!("/api/v1/fleet/releases/{}", id.0);
            let body = json!({"id": id.0, "url": url, "summary": published.summary});
            (StatusCode::CREATED, [(LOCATION, url)], Json(body)).into_response()
        }
    })
}
