//! Test support shared by the workspace's test suites (a dev-dependency only: no production
//! crate depends on it).
//!
//! Today it holds golden-file comparison, a throwaway PostgreSQL server ([`postgres`]) and test
//! hosts in network namespaces with their own sshd and Nix store ([`hosts`]); the other servers
//! integration tests start (Garage, PowerDNS, slapd, the Proxmox VE simulator) arrive here with
//! the issues that need them.

#![allow(clippy::panic, reason = "test assertions fail by panicking")]

pub mod golden;
pub mod hosts;
pub mod postgres;
