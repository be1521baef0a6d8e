//! `fediversity admin`: the hosting provider's administrators of the panel.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fediversity_engine::clock::{Clock, SystemClock};

use crate::app::StoreOpts;

#[derive(Subcommand)]
pub enum Command {
    /// Create an administrator, who sees every operator in the panel. The password is read
    /// from FEDIVERSITY_ADMIN_PASSWORD, or else from the first line of standard input.
    Create(CreateOpts),
}

#[derive(Args)]
pub struct CreateOpts {
    /// The e-mail address the administrator signs in with.
    #[arg(long)]
    email: String,
    #[command(flatten)]
    store: StoreOpts,
}

/// The shortest administrator password accepted.
const MIN_PASSWORD: usize = 12;

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Create(opts) => create(opts).await,
    }
}

async fn create(opts: CreateOpts) -> Result<()> {
    let password = match std::env::var("FEDIVERSITY_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    let email = opts.email.trim().to_lowercase();
    let store = opts.store.open().await?;
    let hash = fediversity_panel::hash_password(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.create_admin(&email, &hash, SystemClock.now()).await?;
    anstream::println!("Administrator {email} created: sign in to the panel with this address.");
    Ok(())
}
