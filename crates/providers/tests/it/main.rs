//! The providers' integration tests, one binary: the sandbox provider per kind on real files,
//! the `dns` provider against a real PowerDNS,
//! a whole sandbox deployment through the engine, external providers against the Python
//! example and deliberately broken scripts, the conformance runner, the protocol's
//! checked-in example messages against its JSON Schema, the Garage provider against real
//! Garage, the `dns` provider against real PowerDNS, the `nixos` provider against test hosts
//! in network namespaces, and the `proxmox` provider against the Proxmox VE simulator and
//! Proxmox's own API schema.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod conformance;
mod dns;
mod external;
mod garage;
mod identity;
mod local;
mod messages;
mod nixos;
mod proxmox;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fediversity_engine::events::{Event, EventSink, ProgressReporter};
use fediversity_engine::provider::CallContext;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::names::OperatorId;

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    fediversity_testkit::workspace_root()
}

/// Collects events, as JSON lines.
#[derive(Default)]
pub struct Events(Mutex<Vec<Event>>);

impl Events {
    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Every event so far, as JSON lines.
    pub fn json(&self) -> String {
        self.all()
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl EventSink for Events {
    fn emit(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// Applies `graph` without asking, its events unwatched.
pub async fn apply(
    engine: &fediversity_engine::Engine,
    graph: &fediversity_model::graph::DesiredGraph,
) -> fediversity_engine::report::Report {
    engine
        .apply(
            graph,
            Arc::new(Events::default()),
            fediversity_engine::Approval::Automatic,
        )
        .await
        .unwrap()
        .unwrap()
}

/// A call context for `address` of `operator`, with its progress going to `events`.
pub fn ctx_with(operator: &str, address: &str, events: Arc<Events>) -> CallContext {
    let address: ResourceAddress = address.parse().unwrap();
    CallContext {
        operator: OperatorId::try_from(operator).unwrap(),
        progress: ProgressReporter::new(events, address.clone()),
        idempotency_key: format!("{operator}-{address}-test"),
        address,
    }
}

/// A call context for `address` of `operator`.
pub fn ctx(operator: &str, address: &str) -> CallContext {
    ctx_with(operator, address, Arc::default())
}

/// Fails the test, clearly, when python3 is missing: the external provider tests need it and
/// must not pass by skipping.
pub fn require_python3() {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "python3 is needed to run the example external provider (examples/providers/notes.py): \
         run scripts/setup-test, which installs Debian's python3"
    );
}

/// Writes an executable script `name` with `body` into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
