//! Events: the only channel through which users learn what a run does.
//!
//! Every value in an event is masked: events are stored, streamed to the panel and printed.
//! Logs (`tracing`) are for the platform's operators; events are for its users.

use std::fmt;
use std::sync::Arc;

use fediversity_model::graph::ResourceAddress;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{Action, PlanSummary};
use crate::report::Report;

/// Something that happened in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The plan is made; the run starts carrying it out.
    Planned {
        /// What will be done.
        plan: PlanSummary,
    },
    /// Work on one resource began.
    Started {
        /// The resource.
        address: ResourceAddress,
        /// What is done to it.
        action: Action,
    },
    /// Long work on one resource moved on.
    Progress {
        /// The resource.
        address: ResourceAddress,
        /// What is happening, in words for people.
        message: String,
        /// How far along, from 0 to 1, when the provider knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f32>,
    },
    /// Work on one resource is done.
    Succeeded {
        /// The resource.
        address: ResourceAddress,
        /// What was done to it.
        action: Action,
        /// Its outputs now, secrets masked.
        outputs: Value,
    },
    /// Work on one resource failed, or was not attempted because something it needs failed.
    Failed {
        /// The resource.
        address: ResourceAddress,
        /// What was to be done to it.
        action: Action,
        /// Why, in words for people.
        error: String,
    },
    /// The run is over.
    Finished {
        /// What was done, kept and left undone.
        report: Report,
    },
}

/// Where events go: the store, the CLI's progress display, the panel's stream.
pub trait EventSink: Send + Sync {
    /// Takes one event. Must not block for long: the run waits for it.
    fn emit(&self, event: &Event);
}

/// Drops every event: for runs nobody watches (benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _event: &Event) {}
}

/// Lets a provider report progress on one resource.
#[derive(Clone)]
pub struct ProgressReporter {
    sink: Arc<dyn EventSink>,
    address: ResourceAddress,
}

impl ProgressReporter {
    /// A reporter for `address`, emitting into `sink`.
    pub fn new(sink: Arc<dyn EventSink>, address: ResourceAddress) -> Self {
        Self { sink, address }
    }

    /// Reports a step of the work. `message` must not contain a secret.
    pub fn report(&self, message: impl Into<String>, fraction: Option<f32>) {
        self.sink.emit(&Event::Progress {
            address: self.address.clone(),
            message: message.into(),
            fraction,
        });
    }
}

impl fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressReporter")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// An event as stored: numbered within its deployment and stamped with the time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Its place in the deployment's sequence, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: crate::clock::Millis,
    /// What happened.
    pub event: Event,
}
