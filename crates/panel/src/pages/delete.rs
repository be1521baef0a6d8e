//! Account deletion: a confirmation page that says what will be removed and what kept, then
//! the removal as a deployment (with its live progress and final report), after which the
//! operator's users are removed. The operator's history stays, for the hosting provider.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fediversity_model::Retention;
use serde::Deserialize;

use super::deployments::{preview, refuse_if_busy};
use super::operators::{Chrome, latest, page};
use crate::auth::{Posted, SignedIn};
use crate::error::PanelError;
use crate::words::{self, PlanLine};
use crate::{AppState, worker};

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage {
    chrome: Chrome,
    operator: String,
    headline: String,
    lines: Vec<PlanLine>,
    retention: Vec<String>,
    problem: Option<String>,
}

/// What deleting the account would do, and the form to confirm it.
pub async fn confirm_page(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let view = view(&state, &user, operator.as_str(), None).await?;
    page(StatusCode::OK, &view)
}

async fn view(
    state: &AppState,
    user: &SignedIn,
    operator: &str,
    problem: Option<String>,
) -> Result<DeletePage, PanelError> {
    let operator = user.operator(operator)?;
    let mut view = DeletePage {
        chrome: Chrome::of(user),
        operator: operator.to_string(),
        headline: "Nothing has been deployed: only the account is removed.".to_owned(),
        lines: Vec::new(),
        retention: Vec::new(),
        problem,
    };
    if let Some((_, config)) = latest(state, &operator).await? {
        view.retention = config
            .services
            .iter()
            .map(|(kind, service)| match service.retention {
                Retention::Keep => format!("{}: its data is kept", kind.title()),
                Retention::Delete => format!("{}: its data is deleted for good", kind.title()),
            })
            .collect();
        match preview(state, &worker::nothing_for(&config)).await {
            Ok((summary, _)) => (view.headline, view.lines) = words::plan(&summary),
            Err(problem) => view.problem = Some(problem),
        }
    }
    Ok(view)
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// Deletes the account once its id is typed in: queues the removal and shows its progress.
pub async fn delete(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
    Posted(form): Posted<DeleteForm>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    if form.confirm.trim() != operator.as_str() {
        let problem = format!("Type `{operator}` to confirm: nothing was deleted.");
        let view = view(&state, &user, operator.as_str(), Some(problem)).await?;
        return page(StatusCode::UNPROCESSABLE_ENTITY, &view);
    }
    refuse_if_busy(&state, &operator).await?;
    match latest(&state, &operator).await? {
        Some((stored, _)) => {
            let deployment =
                worker::enqueue_deployment(state.store(), &operator, stored.version, true).await?;
            let target = format!("/operators/{operator}/deployments/{deployment}");
            Ok(Redirect::to(&target).into_response())
        }
        None => {
            state.store().delete_users(&operator).await?;
            state.store().release_domain(&operator).await?;
            Ok(Redirect::to("/sign-in").into_response())
        }
    }
}
