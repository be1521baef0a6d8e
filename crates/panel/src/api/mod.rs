//! The JSON API, `/api/v1`: the panel's capabilities for automation (configurations, plans,
//! deployments and their events), with the same tenancy check as the pages.
//!
//! Requests authenticate with `Authorization: Bearer <token>` (tokens are made on the
//! dashboard and act as the user who made them); cookies are not accepted here, so the API
//! needs no CSRF token. Errors are JSON, `{"error": "…"}`, with `problems` (path and message,
//! as `fediversity validate` reports them) for a configuration that is refused.

mod fleet;
mod invitations;
mod openapi;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_model::names::OperatorId;
use fediversity_model::{Problem, Problems, parse_operator_config};
use fediversity_store::{Deployment, DeploymentId, StoredEvent, User};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{bearer_token, id_hash, visible_operator};
use crate::error::PanelError;
use crate::pages::deployments::{Batch, find, next_batch, preview, refuse_if_busy, resume_after};
use crate::pages::operators::latest;
use crate::{AppState, worker};

/// The API's routes, to nest under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route(
            "/operators/{operator}/configurations",
            get(configurations).post(save_configuration),
        )
        .route("/operators/{operator}/plan", get(plan))
        .route(
            "/operators/{operator}/deployments",
            get(deployments).post(deploy),
        )
        .route(
            "/operators/{operator}/deployments/{deployment}",
            get(deployment),
        )
        .route(
            "/operators/{operator}/deployments/{deployment}/events",
            get(events),
        )
        .route(
            "/operators/{operator}/deployments/{deployment}/stream",
            get(stream),
        )
        .route("/fleet/releases", get(fleet::releases).post(fleet::publish))
        .route("/fleet/releases/{release}", get(fleet::release))
        .route("/fleet/releases/{release}/pause", post(fleet::pause))
        .route("/fleet/releases/{release}/resume", post(fleet::resume))
        .route("/invitations", post(invitations::create))
        .fallback(|| async { ApiError::from(PanelError::NotFound) })
}

/// An API error, answered as JSON.
pub enum ApiError {
    /// A page error, with its status and message.
    Panel(PanelError),
    /// Not signed in with a valid token.
    Unauthorised,
    /// A configuration that is refused, with every problem.
    Invalid(Problems),
    /// A request that is wrong as sent, with a message saying what to change.
    BadInput(String),
}

impl From<PanelError> for ApiError {
    fn from(error: PanelError) -> Self {
        Self::Panel(error)
    }
}

impl From<fediversity_store::Error> for ApiError {
    fn from(error: fediversity_store::Error) -> Self {
        Self::Panel(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Unauthorised => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "send `Authorization: Bearer <token>` with a token made on the panel's dashboard"}),
            ),
            Self::Invalid(problems) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": "the configuration is not valid: nothing was saved",
                    "problems": problems.as_slice().iter()
                        .map(|p| json!({"path": p.path, "message": p.message}))
                        .collect::<Vec<_>>(),
                }),
            ),
            Self::BadInput(message) => (StatusCode::BAD_REQUEST, json!({ "error": message })),
            Self::Panel(error) => {
                let status = error.status();
                let message = match &error {
                    PanelError::Internal(detail) => {
                        tracing::error!(error = %detail, "an API request failed");
                        "internal error: it was logged; try again later".to_owned()
                    }
                    PanelError::SignInFirst => return Self::Unauthorised.into_response(),
                    other => other.to_string(),
                };
                (status, json!({ "error": message }))
            }
        };
        (status, Json(body)).into_response()
    }
}

/// The user a bearer token belongs to.
pub struct ApiUser(User);

impl ApiUser {
    fn operator(&self, id: &str) -> Result<OperatorId, ApiError> {
        Ok(visible_operator(&self.0.role, id)?)
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorised)?;
        state
            .store()
            .api_token_user(&id_hash(token))
            .await?
            .map(ApiUser)
            .ok_or(ApiError::Unauthorised)
    }
}

/// Every configuration version, oldest first.
async fn configurations(
    State(state): State<AppState>,
    user: ApiUser,
    Path(operator): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let operator = user.operator(&operator)?;
    let versions: Vec<Value> = state
        .store()
        .configurations(&operator)
        .await?
        .into_iter()
        .map(|c| json!({"version": c.version, "created_at": c.created_at, "config": c.config}))
        .collect();
    Ok(Json(json!(versions)))
}

/// Saves an operator configuration (the JSON document `fediversity apply` reads) as the next
/// version, after the same checks; an unchanged document saves nothing.
async fn save_configuration(
    State(state): State<AppState>,
    user: ApiUser,
    Path(operator): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let operator = user.operator(&operator)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| PanelError::BadRequest("the body is not UTF-8 JSON".to_owned()))?;
    let config = parse_operator_config(text).map_err(ApiError::Invalid)?;
    if config.operator.id != operator {
        let problem = Problem::new(
            "operator.id",
            format!(
                "this is `{}`'s configuration, not `{operator}`'s",
                config.operator.id
            ),
        );
        return Err(ApiError::Invalid(problem.into()));
    }
    let infra = state.infra_of(&operator).await?;
    fediversity_configurator::configure(&config, &infra).map_err(ApiError::Invalid)?;
    let document = serde_json::to_value(&config)
        .map_err(|e| PanelError::internal(format!("serialising a configuration: {e}")))?;
    if let Some((stored, _)) = latest(&state, &operator).await?
        && stored.config == document
    {
        return Ok(Json(json!({"version": stored.version, "saved": false})).into_response());
    }
    let now = SystemClock.now();
    state
        .store()
        .claim_domain(&operator, &config.domain, now)
        .await
        .map_err(PanelError::from)?;
    let version = state
        .store()
        .save_configuration(&operator, &document, now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"version": version, "saved": true})),
    )
        .into_response())
}

/// The plan of the latest configuration version against what is deployed.
async fn plan(
    State(state): State<AppState>,
    user: ApiUser,
    Path(operator): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let operator = user.operator(&operator)?;
    let (stored, config) = latest(&state, &operator).await?.ok_or_else(|| {
        PanelError::Conflict("no configuration is saved yet: POST one first".to_owned())
    })?;
    let infra = state.infra_of(&operator).await?;
    let graph = fediversity_configurator::configure(&config, &infra).map_err(ApiError::Invalid)?;
    let (summary, interrupted) = preview(&state, &graph)
        .await
        .map_err(PanelError::Conflict)?;
    Ok(Json(json!({
        "version": stored.version,
        "interrupted_changes": interrupted,
        "plan": summary,
    })))
}

fn deployment_json(deployment: &Deployment) -> Value {
    json!({
        "id": deployment.id.0,
        "configuration_version": deployment.configuration_version,
        "status": deployment.status.as_str(),
        "created_at": deployment.created_at,
        "started_at": deployment.started_at,
        "finished_at": deployment.finished_at,
        "report": deployment.report,
    })
}

/// The operator's deployments, newest first.
async fn deployments(
    State(state): State<AppState>,
    user: ApiUser,
    Path(operator): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let operator = user.operator(&operator)?;
    let all = state.store().deployments(&operator).await?;
    Ok(Json(json!(
        all.iter().map(deployment_json).collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
struct DeployRequest {
    version: i64,
}

/// Queues a deployment of a configuration version; 202 with its id.
async fn deploy(
    State(state): State<AppState>,
    user: ApiUser,
    Path(operator): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let operator = user.operator(&operator)?;
    let request: DeployRequest = serde_json::from_slice(&body)
        .map_err(|e| PanelError::BadRequest(format!("expected {{\"version\": N}}: {e}")))?;
    refuse_if_busy(&state, &operator).await?;
    let id = worker::enqueue_deployment(state.store(), &operator, request.version, false)
        .await
        .map_err(|error| match error {
            fediversity_store::Error::UnknownConfiguration { .. } => PanelError::NotFound,
            other => other.into(),
        })?;
    let url = format!("/api/v1/operators/{operator}/deployments/{id}");
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id.0, "url": url}))).into_response())
}

/// One deployment, with its report once it ended.
async fn deployment(
    State(state): State<AppState>,
    user: ApiUser,
    Path((operator, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let operator = user.operator(&operator)?;
    Ok(Json(deployment_json(&find(&state, &operator, &id).await?)))
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    after: i64,
}

/// A deployment's events after `?after=` (a sequence number; 0 for all), in order.
async fn events(
    State(state): State<AppState>,
    user: ApiUser,
    Path((operator, id)): Path<(String, String)>,
    Query(since): Query<Since>,
) -> Result<Json<Value>, ApiError> {
    let operator = user.operator(&operator)?;
    let deployment = find(&state, &operator, &id).await?;
    let events: Vec<Value> = state
        .store()
        .events_since(&operator, deployment.id, since.after)
        .await?
        .into_iter()
        .map(|e| event_json(&e))
        .collect();
    Ok(Json(json!(events)))
}

/// A stored event as the API shows it.
fn event_json(stored: &StoredEvent) -> Value {
    json!({"seq": stored.seq, "at": stored.at, "event": stored.event})
}

/// Where an API stream is: `None` once its `done` event is sent.
type Cursor = Option<(AppState, OperatorId, DeploymentId, i64)>;

/// A deployment's events as server-sent events, as they happen: one `event` per stored event
/// (its `seq` as the SSE id, so a client that reconnects with `Last-Event-ID` resumes), then
/// one `done` with the finished deployment; the stream then ends.
async fn stream(
    State(state): State<AppState>,
    user: ApiUser,
    Path((operator, id)): Path<(String, String)>,
    Query(since): Query<Since>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, ApiError> {
    let operator = user.operator(&operator)?;
    let deployment = find(&state, &operator, &id).await?;
    let after = resume_after(&headers, since.after);
    let cursor: Cursor = Some((state, operator, deployment.id, after));
    let batches = futures_util::stream::unfold(cursor, |cursor| async move {
        let (state, operator, id, seen) = cursor?;
        match next_batch(&state, &operator, id, seen).await? {
            Batch::Events(events) => {
                let last = events.last().map_or(seen, |e| e.seq);
                let sse: Vec<_> = events
                    .iter()
                    .map(|e| {
                        Ok(SseEvent::default()
                            .event("event")
                            .id(e.seq.to_string())
                            .data(event_json(e).to_string()))
                    })
                    .collect();
                Some((sse, Some((state, operator, id, last))))
            }
            Batch::Finished(done) => {
                let event = SseEvent::default()
                    .event("done")
                    .data(deployment_json(&done).to_string());
                Some((vec![Ok(event)], None))
            }
        }
    });
    let events = batches.flat_map(futures_util::stream::iter);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
