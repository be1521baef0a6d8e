//! The store's errors: each says what went wrong and what to do about it.

use std::path::PathBuf;

use fediversity_engine::store::StoreError;
use fediversity_model::names::OperatorId;

use crate::records::{DeploymentId, JobId};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL names no backend the store has.
    #[error(
        "the database URL `{0}` is not supported: use sqlite://PATH?mode=rwc (a file, created \
         when missing), sqlite::memory: or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),

    /// The database could not be opened or reached.
    #[error(
        "cannot open the database at {url}: {source}. For SQLite, check that the directory \
         exists and is writable by this user (add ?mode=rwc to create the file); for \
         PostgreSQL, check that the server is running and reachable and that the user, \
         password and database name are right"
    )]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },

    /// The schema could not be brought up to date.
    #[error(
        "migrating the database schema failed: {0}. If the database was used by a newer \
         version of fediversity, run that version; if it was changed by hand, restore it from \
         a backup"
    )]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// A query failed.
    #[error("the database failed while {context}: {source}")]
    Query {
        /// What the store was doing.
        context: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },

    /// A sealed value does not open under the key the store was given.
    #[error(
        "the platform key does not match the one this state was written with (or the sealed \
         data was altered): start the platform with the key file it was first started with"
    )]
    KeyMismatch,

    /// The platform key file could not be read or written.
    #[error(
        "cannot use the platform key file {path}: {source}. Check the path and that this user \
         may read it"
    )]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// The platform key file holds something else than a key.
    #[error(
        "the platform key file {path} does not hold a key: {problem}. It must hold the 32-byte \
         key in base64, as written when the key was generated"
    )]
    KeyFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        problem: String,
    },

    /// The platform key file can be read by other users.
    #[error(
        "the platform key file {path} can be read or written by other users (mode {mode:o}): \
         run `chmod 600 {path}` so that only the platform's user has it"
    )]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),

    /// Something read back from the database is not what the store writes.
    #[error(
        "the database holds a malformed {what}: {problem}. It was not written by this version \
         of the store, or was changed by hand"
    )]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// A task running database work did not finish.
    #[error("database work was interrupted before it finished ({0}): try again")]
    Interrupted(String),

    /// A value could not be turned into JSON.
    #[error("cannot serialise {what} as JSON: {source}")]
    Serialise {
        /// Which kind of value.
        what: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },

    /// The operator is already registered.
    #[error("operator `{0}` already exists")]
    OperatorExists(OperatorId),

    /// The invitation a sign-up used is unknown, used, revoked or expired.
    #[error(
        "the invitation is unknown, used, revoked or expired: ask the hosting provider for a \
         new one"
    )]
    InvitationRefused,

    /// Another user signs in with this e-mail address.
    #[error("a user with the e-mail address `{0}` already exists: sign in, or use another address")]
    EmailTaken(String),

    /// Another operator deploys under this domain, a name above it or a name under it.
    #[error(
        "the domain `{0}` cannot be used: another operator deploys under it, above it or below it \
         (ask the hosting provider if it is yours)"
    )]
    DomainTaken(String),

    /// The operator is not registered.
    #[error("operator `{0}` does not exist: create it first")]
    UnknownOperator(OperatorId),

    /// The operator has no such configuration version.
    #[error("operator `{operator}` has no configuration version {version}")]
    UnknownConfiguration {
        /// Whose configuration.
        operator: OperatorId,
        /// The version asked for.
        version: i64,
    },

    /// The operator has no such deployment (or it is in no state for the change asked).
    #[error("operator `{operator}` has no deployment {deployment} {expected}")]
    UnknownDeployment {
        /// Whose deployment.
        operator: OperatorId,
        /// Which deployment.
        deployment: DeploymentId,
        /// The state it had to be in, in words ("that is queued"), or empty.
        expected: &'static str,
    },

    /// The intent is not an open intent of the operator.
    #[error(
        "intent {id} is not an open intent of operator `{operator}`: it belongs to another \
         operator, does not exist, or was already finished"
    )]
    IntentNotOpen {
        /// Whose intent it was said to be.
        operator: OperatorId,
        /// The intent.
        id: i64,
    },

    /// A worker reported on a job it does not hold.
    #[error(
        "job {job} is not held by worker `{worker}`: its lock expired and another worker may \
         have taken it over, so this worker must not report on it"
    )]
    JobNotHeld {
        /// The job.
        job: JobId,
        /// The worker that reported.
        worker: String,
    },

    /// There is no such release.
    #[error("there is no release {0}: `fediversity fleet status` lists them")]
    UnknownRelease(i64),

    /// The operator is not part of the release's rollout.
    #[error("operator `{operator}` is not part of release {release}")]
    UnknownRolloutItem {
        /// The release.
        release: i64,
        /// The operator.
        operator: OperatorId,
    },
}

/// The result of a store call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a driver error with what the store was doing.
pub(crate) fn query_failed(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Query { context, source }
}

/// A corrupt-value error.
pub(crate) fn corrupt(what: &'static str, problem: impl ToString) -> Error {
    Error::Corrupt {
        what,
        problem: problem.to_string(),
    }
}

/// The engine sees the store's message: it already says what to do.
impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        StoreError(error.to_string())
    }
}
