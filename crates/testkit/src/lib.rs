//! Test support shared by the workspace's test suites (a dev-dependency only: no production
//! crate depends on it).
//!
//! Today it holds golden-file comparison and a throwaway PostgreSQL server ([`postgres`]); the
//! other servers integration tests start (Garage, PowerDNS, slapd, sshd hosts, the Proxmox VE
//! simulator) arrive here with the issues that need them.

#![allow(clippy::panic, reason = "test assertions fail by panicking")]

pub mod golden;
pub mod postgres;
pub mod proxmox;
