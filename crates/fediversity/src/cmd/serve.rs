//! `fediversity serve`: the web panel and a worker in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use fediversity_panel::worker::Worker;
use fediversity_panel::{AppState, MetricsToken, PanelOptions, SignUp};
use fediversity_providers::SecretString;
use tokio::sync::watch;

use crate::app::StoreOpts;
use crate::input::InfraOpts;

#[derive(Args)]
pub struct Opts {
    /// The address the panel listens on. Off loopback, put it behind a TLS-terminating proxy:
    /// its cookies are then marked Secure.
    #[arg(
        long,
        env = "FEDIVERSITY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// A file holding the token Prometheus must send to scrape /metrics (`Authorization:
    /// Bearer`); only its owner may read it. Without it, /metrics is open to whoever reaches
    /// the panel.
    #[arg(long, env = "FEDIVERSITY_METRICS_TOKEN_FILE", value_name = "PATH")]
    metrics_token_file: Option<PathBuf>,
    /// Who may create an operator account: `open` (anyone who reaches the panel, for a sandbox
    /// or a trial) or `invitation` (only with a one-time link an administrator made on the
    /// operators page: a hosting provider deciding who its customers are).
    #[arg(long, env = "FEDIVERSITY_SIGN_UP", value_enum, default_value_t = SignUpMode::Open)]
    sign_up: SignUpMode,
    #[command(flatten)]
    infra: InfraOpts,
    #[command(flatten)]
    store: StoreOpts,
}

/// `--sign-up`: the panel's [`SignUp`], named on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum SignUpMode {
    Open,
    Invitation,
}

impl From<SignUpMode> for SignUp {
    fn from(mode: SignUpMode) -> Self {
        match mode {
            SignUpMode::Open => SignUp::Open,
            SignUpMode::Invitation => SignUp::Invitation,
        }
    }
}

pub async fn run(opts: Opts) -> Result<()> {
    let metrics_token = opts
        .metrics_token_file
        .as_deref()
        .map(metrics_token)
        .transpose()?;
    let store = opts.store.open().await?;
    let platform = super::worker::platform(&opts.infra, &opts.store, &store)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let address = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let mut options = PanelOptions::for_address(address).with_sign_up(opts.sign_up.into());
    if let Some(panel) = &platform.infra.panel {
        options = options.with_public_url(panel.public_url.as_str());
    }
    if let Some(token) = metrics_token {
        options = options.with_metrics_token(token);
    }
    let state = AppState::new(store.clone(), platform.clone(), options);
    let worker = Worker::new(store, platform).with_metrics(state.metrics().clone());
    let worker = tokio::spawn(worker.run(stopped));
    anstream::eprintln!("Fediversity panel on http://{address}/ (stop with Ctrl-C)");
    let served = fediversity_panel::serve(listener, state, super::worker::shutdown_signal()).await;
    stop.send_replace(true);
    worker.await.context("the worker stopped")?;
    served.context("the panel stopped")
}

/// The token in `path`, read before anything starts so that a bad file stops `serve` at once.
fn metrics_token(path: &Path) -> Result<MetricsToken> {
    let secret = SecretString::from_file(path).context("--metrics-token-file cannot be used")?;
    Ok(MetricsToken::new(&secret))
}
