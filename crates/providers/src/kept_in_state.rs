//! Deleting a resource that exists only in the platform's state (a generated secret, a
//! deployment key): forgetting the record is the deletion, and keeping it is keeping the value.

use fediversity_engine::provider::Deletion;
use fediversity_model::Retention;
use fediversity_model::graph::ResourceAddress;

/// What deleting `address`, described as `what` ("secret", "key"), does under `retention`.
pub(crate) fn deletion(address: &ResourceAddress, what: &str, retention: Retention) -> Deletion {
    match retention {
        Retention::Delete => Deletion::Removed,
        Retention::Keep => Deletion::Kept {
            note: format!(
                "{what} {address} is kept, encrypted in the platform's state, for the data kept with it"
            ),
        },
    }
}
