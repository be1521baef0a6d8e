//! The one error type of the panel's handlers, answered as an HTML page with the right status.
//! Internal errors are logged in full and shown as a generic message: a page never leaks a
//! database error, a path or a secret.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

/// What can go wrong answering a request.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    /// No such page, or not one this user may see (the same answer, on purpose).
    #[error("there is no such page")]
    NotFound,
    /// The page needs a signed-in user.
    #[error("sign in first")]
    SignInFirst,
    /// A POST without the form's CSRF token, or with another one.
    #[error(
        "the form was not sent from this panel's page, or the page is too old: reload the page \
         and send the form again"
    )]
    CsrfRejected,
    /// A body larger than the panel accepts.
    #[error("the form is too large")]
    TooLarge,
    /// A request the panel cannot read.
    #[error("the request could not be read: {0}")]
    BadRequest(String),
    /// Too many failed sign-ins.
    #[error("too many failed sign-ins: try again in {0} minute(s)")]
    TooManyAttempts(u64),
    /// A conflict the user can resolve (a deployment already under way, …).
    #[error("{0}")]
    Conflict(String),
    /// A failure of the platform, logged; the user sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PanelError {
    /// An internal error, with what was being done.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal(what.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::SignInFirst => StatusCode::SEE_OTHER,
            Self::CsrfRejected => StatusCode::FORBIDDEN,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<fediversity_store::Error> for PanelError {
    fn from(error: fediversity_store::Error) -> Self {
        match error {
            // The operator's own doing, and its message says what to do.
            fediversity_store::Error::DomainTaken(_) => Self::Conflict(error.to_string()),
            _ => Self::Internal(error.to_string()),
        }
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        if matches!(self, Self::SignInFirst) {
            return Redirect::to("/sign-in").into_response();
        }
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "a request failed");
                "Something went wrong on our side. It was logged; please try again later."
                    .to_owned()
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}
