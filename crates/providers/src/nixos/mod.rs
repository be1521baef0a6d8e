//! The `nixos` provider: puts a NixOS system on a host over SSH, with health-gated rollback.
//!
//! One resource is one host. A deployment goes through five phases, each reported as
//! progress (`build`, `secrets`, `copy`, `activate`, `health`):
//!
//! 1. **build** on the deployer: `(getFlake FLAKE).lib.fediversitySystem { specFile; }`'s
//!    `config.system.build.toplevel`, the host spec (JSON, no secrets) in a file ([`nix`]);
//! 2. **secrets** written into a root-only directory (`/var/lib/fediversity/secrets`, 0700,
//!    files 0600, each replaced atomically; files no longer wanted removed), sent on standard
//!    input, never on a command line, in a log or in an event; the same SSH session reads the
//!    generation the host runs;
//! 3. **copy** the closure with `nix copy` over SSH, unless the host already runs exactly
//!    that system (its profile's current generation is the built path): then nothing is
//!    copied or switched, and only the health check follows;
//! 4. **activate**: a new generation of the system profile, then `switch-to-configuration
//!    switch` run detached on the host, whose exit status the provider polls, so an SSH drop
//!    does not stop it;
//! 5. **health**: the units the system declares (`etc/fediversity/health.json`) must be
//!    active and its loopback URLs answer as expected within the health timeout ([`health`]);
//!    when secrets changed, `fediversity-secrets.service` is restarted first.
//!
//! **Deployment key rotation.** The host spec names the deployment public key(s) the system
//! authorizes for root (`deploy_keys`). The provider records, as a sensitive output, the
//! private key it last logged in with; when the inputs carry another one (`--replace
//! sshkey.deploy`), it offers the new key first and the recorded one second, so a host that
//! does not authorize the new key yet still lets it in. Once the system that authorizes the new
//! key is active and healthy, a connection with the new key alone must succeed, or the host is
//! rolled back like on a failed health check: no step leaves the platform locked out, and a
//! run interrupted anywhere converges when run again (the recorded key stays the old one until
//! the new one is proven).
//!
//! When activation or the health check fails, the host is switched back to the generation it
//! ran before, and the error reports both the failure and the rollback. Such an error is
//! permanent: trying the same system again would fail the same way. Everything on the host
//! goes through one SSH master connection with the VM's recorded host key pinned ([`ssh`]).
//! The contract a flake must meet is in `docs/nixos-provider.md` and `docs/nix-modules.md`.

mod health;
mod nix;
mod ssh;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use fediversity_engine::provider::ErrorKind;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::infra::{BuildOn, NixInfra};
use serde::Deserialize;
use serde_json::{Value, json};

use self::health::Contract;
use self::nix::Nix;
use self::ssh::{Ran, Session};
use crate::files::check_component;
use crate::inputs::parse_inputs;
use crate::sensitive::SecretString;

/// The provider name resources use.
pub const NAME: &str = "nixos";

/// How the provider works: bounds, timeouts and where the hosts keep their files.
#[derive(Clone, Debug)]
pub struct NixosOptions {
    /// How many hosts deploy at once. Each deployment mostly waits on the network and the
    /// host, so this may well exceed the deployer's cores.
    pub parallelism: usize,
    /// How long SSH may take to connect and log in.
    pub connect_timeout: Duration,
    /// How long building one system may take.
    pub build_timeout: Duration,
    /// How long copying one closure may take.
    pub copy_timeout: Duration,
    /// How long `switch-to-configuration` may run before the host is rolled back.
    pub activation_timeout: Duration,
    /// How long the health checks may take to pass before the host is rolled back.
    pub health_timeout: Duration,
    /// How often the activation's status and a failing health check are asked again.
    pub poll_interval: Duration,
    /// OpenSSH `KexAlgorithms` for every connection; `None` keeps OpenSSH's default, which
    /// (from OpenSSH 9.0) is a post-quantum hybrid. Before OpenSSH 9.9 that hybrid,
    /// `sntrup761x25519-sha512`, costs about 80 ms of CPU per handshake on each side;
    /// `curve25519-sha256` is far cheaper but gives up protection of recorded traffic (which
    /// carries the secrets) against a future quantum computer.
    pub ssh_kex_algorithms: Option<String>,
    /// `--option NAME VALUE` pairs for every `nix` command (e.g. `substituters` empty on a
    /// deployer without Internet access).
    pub nix_options: BTreeMap<String, String>,
    /// For test hosts that share one file system: each host's files (its Nix store, profile
    /// and secrets) live under `<hosts_root>/<host address>`. `None` on real hosts.
    pub hosts_root: Option<PathBuf>,
}

impl Default for NixosOptions {
    fn default() -> Self {
        Self {
            parallelism: 32,
            connect_timeout: Duration::from_secs(10),
            build_timeout: Duration::from_secs(3600),
            copy_timeout: Duration::from_secs(1800),
            activation_timeout: Duration::from_secs(600),
            // nix/'s systems may migrate databases and precompile assets on a first start.
            health_timeout: Duration::from_secs(900),
            poll_interval: Duration::from_millis(100),
            ssh_kex_algorithms: None,
            nix_options: BTreeMap::new(),
            hosts_root: None,
        }
    }
}

/// Why the provider cannot work on this infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum NixosConfigError {
    /// `[nix] build_on = "target"` is not supported yet.
    #[error(
        "[nix] build_on = \"target\" is not supported by this version of the nixos provider: \
         set build_on = \"deployer\" in infra.toml"
    )]
    BuildOnTarget,
}

/// The `nixos` provider.
#[derive(Clone, Debug)]
pub struct NixosProvider {
    options: NixosOptions,
    nix: Nix,
}

impl NixosProvider {
    /// The provider with `options`.
    pub fn new(options: NixosOptions) -> Self {
        let nix = Nix {
            options: options.nix_options.clone(),
        };
        Self { options, nix }
    }

    /// The provider for the hosting provider's `[nix]` section (`NixosOptions::default()`
    /// suits a real fleet). The flake itself arrives with each resource's inputs.
    ///
    /// # Errors
    /// When the section asks for something this provider cannot do.
    pub fn from_infra(infra: &NixInfra, options: NixosOptions) -> Result<Self, NixosConfigError> {
        match infra.build_on {
            BuildOn::Deployer => Ok(Self::new(options)),
            BuildOn::Target => Err(NixosConfigError::BuildOnTarget),
        }
    }
}

/// The inputs of a host, as the configurator makes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NixosInputs {
    build_on: BuildOn,
    /// The flake holding `lib.fediversitySystem` (nix/).
    flake: String,
    /// The host's address.
    host: String,
    /// The host's SSH host key, as its VM reported it.
    host_key: String,
    /// Secret file name → value.
    #[serde(default)]
    secrets: BTreeMap<String, SecretString>,
    /// The host spec the system is built from.
    spec: Value,
    /// The deployment key (OpenSSH PEM).
    ssh_private_key: SecretString,
}

impl NixosInputs {
    fn parse(ctx: &CallContext, inputs: &Value) -> ProviderResult<Self> {
        let parsed: Self = parse_inputs(&ctx.address, NAME, inputs)?;
        if parsed.build_on == BuildOn::Target {
            return Err(ProviderError::permanent(format!(
                "{}: {}",
                ctx.address,
                NixosConfigError::BuildOnTarget
            )));
        }
        for name in parsed.secrets.keys() {
            check_component("secret file", name)?;
        }
        Ok(parsed)
    }
}

/// The generation a host's system profile points at.
#[derive(Clone, Debug, PartialEq)]
struct Generation {
    number: u64,
    system: String,
}

impl Generation {
    fn outputs(&self) -> Outputs {
        let mut outputs = Outputs::default();
        outputs
            .values
            .insert("system".to_owned(), json!(self.system));
        outputs
            .values
            .insert("generation".to_owned(), json!(self.number));
        outputs
    }
}

/// The output holding the private key the provider last logged in to the host with (sensitive).
const KEY_OUTPUT: &str = "ssh_private_key";

/// The key recorded in `recorded` as the last one the host let in, if another than `current`.
fn fallback_key(recorded: Option<&Outputs>, current: &SecretString) -> Option<SecretString> {
    recorded
        .and_then(|r| r.values.get(KEY_OUTPUT))
        .and_then(Value::as_str)
        .filter(|key| *key != current.expose())
        .map(SecretString::new)
}

/// `outputs` with `key` recorded as the one the host lets in.
fn with_key(mut outputs: Outputs, key: &SecretString) -> Outputs {
    outputs
        .values
        .insert(KEY_OUTPUT.to_owned(), json!(key.expose()));
    outputs.sensitive.insert(KEY_OUTPUT.to_owned());
    outputs
}

/// A short timeout for one small command on the host.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest the host waits for an activation to end within one SSH call: polling costs a
/// session per call, and most activations end within one.
const LONG_POLL: Duration = Duration::from_secs(10);

impl NixosProvider {
    /// A session logging in with the inputs' key, or with `fallback` when the host refuses it.
    async fn session(
        &self,
        inputs: &NixosInputs,
        fallback: Option<&SecretString>,
    ) -> ProviderResult<Session> {
        let root = self
            .options
            .hosts_root
            .as_ref()
            .map(|r| r.join(&inputs.host).display().to_string())
            .unwrap_or_default();
        Session::open(
            &inputs.host,
            &root,
            &inputs.host_key,
            &[Some(&inputs.ssh_private_key), fallback]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
            ssh::Settings {
                connect_timeout: self.options.connect_timeout,
                kex_algorithms: self.options.ssh_kex_algorithms.clone(),
            },
        )
        .await
    }

    /// Builds, copies, uploads, activates and checks; rolls back on failure. `recorded` holds
    /// the key the host let in last time, the fallback while the deployment key rotates.
    async fn deploy(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Outputs> {
        let inputs = NixosInputs::parse(ctx, inputs)?;
        let fallback = fallback_key(recorded, &inputs.ssh_private_key);
        let at = &ctx.address;
        ctx.progress.report(
            format!("build: building the system from {}", inputs.flake),
            None,
        );
        let system = self
            .nix
            .build(&inputs.flake, &inputs.spec, self.options.build_timeout)
            .await
            .map_err(|e| in_context(at, e))?;
        let contract = Contract::of(&system).await.map_err(|e| in_context(at, e))?;
        let session = self
            .session(&inputs, fallback.as_ref())
            .await
            .map_err(|e| in_context(at, e))?;
        let host = session.host().to_owned();
        ctx.progress.report(
            format!("secrets: {} file(s) to {host}", inputs.secrets.len()),
            Some(0.2),
        );
        let (changed, previous) = prepare(&session, &inputs.secrets)
            .await
            .map_err(|e| in_context(at, e))?;
        if let Some(running) = previous.as_ref().filter(|g| g.system == system) {
            ctx.progress.report(
                format!(
                    "copy: skipped, {host} already runs {system} (generation {})",
                    running.number
                ),
                None,
            );
            self.restart_secrets(&session, changed)
                .await
                .map_err(|e| in_context(at, e))?;
            self.check_health(ctx, &session, &contract)
                .await
                .map_err(|failure| {
                    ProviderError::permanent(format!("{at}: {host} runs {system}, but {failure}"))
                })?;
            if fallback.is_some() {
                self.check_new_key(&inputs).await.map_err(|failure| {
                    ProviderError::permanent(format!("{at}: {host} runs {system}, but {failure}"))
                })?;
            }
            return Ok(with_key(running.outputs(), &inputs.ssh_private_key));
        }
        ctx.progress
            .report(format!("copy: {system} to {host}"), Some(0.3));
        self.nix
            .copy(&session, &system, self.options.copy_timeout)
            .await
            .map_err(|e| in_context(at, e))?;
        ctx.progress
            .report(format!("activate: a new generation on {host}"), Some(0.6));
        let outcome = match self.activate(&session, &system, "new").await {
            Ok(number) => {
                ctx.progress.report(
                    format!("health: checking generation {number} on {host}"),
                    Some(0.8),
                );
                match self.restart_secrets(&session, changed).await {
                    Ok(()) => match self.check_health(ctx, &session, &contract).await {
                        Ok(()) if fallback.is_some() => self.check_new_key(&inputs).await,
                        checked => checked,
                    }
                    .map(|()| Generation { number, system }),
                    Err(e) => Err(e.message),
                }
            }
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(deployed) => {
                tracing::info!(%host, system = %deployed.system, generation = deployed.number, "host deployed");
                Ok(with_key(deployed.outputs(), &inputs.ssh_private_key))
            }
            Err(failure) => Err(self
                .roll_back(ctx, &session, previous.as_ref(), &failure)
                .await),
        }
    }

    /// After a rotation: the host must let the new deployment key in on its own, or the old
    /// key would be the only way in once it is forgotten. `Err` says why not.
    async fn check_new_key(&self, inputs: &NixosInputs) -> Result<(), String> {
        let session = self.session(inputs, None).await.map_err(|e| {
            format!(
                "it does not let the new deployment key in ({}): does the system authorize the spec's deploy_keys?",
                e.message
            )
        })?;
        current(&session).await.map(|_| ()).map_err(|e| e.message)
    }

    /// Points the profile at `generation` (`new` for a new one) and switches to `system`,
    /// waiting for the detached activation to end. `Ok` holds the generation number; `Err`
    /// says why the activation failed or could not be followed.
    async fn activate(
        &self,
        session: &Session,
        system: &str,
        generation: &str,
    ) -> Result<u64, String> {
        let run = run_id().map_err(|e| e.message)?;
        let deadline = Instant::now() + self.options.activation_timeout;
        let wait = self.long_poll(deadline);
        let started = session
            .script(
                "switch",
                &[system, generation, &run, &wait],
                None,
                self.command_timeout(),
            )
            .await;
        let ran = match started {
            Ok(ran) => ran,
            // The connection dropped while the host waited for the activation, which may well
            // have started: the profile says whether it did.
            Err(e) if e.kind == ErrorKind::Transient => {
                tracing::warn!(host = %session.host(), error = %e.message, "starting the activation");
                let number = self.started_generation(session, system, deadline).await?;
                return self
                    .follow(session, &run, number, deadline, "running")
                    .await;
            }
            Err(e) => return Err(format!("the activation could not start: {}", e.message)),
        };
        let (first, status) = ran.stdout.split_once('\n').unwrap_or((&ran.stdout, ""));
        match first.trim().parse::<u64>() {
            Ok(number) if ran.success => self.follow(session, &run, number, deadline, status).await,
            _ => Err(format!(
                "the activation could not start: {}",
                ran.stderr.trim()
            )),
        }
    }

    /// After a dropped `switch` call: the generation the profile points at, if it is
    /// `system`'s (the switch got that far), asked until the host answers or `deadline`.
    async fn started_generation(
        &self,
        session: &Session,
        system: &str,
        deadline: Instant,
    ) -> Result<u64, String> {
        loop {
            match current(session).await {
                Ok(Some(running)) if running.system == system => return Ok(running.number),
                Ok(_) => {
                    return Err("the activation did not start (the connection dropped)".to_owned());
                }
                Err(e) if e.kind == ErrorKind::Transient && Instant::now() < deadline => {
                    tokio::time::sleep(self.options.poll_interval).await;
                }
                Err(e) => {
                    return Err(format!(
                        "the activation could not be followed: {}",
                        e.message
                    ));
                }
            }
        }
    }

    /// Polls activation `run` of generation `number` until it ends or `deadline` passes;
    /// `status` is the host's last answer about it.
    async fn follow(
        &self,
        session: &Session,
        run: &str,
        number: u64,
        deadline: Instant,
        status: &str,
    ) -> Result<u64, String> {
        let mut status = status.to_owned();
        loop {
            match activation_status(&status) {
                Some(0) => return Ok(number),
                Some(code) => {
                    let log = status.lines().skip(1).collect::<Vec<_>>().join(" / ");
                    return Err(format!(
                        "switch-to-configuration of generation {number} exited with status \
                         {code}: {log}"
                    ));
                }
                None if status.starts_with("unknown") => {
                    return Err(format!(
                        "the activation of generation {number} did not start"
                    ));
                }
                None if Instant::now() > deadline => {
                    return Err(format!(
                        "the activation of generation {number} did not finish within {:?}",
                        self.options.activation_timeout
                    ));
                }
                None => {}
            }
            let wait = self.long_poll(deadline);
            status = match session
                .script("status", &[run, &wait], None, self.command_timeout())
                .await
            {
                Ok(answer) => answer.stdout,
                // A dropped connection: the activation goes on, and the next poll reconnects.
                Err(e) if e.kind == ErrorKind::Transient => {
                    tracing::warn!(host = %session.host(), error = %e.message, "polling the activation");
                    tokio::time::sleep(self.options.poll_interval).await;
                    "running".to_owned()
                }
                Err(e) => {
                    return Err(format!(
                        "the activation could not be followed: {}",
                        e.message
                    ));
                }
            };
        }
    }

    /// How long the host may wait for an activation within one call, in whole seconds: up to
    /// [`LONG_POLL`], not past `deadline` by more than the one second a call waits at least.
    fn long_poll(&self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        left.min(LONG_POLL).as_secs().max(1).to_string()
    }

    /// The timeout of one command on the host: a long poll and some slack.
    fn command_timeout(&self) -> Duration {
        LONG_POLL + self.options.connect_timeout + Duration::from_secs(10)
    }

    /// Waits for `contract` to hold on the host.
    async fn check_health(
        &self,
        ctx: &CallContext,
        session: &Session,
        contract: &Contract,
    ) -> Result<(), String> {
        contract
            .wait(
                session,
                &ctx.progress,
                self.options.health_timeout,
                self.options.poll_interval,
            )
            .await
    }

    /// After `changed` secret files changed: restarts what reads them (nix/'s
    /// `fediversity-secrets.service`, which the units holding secrets are part of), so the new
    /// values are in use once the health check passes. Nothing to do on a host without it.
    async fn restart_secrets(&self, session: &Session, changed: usize) -> ProviderResult<()> {
        if changed == 0 {
            return Ok(());
        }
        let ran = session
            .script("restart-secrets", &[], None, self.command_timeout())
            .await?;
        if ran.success {
            Ok(())
        } else {
            Err(ProviderError::transient(format!(
                "restarting fediversity-secrets.service on {} failed: {}",
                session.host(),
                ran.stderr.trim()
            )))
        }
    }

    /// Switches back to `previous` after `failure`; the error to report either way.
    async fn roll_back(
        &self,
        ctx: &CallContext,
        session: &Session,
        previous: Option<&Generation>,
        failure: &str,
    ) -> ProviderError {
        let (at, host) = (&ctx.address, session.host());
        tracing::warn!(%host, %failure, "deployment failed");
        let Some(previous) = previous else {
            return ProviderError::permanent(format!(
                "{at}: {failure}; {host} had no earlier generation to roll back to"
            ));
        };
        ctx.progress.report(
            format!(
                "rollback: {host} back to generation {} ({})",
                previous.number, previous.system
            ),
            None,
        );
        let rolled = self
            .activate(session, &previous.system, &previous.number.to_string())
            .await;
        match rolled {
            Ok(_) => {
                tracing::warn!(%host, generation = previous.number, "rolled back");
                ProviderError::permanent(format!(
                    "{at}: {failure}; rolled {host} back to generation {} ({})",
                    previous.number, previous.system
                ))
            }
            Err(rollback) => ProviderError::permanent(format!(
                "{at}: {failure}; rolling {host} back to generation {} failed too: {rollback}",
                previous.number
            )),
        }
    }
}

/// The generation the host's system profile points at, if any.
async fn current(session: &Session) -> ProviderResult<Option<Generation>> {
    let ran = session
        .script("current", &[], None, COMMAND_TIMEOUT)
        .await?;
    generation_of(session, "read the system profile", &ran)
}

/// Writes `secrets` on the host (and removes the secret files no longer named); then how
/// many files changed, and the generation its system profile points at, if any. One SSH
/// session.
async fn prepare(
    session: &Session,
    secrets: &BTreeMap<String, SecretString>,
) -> ProviderResult<(usize, Option<Generation>)> {
    let mut ran = session
        .script(
            "prepare",
            &[],
            Some(&secrets_stream(secrets)),
            COMMAND_TIMEOUT,
        )
        .await?;
    let (first, rest) = ran.stdout.split_once('\n').unwrap_or((&ran.stdout, ""));
    let changed = first
        .strip_prefix("changed ")
        .and_then(|n| n.trim().parse().ok());
    let Some(changed) = changed.filter(|_| ran.success) else {
        return Err(ProviderError::transient(format!(
            "cannot write the secrets on {}: {}",
            session.host(),
            ran.stderr.trim()
        )));
    };
    ran.stdout = rest.to_owned();
    Ok((
        changed,
        generation_of(session, "read the system profile", &ran)?,
    ))
}

fn generation_of(session: &Session, what: &str, ran: &Ran) -> ProviderResult<Option<Generation>> {
    if ran.success {
        Ok(parse_generation(&ran.stdout))
    } else {
        Err(ProviderError::transient(format!(
            "cannot {what} on {}: {}",
            session.host(),
            ran.stderr.trim()
        )))
    }
}

/// The secrets as the host script's `prepare` reads them: `<name> <base64 value>` lines.
fn secrets_stream(secrets: &BTreeMap<String, SecretString>) -> SecretString {
    let mut stream = String::new();
    for (name, value) in secrets {
        stream.push_str(name);
        stream.push(' ');
        stream.push_str(&BASE64_STANDARD.encode(value.expose()));
        stream.push('\n');
    }
    SecretString::new(stream)
}

/// `"<number> <store path>"` as the host script prints it.
fn parse_generation(line: &str) -> Option<Generation> {
    let (number, system) = line.trim().split_once(' ')?;
    Some(Generation {
        number: number.parse().ok()?,
        system: system.to_owned(),
    })
}

/// The exit status in the host script's answer about an activation (`exit <status>` and the
/// end of its log), `None` while it runs.
fn activation_status(answer: &str) -> Option<i32> {
    let first = answer.lines().next().unwrap_or_default().trim();
    first
        .strip_prefix("exit ")
        .map(|code| code.trim().parse().unwrap_or(-1))
}

/// A random name for one activation's status and log files.
fn run_id() -> ProviderResult<String> {
    let bytes: [u8; 8] = crate::secret::random_array()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `error` with the resource's address in front.
fn in_context(address: &impl std::fmt::Display, error: ProviderError) -> ProviderError {
    ProviderError {
        kind: error.kind,
        message: format!("{address}: {}", error.message),
    }
}

#[async_trait]
impl Provider for NixosProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn concurrency(&self) -> usize {
        self.options.parallelism.max(1)
    }

    #[tracing::instrument(name = "nixos.create", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        self.deploy(ctx, inputs, None).await
    }

    #[tracing::instrument(name = "nixos.read", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let parsed = NixosInputs::parse(ctx, inputs)?;
        let fallback = fallback_key(recorded, &parsed.ssh_private_key);
        let session = self
            .session(&parsed, fallback.as_ref())
            .await
            .map_err(|e| in_context(&ctx.address, e))?;
        let running = current(&session)
            .await
            .map_err(|e| in_context(&ctx.address, e))?;
        // Logging in with the pinned key proves the host and its key are the recorded ones.
        // The recorded fallback key stays recorded: only a deployment proves the new key.
        let key = fallback.as_ref().unwrap_or(&parsed.ssh_private_key);
        Ok(running.map(|generation| Observed {
            inputs: json!({"host": parsed.host, "host_key": parsed.host_key}),
            outputs: with_key(generation.outputs(), key),
        }))
    }

    #[tracing::instrument(name = "nixos.update", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.deploy(ctx, inputs, Some(recorded)).await
    }

    /// Removes the host's secrets; the system stays (a host cannot run no system), and the
    /// VM it runs on is removed on its own.
    #[tracing::instrument(name = "nixos.delete", skip_all, fields(operator = %ctx.operator, address = %ctx.address))]
    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let parsed = NixosInputs::parse(ctx, inputs)?;
        let fallback = fallback_key(Some(recorded), &parsed.ssh_private_key);
        let session = self
            .session(&parsed, fallback.as_ref())
            .await
            .map_err(|e| in_context(&ctx.address, e))?;
        let ran = session
            .script("remove-secrets", &[], None, COMMAND_TIMEOUT)
            .await
            .map_err(|e| in_context(&ctx.address, e))?;
        if !ran.success {
            return Err(ProviderError::transient(format!(
                "{}: cannot remove the secrets on {}: {}",
                ctx.address,
                parsed.host,
                ran.stderr.trim()
            )));
        }
        Ok(Deletion::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_and_statuses_parse() {
        assert_eq!(
            parse_generation("3 /nix/store/abc-system\n"),
            Some(Generation {
                number: 3,
                system: "/nix/store/abc-system".to_owned()
            })
        );
        assert_eq!(parse_generation(""), None);
        assert_eq!(activation_status("running\n"), None);
        assert_eq!(activation_status(""), None);
        assert_eq!(activation_status("exit 0\n"), Some(0));
        assert_eq!(activation_status("exit 4\nunit x failed\n"), Some(4));
    }

    #[test]
    fn secrets_travel_as_base64_lines() {
        let secrets = BTreeMap::from([
            ("a".to_owned(), SecretString::new("with space\nand newline")),
            ("b".to_owned(), SecretString::new("")),
        ]);
        assert_eq!(
            secrets_stream(&secrets).expose(),
            "a d2l0aCBzcGFjZQphbmQgbmV3bGluZQ==\nb \n"
        );
    }

    #[test]
    fn building_on_the_target_is_refused_up_front() {
        let infra = NixInfra {
            flake: "/srv/nix".to_owned(),
            build_on: BuildOn::Target,
        };
        assert!(matches!(
            NixosProvider::from_infra(&infra, NixosOptions::default()),
            Err(NixosConfigError::BuildOnTarget)
        ));
    }
}
