//! Test support shared by the workspace's test suites (a dev-dependency only: no production
//! crate depends on it).
//!
//! Today it holds golden-file comparison, a throwaway PostgreSQL server ([`postgres`]) and a
//! Proxmox VE API simulator with a checker for Proxmox's own API schema ([`proxmox`]); the
//! other servers integration tests start (Garage, PowerDNS, slapd, sshd hosts) arrive here with
//! the issues that need them.

#![allow(clippy::panic, reason = "test assertions fail by panicking")]

pub mod golden;
pub mod postgres;
pub mod proxmox;
