//! The operators' web panel and the worker that runs the deployments it queues.
//!
//! Server-rendered pages (axum + askama, one template struct per page) with htmx for the live
//! parts; htmx and its SSE extension are vendored under `static/`, so there is no front-end
//! build step. Everything an operator does goes through the store: accounts and sessions,
//! configuration versions, deployments queued as jobs, and their events, which the deployment
//! page streams over SSE while a [`worker`] applies them.
//!
//! Tenancy: every operator page is under `/operators/{id}/…`, and one check
//! ([`auth::SignedIn::operator`]) answers 404 for an operator the user is not a member of, so a
//! page cannot forget it. Administrators of the hosting provider see every operator.
//!
//! It is also the OpenID Connect provider of the operators' services ([`oidc`]): an operator's
//! panel account is its admin account on its Mastodon, Pixelfed and PeerTube.
//!
//! It must not know how resources are made: the binary hands it a [`Platform`] (the
//! infrastructure description and a way to get the providers a graph needs).

mod api;
mod auth;
mod error;
pub mod fleet;
pub mod fleet_jobs;
pub mod fleet_release;
pub mod fleet_summary;
mod forms;
pub mod identity;
mod invitations;
pub mod mail;
mod metrics;
pub mod oidc;
mod pages;
mod words;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use fediversity_engine::Providers;
use fediversity_engine::clock::{Clock, Millis, SystemClock};
use fediversity_model::Infra;
use fediversity_model::graph::DesiredGraph;
use fediversity_model::names::OperatorId;
use fediversity_providers::{IdentityOptions, OperatorSecrets};
use fediversity_store::Store;
use tokio::net::TcpListener;

pub use auth::hash_password;
pub use metrics::{Metrics, MetricsToken};
pub use oidc::client::oidc_client_provider;
pub use oidc::rotate_signing_key;

/// Gives the providers a resource graph needs, or says in words why this installation cannot
/// deploy it.
pub type ProvidersFor = Arc<dyn Fn(&DesiredGraph) -> Result<Providers, String> + Send + Sync>;

/// What the panel and the worker deploy onto.
#[derive(Clone)]
pub struct Platform {
    /// The hosting provider's infrastructure (size classes, limits, which providers exist).
    pub infra: Infra,
    /// The providers for a graph.
    pub providers: ProvidersFor,
    /// The secrets operators stored (e.g. their directory's bind password), for the identity
    /// check and the user sync, which run outside any deployment.
    pub operator_secrets: Arc<dyn OperatorSecrets>,
    /// How operators' identity providers are reached (trusted CAs, time limit).
    pub identity: IdentityOptions,
}

/// How old the OpenID Connect signing key may grow before the panel makes a new one.
const SIGNING_KEY_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// Who may create an operator account on the sign-up page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignUp {
    /// Anyone who reaches the panel: for a sandbox or a trial.
    #[default]
    Open,
    /// Only someone with an invitation an administrator made, used once: for a hosting
    /// provider that decides who becomes its customer.
    Invitation,
}

/// How the panel behaves.
#[derive(Clone)]
pub struct PanelOptions {
    /// Mark cookies `Secure`: set when the panel is reached over the network, where a reverse
    /// proxy terminates TLS; left off on loopback so that `http://127.0.0.1` works.
    pub secure_cookies: bool,
    /// The address operators and services reach the panel at (`infra.toml`'s
    /// `[panel] public_url`): the OpenID Connect issuer.
    pub public_url: String,
    /// How old the OpenID Connect signing key may grow before a new one signs.
    pub signing_key_max_age: Duration,
    /// Where the OpenID Connect provider (codes' and tokens' expiry, key age) and the
    /// operators' maintenance form (which windows are still to come) read the time.
    pub clock: Arc<dyn Clock>,
    /// The token a scrape of `/metrics` must carry; `None` leaves `/metrics` open to whoever
    /// reaches the panel (a warning says so when the server starts).
    pub metrics_token: Option<MetricsToken>,
    /// Who may sign up.
    pub sign_up: SignUp,
}

impl std::fmt::Debug for PanelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelOptions")
            .field("secure_cookies", &self.secure_cookies)
            .field("public_url", &self.public_url)
            .field("signing_key_max_age", &self.signing_key_max_age)
            .field("metrics_token", &self.metrics_token)
            .field("sign_up", &self.sign_up)
            .finish_non_exhaustive()
    }
}

impl PanelOptions {
    /// The options for a panel listening on `addr`, reached at `http://<addr>` until
    /// [`PanelOptions::with_public_url`] says otherwise.
    pub fn for_address(addr: SocketAddr) -> Self {
        Self {
            secure_cookies: !addr.ip().is_loopback(),
            public_url: format!("http://{addr}"),
            signing_key_max_age: SIGNING_KEY_MAX_AGE,
            clock: Arc::new(SystemClock),
            metrics_token: None,
            sign_up: SignUp::Open,
        }
    }

    /// The same options for a panel reached at `public_url`.
    pub fn with_public_url(mut self, public_url: impl Into<String>) -> Self {
        self.public_url = public_url.into();
        self
    }

    /// The same options with `/metrics` answering only scrapes that carry `token`.
    pub fn with_metrics_token(mut self, token: MetricsToken) -> Self {
        self.metrics_token = Some(token);
        self
    }

    /// The same options with sign-up `sign_up`.
    pub fn with_sign_up(mut self, sign_up: SignUp) -> Self {
        self.sign_up = sign_up;
        self
    }

    /// The OpenID Connect issuer: the public URL without a trailing `/`.
    pub fn issuer(&self) -> String {
        self.public_url.trim_end_matches('/').to_owned()
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    platform: Platform,
    options: PanelOptions,
    limiter: auth::LoginLimiter,
    metrics: Arc<Metrics>,
    /// Taken while the OpenID Connect signing key is checked and rotated.
    key_lock: tokio::sync::Mutex<()>,
    /// Set when the server starts shutting down: live streams end so that it can.
    closing: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// The state of a panel on `store` deploying onto `platform`.
    pub fn new(store: Arc<Store>, platform: Platform, options: PanelOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                platform,
                options,
                limiter: auth::LoginLimiter::default(),
                metrics: Arc::default(),
                key_lock: tokio::sync::Mutex::new(()),
                closing: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// This process's counters, for `/metrics`: hand them to the process's worker
    /// ([`worker::Worker::with_metrics`]) so that its provider errors are counted too.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The time, for the OpenID Connect provider and the maintenance form.
    fn now(&self) -> Millis {
        self.inner.options.clock.now()
    }

    /// The clock [`AppState::now`] reads, for the fleet scheduler the maintenance form uses.
    fn clock(&self) -> Arc<dyn Clock> {
        self.inner.options.clock.clone()
    }

    fn platform(&self) -> &Platform {
        &self.inner.platform
    }

    /// The infrastructure `operator` is on (the newest release rolled out to it, or the
    /// platform's): what its configuration is checked, planned and deployed against.
    async fn infra_of(
        &self,
        operator: &OperatorId,
    ) -> Result<std::borrow::Cow<'_, Infra>, error::PanelError> {
        fleet_jobs::operator_infra(self.store(), self.platform(), operator)
            .await
            .map_err(error::PanelError::internal)
    }

    /// Becomes true when the server starts shutting down.
    fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

/// The panel's routes, for [`serve`] and for tests that call it directly.
pub fn app(state: AppState) -> Router {
    pages::router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// Serves the panel on `listener` until `shutdown` resolves, then finishes the requests in
/// flight (live progress streams end with the shutdown too).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.inner.options.metrics_token.is_none() {
        tracing::warn!(
            "/metrics is open to anyone who reaches the panel: give it a token \
             (fediversity serve --metrics-token-file) or keep it off every network but monitoring"
        );
    }
    let closing = state.inner.closing.clone();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.send_replace(true);
        })
        .await
}
