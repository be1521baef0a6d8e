//! Test support shared by the workspace's test suites (a dev-dependency only: no production
//! crate depends on it).
//!
//! Today it holds golden-file comparison; the servers integration tests start (Garage,
//! PowerDNS, slapd, PostgreSQL, sshd hosts, the Proxmox VE simulator) arrive here with the
//! issues that need them.

#![allow(clippy::panic, reason = "test assertions fail by panicking")]

pub mod golden;
