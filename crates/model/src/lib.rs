//! The platform's vocabulary: what an operator asks for ([`OperatorConfig`]), what the hosting
//! provider has ([`Infra`]), and the resource graph the configurator derives from both
//! ([`graph`]).
//!
//! This crate reads and checks documents and knows nothing of HTTP, SQL or providers: it is the
//! language every other crate speaks, so that the panel, the CLI and the engine agree on every
//! name.

pub mod graph;
pub mod infra;
pub mod names;
pub mod operator;
pub mod schema;
pub mod validate;

pub use infra::Infra;
pub use operator::{OperatorConfig, Retention, ServiceConfig, ServiceKind};
pub use validate::{Problem, Problems, parse_infra, parse_operator_config};
