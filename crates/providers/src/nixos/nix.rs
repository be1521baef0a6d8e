//! The Nix commands the provider runs on the deployer: building a host's system from the flake
//! (or only evaluating it, when the host builds it), and copying a closure to the host over the
//! host's SSH session.
//!
//! The system is `((builtins.getFlake FLAKE).lib.fediversitySystem { specFile = SPEC;
//! }).config.system.build.toplevel`, the host spec written to a JSON file (it holds no secret:
//! secrets travel as files, see the module docs) outside the flake, hence `--impure`. On the
//! deployer it is built with `nix build`; for a build on the host, `nix eval` of its `drvPath`
//! and `outPath` writes the derivation into the deployer's store without building anything.
//! The copy is `nix copy --to ssh-ng://root@HOST` (with `--derivation` for a derivation's
//! closure: the `.drv` files and sources, not the outputs) with `NIX_SSHOPTS` naming the
//! session's options, so it rides the session's master connection and checks the same pinned
//! host key.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use fediversity_engine::{ProviderError, ProviderResult};
use serde_json::Value;
use tokio::process::Command;

use super::ssh::{Session, ssh_error};
use crate::files::{PUBLIC_FILE, blocking, write_atomic};

/// The Nix features the commands use (flakes for `builtins.getFlake`).
const FEATURES: &str = "nix-command flakes";

/// How the deployer's `nix` is run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Nix {
    /// `--option NAME VALUE` pairs given to every command (e.g. `substituters` for an
    /// air-gapped build host).
    pub options: BTreeMap<String, String>,
}

impl Nix {
    fn command(&self) -> Command {
        let mut command = Command::new("nix");
        command.args(["--extra-experimental-features", FEATURES]);
        for (name, value) in &self.options {
            command.args(["--option", name, value]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Builds the system for `spec` from `flake` and returns its store path.
    pub async fn build(
        &self,
        flake: &str,
        spec: &Value,
        timeout: Duration,
    ) -> ProviderResult<String> {
        let (_dir, expression) = spec_expression(flake, spec).await?;
        let mut command = self.command();
        command.args([
            "build",
            "--impure",
            "--no-link",
            "--json",
            "--expr",
            &expression,
        ]);
        let output = run(
            command,
            timeout,
            &format!("building the system from {flake}"),
        )
        .await?;
        if !output.status.success() {
            return Err(ProviderError::permanent(format!(
                "building the system from {flake} failed: {}",
                tail(&output.stderr)
            )));
        }
        built_path(&output.stdout).ok_or_else(|| {
            ProviderError::permanent(format!(
                "building the system from {flake} printed no store path"
            ))
        })
    }

    /// Evaluates the system for `spec` from `flake` without building it: its derivation
    /// (written into the deployer's store) and the store path it will build.
    pub async fn instantiate(
        &self,
        flake: &str,
        spec: &Value,
        timeout: Duration,
    ) -> ProviderResult<Instantiated> {
        let (_dir, expression) = spec_expression(flake, spec).await?;
        let mut command = self.command();
        command.args([
            "eval",
            "--impure",
            "--json",
            "--expr",
            &format!("let s = {expression}; in {{ drv = s.drvPath; out = s.outPath; }}"),
        ]);
        let what = format!("evaluating the system from {flake}");
        let output = run(command, timeout, &what).await?;
        if !output.status.success() {
            return Err(ProviderError::permanent(format!(
                "{what} failed: {}",
                tail(&output.stderr)
            )));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            ProviderError::permanent(format!("{what} printed no derivation and path: {e}"))
        })
    }

    /// Copies `path`'s closure to the session's host (paths already there are skipped by Nix);
    /// with `derivation`, `path` is a `.drv` and only its closure goes (what building it on
    /// the host needs), not its outputs.
    pub async fn copy(
        &self,
        session: &Session,
        path: &str,
        derivation: bool,
        timeout: Duration,
    ) -> ProviderResult<()> {
        let mut command = self.command();
        command.args(["copy", "--no-check-sigs"]);
        if derivation {
            command.arg("--derivation");
        }
        command
            .args(["--to", &store_url(session), path])
            .env("NIX_SSHOPTS", session.options().join(" "));
        let output = run(
            command,
            timeout,
            &format!("copying {path} to {}", session.host()),
        )
        .await?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        let ssh_failed = [
            "Host key verification failed",
            "Permission denied",
            "Connection refused",
        ]
        .iter()
        .any(|phrase| said.contains(phrase));
        Err(if ssh_failed {
            ssh_error(session.host(), &said)
        } else {
            ProviderError::transient(format!(
                "copying {path} to {} failed: {}",
                session.host(),
                tail(&output.stderr)
            ))
        })
    }
}

/// A system evaluated but not built.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Instantiated {
    /// Its derivation, in the deployer's store.
    pub drv: String,
    /// The store path building it makes.
    pub out: String,
}

/// Writes `spec` into a temporary file (removed with the returned directory) and gives the
/// expression of `flake`'s system for it.
async fn spec_expression(flake: &str, spec: &Value) -> ProviderResult<(tempfile::TempDir, String)> {
    let bytes = serde_json::to_vec(spec)
        .map_err(|e| ProviderError::permanent(format!("cannot encode the host spec: {e}")))?;
    let dir = blocking(move || {
        let dir = tempfile::tempdir().map_err(|e| {
            ProviderError::transient(format!("cannot create a directory for the host spec: {e}"))
        })?;
        write_atomic(&dir.path().join("host-spec.json"), &bytes, PUBLIC_FILE)?;
        Ok(dir)
    })
    .await?;
    let spec_file = dir.path().join("host-spec.json");
    let expression = build_expression(flake, &spec_file.display().to_string());
    Ok((dir, expression))
}

/// The host's store as Nix addresses it over SSH; a host whose files live under a root
/// directory (a test host) has a chroot store there.
fn store_url(session: &Session) -> String {
    let mut url = format!("ssh-ng://{}", session.destination());
    if !session.root().is_empty() {
        url.push_str(&format!("?remote-store=local?root={}", session.root()));
    }
    url
}

/// The Nix expression that builds `flake`'s system for the spec in `spec_file`, as nix/'s
/// flake defines it (docs/nix-modules.md).
fn build_expression(flake: &str, spec_file: &str) -> String {
    format!(
        "((builtins.getFlake {}).lib.fediversitySystem {{ specFile = /. + {}; }})\
         .config.system.build.toplevel",
        nix_string(flake),
        nix_string(spec_file)
    )
}

/// `value` as a Nix string literal.
fn nix_string(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}

/// The `out` path from `nix build --json`'s answer.
fn built_path(stdout: &[u8]) -> Option<String> {
    let built: Value = serde_json::from_slice(stdout).ok()?;
    built
        .get(0)?
        .get("outputs")?
        .get("out")?
        .as_str()
        .map(str::to_owned)
}

async fn run(
    mut command: Command,
    timeout: Duration,
    what: &str,
) -> ProviderResult<std::process::Output> {
    tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| ProviderError::transient(format!("{what} took longer than {timeout:?}")))?
        .map_err(|e| {
            ProviderError::permanent(format!(
                "{what}: cannot run nix ({e}): install Nix on the deployer"
            ))
        })
}

/// The last lines of a command's standard error, for a message.
pub(crate) fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expression_quotes_its_strings() {
        assert_eq!(
            build_expression("path:/a \"b\"", "/tmp/x/${y}.json"),
            r#"((builtins.getFlake "path:/a \"b\"").lib.fediversitySystem { specFile = /. + "/tmp/x/\${y}.json"; }).config.system.build.toplevel"#
        );
    }

    #[test]
    fn the_built_path_is_read_from_the_json_answer() {
        let answer = br#"[{"drvPath":"/nix/store/a.drv","outputs":{"out":"/nix/store/b-system"}}]"#;
        assert_eq!(built_path(answer).as_deref(), Some("/nix/store/b-system"));
        assert_eq!(built_path(b"[]"), None);
    }
}
