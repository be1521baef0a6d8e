//! Sign up, sign in, sign out.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use fediversity_model::names::OperatorId;
use serde::Deserialize;

use crate::auth::{self, MaybeSignedIn, Posted, id_hash, visitor_csrf};
use crate::error::PanelError;
use crate::{AppState, SignUp};

/// The shortest password accepted: long enough to resist guessing, short enough to type.
const MIN_PASSWORD: usize = 12;
/// The longest: hashing is costly, and no one types more.
const MAX_PASSWORD: usize = 1024;

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpPage {
    csrf: String,
    /// The invitation's token, carried from the link into the form (empty in open mode).
    invitation: String,
    /// Set when the form is not offered: sign-up is by invitation and this one is missing
    /// or can no longer be used. Says why.
    closed: Option<&'static str>,
    operator: String,
    email: String,
    errors: Vec<String>,
}

/// Said when sign-up is by invitation and the visitor has none.
const NO_INVITATION: &str = "Sign-up is by invitation: ask the hosting provider for a link.";
/// Said when the invitation is unknown, used, revoked or expired.
const SPENT_INVITATION: &str = "This invitation is used, revoked or expired: ask the hosting \
                                provider for a new link.";

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

/// The invitation a sign-up link carries.
#[derive(Deserialize)]
pub struct InvitationQuery {
    #[serde(default)]
    invitation: String,
}

/// The sign-up form; in invitation mode, only for a usable invitation (otherwise a page
/// saying why there is no form: 200 without an invitation, 403 with a spent one).
pub async fn sign_up_page(
    State(state): State<AppState>,
    MaybeSignedIn(session): MaybeSignedIn,
    headers: HeaderMap,
    Query(query): Query<InvitationQuery>,
) -> Result<Response, PanelError> {
    let invitation = query.invitation.trim().to_owned();
    let closed = match state.inner.options.sign_up {
        SignUp::Open => None,
        SignUp::Invitation if invitation.is_empty() => Some((StatusCode::OK, NO_INVITATION)),
        SignUp::Invitation => {
            let usable = state
                .store()
                .invitation_usable(&id_hash(&invitation), state.now())
                .await?;
            (!usable).then_some((StatusCode::FORBIDDEN, SPENT_INVITATION))
        }
    };
    if let (Some((status, reason)), None) = (closed, &session) {
        let (csrf, cookie) = visitor_csrf(&state, &headers);
        let page = SignUpPage::blank(csrf, String::new(), Some(reason));
        return visitor_page(status, page.render(), cookie);
    }
    blank_visitor_form(&state, session.is_some(), &headers, "/", |csrf| {
        SignUpPage::blank(csrf, invitation, None).render()
    })
}

impl SignUpPage {
    fn blank(csrf: String, invitation: String, closed: Option<&'static str>) -> Self {
        Self {
            csrf,
            invitation,
            closed,
            operator: String::new(),
            email: String::new(),
            errors: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    invitation: String,
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
    Posted(mut form): Posted<SignUpForm>,
) -> Result<Response, PanelError> {
    let invitation = match state.inner.options.sign_up {
        SignUp::Open => None,
        SignUp::Invitation => Some(form.invitation.trim().to_owned()),
    };
    if invitation.as_deref() == Some("") {
        let refused = vec![NO_INVITATION.to_owned()];
        return sign_up_again(&state, &headers, StatusCode::FORBIDDEN, form, refused);
    }
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
        let hash = auth::hash_password(std::mem::take(&mut form.password)).await?;
        let now = state.now();
        let signed_up = match &invitation {
            None => state.store().sign_up(operator, &email, &hash, now).await,
            Some(token) => {
                let invitation = id_hash(token);
                let store = state.store();
                store
                    .sign_up_invited(&invitation, operator, &email, &hash, now)
                    .await
            }
        };
        match signed_up {
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
            Err(fediversity_store::Error::InvitationRefused) => {
                let refused = vec![SPENT_INVITATION.to_owned()];
                return sign_up_again(&state, &headers, StatusCode::FORBIDDEN, form, refused);
            }
            Err(error) => return Err(error.into()),
        }
    }
    sign_up_again(
        &state,
        &headers,
        StatusCode::UNPROCESSABLE_ENTITY,
        form,
        errors,
    )
}

/// The form again, as filled in (but the password), with what was wrong.
fn sign_up_again(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: SignUpForm,
    errors: Vec<String>,
) -> Result<Response, PanelError> {
    let (csrf, cookie) = visitor_csrf(state, headers);
    let page = SignUpPage {
        csrf,
        invitation: form.invitation,
        closed: None,
        operator: form.operator,
        email: form.email,
        errors,
    };
    visitor_page(status, page.render(), cookie)
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
