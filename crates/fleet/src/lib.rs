//! Fleet operations: how the hosting provider rolls a platform release out to every operator,
//! inside each operator's maintenance windows.
//!
//! - [`windows`]: an operator's weekly windows as UTC instants, across daylight-saving changes
//!   and midnight.
//! - [`schedule`]: the slot of a release for one operator (next window, last window before a
//!   deadline, or forced by the deadline), and moving it.
//! - [`rollout`]: canaries, then batches, a concurrency bound and a failure threshold, as a
//!   pure state machine.
//!
//! Everything here is pure: time is an argument, nothing is stored or sent. The scheduler that
//! records decisions in the store and starts deployments lives with the worker.

pub mod error;
pub mod rollout;
pub mod schedule;
pub mod windows;

pub use error::{Error, Result};
