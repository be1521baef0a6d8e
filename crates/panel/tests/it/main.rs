//! The panel's integration tests, one binary: each test starts the real server (the panel and
//! a worker, as `fediversity serve` runs them) on a free loopback port with its own SQLite
//! store and sandbox, and drives it over HTTP with a cookie-keeping client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod accounts;
mod api;
mod bad_input;
mod browser;
mod fleet;
mod fleet_api;
mod fleet_jobs;
mod flow;
mod harness;
mod identity;
mod invitations;
mod mail;
mod maintenance;
mod metrics;
mod oidc;
mod tenancy;
mod windows;
mod worker;
