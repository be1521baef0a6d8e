//! The engine's errors: each says what went wrong and what to do.

use fediversity_model::graph::ResourceAddress;

use crate::store::StoreError;

/// Why a run could not be planned or carried out. Failures of single resources are not errors
/// of the run: they are in its [`crate::report::Report`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error("the state store failed: {0}")]
    Store(#[from] StoreError),
    /// A resource names a provider this platform does not have.
    #[error("{address} needs provider `{provider}`, which is not configured: check infra.toml")]
    UnknownProvider {
        /// The provider named.
        provider: String,
        /// The resource naming it.
        address: ResourceAddress,
    },
    /// Another run holds the operator's lease.
    #[error(
        "another deployment of operator `{operator}` is running ({holder}); its lease runs out in {} s unless renewed: wait for it to finish, or retry with a longer wait",
        expires_in_ms.div_ceil(1000)
    )]
    Locked {
        /// Whose lease.
        operator: String,
        /// Who holds it.
        holder: String,
        /// How long until it expires, unless renewed.
        expires_in_ms: u64,
    },
    /// A change would destroy data the operator chose to keep.
    #[error(
        "{address} holds data and {why}, which would delete its data, but retention for it is `keep`: set the service's retention to `delete` to allow it, or undo the change"
    )]
    DataLoss {
        /// The resource.
        address: ResourceAddress,
        /// What forces the replacement.
        why: String,
    },
    /// An interrupted call could not be settled, so nothing can be planned safely yet.
    #[error(
        "cannot settle an interrupted change of {address}: {message}; the next run tries again"
    )]
    Unsettled {
        /// The resource.
        address: ResourceAddress,
        /// Why.
        message: String,
    },
    /// The plan made under the lease differs from the one that was approved.
    #[error(
        "the plan changed after it was shown (an interrupted run was settled, or another run changed the operator's resources): nothing was done; run the command again to see the new plan"
    )]
    PlanChanged,
    /// A replacement was asked for a resource the configuration does not have.
    #[error(
        "cannot replace {addresses}: operator `{operator}` has no such resource; `fediversity plan` lists its resources (e.g. secret.mastodon-admin, sshkey.deploy)"
    )]
    UnknownReplacement {
        /// Whose configuration.
        operator: String,
        /// The addresses asked for that are not in it.
        addresses: String,
    },
    /// The graph cannot be walked: a cycle or a reference to an output that does not exist.
    #[error("the resource graph is inconsistent: {0}")]
    Graph(String),
}

/// A result of an engine call.
pub type EngineResult<T> = Result<T, EngineError>;
