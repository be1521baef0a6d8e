//! `fediversity serve`: the web panel and a worker in one process.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use fediversity_panel::worker::Worker;
use fediversity_panel::{AppState, PanelOptions};
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
    #[command(flatten)]
    infra: InfraOpts,
    #[command(flatten)]
    store: StoreOpts,
}

pub async fn run(opts: Opts) -> Result<()> {
    let store = opts.store.open().await?;
    let platform = super::worker::platform(&opts.infra, &opts.store, &store)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let address = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let mut options = PanelOptions::for_address(address);
    if let Some(panel) = &platform.infra.panel {
        options = options.with_public_url(panel.public_url.as_str());
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
