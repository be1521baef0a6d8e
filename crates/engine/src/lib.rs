//! The engine: plans and applies an operator's resource graph.
//!
//! - [`plan::plan`] is a pure diff of a [`DesiredGraph`](fediversity_model::graph::DesiredGraph)
//!   against the [`state::RecordedState`]: create, update, replace, delete or keep, with reasons.
//! - [`run::Engine::apply`] walks the plan as a DAG: independent resources in parallel (bounded
//!   per provider), dependents after what they reference, a failure stopping only its dependents.
//!   Every provider call is journalled before and after, so a crash is followed by a run that
//!   converges; one run per operator at a time, through a lease in the store.
//! - [`run::Engine::refresh`] reads the world and records drift for the next apply to repair.
//! - Progress goes out only as [`events::Event`]s, with every secret masked.
//!
//! The engine knows no concrete provider, no HTTP and no SQL: providers implement
//! [`provider::Provider`], storage implements [`store::StateStore`], time comes from a
//! [`clock::Clock`].

pub mod clock;
pub mod diff;
pub mod error;
pub mod events;
pub mod memory;
pub mod plan;
pub mod provider;
pub mod report;
pub mod retry;
pub mod run;
pub mod state;
pub mod store;
pub mod value;

pub use error::{EngineError, EngineResult};
pub use plan::{Action, Plan, Providers};
pub use provider::{Provider, ProviderError, ProviderResult};
pub use run::{Approval, DriftReport, Engine, EngineOptions};
