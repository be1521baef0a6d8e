//! The crate's own errors: what can go wrong outside a provider call (a provider call fails
//! with the engine's [`ProviderError`](fediversity_engine::ProviderError) instead).

use std::path::PathBuf;

/// Why a provider could not be set up, started or tested (an external one started or tested,
/// the `dns` one given its key, the `proxmox` one given its token and CA).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The executable does not exist or cannot be run.
    #[error(
        "cannot run the provider executable {}: {reason} (check the path and that the file is executable)",
        path.display()
    )]
    NotExecutable {
        /// The executable.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// The executable ran but did not complete the handshake.
    #[error("the provider executable {} failed its handshake: {reason}", path.display())]
    Handshake {
        /// The executable.
        path: PathBuf,
        /// What went wrong, without anything the provider printed.
        reason: String,
    },
    /// The `dns` provider's TSIG secret file cannot be used.
    #[error(
        "cannot use the TSIG secret file {}: {reason} (check [dns] tsig_secret_file in infra.toml: \
         it holds the key's secret in base64, as `tsig-keygen` or `pdnsutil generate-tsig-key` print it)",
        path.display()
    )]
    TsigSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, never its content.
        reason: String,
    },
    /// The `dns` provider's TSIG key cannot be used.
    #[error("cannot use the TSIG key `{name}`: {reason} (check [dns] tsig_key_name in infra.toml)")]
    TsigKey {
        /// The key's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `dns` provider's zone is not a name DNS can carry.
    #[error(
        "cannot use the DNS zone `{zone}`: it is not {reason} (check [dns] zone in infra.toml)"
    )]
    DnsZone {
        /// The zone as written.
        zone: String,
        /// What it should be.
        reason: String,
    },
    /// A file the provider needs cannot be read.
    #[error("cannot read the {what} {}: {reason}", path.display())]
    UnreadableFile {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The Proxmox VE client cannot be set up (a CA file that holds no CA, …).
    #[error("cannot set up the Proxmox VE client for {endpoint}: {reason}")]
    Proxmox {
        /// The API's address.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// The protocol's JSON Schema shipped with this build does not compile: a bug of this build.
    #[error("internal error: the provider protocol schema does not compile: {0}")]
    Schema(String),
}

/// A result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
