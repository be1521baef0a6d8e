//! One module per subcommand, each with its `Opts` and `run`.

pub mod infra;
pub mod plan;
pub mod schema;
pub mod validate;
