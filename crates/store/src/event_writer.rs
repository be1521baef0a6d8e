//! [`EventWriter`]: the engine's event sink that records a deployment's events in the store.

use std::sync::Arc;

use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_engine::events::{Event, EventSink};
use fediversity_model::names::OperatorId;
use tokio::sync::mpsc;

use crate::records::{DeploymentId, EventRecord};
use crate::store::Store;

/// The most events written in one transaction.
const MAX_BATCH: usize = 512;

/// Persists events in the store, in batches, from a task of its own so the run never waits on
/// the database for its progress reports. The CLI, the panel's worker and anything else that
/// runs a deployment record its events through it, so every reader (`events_since`, the
/// panel's live stream) sees the same log.
pub struct EventWriter(mpsc::UnboundedSender<EventRecord>);

impl EventWriter {
    /// A sink for `deployment`'s events, and the task that writes them: it ends once the sink
    /// (and every clone of the `Arc` it is put in) is dropped and the last batch is written.
    pub fn start(
        store: Arc<Store>,
        operator: OperatorId,
        deployment: DeploymentId,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<EventRecord>();
        let writer = tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(_) => break,
                    }
                }
                if let Err(error) = store.append_events(&operator, deployment, &batch).await {
                    tracing::error!(%error, "could not record a deployment's events");
                }
            }
        });
        (Self(sender), writer)
    }
}

impl EventSink for EventWriter {
    fn emit(&self, event: &Event) {
        let record = EventRecord {
            at: SystemClock.now(),
            event: event.clone(),
        };
        // The writer only stops when this sink is dropped.
        let _ = self.0.send(record);
    }
}
