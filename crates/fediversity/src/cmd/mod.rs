//! One module per subcommand, each with its `Opts` and `run`.

pub mod admin;
pub mod apply;
pub mod destroy;
pub mod fleet;
pub mod infra;
pub mod plan;
pub mod provider;
pub mod refresh;
pub mod schema;
pub mod serve;
pub mod state;
pub mod validate;
pub mod worker;
