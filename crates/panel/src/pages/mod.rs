//! The panel's routes: one module per area, one handler per page and verb.

mod accounts;
mod delete;
pub(crate) mod deployments;
mod invitations;
mod maintenance;
pub(crate) mod operators;
mod tokens;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::auth::MaybeSignedIn;
use crate::error::PanelError;

/// The largest request body the panel reads: a configuration form is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// Every route.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::scrape))
        .route("/static/{file}", get(asset))
        .route(
            "/sign-up",
            get(accounts::sign_up_page).post(accounts::sign_up),
        )
        .route(
            "/sign-in",
            get(accounts::sign_in_page).post(accounts::sign_in),
        )
        .route("/sign-out", post(accounts::sign_out))
        .route("/operators", get(operators::list))
        .route("/invitations", post(invitations::create))
        .route(
            "/invitations/{invitation}/revoke",
            post(invitations::revoke),
        )
        .route("/operators/{operator}", get(operators::dashboard))
        .route(
            "/operators/{operator}/configure",
            get(operators::configure_page).post(operators::configure),
        )
        .route(
            "/operators/{operator}/identity/check",
            post(operators::check_identity),
        )
        .route("/operators/{operator}/plan", get(deployments::plan))
        .route(
            "/operators/{operator}/deployments",
            post(deployments::deploy),
        )
        .route(
            "/operators/{operator}/deployments/{deployment}",
            get(deployments::show),
        )
        .route(
            "/operators/{operator}/deployments/{deployment}/events",
            get(deployments::events),
        )
        .route("/operators/{operator}/history", get(operators::history))
        .route(
            "/operators/{operator}/delete",
            get(delete::confirm_page).post(delete::delete),
        )
        .route("/operators/{operator}/tokens", post(tokens::create))
        .route(
            "/operators/{operator}/maintenance/{release}",
            post(maintenance::reschedule),
        )
        .route(
            "/fleet/releases/{release}/{action}",
            post(maintenance::pause_or_resume),
        )
        .nest("/api/v1", crate::api::router())
        .merge(crate::oidc::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every answer carries: scripts and styles only from the panel itself (no inline
/// ones, so injected markup cannot run), no framing (clickjacking), no MIME sniffing.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A page that set its own, narrower policy keeps it (the OpenID Connect form post).
    headers.entry("content-security-policy").or_insert(HeaderValue::from_static(
        "default-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ));
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A page that goes on to `path` (a path of this panel) by itself: a new navigation that
/// starts from the panel, where a redirect would continue the one that brought the browser
/// here. That matters twice for single sign-on: a navigation that came from another site
/// does not carry the `SameSite=Strict` session cookie, and one that began with a form post
/// may not be redirected off the panel (the CSP's `form-action 'self'` covers redirects).
pub(crate) fn continue_to(path: &str) -> Response {
    let path = escape_html(path);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url={path}\"><title>Continuing…</title>\
         </head><body><p><a href=\"{path}\">Continue</a></p></body></html>"
    );
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::response::Html(html),
    )
        .into_response()
}

/// `text` safe inside an HTML attribute or element, for the few pages written without a
/// template.
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn not_found() -> PanelError {
    PanelError::NotFound
}

/// Sends a visitor to sign in, a user to their operator (an administrator to the list).
async fn home(MaybeSignedIn(session): MaybeSignedIn) -> Redirect {
    match session.map(|s| s.user.role) {
        None => Redirect::to("/sign-in"),
        Some(fediversity_store::Role::Admin) => Redirect::to("/operators"),
        Some(fediversity_store::Role::Operator(id)) => Redirect::to(&format!("/operators/{id}")),
    }
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The process can serve: the store answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().operators().await {
        Ok(_) => "ready\n".into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer\n",
            )
                .into_response()
        }
    }
}

/// The vendored assets, named with their version so they can be cached for good.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "htmx-2.0.4.min.js",
        "text/javascript",
        include_str!("../../static/htmx-2.0.4.min.js"),
    ),
    (
        "htmx-ext-sse-2.2.2.js",
        "text/javascript",
        include_str!("../../static/htmx-ext-sse-2.2.2.js"),
    ),
    (
        "panel-1.css",
        "text/css",
        include_str!("../../static/panel-1.css"),
    ),
];

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => PanelError::NotFound.into_response(),
    }
}
