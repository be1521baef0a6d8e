//! Providers: the code that makes, finds, changes and removes real things for the engine.
//!
//! This crate owns one module per provider, each implementing the engine's one
//! [`Provider`](fediversity_engine::Provider) trait with its own typed inputs and outputs (JSON
//! only at the trait's boundary):
//!
//! - [`local`] — the sandbox (`local`): VMs as directories, DNS as zone files, buckets as
//!   directories, S3 keys as files, NixOS hosts as a host spec written into the VM's directory,
//!   so that `fediversity apply` works on any machine;
//! - [`dns`] — record sets on the hosting provider's authoritative DNS server, by RFC 2136
//!   updates signed with TSIG (`dns`);
//! - [`nixos`] — NixOS systems built with Nix and deployed over SSH, with secrets, a health
//!   check and rollback (`nixos`);
//! - [`secret`] — generated secrets and secrets the operator stored (`secret`);
//! - [`sshkey`] — Ed25519 deployment keys (`sshkey`);
//! - [`garage`] — buckets, access keys and cluster layouts on Garage, through its admin API v2
//!   (`garage`);
//! - [`identity`] — checks of an operator's own LDAP directory or OpenID Connect issuer
//!   before deployment (`identity`), and the user sync that de-provisions users the directory
//!   no longer has;
//! - [`proxmox`] — VMs on a Proxmox VE cluster (`proxmox`), with static addresses from an
//!   [`AddressPool`];
//! - [`external`] — any executable speaking the JSON-lines provider protocol
//!   (`docs/provider-protocol.md`), with a conformance runner for provider authors;
//! - [`registry`] — the set of providers a run uses: the sandbox's, plus the real ones
//!   `infra.toml` has a section for.
//!
//! It must not know about the panel, nor about the store's tables: everything a provider needs
//! arrives in the call (inputs with references resolved and secrets revealed, the recorded
//! outputs), and everything it reports goes back as [`Outputs`](fediversity_engine::provider::Outputs),
//! with secret outputs named in `sensitive` so the engine can seal and mask them. No provider
//! logs, prints or puts into an error message a secret value.

pub mod dns;
pub mod error;
pub mod external;
mod files;
pub mod garage;
pub mod identity;
mod inputs;
mod kept_in_state;
pub mod local;
pub mod nixos;
mod outputs;
pub mod proxmox;
pub mod registry;
mod s3_inputs;
pub mod secret;
pub mod sensitive;
pub mod sshkey;
pub mod tls;

pub use dns::DnsProvider;
pub use error::{Error, Result};
pub use external::{ExternalOptions, ExternalProvider, conformance};
pub use garage::{GarageCluster, GarageProvider};
pub use identity::{IdentityCheckProvider, IdentityOptions};
pub use local::LocalProvider;
pub use nixos::{NixosConfigError, NixosOptions, NixosProvider};
pub use proxmox::{AddressPool, MemoryAddressPool, ProxmoxProvider};
pub use registry::{SetupError, infra_providers, sandbox_providers};
pub use secret::{DirectoryOperatorSecrets, OperatorSecrets, SecretProvider};
pub use sensitive::{SecretFileError, SecretString};
pub use sshkey::SshKeyProvider;
