//! A Proxmox VE API simulator for the `proxmox` provider's integration tests.
//!
//! It serves `https://127.0.0.1:<free port>/api2/json/…` with a certificate signed by a CA it
//! makes at start (as a Proxmox node's `pve-ssl.pem` is signed by the cluster's
//! `pve-root-ca.pem`), so the provider's CA-file and fingerprint-pinning paths are the real
//! ones. It checks API tokens (`Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`), checks
//! every request's parameters against Proxmox's own API schema ([`schema`]) and answers `400`
//! with an `errors` map like Proxmox's parameter verification, wraps answers in
//! `{"data": …}`, reports errors in the HTTP reason phrase with a `{"data": null}` body, runs
//! clones and power actions as UPID tasks that take time (a clone holds `lock: clone` on the
//! new VM), keeps changes to a running VM's cores and memory pending until a reboot, and
//! answers the QEMU guest agent's `ping` and `file-read` once the VM has booted.
//!
//! The test steers it: [`ProxmoxSim::inject`] arranges faults (a `500`, a connection dropped
//! before or after the request took effect, a delay), [`ProxmoxSim::fail_next_task`] makes a
//! task fail with a log, and [`ProxmoxSim::requests`] returns every request with its answer
//! for the schema conformance check.

pub mod schema;

mod api;
pub(crate) mod server;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

pub use state::{TaskFailure, Vm};

/// How the simulated cluster is set up.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The node's name.
    pub node: String,
    /// The API token's id, `USER@REALM!TOKENID`.
    pub token_id: String,
    /// The API token's secret.
    pub token_secret: String,
    /// The template's VM id; the template has a 10 GiB `scsi0`, the guest agent enabled and a
    /// cloud-init drive.
    pub template_vmid: u32,
    /// How long a clone task runs.
    pub clone_time: Duration,
    /// How long a start, stop, shutdown, reboot or destroy task runs.
    pub task_time: Duration,
    /// How long after a start the guest agent answers.
    pub boot_time: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            node: "pve1".to_owned(),
            token_id: "fediversity@pve!provider".to_owned(),
            token_secret: "5b0e4f3c-0000-4000-8000-000000000001".to_owned(),
            template_vmid: 9000,
            clone_time: Duration::from_millis(300),
            task_time: Duration::from_millis(100),
            boot_time: Duration::from_millis(200),
        }
    }
}

/// What an injected fault does to the request it matches.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer `500` with this message in the reason phrase, without acting.
    ServerError(String),
    /// Close the connection without acting or answering.
    DropBefore,
    /// Act on the request, then close the connection without answering: the client cannot
    /// know whether it took effect.
    DropAfter,
    /// Wait this long, then act and answer.
    Delay(Duration),
}

/// A fault for the next `times` requests of `method` whose path ends with `path_suffix`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The end of the path below `/api2/json`, e.g. `/clone`.
    pub path_suffix: String,
    /// What happens.
    pub action: FaultAction,
    /// How many matching requests it affects.
    pub times: u32,
}

/// A request the simulator received, with its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The path below `/api2/json`, segments percent-decoded.
    pub path: String,
    /// The query (GET, DELETE) or form (POST, PUT) parameters, decoded once.
    pub params: BTreeMap<String, String>,
    /// The answer's HTTP status; `None` when the connection was dropped unanswered.
    pub status: Option<u16>,
    /// The answer's `data` on success.
    pub data: Option<Value>,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub state: Mutex<state::State>,
    pub faults: Mutex<Vec<Fault>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
}

/// Locks `mutex`, carrying on past a poisoned lock (a panicking test thread must not hide
/// the state from the next assertion).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running simulator; stopped when dropped.
#[derive(Debug)]
pub struct ProxmoxSim {
    options: SimOptions,
    address: SocketAddr,
    shared: Arc<Shared>,
    tls: server::TlsMaterial,
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    token_secret_file: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ProxmoxSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ProxmoxSim {
    /// Starts a simulator with `options` on a free loopback port, with the template in place.
    /// Must be called inside a Tokio runtime.
    pub async fn start(options: SimOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let template = BTreeMap::from(
            [
                ("name", "nixos-template"),
                ("cores", "1"),
                ("memory", "1024"),
                ("agent", "1"),
                ("ostype", "l26"),
                ("scsi0", "local-lvm:base-9000-disk-0,size=10G"),
                ("ide2", "local-lvm:vm-9000-cloudinit,media=cdrom"),
                ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
                ("scsihw", "virtio-scsi-single"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        lock(&shared.state)
            .add_vm(options.template_vmid, &options.node, template)
            .template = true;
        let tls = server::TlsMaterial::generate();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
        let ca_file = dir.path().join("pve-root-ca.pem");
        let token_secret_file = dir.path().join("token-secret");
        std::fs::write(&ca_file, &tls.ca_pem)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", ca_file.display()));
        std::fs::write(&token_secret_file, format!("{}\n", options.token_secret))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", token_secret_file.display()));
        let (address, server) = server::serve(&tls, shared.clone(), options.clone()).await;
        Self {
            options,
            address,
            shared,
            tls,
            _dir: dir,
            ca_file,
            token_secret_file,
            server,
        }
    }

    /// The API's base address, `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.address)
    }

    /// The options it runs with.
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// A PEM file holding the CA that signed the server's certificate.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// A file holding the API token's secret, as a hosting provider would keep it.
    pub fn token_secret_file(&self) -> &std::path::Path {
        &self.token_secret_file
    }

    /// The SHA-256 fingerprint of the server's certificate, `AB:CD:…` as Proxmox shows it.
    pub fn fingerprint(&self) -> String {
        self.tls.fingerprint.clone()
    }

    /// Arranges `fault`.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Makes the next task of `failure.task_type` fail.
    pub fn fail_next_task(&self, failure: TaskFailure) {
        lock(&self.shared.state).task_failures.push_back(failure);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The VM `vmid` as it is now (tasks due by now finished).
    pub fn vm(&self, vmid: u32) -> Option<Vm> {
        let mut state = lock(&self.shared.state);
        state.settle(std::time::Instant::now());
        state.vms.get(&vmid).cloned()
    }

    /// Every VM but the template, as it is now.
    pub fn vms(&self) -> Vec<Vm> {
        let mut state = lock(&self.shared.state);
        state.settle(std::time::Instant::now());
        state
            .vms
            .values()
            .filter(|vm| !vm.template)
            .cloned()
            .collect()
    }
}
