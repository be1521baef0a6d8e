//! The configurator: `OperatorConfig × Infra → DesiredGraph`.
//!
//! A pure function. It decides *what* exists for an operator — which VMs of which size, which
//! buckets, keys, DNS records, secrets and NixOS hosts, and how they refer to each other — and
//! nothing about *whether* it exists yet: comparing with deployed state is the engine's job. It
//! does no I/O of any kind, so the same input gives the same graph, byte for byte.
//!
//! Every name it derives contains the operator id and a stable resource name
//! (`fedi-uni-mastodon-media`), so that a provider can find what it made even if the platform
//! crashed before writing the answer down.

mod builder;
mod identity;
mod limits;
mod services;
mod storage;

pub use limits::{LimitUse, usage_against_limits};
pub use services::admin_credential;

use fediversity_model::graph::DesiredGraph;
use fediversity_model::{Infra, OperatorConfig, Problem, Problems};

use crate::builder::Builder;

/// Where a NixOS host finds the secrets the platform uploads: a root-only directory outside
/// the Nix store, one file per secret.
pub const SECRETS_DIR: &str = "/var/lib/fediversity/secrets";

/// The resource graph for `config` on `infra`, or every reason it cannot be built: a size the
/// hosting provider does not offer, or limits exceeded (with the numbers).
pub fn configure(config: &OperatorConfig, infra: &Infra) -> Result<DesiredGraph, Problems> {
    let mut problems = services::size_problems(config, infra);
    problems.extend(storage::reserved_name_problems(config, infra));
    Problems::check(problems)?;
    Problems::check(limits::problems(config, infra))?;
    let mut builder = Builder::new(config, infra);
    build(&mut builder).map_err(Problems::from)?;
    let graph = builder.finish();
    let edge_problems = graph.edge_problems();
    if !edge_problems.is_empty() {
        // A bug in this crate, not the user's mistake; say so rather than hand the engine a
        // graph it cannot order.
        return Err(Problem::new(
            "",
            format!(
                "internal error: inconsistent resource graph: {}",
                edge_problems.join("; ")
            ),
        )
        .into());
    }
    Ok(graph)
}

fn build(builder: &mut Builder<'_>) -> Result<(), Problem> {
    let config = builder.config();
    let enabled: Vec<_> = config.services.enabled().collect();
    if enabled.is_empty() {
        return Ok(());
    }
    let deploy_key = builder.deploy_key()?;
    let identity = identity::identity(builder)?;
    let mail = services::mail(builder)?;
    let s3 = storage::target(builder, &deploy_key)?;
    for (kind, service) in enabled {
        let (identity, mail) = (identity.as_ref(), mail.as_ref());
        services::add_service(builder, kind, service, &deploy_key, &s3, identity, mail)?;
    }
    Ok(())
}
