//! The fleet crate's errors: each says what to change.

/// A fleet operation that cannot be carried out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The operator's configuration names a time zone this build does not know.
    #[error("`{0}` is not a time zone this build knows: use an IANA name such as Europe/Amsterdam")]
    UnknownTimeZone(String),
    /// None of the operator's windows is long enough for the deployment.
    #[error(
        "none of the maintenance windows lasts the {needed_minutes} minutes a deployment needs: \
         lengthen one of them"
    )]
    NoWindowFits {
        /// How long a deployment is expected to take.
        needed_minutes: i64,
    },
    /// The operator asked to move its maintenance to an instant that is not one of its windows.
    #[error("{0} is not the start of one of your coming maintenance windows")]
    NotAWindow(String),
    /// The operator asked to move maintenance that has already started or ended.
    #[error("this maintenance has already started: it can no longer be moved")]
    AlreadyStarted,
    /// The operator asked to move maintenance past the release's deadline.
    #[error("the release must be applied before {0}: choose an earlier window")]
    PastDeadline(String),
    /// A rollout's settings cannot work.
    #[error("invalid rollout settings: {0}")]
    InvalidPolicy(String),
}

/// The fleet crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
