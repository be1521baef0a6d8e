//! The store: everything the platform remembers, on SQLite (the embedded default) or
//! PostgreSQL (for several `serve` and `worker` processes sharing one database).
//!
//! It owns the tables and what goes into them:
//! - the engine's state, through [`fediversity_engine::store::StateStore`]: resource records,
//!   the journal of provider calls (intents and outcomes) and the per-operator leases;
//! - the panel's persistence: operators, their users and sessions, every version of their
//!   configurations, deployments, their event logs and the job queue workers claim from;
//! - invitations to sign up (hashes only), each used at most once;
//! - the latest user sync of each operator's own directory (snapshot and report);
//! - the panel's OpenID Connect provider: its clients, signing keys (sealed), and the grants
//!   and tokens it issued (hashes only);
//! - the addresses VMs hold from the infrastructure's pools (one resource per address);
//! - fleet operations: releases, each operator's slot and status in a release's rollout,
//!   and the notifications sent about them (each written, and e-mailed, once);
//! - secrets at rest: every `{"$secret": …}` value is sealed under the platform key
//!   ([`SealingKey`]) before it is written, and a store opened with another key refuses to
//!   start.
//!
//! The schema is embedded (`migrations/`, one directory per database) and brought up to date on
//! [`Store::connect`]. Every operator-scoped call takes the [`OperatorId`] and filters on it,
//! so one operator's rows are never reachable through another's.
//!
//! It must not know about HTML or HTTP (the panel renders), nor about any provider's
//! internals: records, inputs and outputs are JSON it keeps as given, and jobs are kinds and
//! payloads it does not interpret.
//!
//! [`OperatorId`]: fediversity_model::names::OperatorId

mod accounts;
mod addresses;
mod backend;
mod domains;
mod error;
mod event_writer;
mod fleet;
mod identity_syncs;
mod invitations;
mod oidc;
mod records;
mod sealing;
mod state_store;
mod store;

pub use accounts::{Role, Session, User, UserId};
pub use error::{Error, Result};
pub use event_writer::EventWriter;
pub use fleet::{
    FleetLease, NewNotification, NewRelease, Notification, NotificationKind, Release, ReleaseId,
    RolloutItem,
};
pub use identity_syncs::IdentitySync;
pub use invitations::{Invitation, InvitationId};
pub use oidc::{Grant, GrantId, NewGrant, NewToken, OidcClient, Redemption, SigningKey, TokenKind};
pub use records::{
    ConfigurationVersion, Deployment, DeploymentId, DeploymentOutcome, DeploymentStatus,
    EventRecord, Job, JobId, NewJob, StoredConfiguration, StoredEvent,
};
pub use sealing::SealingKey;
pub use store::{Backend, Store};
