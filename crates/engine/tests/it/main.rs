//! The engine's integration tests, against an in-memory store and a fake provider that keeps
//! its "world" in memory, counts calls and fails on request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod apply;
mod fake;
mod leases;
mod properties;
mod recovery;
