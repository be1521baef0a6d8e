//! The plan preview, deploying, and a deployment's page with its live progress over SSE.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use fediversity_engine::events::Event;
use fediversity_engine::report::Report;
use fediversity_engine::{Engine, EngineOptions};
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;
use fediversity_store::{Deployment, DeploymentId, DeploymentStatus, StoredEvent};
use futures_util::Stream;
use serde::Deserialize;

use super::operators::{Chrome, latest, page};
use crate::auth::{Posted, SignedIn};
use crate::error::PanelError;
use crate::words::{self, PlanLine, ProgressLine, ReportView};
use crate::{AppState, worker};

/// How often a live stream looks for new events.
const POLL: Duration = Duration::from_millis(300);

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    chrome: Chrome,
    operator: String,
    version: i64,
    headline: String,
    lines: Vec<PlanLine>,
    interrupted: usize,
    problem: Option<String>,
}

/// What deploying the latest configuration would do, in words, with the button to do it.
pub async fn plan(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let Some((stored, config)) = latest(&state, &operator).await? else {
        return Ok(Redirect::to(&format!("/operators/{operator}/configure")).into_response());
    };
    let mut view = PlanPage {
        chrome: Chrome::of(&user),
        operator: operator.to_string(),
        version: stored.version,
        headline: String::new(),
        lines: Vec::new(),
        interrupted: 0,
        problem: None,
    };
    let infra = state.infra_of(&operator).await?;
    let graph = fediversity_configurator::configure(&config, &infra)
        .map_err(|problems| format!("This configuration cannot be deployed here: {problems}"));
    let previewed = match graph {
        Ok(graph) => preview(&state, &graph).await,
        Err(problem) => Err(problem),
    };
    match previewed {
        Ok((summary, interrupted)) => {
            (view.headline, view.lines) = words::plan(&summary);
            view.interrupted = interrupted;
        }
        Err(problem) => view.problem = Some(problem),
    }
    page(StatusCode::OK, &view)
}

/// The engine's plan for `graph` against what is recorded; nothing is changed.
pub async fn preview(
    state: &AppState,
    graph: &fediversity_model::graph::DesiredGraph,
) -> Result<(fediversity_engine::plan::PlanSummary, usize), String> {
    let providers = (state.platform().providers)(graph)?;
    let store = std::sync::Arc::new(state.store().clone());
    let engine = Engine::new(
        providers,
        store,
        std::sync::Arc::new(fediversity_engine::clock::SystemClock),
        EngineOptions::default(),
    );
    let (plan, interrupted) = engine.preview(graph).await.map_err(|e| e.to_string())?;
    Ok((plan.summary(), interrupted))
}

#[derive(Deserialize)]
pub struct DeployForm {
    version: i64,
}

/// Queues a deployment of the version whose plan was shown, and shows its progress.
pub async fn deploy(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
    Posted(form): Posted<DeployForm>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let deployments = state.store().deployments(&operator).await?;
    if let Some(busy) = deployments.iter().find(|d| {
        matches!(
            d.status,
            DeploymentStatus::Queued | DeploymentStatus::Running
        )
    }) {
        return Err(PanelError::Conflict(format!(
            "Deployment {} is still under way: wait for it to finish before deploying again.",
            busy.id
        )));
    }
    refuse_if_busy(&state, &operator).await?;
    let deployment = worker::enqueue_deployment(state.store(), &operator, form.version, false)
        .await
        .map_err(|error| match error {
            fediversity_store::Error::UnknownConfiguration { .. } => PanelError::NotFound,
            other => other.into(),
        })?;
    Ok(Redirect::to(&format!("/operators/{operator}/deployments/{deployment}")).into_response())
}

/// Refuses a new deployment while one is queued or running.
pub async fn refuse_if_busy(state: &AppState, operator: &OperatorId) -> Result<(), PanelError> {
    let deployments = state.store().deployments(operator).await?;
    match deployments.iter().find(|d| {
        matches!(
            d.status,
            DeploymentStatus::Queued | DeploymentStatus::Running
        )
    }) {
        Some(busy) => Err(PanelError::Conflict(format!(
            "Deployment {} is still under way: wait for it to finish first.",
            busy.id
        ))),
        None => Ok(()),
    }
}

/// The deployment `id` of `operator`, or 404.
pub async fn find(
    state: &AppState,
    operator: &OperatorId,
    id: &str,
) -> Result<Deployment, PanelError> {
    let id = id.parse::<i64>().map_err(|_| PanelError::NotFound)?;
    state
        .store()
        .deployments(operator)
        .await?
        .into_iter()
        .find(|d| d.id == DeploymentId(id))
        .ok_or(PanelError::NotFound)
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    chrome: Chrome,
    operator: String,
    id: i64,
    version: i64,
    status: &'static str,
    lines: Vec<ProgressLine>,
    last_seq: i64,
    report: Option<ReportView>,
}

/// A deployment: its progress so far and, while it runs, the live stream of the rest.
pub async fn show(
    State(state): State<AppState>,
    user: SignedIn,
    Path((operator, id)): Path<(String, String)>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let deployment = find(&state, &operator, &id).await?;
    let events = state
        .store()
        .events_since(&operator, deployment.id, 0)
        .await?;
    let mut timing = Timing::new(&deployment);
    let lines = events.iter().filter_map(|e| timing.line(e)).collect();
    let view = DeploymentPage {
        chrome: Chrome::of(&user),
        operator: operator.to_string(),
        id: deployment.id.0,
        version: deployment.configuration_version,
        status: deployment.status.as_str(),
        lines,
        last_seq: events.last().map_or(0, |e| e.seq),
        report: report_of(&deployment),
    };
    page(StatusCode::OK, &view)
}

/// The report of a finished deployment, in words.
fn report_of(deployment: &Deployment) -> Option<ReportView> {
    let stored = deployment.report.as_ref()?;
    if let Some(error) = worker::report_error(stored) {
        return Some(ReportView {
            succeeded: false,
            headline: format!("Failed before any change was made: {error}"),
            details: Vec::new(),
        });
    }
    serde_json::from_value::<Report>(stored.clone())
        .ok()
        .map(|report| words::report(&report))
}

/// Tells how long the deployment and each resource's step have taken.
struct Timing {
    start: i64,
    started: BTreeMap<ResourceAddress, i64>,
}

impl Timing {
    fn new(deployment: &Deployment) -> Self {
        Self {
            start: deployment.started_at.unwrap_or(deployment.created_at),
            started: BTreeMap::new(),
        }
    }

    fn line(&mut self, stored: &StoredEvent) -> Option<ProgressLine> {
        let took = match &stored.event {
            Event::Started { address, .. } => {
                self.started.insert(address.clone(), stored.at);
                None
            }
            Event::Succeeded { address, .. } | Event::Failed { address, .. } => {
                self.started.get(address).map(|at| stored.at - at)
            }
            _ => None,
        };
        words::progress(&stored.event, stored.at - self.start, took)
    }
}

#[derive(Template)]
#[template(path = "progress_line.html")]
struct LineFragment<'a> {
    line: &'a ProgressLine,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportFragment<'a> {
    report: &'a ReportView,
}

#[derive(Deserialize)]
pub struct Since {
    #[serde(default)]
    after: i64,
}

/// The deployment's progress as server-sent events: `step` events carry one line of HTML
/// each, and a last `done` event the report; the stream then ends. A browser that reconnects
/// sends the last id it saw and gets what came after.
pub async fn events(
    State(state): State<AppState>,
    user: SignedIn,
    Path((operator, id)): Path<(String, String)>,
    Query(since): Query<Since>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PanelError> {
    let operator = user.operator(&operator)?;
    let deployment = find(&state, &operator, &id).await?;
    let after = resume_after(&headers, since.after);
    let stream = futures_util::stream::unfold(
        Live {
            state,
            operator,
            timing: Timing::new(&deployment),
            deployment,
            after,
            seen: 0,
            done: false,
        },
        Live::next,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a live stream is.
struct Live {
    state: AppState,
    operator: OperatorId,
    deployment: Deployment,
    timing: Timing,
    /// What the client has seen.
    after: i64,
    /// What has been read (to time the steps the client saw before it reconnected).
    seen: i64,
    done: bool,
}

impl Live {
    /// The HTML lines of the events the client has not seen yet.
    fn lines(&mut self, events: &[StoredEvent]) -> String {
        let mut html = String::new();
        for stored in events {
            self.seen = stored.seq;
            let line = self.timing.line(stored);
            if stored.seq <= self.after {
                continue;
            }
            self.after = stored.seq;
            if let Some(line) = line.and_then(|line| LineFragment { line: &line }.render().ok()) {
                html.push_str(&line);
            }
        }
        // An SSE data line ends at a carriage return.
        html.replace('\r', "")
    }

    /// The next SSE event, waiting for the deployment to move on; `None` once the report is
    /// sent, the deployment is gone, or the server shuts down.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if self.done {
                return None;
            }
            match next_batch(&self.state, &self.operator, self.deployment.id, self.seen).await? {
                Batch::Events(events) => {
                    let html = self.lines(&events);
                    if !html.is_empty() {
                        let event = SseEvent::default()
                            .event("step")
                            .id(self.after.to_string())
                            .data(html);
                        return Some((Ok(event), self));
                    }
                }
                Batch::Finished(current) => {
                    self.done = true;
                    let report = report_of(&current)
                        .and_then(|report| ReportFragment { report: &report }.render().ok())
                        .unwrap_or_default();
                    let event = SseEvent::default()
                        .event("done")
                        .data(report.replace('\r', ""));
                    return Some((Ok(event), self));
                }
            }
        }
    }
}

/// Where a live stream starts: after the last event id a reconnecting client sends, or else
/// after `after` (the `?after=` parameter).
pub(crate) fn resume_after(headers: &HeaderMap, after: i64) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(after)
}

/// What a live stream of a deployment gets next.
pub(crate) enum Batch {
    /// Events after the ones already read, in order.
    Events(Vec<StoredEvent>),
    /// The deployment, finished: every event it has was read before.
    Finished(Deployment),
}

/// Waits until `deployment` has events after `seen`, or has finished; `None` when it is gone,
/// the store fails, or the server shuts down. Both live streams (the page's and the API's)
/// follow a deployment with it.
pub(crate) async fn next_batch(
    state: &AppState,
    operator: &OperatorId,
    deployment: DeploymentId,
    seen: i64,
) -> Option<Batch> {
    let mut closing = state.closing();
    loop {
        if *closing.borrow() {
            return None;
        }
        let store = state.store();
        // The status first: every event is stored before the deployment is finished, so
        // events read after a finished status are all there will be.
        let current = match store.deployments(operator).await {
            Ok(all) => all.into_iter().find(|d| d.id == deployment)?,
            Err(error) => {
                tracing::warn!(%error, "a live stream could not read its deployment");
                return None;
            }
        };
        let events = match store.events_since(operator, deployment, seen).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "a live stream could not read events");
                return None;
            }
        };
        if !events.is_empty() {
            return Some(Batch::Events(events));
        }
        if matches!(
            current.status,
            DeploymentStatus::Succeeded | DeploymentStatus::Failed
        ) {
            return Some(Batch::Finished(current));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = closing.changed() => {}
        }
    }
}
