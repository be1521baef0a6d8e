//! Sign up, sign in, sign out.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use fediversity_model::names::OperatorId;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{self, MaybeSignedIn, Posted, visitor_csrf};
use crate::error::PanelError;

/// The shortest password accepted: long enough to resist guessing, short enough to type.
const MIN_PASSWORD: usize = 12;
/// The longest: hashing is costly, and no one types more.
const MAX_PASSWORD: usize = 1024;

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpPage {
    csrf: String,
    operator: String,
    email: String,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    csrf: String,
    /// Where to go after signing in (a path of this panel), or empty.
    next: String,
    email: String,
    errors: Vec<String>,
}

/// A page for a visitor, with the cookie of their CSRF token when it is new.
fn visitor_page(
    status: StatusCode,
    page: Result<String, askama::Error>,
    cookie: Option<HeaderValue>,
) -> Result<Response, PanelError> {
    let html = page.map_err(|e| PanelError::internal(format!("rendering a page: {e}")))?;
    let mut response = (status, Html(html)).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A visitor's blank form, rendered by `render` with its CSRF token; someone signed in is sent
/// home instead, since the form would carry the visitor's token, which a signed-in user's post
/// is not checked against.
fn blank_visitor_form(
    state: &AppState,
    signed_in: bool,
    headers: &HeaderMap,
    next: &str,
    render: impl FnOnce(String) -> Result<String, askama::Error>,
) -> Result<Response, PanelError> {
    if signed_in {
        return Ok(Redirect::to(next).into_response());
    }
    let (csrf, cookie) = visitor_csrf(state, headers);
    visitor_page(StatusCode::OK, render(csrf), cookie)
}

pub async fn sign_up_page(
    State(state): State<AppState>,
    MaybeSignedIn(session): MaybeSignedIn,
    headers: HeaderMap,
) -> Result<Response, PanelError> {
    blank_visitor_form(&state, session.is_some(), &headers, "/", |csrf| {
        SignUpPage {
            csrf,
            operator: String::new(),
            email: String::new(),
            errors: Vec::new(),
        }
        .render()
    })
}

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    operator: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<SignUpForm>,
) -> Result<Response, PanelError> {
    let email = form.email.trim().to_lowercase();
    let mut errors = Vec::new();
    let operator = OperatorId::try_from(form.operator.trim().to_owned());
    if let Err(problem) = &operator {
        errors.push(format!("Operator id: {problem}"));
    }
    if !plausible_email(&email) {
        errors.push("Give an e-mail address such as name@example.org.".to_owned());
    }
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&form.password.chars().count()) {
        errors.push(format!(
            "The password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters."
        ));
    }
    if let (Ok(operator), true) = (&operator, errors.is_empty()) {
        let hash = auth::hash_password(form.password).await?;
        let now = fediversity_engine::clock::Clock::now(&fediversity_engine::clock::SystemClock);
        match state.store().sign_up(operator, &email, &hash, now).await {
            Ok(user) => {
                let cookie = auth::open_session(&state, user).await?;
                let target = format!("/operators/{operator}/configure");
                return Ok(([(SET_COOKIE, cookie)], Redirect::to(&target)).into_response());
            }
            Err(fediversity_store::Error::OperatorExists(_)) => {
                errors.push("That operator id is taken: choose another.".to_owned());
            }
            Err(fediversity_store::Error::EmailTaken(_)) => {
                errors.push(
                    "An account with that e-mail address exists: sign in instead.".to_owned(),
                );
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (csrf, cookie) = visitor_csrf(&state, &headers);
    let page = SignUpPage {
        csrf,
        operator: form.operator,
        email: form.email,
        errors,
    };
    visitor_page(StatusCode::UNPROCESSABLE_ENTITY, page.render(), cookie)
}

/// Catches typos, not every invalid address: the address is confirmed by using it.
fn plausible_email(email: &str) -> bool {
    email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Where to go after signing in.
#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// `next` if it is a path of this panel; anything else (another site, `//host`, a scheme)
/// is dropped, so that the sign-in page cannot be used to send users elsewhere.
fn local_path(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    local.then_some(next)
}

pub async fn sign_in_page(
    State(state): State<AppState>,
    MaybeSignedIn(session): MaybeSignedIn,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, PanelError> {
    let next = local_path(&query.next).unwrap_or("");
    let target = if next.is_empty() { "/" } else { next };
    blank_visitor_form(&state, session.is_some(), &headers, target, |csrf| {
        SignInPage {
            csrf,
            next: next.to_owned(),
            email: String::new(),
            errors: Vec::new(),
        }
        .render()
    })
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Posted(form): Posted<SignInForm>,
) -> Result<Response, PanelError> {
    let email = form.email.trim().to_lowercase();
    let limiter = &state.inner.limiter;
    if let Some(wait) = limiter.refused(&email, client.ip()) {
        return Err(PanelError::TooManyAttempts(wait.as_secs().div_ceil(60)));
    }
    let user = state.store().user_by_email(&email).await?;
    let password = form.password.chars().take(MAX_PASSWORD).collect();
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    // Checked for unknown addresses too (against a dummy hash): the answer takes as long.
    let matches = auth::verify_password(password, hash).await?;
    match user {
        Some(user) if matches => {
            limiter.succeeded(&email);
            let cookie = auth::open_session(&state, user.id).await?;
            // Going on to `next` (an OpenID Connect authorization, which ends on the
            // service's site) by a page of its own: see `continue_to`.
            let onward = match local_path(&form.next) {
                Some(next) => super::continue_to(next),
                None => Redirect::to("/").into_response(),
            };
            Ok(([(SET_COOKIE, cookie)], onward).into_response())
        }
        _ => {
            limiter.failed(&email, client.ip());
            let (csrf, cookie) = visitor_csrf(&state, &headers);
            let page = SignInPage {
                csrf,
                next: local_path(&form.next).unwrap_or("").to_owned(),
                email: form.email,
                errors: vec!["The e-mail address or the password is wrong.".to_owned()],
            };
            visitor_page(StatusCode::UNAUTHORIZED, page.render(), cookie)
        }
    }
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(_): Posted<serde::de::IgnoredAny>,
) -> Result<Response, PanelError> {
    let cookie = auth::close_session(&state, &headers).await?;
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/sign-in")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_panel_are_followed_after_sign_in() {
        assert_eq!(
            local_path("/oidc/authorize?client_id=a&x=1"),
            Some("/oidc/authorize?client_id=a&x=1")
        );
        for elsewhere in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\nb",
        ] {
            assert_eq!(local_path(elsewhere), None, "{elsewhere:?}");
        }
    }
}
