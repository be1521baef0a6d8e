//! Test hosts for the `nixos` provider: each one a network namespace with its own address, its
//! own `sshd` and its own Nix store, so that a deployment really crosses SSH and really copies
//! a closure from one store into another.
//!
//! [`TestHosts::start`] makes `n` hosts on a private bridge:
//!
//! - a bridge in the root namespace holding `10.X.Y.1/24`, with `X.Y` chosen so that no other
//!   interface of the machine (another test binary's hosts, say) has an address in that /24;
//! - per host a namespace (`ip netns add`), a veth pair from the bridge into it, the address
//!   `10.X.Y.(i+2)`, loopback up, and `sshd -D` run inside it with its own Ed25519 host key and
//!   its own configuration: root may log in with the set's test key (no password, no
//!   keyboard-interactive, no PAM), and with the keys in [`TestHost::authorized_keys`] under
//!   the host's root, the file a deployed system's `deploy_keys` go to (as NixOS's
//!   `/etc/ssh/authorized_keys.d/root`);
//! - per host a directory, [`TestHost::root`], standing for the host's file system: its Nix
//!   store is the chroot store `local?root=<root>` (what `nix copy` addresses through
//!   `ssh-ng://…?remote-store=local?root=<root>`), and the provider writes its secrets and
//!   profiles under it;
//! - per host a Nix configuration for the commands run over SSH (`SetEnv
//!   NIX_USER_CONF_FILES`), as a real host has its `/etc/nix/nix.conf`: no substituters (the
//!   test machine has no Internet access), and the machine's `/bin`, `/usr`, `/lib` and
//!   `/lib64` in the build chroot. Nix always builds in a chroot for a store under another
//!   root, and the test system's builder is the machine's `/bin/sh`; this is what lets a test
//!   host build a system itself (`build_on = "target"`).
//!
//! Dropping the [`TestHosts`] (also when a test panics) kills every process left in each
//! namespace (sshd and whatever an activation started), deletes the namespaces, the veths and
//! the bridge, and removes the directory. Each sshd runs in a mount namespace of its own that
//! hides the machine's `/root/.bashrc`, which Debian's bash reads for every command run over
//! SSH (a fresh host has none; this machine's made each command 250 ms slower). The hosts need
//! root, `ip` (iproute2), `sshd`
//! (openssh-server), `ssh-keygen` and `nix` (nix-bin): without them [`TestHosts::start`] fails
//! with a message naming `scripts/setup-test`.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: hosts that cannot start make a failed test"
)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where Debian installs `sshd`.
const SSHD: &str = "/usr/sbin/sshd";

/// Root's authorized keys under a host's root, as NixOS keeps them.
const AUTHORIZED_KEYS: &str = "etc/ssh/authorized_keys.d/root";

/// How long a host's sshd may take to listen.
const SSHD_START: Duration = Duration::from_secs(10);

/// A set of test hosts, torn down when dropped.
#[derive(Debug)]
pub struct TestHosts {
    hosts: Vec<TestHost>,
    bridge: String,
    client_key: PathBuf,
    dir: TempDir,
}

/// One test host: a namespace with an address, an sshd and a root directory.
#[derive(Debug)]
pub struct TestHost {
    namespace: String,
    address: Ipv4Addr,
    host_key: String,
    root: PathBuf,
    config: PathBuf,
    sshd: Mutex<Option<Child>>,
}

impl TestHost {
    /// The host's address, reachable from the root namespace.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The host's public SSH host key, as a VM would report it (`ssh-ed25519 AAAA… comment`).
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// The directory standing for the host's file system (its Nix store is under it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host's own authorized keys for root, which the test system writes from the spec's
    /// `deploy_keys` on activation (and a test may write first, as cloud-init would).
    pub fn authorized_keys(&self) -> PathBuf {
        self.root.join(AUTHORIZED_KEYS)
    }

    /// How many SSH logins the host's sshd has accepted so far.
    pub fn logins(&self) -> usize {
        std::fs::read_to_string(self.config.with_extension("log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Accepted publickey"))
            .count()
    }

    /// Stops the host's sshd: connections to it are then refused.
    pub fn stop_sshd(&self) {
        if let Some(mut child) = self.sshd.lock().expect("sshd lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Drops every SSH connection to the host, as a network failure or an sshd restart would:
    /// kills every sshd process in its namespace (the listener and each connection's), then
    /// starts sshd again. What the connections started in the background lives on.
    pub fn drop_connections(&self) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.namespace])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sshd" {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        self.start_sshd();
    }

    /// Starts the host's sshd (again) and waits until it listens.
    ///
    /// # Panics
    /// When it does not start.
    pub fn start_sshd(&self) {
        self.stop_sshd();
        let log = self.config.with_extension("log");
        // Debian's bash reads root's ~/.bashrc for every command run over SSH; the machine's
        // may be slow (a pyenv set-up costs 250 ms a command here) or noisy. A fresh host has
        // none, so sshd runs in its own mount namespace with the file hidden.
        let script = format!(
            "[ ! -f /root/.bashrc ] || mount --bind /dev/null /root/.bashrc; exec {SSHD} -D -f \"$0\" -E \"$1\""
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .arg(&self.config)
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sshd in {}: {e}", self.namespace));
        *self.sshd.lock().expect("sshd lock") = Some(child);
        let deadline = Instant::now() + SSHD_START;
        let at = SocketAddr::from((self.address, 22));
        while TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "sshd in {} does not listen on {at} after {SSHD_START:?}: {said}",
                    self.namespace
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestHosts {
    /// Starts `n` hosts; blocks until every sshd listens.
    ///
    /// # Panics
    /// When not run as root, when a tool is missing (with what to run), or when a host does
    /// not start.
    pub fn start(n: usize) -> TestHosts {
        assert!(n > 0 && n <= 200, "between 1 and 200 test hosts, not {n}");
        require_tools();
        let dir = tempfile::Builder::new()
            .prefix("fedi-hosts-")
            .tempdir()
            .expect("cannot create a temporary directory for test hosts");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("cannot make the hosts' directory private");
        let client_key = dir.path().join("client-key");
        keygen(&client_key, "fediversity-test-client");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)
            .expect("cannot write authorized_keys");
        let (bridge, subnet) = make_bridge();
        let mut set = TestHosts {
            hosts: Vec::new(),
            bridge,
            client_key,
            dir,
        };
        for i in 0..n {
            // Recorded before it is plumbed, so that a failure half-way is still torn down.
            let host = set.make_host(i, subnet);
            set.hosts.push(host);
            set.plumb(i);
        }
        for host in &set.hosts {
            host.start_sshd();
        }
        set
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[TestHost] {
        &self.hosts
    }

    /// The test client's private key (OpenSSH PEM), the one every host lets in as root.
    pub fn client_private_key(&self) -> String {
        std::fs::read_to_string(&self.client_key).expect("cannot read the test client key")
    }

    /// The directory under which each host's root is `<dir>/<address>`: what the `nixos`
    /// provider is told as its hosts' root.
    pub fn roots(&self) -> PathBuf {
        self.dir.path().join("roots")
    }

    /// A scratch directory of this set, removed with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn make_host(&self, i: usize, subnet: [u8; 2]) -> TestHost {
        let tag = &self.bridge[3..];
        let namespace = format!("fdn{tag}-{i}");
        let address = Ipv4Addr::new(
            10,
            subnet[0],
            subnet[1],
            u8::try_from(i + 2).expect("<=200"),
        );
        let root = self.roots().join(address.to_string());
        std::fs::create_dir_all(&root).expect("cannot create a test host's root");
        let host_dir = self.dir.path().join(format!("host-{i}"));
        std::fs::create_dir_all(&host_dir).expect("cannot create a test host's directory");
        let key = host_dir.join("host-key");
        keygen(&key, &format!("root@{namespace}"));
        let host_key = std::fs::read_to_string(key.with_extension("pub"))
            .expect("cannot read a host key")
            .trim()
            .to_owned();
        let nix_conf = host_dir.join("nix.conf");
        std::fs::write(&nix_conf, host_nix_conf()).expect("cannot write a test host's nix.conf");
        let config = host_dir.join("sshd_config");
        std::fs::write(
            &config,
            sshd_config(
                address,
                &key,
                &[
                    &self.dir.path().join("authorized_keys"),
                    &root.join(AUTHORIZED_KEYS),
                ],
                &host_dir,
                &nix_conf,
            ),
        )
        .expect("cannot write sshd_config");
        TestHost {
            namespace,
            address,
            host_key,
            root,
            config,
            sshd: Mutex::new(None),
        }
    }
}

impl TestHosts {
    /// Makes host `i`'s namespace, its veth into the bridge, and its addresses.
    fn plumb(&self, i: usize) {
        let host = &self.hosts[i];
        let (namespace, address) = (&host.namespace, host.address);
        let veth = format!("fdv{}-{i}", &self.bridge[3..]);
        ip(&["netns", "add", namespace]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", namespace,
        ]);
        ip(&["link", "set", &veth, "master", &self.bridge, "up"]);
        let cidr = format!("{address}/24");
        for args in [
            &["addr", "add", cidr.as_str(), "dev", "eth0"][..],
            &["link", "set", "eth0", "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["netns", "exec", namespace, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        }
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            host.stop_sshd();
            // Whatever an activation started (the test systems' HTTP servers) lives on in the
            // namespace: kill it before the namespace goes.
            let pids = Command::new("ip")
                .args(["netns", "pids", &host.namespace])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &host.namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// The configuration of one host's sshd. `StrictModes no`: the set's files are private, but
/// they live under /tmp, whose world-writable mode sshd would refuse (it ignores the sticky bit).
fn sshd_config(
    address: Ipv4Addr,
    host_key: &Path,
    authorized: &[&Path],
    dir: &Path,
    nix_conf: &Path,
) -> String {
    let authorized: Vec<String> = authorized.iter().map(|p| p.display().to_string()).collect();
    format!(
        "ListenAddress {address}\n\
         Port 22\n\
         HostKey {}\n\
         PidFile {}\n\
         AuthorizedKeysFile {}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         AllowTcpForwarding yes\n\
         MaxSessions 100\n\
         MaxStartups 100\n\
         SetEnv NIX_USER_CONF_FILES={}\n\
         LogLevel VERBOSE\n",
        host_key.display(),
        dir.join("sshd.pid").display(),
        authorized.join(" "),
        nix_conf.display(),
    )
}

/// A test host's Nix configuration (see the module docs): the machine's directories the
/// build chroot needs, those that exist.
fn host_nix_conf() -> String {
    let chroot: Vec<&str> = ["/bin", "/usr", "/lib", "/lib64"]
        .into_iter()
        .filter(|dir| Path::new(dir).exists())
        .collect();
    format!("substituters =\nsandbox-paths = {}\n", chroot.join(" "))
}

/// Fails with what to do when the hosts cannot be made here.
fn require_tools() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert!(
        uid == "0",
        "the nixos test hosts need root (network namespaces, sshd): run the tests as root, as \
         scripts/test does in CI"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("nix", "nix-bin"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is missing: the nixos test hosts need Debian's {package}; run \
             scripts/setup-test, which installs it"
        );
    }
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: the nixos test hosts need Debian's openssh-server; run \
         scripts/setup-test, which installs it"
    );
    // sshd's privilege separation directory, which Debian's init script would make.
    std::fs::create_dir_all("/run/sshd").expect("cannot create /run/sshd");
}

/// A bridge holding `10.X.Y.1/24` for a `X.Y` no interface uses yet; its name and `[X, Y]`.
fn make_bridge() -> (String, [u8; 2]) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    for _ in 0..64 {
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let mixed = pid
            .wrapping_mul(7919)
            .wrapping_add(serial.wrapping_mul(104_729));
        // 10.200.0.0 – 10.249.255.0: clear of the usual container and VPN ranges.
        let slot = mixed % (50 * 256);
        let subnet = [
            200 + u8::try_from(slot / 256).expect("< 50"),
            u8::try_from(slot % 256).expect("< 256"),
        ];
        let prefix = format!("10.{}.{}.", subnet[0], subnet[1]);
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {prefix}")))
            .unwrap_or(true);
        if used {
            continue;
        }
        let bridge = format!("fdb{:06x}", mixed & 0xff_ffff);
        let made = Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            continue;
        }
        ip(&["addr", "add", &format!("{prefix}1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        return (bridge, subnet);
    }
    panic!("no free 10.200-249.x.0/24 subnet and bridge name for test hosts after 64 tries");
}

fn keygen(path: &Path, comment: &str) {
    checked(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        "ssh-keygen",
    );
}

fn ip(args: &[&str]) {
    checked(Command::new("ip").args(args), "ip");
}

fn checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({:?}): {}{}",
        command,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The flake reference of the test system (`fixtures/nixos-test-system`): a stand-in for the
/// Fediversity NixOS systems that Debian's Nix builds without nixpkgs. `path:` makes Nix take
/// the directory as it is, not only the files git tracks.
pub fn test_system_flake() -> String {
    format!(
        "path:{}",
        crate::workspace_root()
            .join("crates/testkit/fixtures/nixos-test-system")
            .display()
    )
}
