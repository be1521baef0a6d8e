//! `fediversity worker`: runs queued deployments from the store, alongside `serve` processes
//! sharing the same (PostgreSQL) store.

use anyhow::{Context, Result};
use clap::Args;
use fediversity_panel::Platform;
use fediversity_panel::worker::Worker;
use fediversity_providers::{DirectoryOperatorSecrets, IdentityOptions};
use fediversity_store::Store;
use tokio::sync::watch;

use crate::app::{self, StoreOpts};
use crate::input::InfraOpts;

#[derive(Args)]
pub struct Opts {
    #[command(flatten)]
    infra: InfraOpts,
    #[command(flatten)]
    store: StoreOpts,
}

pub async fn run(opts: Opts) -> Result<()> {
    let store = opts.store.open().await?;
    let platform = platform(&opts.infra, &opts.store, &store)?;
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(Worker::new(store, platform).run(stopped));
    anstream::eprintln!("Fediversity worker running (stop with Ctrl-C)");
    shutdown_signal().await;
    stop.send_replace(true);
    worker.await.context("the worker stopped")
}

/// The infrastructure and its providers, as `apply` would use them.
pub fn platform(infra: &InfraOpts, opts: &StoreOpts, store: &Store) -> Result<Platform> {
    let (infra, _) = infra.load()?;
    let secrets = DirectoryOperatorSecrets::new(opts.sandbox_dir()?);
    let (opts, store, for_graphs) = (opts.clone(), store.clone(), infra.clone());
    Ok(Platform {
        infra,
        operator_secrets: std::sync::Arc::new(secrets),
        identity: IdentityOptions::default(),
        providers: std::sync::Arc::new(move |graph| {
            app::providers_for(&opts, &store, &for_graphs, graph)
                .map_err(|error| format!("{error:#}"))
        }),
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd, containers).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch for SIGTERM; stopping on Ctrl-C only");
            tokio::signal::ctrl_c().await.ok();
        }
    }
    anstream::eprintln!("Stopping: finishing the work under way…");
}
