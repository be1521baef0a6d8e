//! Throwaway Garage servers for integration tests, from the pinned Garage binary that
//! `scripts/setup-test` installs (`cargo install garage --locked --version 2.5.0`).
//!
//! [`Garage::start`] runs one node whose layout is assigned and which is healthy: ready for
//! buckets and keys. [`GarageCluster::start`] runs several nodes (replication factor = their
//! number) connected to each other and with **no** layout, as a dedicated cluster is before the
//! platform initialises it. Every node listens on free loopback ports (RPC, S3 API, S3 web,
//! admin API), keeps its data in its own temporary directory, and has a generated RPC secret
//! and admin token.
//!
//! Stopping: like the PostgreSQL server, each node runs under a small shell that waits on a pipe
//! from this process and kills the node when the pipe closes: when the node is dropped, or when
//! the test process ends in any way.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a server that cannot start is a failed test"
)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::describe;

/// Names the Garage binary, overriding the pinned one.
pub const BIN_VARIABLE: &str = "FEDIVERSITY_GARAGE";

/// The pinned version, installed under `~/.cache/fediversity/tools/garage-<version>`.
pub const VERSION: &str = "2.5.0";

/// The S3 region every test node is configured with.
pub const REGION: &str = "garage";

/// The zone test layouts put nodes in.
pub const ZONE: &str = "dc1";

/// What each node offers in a layout the testkit assigns.
const CAPACITY: &str = "1G";

/// How many times to try other ports when a concurrent process took one of those chosen.
const START_ATTEMPTS: u32 = 3;

/// How long a node may take to answer, and a layout to become healthy.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// One running Garage node, stopped and deleted when dropped.
#[derive(Debug)]
pub struct GarageNode {
    bin: PathBuf,
    config: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    web_port: u16,
    admin_port: u16,
    admin_token: String,
    /// The write end of the supervisor's pipe: closing it stops the node.
    supervisor_stdin: Option<ChildStdin>,
    supervisor: Option<Child>,
    dir: TempDir,
}

impl GarageNode {
    /// The admin API's base URL.
    pub fn admin_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The S3 API's base URL.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The S3 website endpoint's base URL.
    pub fn web_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }

    /// The admin API's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The RPC address other nodes reach this one at (`127.0.0.1:port`).
    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// The S3 region.
    pub fn region(&self) -> &str {
        REGION
    }

    /// Starts a node of a cluster of `replication_factor` nodes sharing `rpc_secret`; returns
    /// once its admin API answers. A port taken by another process between choosing it and
    /// Garage binding it (tests run in parallel) means another try on other ports.
    fn start(bin: &Path, replication_factor: usize, rpc_secret: &str) -> GarageNode {
        for attempt in 1..=START_ATTEMPTS {
            let mut node = GarageNode::spawn(bin, replication_factor, rpc_secret);
            match node.wait_for(|status| status.is_some(), "answer on its admin port") {
                Ok(()) => return node,
                Err(log) if attempt < START_ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => panic!("Garage stopped as it started; its log:\n{log}"),
            }
        }
        panic!("Garage did not start: every port tried was taken by another process")
    }

    /// Writes the node's configuration and starts it under its supervisor.
    fn spawn(bin: &Path, replication_factor: usize, rpc_secret: &str) -> GarageNode {
        let dir = tempfile::Builder::new()
            .prefix("fediversity-garage-")
            .tempdir()
            .expect("cannot create a temporary directory for Garage");
        let [rpc_port, s3_port, web_port, admin_port] = free_ports();
        let admin_token = random_hex(24);
        let config = dir.path().join("garage.toml");
        let meta = dir.path().join("meta");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = {replication_factor}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "127.0.0.1:{web_port}"
root_domain = ".web.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
"#,
                meta = meta.display(),
                data = data.display(),
            ),
        )
        .expect("cannot write Garage's configuration");
        let mut supervisor = supervise(bin, &config, &dir.path().join("garage.log"));
        let stdin = supervisor.stdin.take();
        GarageNode {
            bin: bin.to_owned(),
            config,
            rpc_port,
            s3_port,
            web_port,
            admin_port,
            admin_token,
            supervisor_stdin: stdin,
            supervisor: Some(supervisor),
            dir,
        }
    }

    /// Waits until `/health` (no token needed) gives a status `ready` accepts. `Err` with the
    /// node's log when the node stopped meanwhile.
    fn wait_for(&mut self, ready: impl Fn(Option<u16>) -> bool, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        while !ready(health_status(self.admin_port)) {
            let stopped = self
                .supervisor
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            if stopped {
                return Err(self.log());
            }
            if Instant::now() >= deadline {
                panic!(
                    "Garage did not {what} within {}s; its log:\n{}",
                    READY_WITHIN.as_secs(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Runs the `garage` command line against this node, returning its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        assert!(
            output.status.success(),
            "garage {} failed: {}",
            args.join(" "),
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// This node's id with its address (`<hex id>@127.0.0.1:port`), as `node connect` takes it.
    fn node_id(&self) -> String {
        self.cli(&["node", "id", "-q"]).trim().to_owned()
    }
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        // Closing the pipe tells the supervisor to stop the node; waiting for it means the
        // node is gone when `drop` returns.
        self.supervisor_stdin.take();
        if let Some(mut child) = self.supervisor.take() {
            let _ = child.wait();
        }
    }
}

/// A single-node Garage, its layout assigned: ready for buckets and keys.
#[derive(Debug)]
pub struct Garage {
    node: GarageNode,
}

impl Garage {
    /// Starts a node and assigns it a layout; returns once the cluster is healthy.
    ///
    /// # Panics
    /// When the Garage binary is missing or the node does not start.
    pub fn start() -> Garage {
        let mut node = GarageNode::start(&find_bin(), 1, &random_hex(32));
        let id = node.node_id();
        let id = id.split('@').next().unwrap_or_default();
        node.cli(&["layout", "assign", "-z", ZONE, "-c", CAPACITY, id]);
        node.cli(&["layout", "apply", "--version", "1"]);
        if let Err(log) = node.wait_for(|status| status == Some(200), "become healthy") {
            panic!("Garage stopped before it became healthy; its log:\n{log}");
        }
        Garage { node }
    }
}

impl std::ops::Deref for Garage {
    type Target = GarageNode;

    fn deref(&self) -> &GarageNode {
        &self.node
    }
}

/// Several Garage nodes connected to each other, with no layout yet.
#[derive(Debug)]
pub struct GarageCluster {
    nodes: Vec<GarageNode>,
}

impl GarageCluster {
    /// Starts `count` nodes (replication factor `count`) and connects them; their layout is
    /// left for the code under test to assign.
    ///
    /// # Panics
    /// When the Garage binary is missing or a node does not start.
    pub fn start(count: usize) -> GarageCluster {
        assert!(count >= 1, "a cluster has at least one node");
        let bin = find_bin();
        let rpc_secret = random_hex(32);
        let nodes: Vec<GarageNode> = (0..count)
            .map(|_| GarageNode::start(&bin, count, &rpc_secret))
            .collect();
        if let Some((first, others)) = nodes.split_first() {
            for other in others {
                first.cli(&["node", "connect", &other.node_id()]);
            }
        }
        GarageCluster { nodes }
    }

    /// The nodes, the first being the one to talk to.
    pub fn nodes(&self) -> &[GarageNode] {
        &self.nodes
    }
}

/// The Garage binary: [`BIN_VARIABLE`], else the pinned one in the tools cache.
fn find_bin() -> PathBuf {
    if let Some(path) = std::env::var_os(BIN_VARIABLE) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{BIN_VARIABLE}={} is not a file",
            path.display()
        );
        return path;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let pinned = home
        .join(".cache/fediversity/tools")
        .join(format!("garage-{VERSION}"))
        .join("bin/garage");
    assert!(
        pinned.is_file(),
        "Garage {VERSION} is not installed: found no {}. The S3 tests run against a real \
         Garage; install it with scripts/setup-test (cargo install garage --locked --version \
         {VERSION}), or point {BIN_VARIABLE} at a garage binary.",
        pinned.display()
    );
    pinned
}

/// Spawns the shell that runs the node, kills it once the shell's standard input closes, and
/// itself ends when the node does (so that a node that failed to start is noticed).
fn supervise(bin: &Path, config: &Path, log: &Path) -> Child {
    // Background commands read /dev/null, so the pipe is kept as descriptor 3 for `cat`.
    const SCRIPT: &str = r#"exec 3<&0
"$@" >"$LOG" 2>&1 3<&- &
pid=$!
(cat <&3 >/dev/null; kill "$pid" 2>/dev/null) &
wait "$pid""#;
    Command::new("sh")
        .args(["-c", SCRIPT, "supervisor"])
        .arg(bin)
        .arg("-c")
        .arg(config)
        .arg("server")
        .env("LOG", log)
        .env("RUST_LOG", "garage=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the shell that runs Garage")
}

/// The HTTP status of `GET /health` on the admin port, or `None` when nothing answers.
fn health_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Four TCP ports nothing listens on right now (held together, so they differ).
fn free_ports() -> [u16; 4] {
    let listeners: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot find a free TCP port"))
        .collect();
    let port = |i: usize| {
        listeners[i]
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    };
    [port(0), port(1), port(2), port(3)]
}

/// `bytes` random bytes, hex: from the kernel, which every test machine has.
fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .expect("cannot read /dev/urandom");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_node_is_healthy_and_stops_when_dropped() {
        let garage = Garage::start();
        assert_eq!(health_status(garage.admin_port), Some(200));
        let port = garage.admin_port;
        drop(garage);
        assert_eq!(health_status(port), None);
    }

    #[test]
    fn a_cluster_connects_its_nodes_and_leaves_the_layout_alone() {
        let cluster = GarageCluster::start(3);
        let status = cluster.nodes()[0].cli(&["status"]);
        for node in cluster.nodes() {
            assert!(status.contains(&node.rpc_addr()), "{status}");
        }
        // Without a layout, the cluster is not healthy.
        assert_eq!(health_status(cluster.nodes()[0].admin_port), Some(503));
    }
}
