//! What a run did, for people and scripts.

use std::collections::BTreeMap;

use fediversity_model::graph::ResourceAddress;
use serde::{Deserialize, Serialize};

use crate::plan::Action;

/// The end of a run: what was done, kept, failed and not attempted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Whose run.
    pub operator: String,
    /// Resources changed, with what was done to them.
    pub done: BTreeMap<ResourceAddress, Action>,
    /// Resources removed from the deployment with their data kept, with where it is.
    pub kept: BTreeMap<ResourceAddress, String>,
    /// Resources whose change failed, with why.
    pub failed: BTreeMap<ResourceAddress, String>,
    /// Resources not attempted because something they need failed.
    pub skipped: BTreeMap<ResourceAddress, String>,
    /// How many resources were already as desired.
    pub unchanged: usize,
    /// How many provider calls changed something (retries included).
    pub provider_calls: usize,
    /// How long the run took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Report {
    /// Whether every step succeeded.
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}
