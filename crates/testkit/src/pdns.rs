//! A throwaway PowerDNS authoritative server for the `dns` provider's integration tests, started
//! from Debian's `pdns-server` with its SQLite backend (`pdns-backend-sqlite3`), which
//! `scripts/setup-test` installs.
//!
//! Each [`PowerDns`] has its own temporary directory (configuration, control socket, SQLite
//! database), listens on a free loopback port over UDP and TCP, serves one zone with an SOA and
//! an NS record, and accepts RFC 2136 updates to that zone signed with one TSIG key
//! (hmac-sha256). It runs in the foreground (no daemon, no guardian), without root, with every
//! cache off so that a query right after an update sees it.
//!
//! Stopping: like [`crate::postgres`], a small supervising shell holds the server and waits on a
//! pipe from this process; dropping the [`PowerDns`], or this process ending in any way, closes
//! the pipe and the shell stops the server and removes its directory.
//!
//! [`PowerDns::query`] asks the server over the wire, so tests check what DNS clients would see,
//! never a provider's own bookkeeping; [`PowerDns::replace_rrset`] changes a record behind a
//! provider's back, as an administrator would.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a server that cannot start is a failed test"
)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tempfile::TempDir;

use crate::postgres::run_checked;

/// The TSIG key's name, as the server knows it.
pub const KEY_NAME: &str = "fediversity-test-key";

/// How long the server may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times to try another port when a concurrent process took the one chosen.
const START_ATTEMPTS: u32 = 3;

/// A running PowerDNS server, stopped and deleted when dropped.
#[derive(Debug)]
pub struct PowerDns {
    server: SocketAddr,
    zone: String,
    key_secret: String,
    dir: TempDir,
    supervisor_stdin: Mutex<Option<ChildStdin>>,
    supervisor: Mutex<Option<Child>>,
}

impl PowerDns {
    /// Starts a server for `zone` (e.g. `hosting.test`); blocks until it answers queries.
    ///
    /// # Panics
    /// When PowerDNS is not installed or does not start, with what to do about it.
    pub fn start(zone: &str) -> PowerDns {
        let mut log = String::new();
        for _ in 0..START_ATTEMPTS {
            let pdns = PowerDns::try_start(zone);
            if pdns.wait_until_it_answers() {
                return pdns;
            }
            log = pdns.log();
            if !log.contains("Unable to bind") {
                break;
            }
        }
        panic!("PowerDNS did not answer within {START_TIMEOUT:?}:\n{log}")
    }

    /// Prepares a fresh directory and starts the server on a port free right now.
    fn try_start(zone: &str) -> PowerDns {
        let server_bin = find_program("pdns_server");
        find_program("pdnsutil");
        find_program("sqlite3");
        let schema = find_schema();
        let dir = tempfile::Builder::new()
            .prefix("fediversity-pdns-")
            .tempdir()
            .expect("cannot create a temporary directory for PowerDNS");
        let database = dir.path().join("pdns.sqlite3");
        run_checked(
            Command::new("sqlite3")
                .arg(&database)
                .arg(format!(".read {}", schema.display())),
            "sqlite3 (loading PowerDNS's schema)",
        );
        let server = SocketAddr::from(([127, 0, 0, 1], free_port()));
        write_config(dir.path(), &database, server);
        create_zone(dir.path(), zone);
        let key_secret = key_secret(dir.path());
        let mut supervisor = supervise(&server_bin, dir.path());
        let stdin = supervisor.stdin.take();
        PowerDns {
            server,
            zone: zone.to_owned(),
            key_secret,
            dir,
            supervisor_stdin: Mutex::new(stdin),
            supervisor: Mutex::new(Some(supervisor)),
        }
    }

    /// The server's address (127.0.0.1 and a port), for UDP and TCP.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The zone the server is authoritative for.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The TSIG key's secret, base64 as `infra.toml`'s `tsig_secret_file` holds it.
    pub fn key_secret(&self) -> &str {
        &self.key_secret
    }

    /// Writes the TSIG key's secret to a file in the server's directory and returns its path.
    pub fn write_key_file(&self) -> PathBuf {
        let path = self.dir.path().join("tsig.key");
        std::fs::write(&path, format!("{}\n", self.key_secret))
            .expect("cannot write the TSIG key file");
        path
    }

    /// The record set `name`/`record_type` as the server answers it over UDP: its TTL and its
    /// records' data in presentation form, sorted; `None` when there is none.
    pub fn query(&self, name: &str, record_type: RecordType) -> Option<(u32, Vec<String>)> {
        let response = self
            .ask(name, record_type)
            .unwrap_or_else(|e| panic!("querying {name} {record_type} on {}: {e}", self.server));
        assert!(
            matches!(
                response.metadata.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            "{} answered {name} {record_type} with {}",
            self.server,
            response.metadata.response_code
        );
        let records: Vec<_> = response
            .answers
            .iter()
            .filter(|r| r.record_type() == record_type)
            .collect();
        let ttl = records.first()?.ttl;
        let mut values: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
        values.sort();
        Some((ttl, values))
    }

    /// Replaces a record set directly in the server's database with `pdnsutil`, as an
    /// administrator editing the zone by hand would: `name` relative to the zone (`@` for its
    /// apex), `values` in zone-file syntax.
    pub fn replace_rrset(&self, name: &str, record_type: &str, ttl: u32, values: &[&str]) {
        self.pdnsutil(
            &[
                &[
                    "replace-rrset",
                    &self.zone,
                    name,
                    record_type,
                    &ttl.to_string(),
                ],
                values,
            ]
            .concat(),
        );
    }

    /// Runs `pdnsutil` on this server's configuration.
    pub fn pdnsutil(&self, args: &[&str]) -> Output {
        pdnsutil(self.dir.path(), args)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pdns.log")).unwrap_or_default()
    }

    fn ask(&self, name: &str, record_type: RecordType) -> Result<Message, String> {
        let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
        let mut message = Message::query();
        message.add_query(Query::query(name, record_type));
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        socket
            .send_to(&message.to_vec().map_err(|e| e.to_string())?, self.server)
            .map_err(|e| e.to_string())?;
        let mut buffer = vec![0; 65_535];
        let (len, _) = socket.recv_from(&mut buffer).map_err(|e| e.to_string())?;
        Message::from_vec(&buffer[..len]).map_err(|e| e.to_string())
    }

    fn wait_until_it_answers(&self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .ask(&self.zone, RecordType::SOA)
                .is_ok_and(|m| m.metadata.response_code == ResponseCode::NoError)
            {
                return true;
            }
            if self.log().contains("Unable to bind") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Ok(mut stdin) = self.supervisor_stdin.lock() {
            stdin.take();
        }
        if let Ok(mut supervisor) = self.supervisor.lock()
            && let Some(mut child) = supervisor.take()
        {
            let _ = child.wait();
        }
    }
}

impl Drop for PowerDns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The program `name` on `PATH`, or a failure naming the setup script.
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: the dns provider's tests run a real PowerDNS server; install \
         it with scripts/setup-test (Debian's pdns-server, pdns-backend-sqlite3 and sqlite3)"
    )
}

/// The SQLite schema of the Debian PowerDNS backend.
fn find_schema() -> PathBuf {
    [
        "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
        "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
    .unwrap_or_else(|| {
        panic!(
            "PowerDNS's SQLite backend is not installed (no schema.sqlite3.sql): install \
             pdns-backend-sqlite3 with scripts/setup-test"
        )
    })
}

fn write_config(dir: &Path, database: &Path, server: SocketAddr) {
    let config = format!(
        "launch=gsqlite3\n\
         gsqlite3-database={database}\n\
         local-address={server}\n\
         socket-dir={dir}\n\
         daemon=no\n\
         guardian=no\n\
         write-pid=no\n\
         disable-syslog=yes\n\
         setuid=\n\
         setgid=\n\
         dnsupdate=yes\n\
         allow-dnsupdate-from=127.0.0.0/8\n\
         cache-ttl=0\n\
         negquery-cache-ttl=0\n\
         query-cache-ttl=0\n\
         consistent-backends=yes\n\
         security-poll-suffix=\n\
         loglevel=5\n",
        database = database.display(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("pdns.conf"), config).expect("cannot write pdns.conf");
}

/// The zone with an SOA and an NS record, a TSIG key, and the key allowed to update the zone.
fn create_zone(dir: &Path, zone: &str) {
    let ns = format!("ns1.{zone}");
    pdnsutil(dir, &["create-zone", zone, &ns]);
    let soa = format!("{ns}. hostmaster.{zone}. 1 10800 3600 604800 60");
    pdnsutil(dir, &["replace-rrset", zone, "@", "SOA", "3600", &soa]);
    pdnsutil(dir, &["generate-tsig-key", KEY_NAME, "hmac-sha256"]);
    pdnsutil(dir, &["set-meta", zone, "TSIG-ALLOW-DNSUPDATE", KEY_NAME]);
}

/// The TSIG key's secret, as `pdnsutil list-tsig-keys` prints it (`name. algorithm. secret`).
fn key_secret(dir: &Path) -> String {
    let output = pdnsutil(dir, &["list-tsig-keys"]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.trim_end_matches('.');
            (name == KEY_NAME).then(|| fields.nth(1).map(str::to_owned))?
        })
        .unwrap_or_else(|| panic!("pdnsutil list-tsig-keys did not list {KEY_NAME}"))
}

fn pdnsutil(dir: &Path, args: &[&str]) -> Output {
    run_checked(
        Command::new("pdnsutil")
            .arg(format!("--config-dir={}", dir.display()))
            .args(args),
        &format!("pdnsutil {}", args.first().copied().unwrap_or_default()),
    )
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("cannot bind a TCP port on 127.0.0.1");
        let port = tcp
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("found no port free for both UDP and TCP on 127.0.0.1")
}

/// Spawns the shell that runs the server and, once its standard input closes, stops it and
/// removes `dir`.
fn supervise(server_bin: &Path, dir: &Path) -> Child {
    const SCRIPT: &str = r#""$@" >"$DIR/pdns.log" 2>&1 & pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$DIR""#;
    Command::new("sh")
        .args(["-c", SCRIPT, "supervisor"])
        .arg(server_bin)
        .arg(format!("--config-dir={}", dir.display()))
        .env("DIR", dir)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the shell that runs PowerDNS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_server_answers_for_its_zone_and_is_gone_when_dropped() {
        let pdns = PowerDns::start("hosting.test");
        let (_, soa) = pdns.query("hosting.test", RecordType::SOA).unwrap();
        assert!(soa[0].starts_with("ns1.hosting.test."), "{soa:?}");
        assert!(!pdns.key_secret().is_empty());
        pdns.replace_rrset("www", "A", 120, &["192.0.2.7"]);
        assert_eq!(
            pdns.query("www.hosting.test", RecordType::A),
            Some((120, vec!["192.0.2.7".to_owned()]))
        );
        assert_eq!(pdns.query("nothing.hosting.test", RecordType::A), None);
        let server = pdns.server();
        let dir = pdns.dir.path().to_owned();
        drop(pdns);
        assert!(std::net::TcpStream::connect(server).is_err());
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
