//! Test support shared by the workspace's test suites (a dev-dependency only: no production
//! crate depends on it).
//!
//! Today it holds golden-file comparison, a throwaway PostgreSQL server ([`postgres`]),
//! throwaway Garage nodes and clusters ([`garage`]), a throwaway PowerDNS ([`pdns`]), test
//! hosts in network namespaces with their own sshd and Nix store ([`hosts`]) and a Proxmox VE
//! API simulator with a checker for Proxmox's own API schema ([`proxmox`]), a throwaway OpenLDAP
//! server ([`slapd`]), a throwaway SMTP server keeping what it receives ([`smtp`]) and a loopback HTTP(S) server that answers canned responses and records
//! requests ([`recorder`]).

#![allow(clippy::panic, reason = "test assertions fail by panicking")]

pub mod garage;
pub mod golden;
pub mod hosts;
pub mod pdns;
pub mod postgres;
pub mod recorder;
pub mod slapd;
pub mod smtp;

/// The workspace's root directory, found when the tests run rather than when this crate was
/// compiled: one target directory serves several checkouts (worktrees, a CI clone at another
/// path), and cargo does not rebuild an unchanged crate when its checkout moves, so a path
/// baked in at compile time can name a checkout that is gone. Cargo sets `CARGO_MANIFEST_DIR`
/// for every test and bench it runs; the root is the nearest directory above it that holds
/// `Cargo.lock`. Run some other way, the compile-time directory is used.
pub fn workspace_root() -> std::path::PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map_or(start.clone(), std::path::Path::to_path_buf)
}

/// A finished command's status and output, for a failure message.
pub(crate) fn describe(output: &std::process::Output) -> String {
    format!(
        "{}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
pub mod proxmox;
