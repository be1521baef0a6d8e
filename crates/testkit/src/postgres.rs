//! A throwaway PostgreSQL server for integration tests, started from the machine's own
//! PostgreSQL binaries (Debian's `postgresql` package, which `scripts/setup-test` installs).
//!
//! One server per test binary is enough: [`PostgresServer::shared`] starts it on first use and
//! every test takes a fresh database from it with [`PostgresServer::create_database`], so tests
//! never see each other's rows and pay for `initdb` once. The server listens on 127.0.0.1 and
//! on a socket in its own temporary directory, trusts local connections, and runs without
//! `fsync` (its data is thrown away).
//!
//! Stopping: a small supervising shell holds the server and waits on a pipe from this process.
//! When the [`PostgresServer`] is dropped, or when the test process ends in any way (a shared
//! server is never dropped), the pipe closes and the shell stops the server and removes its
//! directory, so no `postgres` process outlives the tests.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI containers), the server
//! runs as the `postgres` user the Debian package creates.
//!
//! A missing installation fails the test with a message saying how to install it: the store's
//! suite must run on both backends, so it never skips silently.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a server that cannot start is a failed test"
)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tempfile::TempDir;

use crate::describe;

/// Where Debian installs each PostgreSQL major version (`/usr/lib/postgresql/15/bin`).
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Names a directory holding `initdb`, `pg_ctl` and `createdb`, overriding the search.
pub const BIN_VARIABLE: &str = "FEDIVERSITY_POSTGRES_BIN";

/// The superuser `initdb` creates; local connections are trusted, so it needs no password.
const SUPERUSER: &str = "postgres";

/// How many times to try another port when a concurrent process took the one chosen.
const START_ATTEMPTS: u32 = 3;

/// A running PostgreSQL server, stopped and deleted when dropped.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    /// The write end of the supervisor's pipe: closing it stops the server.
    supervisor_stdin: Mutex<Option<ChildStdin>>,
    supervisor: Mutex<Option<Child>>,
    /// Removes the directory if the supervisor could not (it normally does it itself).
    _dir: TempDir,
}

impl PostgresServer {
    /// The server shared by every test of this process, started on first use.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(PostgresServer::start)
    }

    /// Starts a new server; blocks until it accepts connections.
    ///
    /// # Panics
    /// When PostgreSQL is not installed or does not start, with what to do about it.
    pub fn start() -> PostgresServer {
        let bin = find_bin_dir();
        let user = ServerUser::for_this_process();
        let dir = tempfile::Builder::new()
            .prefix("fediversity-postgres-")
            .tempdir_in(user.temp_root())
            .expect("cannot create a temporary directory for PostgreSQL");
        user.take_ownership(dir.path());
        let data = dir.path().join("data");
        run_checked(
            user.command(&bin.join("initdb"), dir.path())
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
                .args(["--no-sync", "--no-instructions"]),
            "initdb",
        );
        let port = start_on_free_port(&bin, &user, dir.path(), &data);
        let mut supervisor = supervise(&bin, &user, dir.path(), &data);
        let stdin = supervisor.stdin.take();
        PostgresServer {
            port,
            bin,
            supervisor_stdin: Mutex::new(stdin),
            supervisor: Mutex::new(Some(supervisor)),
            _dir: dir,
        }
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database whose name starts with `hint` and returns its URL.
    ///
    /// # Panics
    /// When `createdb` fails.
    pub fn create_database(&self, hint: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = database_name(hint, NEXT.fetch_add(1, Ordering::Relaxed));
        run_checked(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", SUPERUSER, &name]),
            "createdb",
        );
        self.url(&name)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Closing the pipe tells the supervisor to stop the server; waiting for it means the
        // server is gone when `drop` returns.
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

/// A database name PostgreSQL accepts unquoted: lower case, at most 63 bytes, unique per
/// process (with the process id, unique on the server too).
fn database_name(hint: &str, serial: u64) -> String {
    let clean: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("t_{clean}_{}_{serial}", std::process::id())
}

/// The directory with PostgreSQL's server binaries: [`BIN_VARIABLE`], else the newest
/// Debian installation, else the one on `PATH`.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_VARIABLE) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "{BIN_VARIABLE}={} has no initdb in it",
            dir.display()
        );
        return dir;
    }
    newest_debian_bin_dir()
        .or_else(bin_dir_on_path)
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: found no {DEBIAN_ROOT}/*/bin/initdb and no initdb \
                 on PATH. The store's tests run on PostgreSQL as well as SQLite; install it with \
                 scripts/setup-test (apt-get install postgresql), or point {BIN_VARIABLE} at a \
                 directory holding initdb, pg_ctl and createdb."
            )
        })
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    std::fs::read_dir(DEBIAN_ROOT)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

fn bin_dir_on_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| dir.join("initdb").is_file())
}

/// Who the server runs as: this process's user, or `postgres` when this process is root.
#[derive(Debug)]
enum ServerUser {
    Current,
    Postgres { uid: u32, gid: u32 },
}

impl ServerUser {
    fn for_this_process() -> ServerUser {
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !is_root {
            return ServerUser::Current;
        }
        let entry = Command::new("getent")
            .args(["passwd", SUPERUSER])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        let mut fields = entry.trim().split(':').skip(2);
        match (
            fields.next().and_then(|f| f.parse().ok()),
            fields.next().and_then(|f| f.parse().ok()),
        ) {
            (Some(uid), Some(gid)) => ServerUser::Postgres { uid, gid },
            _ => panic!(
                "the tests run as root, PostgreSQL refuses to, and there is no `{SUPERUSER}` \
                 user to run it as: install Debian's postgresql package (scripts/setup-test), \
                 which creates one, or run the tests as an ordinary user"
            ),
        }
    }

    /// Where the server's directory goes: `/tmp` when the server runs as another user, who
    /// may not be able to enter this user's `$TMPDIR`.
    fn temp_root(&self) -> PathBuf {
        match self {
            ServerUser::Current => std::env::temp_dir(),
            ServerUser::Postgres { .. } => PathBuf::from("/tmp"),
        }
    }

    /// Gives the server's user the directory (PostgreSQL insists on owning its data).
    fn take_ownership(&self, dir: &Path) {
        if let ServerUser::Postgres { uid, gid } = self {
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
                .unwrap_or_else(|e| panic!("cannot chown {} to {SUPERUSER}: {e}", dir.display()));
        }
    }

    /// A command running `program` as this user, in `cwd` (which the user can enter).
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = match self {
            ServerUser::Current => Command::new(program),
            ServerUser::Postgres { .. } => {
                let mut command = Command::new("setpriv");
                command
                    .args([
                        "--reuid",
                        SUPERUSER,
                        "--regid",
                        SUPERUSER,
                        "--init-groups",
                        "--",
                    ])
                    .arg(program);
                command
            }
        };
        command.current_dir(cwd);
        command
    }
}

/// Starts the server with `pg_ctl`, which returns once it accepts connections, trying another
/// port when the chosen one was taken meanwhile. Returns the port.
fn start_on_free_port(bin: &Path, user: &ServerUser, dir: &Path, data: &Path) -> u16 {
    let log = dir.join("postgres.log");
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            dir.display()
        );
        let output = user
            .command(&bin.join("pg_ctl"), dir)
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options])
            .output()
            .expect("cannot run pg_ctl");
        if output.status.success() {
            return port;
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        if !log_text.contains("could not bind") {
            panic!(
                "PostgreSQL did not start: {}\n{log_text}",
                describe(&output)
            );
        }
    }
    panic!("PostgreSQL did not start: every port tried was taken by another process")
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot find a free TCP port on 127.0.0.1")
}

/// Spawns the shell that stops the server and removes `dir` once its standard input closes:
/// when the [`PostgresServer`] is dropped or this process ends, however it ends.
fn supervise(bin: &Path, user: &ServerUser, dir: &Path, data: &Path) -> Child {
    const SCRIPT: &str = r#"cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$DIR""#;
    let stop = user.command(&bin.join("pg_ctl"), dir);
    let mut command = Command::new("sh");
    command
        .args(["-c", SCRIPT, "supervisor"])
        .arg(stop.get_program())
        .args(stop.get_args())
        .args(["stop", "-m", "fast", "-D"])
        .arg(data)
        .env("DIR", dir)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
        .spawn()
        .expect("cannot start the shell that stops PostgreSQL")
}

/// Runs `command`, panicking with its output when it fails.
fn run_checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(&output)
    );
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_safe_and_short() {
        let name = database_name(
            "Lease: two/acquirers-at-once and a very long name indeed",
            7,
        );
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
    }

    #[test]
    fn a_dropped_server_is_stopped_and_deleted() {
        let server = PostgresServer::start();
        let url = server.create_database("drop-test");
        assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
        let port = server.port();
        let dir = server._dir.path().to_owned();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        drop(server);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(
            !dir.join("data").exists(),
            "{} was left behind",
            dir.display()
        );
    }
}
