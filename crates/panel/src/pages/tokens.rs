//! API tokens: made on the dashboard, shown once.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use fediversity_engine::clock::{Clock, SystemClock};
use serde::Deserialize;

use super::operators::{Chrome, page};
use crate::AppState;
use crate::auth::{Posted, SignedIn, id_hash, random_token};
use crate::error::PanelError;

/// Tokens start with this, so that one found in a log or a repository is recognised.
const PREFIX: &str = "fdv_";

#[derive(Template)]
#[template(path = "token.html")]
struct TokenPage {
    chrome: Chrome,
    operator: String,
    name: String,
    token: String,
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

/// Makes an API token acting as the signed-in user and shows it, this once.
pub async fn create(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
    Posted(form): Posted<TokenForm>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let name: String = form.name.trim().chars().take(100).collect();
    let name = if name.is_empty() {
        "API token".to_owned()
    } else {
        name
    };
    let token = format!("{PREFIX}{}", random_token());
    state
        .store()
        .create_api_token(&id_hash(&token), user.0.user.id, &name, SystemClock.now())
        .await?;
    let view = TokenPage {
        chrome: Chrome::of(&user),
        operator: operator.to_string(),
        name,
        token,
    };
    page(StatusCode::OK, &view)
}
