//! One SSH connection per host, shared by everything the provider does there.
//!
//! The system's `ssh` is used (as `nix copy` uses it too), never a library: the same client,
//! the same options and the same error messages for the copy and for every command. A
//! [`Session`] writes the deployment key and a `known_hosts` holding only the VM's recorded
//! host key into a private temporary directory, and opens a master connection
//! (`ControlMaster`) that the copy, the secrets, the activation and the health checks all
//! multiplex over, so a host costs one handshake. Host keys are pinned: `StrictHostKeyChecking
//! yes` against that file alone (under a fixed `HostKeyAlias`, so the address form does not
//! matter), with `BatchMode` so nothing ever waits for a prompt. Should the connection drop,
//! the next command opens a new master (`ControlMaster auto`).
//!
//! `ssh` reads keys from files (or an agent): the deployment key lives, for the length of one
//! call, in a 0600 file inside a 0700 directory under /tmp, removed with the [`Session`].
//! During a key rotation a session holds two keys, the new one first: `ssh` offers them in
//! that order, so a host that does not authorize the new key yet lets the old one in.

use std::process::{Output, Stdio};
use std::time::Duration;

use fediversity_engine::{ProviderError, ProviderResult};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::files::{PRIVATE_FILE, write_atomic};
use crate::sensitive::SecretString;

/// The name the host key is filed under in the session's `known_hosts`.
const HOST_KEY_ALIAS: &str = "fediversity-target";

/// The user the provider logs in as.
const USER: &str = "root";

/// How long an idle master connection stays up after its last use.
const PERSIST: &str = "60";

/// The host-side script (see its own comments).
const HOST_SCRIPT: &str = include_str!("host.sh");

/// How connections are made.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How long connecting and logging in may take.
    pub connect_timeout: Duration,
    /// OpenSSH `KexAlgorithms`, or its default.
    pub kex_algorithms: Option<String>,
}

/// An SSH connection to one host.
#[derive(Debug)]
pub(crate) struct Session {
    host: String,
    /// Root's files on the host are under this prefix: empty on a real host.
    root: String,
    dir: TempDir,
    /// How many deployment keys the directory holds (`key0`, `key1`, …), offered in order.
    key_count: usize,
    settings: Settings,
}

/// The file name of the `i`th deployment key in a session's directory.
fn key_file(i: usize) -> String {
    format!("key{i}")
}

/// What a command run on the host said.
pub(crate) struct Ran {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (never holds a secret: nothing the provider runs prints one).
    pub stderr: String,
}

impl Session {
    /// Opens the master connection to `host`, checking its host key against `host_key` and
    /// logging in with the first of `private_keys` the host accepts (tried in order).
    pub async fn open(
        host: &str,
        root: &str,
        host_key: &str,
        private_keys: &[&SecretString],
        settings: Settings,
    ) -> ProviderResult<Session> {
        let (host, root, host_key) = (host.to_owned(), root.to_owned(), host_key.to_owned());
        let keys: Vec<SecretString> = private_keys.iter().map(|&k| k.clone()).collect();
        let key_count = keys.len();
        let dir = crate::files::blocking(move || {
            // A short path under /tmp: the control socket's path must fit in 108 bytes.
            let dir = tempfile::Builder::new()
                .prefix("fedi-ssh-")
                .tempdir_in("/tmp")
                .map_err(|e| {
                    ProviderError::transient(format!(
                        "cannot create a private directory for SSH: {e}"
                    ))
                })?;
            for (i, key) in keys.iter().enumerate() {
                let mut pem = key.expose().trim_end().to_owned();
                pem.push('\n');
                write_atomic(&dir.path().join(key_file(i)), pem.as_bytes(), PRIVATE_FILE)?;
            }
            let known = format!("{HOST_KEY_ALIAS} {}\n", host_key_line(&host_key)?);
            write_atomic(
                &dir.path().join("known_hosts"),
                known.as_bytes(),
                PRIVATE_FILE,
            )?;
            Ok(dir)
        })
        .await?;
        let session = Session {
            host,
            root,
            dir,
            key_count,
            settings,
        };
        session.connect().await?;
        Ok(session)
    }

    /// The host, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `ssh` options every connection to this host uses, one `-o`/`-i`/`-F` and its value
    /// each; none contains a space (Nix splits `NIX_SSHOPTS` on spaces).
    pub fn options(&self) -> Vec<String> {
        let dir = self.dir.path();
        let file = |name: &str| dir.join(name).display().to_string();
        let mut options = vec!["-F".to_owned(), "/dev/null".to_owned()];
        for i in 0..self.key_count {
            options.push("-i".to_owned());
            options.push(file(&key_file(i)));
        }
        for (name, value) in [
            ("IdentitiesOnly", "yes".to_owned()),
            ("UserKnownHostsFile", file("known_hosts")),
            ("GlobalKnownHostsFile", "/dev/null".to_owned()),
            ("StrictHostKeyChecking", "yes".to_owned()),
            ("HostKeyAlias", HOST_KEY_ALIAS.to_owned()),
            ("CheckHostIP", "no".to_owned()),
            ("BatchMode", "yes".to_owned()),
            (
                "ConnectTimeout",
                self.settings.connect_timeout.as_secs().max(1).to_string(),
            ),
            ("ServerAliveInterval", "5".to_owned()),
            ("ServerAliveCountMax", "3".to_owned()),
            ("ControlMaster", "auto".to_owned()),
            ("ControlPath", file("control")),
            ("ControlPersist", PERSIST.to_owned()),
            ("LogLevel", "ERROR".to_owned()),
        ] {
            options.push("-o".to_owned());
            options.push(format!("{name}={value}"));
        }
        if let Some(kex) = &self.settings.kex_algorithms {
            options.push("-o".to_owned());
            options.push(format!("KexAlgorithms={kex}"));
        }
        options
    }

    /// `user@host` for `ssh` and Nix store URLs.
    pub fn destination(&self) -> String {
        format!("{USER}@{}", self.host)
    }

    /// The root prefix of the host's files (empty on a real host).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Opens the master connection: `ssh -f -N` returns once logged in, leaving the master
    /// in the background. Its messages go to a file (`-E`): the master would hold a pipe open.
    async fn connect(&self) -> ProviderResult<()> {
        let log = self.dir.path().join("connect.log");
        let mut command = Command::new("ssh");
        command
            .args(self.options())
            .args(["-f", "-N", "-o", "ControlMaster=yes", "-E"])
            .arg(&log)
            .arg(self.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let limit = self.settings.connect_timeout + Duration::from_secs(5);
        let status = tokio::time::timeout(limit, command.status())
            .await
            .map_err(|_| {
                ProviderError::transient(format!(
                    "SSH to {} did not connect within {limit:?}",
                    self.host
                ))
            })?
            .map_err(|e| ProviderError::permanent(format!("cannot run ssh: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let said = tokio::fs::read_to_string(&log).await.unwrap_or_default();
        Err(ssh_error(&self.host, &said))
    }

    /// Runs the host script's `command` with `args` (after the host's root); `stdin` is fed
    /// to it (the only way a secret value travels). A failure of SSH itself is an error; the
    /// script's own failure is in [`Ran::success`].
    pub async fn script(
        &self,
        command: &str,
        args: &[&str],
        stdin: Option<&SecretString>,
        timeout: Duration,
    ) -> ProviderResult<Ran> {
        let mut remote = format!(
            "sh -c {} fediversity-host {} {}",
            quote(HOST_SCRIPT),
            quote(command),
            quote(&self.root)
        );
        for arg in args {
            remote.push(' ');
            remote.push_str(&quote(arg));
        }
        let output = self
            .ssh(
                &[],
                Some(&remote),
                stdin.map(|s| s.expose().as_bytes()),
                timeout,
            )
            .await?;
        if output.status.code() == Some(255) {
            return Err(ssh_error(
                &self.host,
                &String::from_utf8_lossy(&output.stderr),
            ));
        }
        Ok(Ran {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Sends `request` to `target` (`HOST:PORT`) as seen from the host (an SSH stdio forward
    /// over the master connection: nothing but sshd is needed there) and returns the answer.
    pub async fn forward(
        &self,
        target: &str,
        request: &[u8],
        timeout: Duration,
    ) -> ProviderResult<Vec<u8>> {
        let output = self
            .ssh(&["-W", target], None, Some(request), timeout)
            .await?;
        let said = String::from_utf8_lossy(&output.stderr);
        // Through a master connection, sshd's refusal to connect reads "Stdio forwarding
        // request failed"; on a connection of its own, "open failed".
        let refused = said.contains("forwarding request failed") || said.contains("open failed");
        match output.status.code() {
            Some(255) if refused => Err(ProviderError::transient(format!(
                "nothing accepts connections on {target} on {}",
                self.host
            ))),
            Some(255) => Err(ssh_error(&self.host, &said)),
            _ => Ok(output.stdout),
        }
    }

    /// `ssh [flags] destination [remote]`, with `stdin` fed to it. Exit status 255 is SSH's
    /// own failure (or a forward's), which the caller tells apart.
    async fn ssh(
        &self,
        flags: &[&str],
        remote: Option<&str>,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> ProviderResult<Output> {
        let mut command = Command::new("ssh");
        command
            .args(self.options())
            .args(flags)
            .arg(self.destination())
            .args(remote)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = async {
            let mut child = command
                .spawn()
                .map_err(|e| ProviderError::permanent(format!("cannot run ssh: {e}")))?;
            let pipe = child.stdin.take();
            // Written while the output is read, so neither side waits on a full pipe; a
            // command that exits without reading it all closes the pipe, and its exit status
            // tells what happened. Dropping the pipe at the end is the end of input.
            let feed = async move {
                if let (Some(bytes), Some(mut pipe)) = (stdin, pipe) {
                    let _ = pipe.write_all(bytes).await;
                }
            };
            let ((), output) = tokio::join!(feed, child.wait_with_output());
            output.map_err(|e| ProviderError::transient(format!("ssh to {}: {e}", self.host)))
        };
        let output = tokio::time::timeout(timeout, run).await.map_err(|_| {
            ProviderError::transient(format!(
                "a command on {} over SSH took longer than {timeout:?}",
                self.host
            ))
        })??;
        Ok(output)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closes the master at once rather than after ControlPersist. On the runtime the
        // command is left to finish on its own (tokio reaps it); elsewhere it is waited for.
        let control = format!("ControlPath={}", self.dir.path().join("control").display());
        let args = [
            "-F",
            "/dev/null",
            "-o",
            &control,
            "-O",
            "exit",
            &self.destination(),
        ];
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = Command::new("ssh")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        } else {
            let _ = std::process::Command::new("ssh")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `type base64` of a host key line (`ssh-ed25519 AAAA… comment`): the comment is dropped.
fn host_key_line(host_key: &str) -> ProviderResult<String> {
    let mut words = host_key.split_whitespace();
    match (words.next(), words.next()) {
        (Some(kind), Some(key)) if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") => {
            Ok(format!("{kind} {key}"))
        }
        _ => Err(ProviderError::permanent(
            "the recorded host key is not an OpenSSH public key (`ssh-ed25519 AAAA…`)",
        )),
    }
}

/// A provider error for SSH's own failure to reach or log in to `host`, from what ssh said.
pub(crate) fn ssh_error(host: &str, said: &str) -> ProviderError {
    let said = said.trim();
    let last = said.lines().last().unwrap_or("no message");
    if said.contains("Host key verification failed") || said.contains("IDENTIFICATION HAS CHANGED")
    {
        ProviderError::permanent(format!(
            "SSH to {host}: the host's key is not the one recorded for its VM (host key \
             verification failed); the VM was made anew or its key changed: refresh to record \
             its new key"
        ))
    } else if said.contains("Permission denied") {
        ProviderError::permanent(format!(
            "SSH to {host}: the host refused the deployment key ({last}); check that the VM \
             lets in sshkey.deploy's public key for root"
        ))
    } else if said.contains("Connection refused") {
        ProviderError::transient(format!(
            "SSH to {host}: connection refused (is sshd running on the host?)"
        ))
    } else {
        ProviderError::transient(format!("SSH to {host} failed: {last}"))
    }
}

/// `value` as one word for a POSIX shell.
pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fediversity_engine::provider::ErrorKind;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn ssh_failures_are_classified() {
        let mismatch = ssh_error(
            "10.0.0.5",
            "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
        );
        assert_eq!(mismatch.kind, ErrorKind::Permanent);
        assert!(mismatch.message.contains("host key verification failed"));
        let denied = ssh_error("10.0.0.5", "root@10.0.0.5: Permission denied (publickey).");
        assert_eq!(denied.kind, ErrorKind::Permanent);
        let refused = ssh_error(
            "10.0.0.5",
            "ssh: connect to host 10.0.0.5 port 22: Connection refused",
        );
        assert_eq!(refused.kind, ErrorKind::Transient);
        assert!(refused.message.contains("connection refused"));
    }

    #[test]
    fn host_keys_lose_their_comment() {
        assert_eq!(
            host_key_line("ssh-ed25519 AAAAC3 root@vm").unwrap(),
            "ssh-ed25519 AAAAC3"
        );
        assert!(host_key_line("hunter2").is_err());
    }
}
