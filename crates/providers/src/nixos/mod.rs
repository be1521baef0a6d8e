//! The `nixos` provider: puts a NixOS system on a host over SSH, with health-gated rollback.
//!
//! One resource is one host. A deployment goes through five phases, each reported as
//! progress (`build`, `secrets`, `copy`, `activate`, `health`):
//!
//! 1. **build** on the deployer: `(getFlake FLAKE).lib.fediversitySystem { specFile; }`'s
//!    `config.system.build.toplevel`, the host spec (JSON, no secrets) in a file ([`nix`]);
//!    with `build_on = "target"` only evaluated there, its derivation built on the host;
//! 2. **secrets** written into a new root-only set (`/var/lib/fediversity/secret-sets/<id>`,
//!    0700, files 0600) that the `secrets` symlink is switched to atomically, sent on
//!    standard input, never on a command line, in a log or in an event; the same SSH session
//!    reads the host's state;
//! 3. **copy** the closure with `nix copy` over SSH (or the derivation's closure, then
//!    `nix-store --realise` on the host), unless the host already runs exactly that system
//!    (recorded as deployed, and its profile still there): then nothing is copied or
//!    switched, and only the health check follows;
//! 4. **activate**: a generation of the system profile (the newest again if it already holds
//!    the system), then `switch-to-configuration switch` run detached on the host, whose exit
//!    status the provider polls, so an SSH drop does not stop it; an activation an
//!    interrupted run left is followed rather than started twice;
//! 5. **health**: the units the system declares (`etc/fediversity/health.json`) must be
//!    active and its loopback URLs answer as expected within the health timeout ([`health`]);
//!    when secrets changed, `fediversity-secrets.service` is restarted first. Only then is
//!    the generation, with its secret set, recorded on the host as deployed: that record, not
//!    the profile, is what a later run trusts, so a run interrupted anywhere converges.
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
//! When activation or the health check fails, the host is switched back to the generation
//! recorded as deployed, with the secret set deployed with it, and the error reports both the
//! failure and the rollback. Such an error is permanent: trying the same system again would
//! fail the same way. Everything on the host goes through one SSH master connection with the
//! VM's recorded host key pinned ([`ssh`]). The contract a flake must meet is in
//! `docs/nixos-provider.md` and `docs/nix-modules.md`.

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

/// Why the provider cannot work on this deployer.
#[derive(Debug, thiserror::Error)]
pub enum NixosConfigError {
    /// The deployer has no `nix`: every deployment evaluates the flake there, whichever
    /// machine builds the system.
    #[error(
        "[nix] is set in infra.toml, but `nix` is not on the deployer's PATH: install Nix \
         (Debian: nix-bin) on the machine running fediversity"
    )]
    NixMissing,
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
    /// suits a real fleet). The flake and `build_on` arrive with each resource's inputs (the
    /// configurator copies them from the section), so one provider serves either way of
    /// building; what the section needs of the deployer is checked here, up front.
    ///
    /// # Errors
    /// When the deployer has no `nix`.
    pub fn from_infra(_infra: &NixInfra, options: NixosOptions) -> Result<Self, NixosConfigError> {
        if !on_path("nix") {
            return Err(NixosConfigError::NixMissing);
        }
        Ok(Self::new(options))
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
        for name in parsed.secrets.keys() {
            check_component("secret file", name)?;
        }
        Ok(parsed)
    }
}

/// A generation of a host's system profile.
#[derive(Clone, Debug, PartialEq)]
struct Generation {
    number: u64,
    system: String,
}

/// What the host says about its system and secrets (the host script's `current`).
#[derive(Clone, Debug, Default, PartialEq)]
struct HostState {
    /// The generation the system profile points at.
    profile: Option<Generation>,
    /// The last deployment whose health check passed, and its secret set.
    deployed: Option<(Generation, String)>,
    /// The last activation started, and its run.
    pending: Option<(Generation, String)>,
    /// The secret set in force.
    secrets: Option<String>,
}

impl HostState {
    /// Reads the host script's `<fact> <words…>` lines; unknown lines are skipped.
    fn parse(text: &str) -> Self {
        let mut state = Self::default();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["profile", number, system] => state.profile = generation(number, system),
                ["deployed", number, system, set] => {
                    state.deployed = generation(number, system).map(|g| (g, (*set).to_owned()));
                }
                ["pending", number, system, run] => {
                    state.pending = generation(number, system).map(|g| (g, (*run).to_owned()));
                }
                ["secrets", set] => state.secrets = Some((*set).to_owned()),
                _ => {}
            }
        }
        state
    }

    /// The deployed generation, if it holds `system` and the profile still points at it
    /// (nobody rolled the host back by hand since).
    fn runs(&self, system: &str) -> Option<&Generation> {
        let (deployed, _) = self.deployed.as_ref()?;
        (deployed.system == system && self.profile.as_ref() == Some(deployed)).then_some(deployed)
    }

    /// The activation of `system` an interrupted run started, if the profile still points
    /// at it, and its run.
    fn pending(&self, system: &str) -> Option<(&Generation, &str)> {
        let (pending, run) = self.pending.as_ref()?;
        (pending.system == system && self.profile.as_ref() == Some(pending))
            .then_some((pending, run.as_str()))
    }

    /// Where a failed deployment of `system` returns: the deployed generation; on a host
    /// the provider never deployed, the one its profile points at (unless that is `system`,
    /// left by an interrupted first run).
    fn rollback_target(&self, system: &str) -> Option<&Generation> {
        match &self.deployed {
            Some((deployed, _)) => Some(deployed),
            None => self.profile.as_ref().filter(|p| p.system != system),
        }
    }

    /// Whether the secret set in force is another than the deployed one (an interrupted run
    /// switched it): committing then records it, and removes the others.
    fn secrets_moved(&self) -> bool {
        self.secrets.as_deref() != self.deployed.as_ref().map(|(_, set)| set.as_str())
    }

    /// What the host runs, as outputs: the deployed generation while the profile points at
    /// it, else the profile's (a generation the provider did not see pass, or none).
    fn running(&self) -> Option<&Generation> {
        match (&self.deployed, &self.profile) {
            (Some((deployed, _)), Some(profile)) if deployed == profile => Some(deployed),
            (_, profile) => profile.as_ref(),
        }
    }
}

/// A built (or, to build on the host, evaluated) system.
#[derive(Debug)]
struct Built {
    /// Its store path.
    system: String,
    /// Its derivation, when the host builds it.
    drv: Option<String>,
}

/// One host's deployment, as the phases after the secrets see it.
struct Target<'a> {
    ctx: &'a CallContext,
    session: &'a Session,
    inputs: &'a NixosInputs,
    /// Whether the deployment key rotates (the new key must be proven).
    rotating: bool,
    built: &'a Built,
    /// How many secret files differ from the deployed ones.
    changed: usize,
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
        let built = self
            .build(ctx, &inputs)
            .await
            .map_err(|e| in_context(at, e))?;
        let session = self
            .session(&inputs, fallback.as_ref())
            .await
            .map_err(|e| in_context(at, e))?;
        ctx.progress.report(
            format!(
                "secrets: {} file(s) to {}",
                inputs.secrets.len(),
                session.host()
            ),
            Some(0.2),
        );
        let set = run_id().map_err(|e| in_context(at, e))?;
        let (changed, state) = prepare(&session, &set, &inputs.secrets)
            .await
            .map_err(|e| in_context(at, e))?;
        let target = Target {
            ctx,
            session: &session,
            inputs: &inputs,
            rotating: fallback.is_some(),
            built: &built,
            changed,
        };
        let deployed = match state.runs(&built.system) {
            Some(running) => self.keep(&target, running.clone(), &state).await,
            None => self.replace(&target, &state).await,
        }
        .map_err(|e| in_context(at, e))?;
        Ok(with_key(deployed.outputs(), &inputs.ssh_private_key))
    }

    /// The system for `inputs`: built here, or (`build_on = "target"`) only evaluated, its
    /// derivation to be built on the host.
    async fn build(&self, ctx: &CallContext, inputs: &NixosInputs) -> ProviderResult<Built> {
        let (flake, spec, timeout) = (&inputs.flake, &inputs.spec, self.options.build_timeout);
        match inputs.build_on {
            BuildOn::Deployer => {
                ctx.progress
                    .report(format!("build: building the system from {flake}"), None);
                let system = self.nix.build(flake, spec, timeout).await?;
                Ok(Built { system, drv: None })
            }
            BuildOn::Target => {
                ctx.progress.report(
                    format!(
                        "build: evaluating the system from {flake}, to build on {}",
                        inputs.host
                    ),
                    None,
                );
                let evaluated = self.nix.instantiate(flake, spec, timeout).await?;
                Ok(Built {
                    system: evaluated.out,
                    drv: Some(evaluated.drv),
                })
            }
        }
    }

    /// The host already runs the built system (`running`, recorded as deployed): puts rotated
    /// secrets to use and checks its health. When that fails, the deployed secrets are put
    /// back in force.
    async fn keep(
        &self,
        target: &Target<'_>,
        running: Generation,
        state: &HostState,
    ) -> ProviderResult<Generation> {
        let (session, host) = (target.session, target.session.host());
        target.ctx.progress.report(
            format!(
                "copy: skipped, {host} already runs {} (generation {})",
                running.system, running.number
            ),
            None,
        );
        if let Err(failure) = self.verify(target).await {
            let restored = self.restore_secrets(session, target.changed).await;
            return Err(ProviderError::permanent(format!(
                "{host} runs {}, but {failure}{restored}",
                running.system
            )));
        }
        if target.changed > 0 || state.secrets_moved() {
            commit(session, &running).await?;
        }
        Ok(running)
    }

    /// Puts the built system on the host in place of the one it runs: copies (or builds) it,
    /// activates it (or follows the activation an interrupted run started) and checks it;
    /// rolls back to the deployed generation when that fails. The new generation is recorded
    /// as deployed only once it passed.
    async fn replace(&self, target: &Target<'_>, state: &HostState) -> ProviderResult<Generation> {
        let (ctx, session, system) = (target.ctx, target.session, &target.built.system);
        let host = session.host();
        if let Err(e) = self.put(ctx, session, target.built).await {
            // The new secrets are in force already: the system that stays gets its own back.
            let restored = self.restore_secrets(session, target.changed).await;
            return Err(ProviderError {
                kind: e.kind,
                message: format!("{}{restored}", e.message),
            });
        }
        let outcome = async {
            let number = match state.pending(system) {
                Some((pending, run)) => {
                    ctx.progress.report(
                        format!(
                            "activate: following generation {} on {host}, started by an \
                             interrupted run",
                            pending.number
                        ),
                        Some(0.6),
                    );
                    self.adopt(session, pending, run).await?
                }
                None => {
                    ctx.progress
                        .report(format!("activate: a new generation on {host}"), Some(0.6));
                    self.activate(session, system, "new").await?
                }
            };
            ctx.progress.report(
                format!("health: checking generation {number} on {host}"),
                Some(0.8),
            );
            self.verify(target).await?;
            Ok::<_, String>(Generation {
                number,
                system: system.clone(),
            })
        }
        .await;
        match outcome {
            Ok(deployed) => {
                commit(session, &deployed).await?;
                tracing::info!(%host, system = %deployed.system, generation = deployed.number, "host deployed");
                Ok(deployed)
            }
            Err(failure) => Err(self
                .roll_back(
                    ctx,
                    session,
                    state.rollback_target(system),
                    target.changed,
                    &failure,
                )
                .await),
        }
    }

    /// Gets the built system into the host's store: copies its closure, or copies its
    /// derivation's closure and builds it there (`nix-store --realise` over the session).
    async fn put(&self, ctx: &CallContext, session: &Session, built: &Built) -> ProviderResult<()> {
        let (host, system) = (session.host(), &built.system);
        let Some(drv) = &built.drv else {
            ctx.progress
                .report(format!("copy: {system} to {host}"), Some(0.3));
            return self
                .nix
                .copy(session, system, false, self.options.copy_timeout)
                .await;
        };
        ctx.progress
            .report(format!("copy: the derivation {drv} to {host}"), Some(0.3));
        self.nix
            .copy(session, drv, true, self.options.copy_timeout)
            .await?;
        ctx.progress
            .report(format!("build: {system} on {host}"), Some(0.4));
        let ran = session
            .script("realise", &[drv], None, self.options.build_timeout)
            .await?;
        if ran.success && ran.stdout.lines().any(|line| line.trim() == system) {
            return Ok(());
        }
        Err(ProviderError::permanent(format!(
            "building {drv} on {host} did not make {system}: {}",
            nix::tail(ran.stderr.as_bytes())
        )))
    }

    /// Once the system is active: rotated secrets put to use, the health contract holds, and
    /// (during a key rotation) the new key alone lets the provider in. `Err` says what failed.
    async fn verify(&self, target: &Target<'_>) -> Result<(), String> {
        let session = target.session;
        self.restart_secrets(session, target.changed)
            .await
            .map_err(|e| e.message)?;
        let contract = match &target.built.drv {
            None => Contract::of(&target.built.system).await,
            Some(_) => contract_on_host(session, &target.built.system).await,
        }
        .map_err(|e| e.message)?;
        self.check_health(target.ctx, session, &contract).await?;
        if target.rotating {
            self.check_new_key(target.inputs).await?;
        }
        Ok(())
    }

    /// Takes over the activation `run` of `pending` that an interrupted deployment started:
    /// follows it while it runs, adopts it when it passed; activates the generation again
    /// when it failed or never ended (the host restarted, say).
    async fn adopt(
        &self,
        session: &Session,
        pending: &Generation,
        run: &str,
    ) -> Result<u64, String> {
        let deadline = Instant::now() + self.options.activation_timeout;
        match self
            .follow(session, run, pending.number, deadline, "running")
            .await
        {
            Ok(number) => Ok(number),
            Err(failure) => {
                tracing::warn!(host = %session.host(), %failure, "an interrupted activation did not pass; activating again");
                self.activate(session, &pending.system, &pending.number.to_string())
                    .await
            }
        }
    }

    /// After a failure with `changed` secret files rotated: puts the deployed secrets back in
    /// force (and to use); what to add to the error.
    async fn restore_secrets(&self, session: &Session, changed: usize) -> String {
        if changed == 0 {
            return String::new();
        }
        let restored = session
            .script("restore-secrets", &[], None, COMMAND_TIMEOUT)
            .await
            .and_then(|ran| {
                ran.stdout
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|_| ran.success)
                    .ok_or_else(|| ProviderError::transient(ran.stderr.trim().to_owned()))
            });
        match restored {
            Ok(0) => "; there were no earlier secrets to put back".to_owned(),
            Ok(files) => match self.restart_secrets(session, files).await {
                Ok(()) => "; the previous secrets are back in place".to_owned(),
                Err(e) => format!(
                    "; the previous secrets are back in place, but {}",
                    e.message
                ),
            },
            Err(e) => format!("; putting the previous secrets back failed: {}", e.message),
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
                let number = self.started_generation(session, &run, deadline).await?;
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

    /// After a dropped `switch` call: the generation of activation `run`, if the host
    /// recorded it as started (the switch got that far), asked until the host answers or
    /// `deadline`.
    async fn started_generation(
        &self,
        session: &Session,
        run: &str,
        deadline: Instant,
    ) -> Result<u64, String> {
        loop {
            match current(session).await {
                Ok(HostState {
                    pending: Some((started, started_run)),
                    ..
                }) if started_run == run => return Ok(started.number),
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

    /// Switches back to `previous` (with the secrets deployed with it, when `changed` secret
    /// files were rotated) after `failure`; the error to report either way. The secrets go
    /// back first, so that the old system starts with the values it was deployed with.
    async fn roll_back(
        &self,
        ctx: &CallContext,
        session: &Session,
        previous: Option<&Generation>,
        changed: usize,
        failure: &str,
    ) -> ProviderError {
        let host = session.host();
        tracing::warn!(%host, %failure, "deployment failed");
        let restored = self.restore_secrets(session, changed).await;
        let Some(previous) = previous else {
            return ProviderError::permanent(format!(
                "{failure}; {host} had no earlier generation to roll back to{restored}"
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
                    "{failure}; rolled {host} back to generation {} ({}){restored}",
                    previous.number, previous.system
                ))
            }
            Err(rollback) => ProviderError::permanent(format!(
                "{failure}; rolling {host} back to generation {} failed too: \
                 {rollback}{restored}",
                previous.number
            )),
        }
    }
}

/// What the host runs and was deployed with.
async fn current(session: &Session) -> ProviderResult<HostState> {
    let ran = session
        .script("current", &[], None, COMMAND_TIMEOUT)
        .await?;
    state_of(session, &ran)
}

/// Puts `secrets` in force on the host as set `set` (unless the set in force holds exactly
/// them); then how many files differ from the deployed secrets, and the host's state. One SSH
/// session.
async fn prepare(
    session: &Session,
    set: &str,
    secrets: &BTreeMap<String, SecretString>,
) -> ProviderResult<(usize, HostState)> {
    let mut ran = session
        .script(
            "prepare",
            &[set],
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
    Ok((changed, state_of(session, &ran)?))
}

/// Records `deployed`, with the secrets in force, as what the host was deployed with.
async fn commit(session: &Session, deployed: &Generation) -> ProviderResult<()> {
    let number = deployed.number.to_string();
    let ran = session
        .script(
            "commit",
            &[&number, &deployed.system],
            None,
            COMMAND_TIMEOUT,
        )
        .await?;
    if ran.success {
        Ok(())
    } else {
        Err(ProviderError::transient(format!(
            "cannot record generation {number} as deployed on {}: {}",
            session.host(),
            ran.stderr.trim()
        )))
    }
}

/// The health contract of `system`, read on the host (it was built there).
async fn contract_on_host(session: &Session, system: &str) -> ProviderResult<Contract> {
    let ran = session
        .script("contract", &[system], None, COMMAND_TIMEOUT)
        .await?;
    if !ran.success {
        return Err(ProviderError::transient(format!(
            "cannot read the health contract of {system} on {}: {}",
            session.host(),
            ran.stderr.trim()
        )));
    }
    Contract::from_host(system, &ran.stdout)
}

fn state_of(session: &Session, ran: &Ran) -> ProviderResult<HostState> {
    if ran.success {
        Ok(HostState::parse(&ran.stdout))
    } else {
        Err(ProviderError::transient(format!(
            "cannot read the system profile on {}: {}",
            session.host(),
            ran.stderr.trim()
        )))
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
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

/// A generation from the host script's words.
fn generation(number: &str, system: &str) -> Option<Generation> {
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
        let state = current(&session)
            .await
            .map_err(|e| in_context(&ctx.address, e))?;
        // Logging in with the pinned key proves the host and its key are the recorded ones.
        // The recorded fallback key stays recorded: only a deployment proves the new key.
        let key = fallback.as_ref().unwrap_or(&parsed.ssh_private_key);
        Ok(state.running().map(|generation| Observed {
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

    fn at(number: u64, system: &str) -> Generation {
        Generation {
            number,
            system: system.to_owned(),
        }
    }

    #[test]
    fn host_states_and_statuses_parse() {
        let state = HostState::parse(
            "profile 3 /nix/store/b-system\ndeployed 2 /nix/store/a-system s1\n\
             pending 3 /nix/store/b-system r9\nsecrets s2\nnoise\n",
        );
        assert_eq!(
            state,
            HostState {
                profile: Some(at(3, "/nix/store/b-system")),
                deployed: Some((at(2, "/nix/store/a-system"), "s1".to_owned())),
                pending: Some((at(3, "/nix/store/b-system"), "r9".to_owned())),
                secrets: Some("s2".to_owned()),
            }
        );
        assert_eq!(HostState::parse(""), HostState::default());
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

    /// A host interrupted after switching its profile to b (generation 3), last deployed
    /// with a (generation 2).
    fn interrupted() -> HostState {
        HostState {
            profile: Some(at(3, "/nix/store/b")),
            deployed: Some((at(2, "/nix/store/a"), "s1".to_owned())),
            pending: Some((at(3, "/nix/store/b"), "r9".to_owned())),
            secrets: Some("s2".to_owned()),
        }
    }

    #[test]
    fn only_a_deployment_that_passed_counts_as_running() {
        let state = interrupted();
        assert_eq!(state.runs("/nix/store/b"), None, "b never passed");
        assert_eq!(state.runs("/nix/store/a"), None, "the profile left a");
        assert_eq!(
            state.pending("/nix/store/b"),
            Some((&at(3, "/nix/store/b"), "r9"))
        );
        assert_eq!(state.pending("/nix/store/c"), None);
        assert_eq!(
            state.rollback_target("/nix/store/b"),
            Some(&at(2, "/nix/store/a"))
        );
        assert!(state.secrets_moved());
        assert_eq!(state.running(), Some(&at(3, "/nix/store/b")));

        let settled = HostState {
            profile: Some(at(2, "/nix/store/a")),
            pending: None,
            secrets: Some("s1".to_owned()),
            ..interrupted()
        };
        assert_eq!(settled.runs("/nix/store/a"), Some(&at(2, "/nix/store/a")));
        assert!(!settled.secrets_moved());
        assert_eq!(settled.running(), Some(&at(2, "/nix/store/a")));
    }

    #[test]
    fn a_host_never_deployed_rolls_back_to_its_own_generation_only() {
        let fresh = HostState {
            profile: Some(at(1, "/nix/store/installer")),
            ..HostState::default()
        };
        assert_eq!(
            fresh.rollback_target("/nix/store/b"),
            Some(&at(1, "/nix/store/installer"))
        );
        let first_run_interrupted = HostState {
            profile: Some(at(2, "/nix/store/b")),
            ..HostState::default()
        };
        assert_eq!(first_run_interrupted.rollback_target("/nix/store/b"), None);
    }

    #[test]
    fn from_infra_accepts_both_places_to_build() {
        for build_on in [BuildOn::Deployer, BuildOn::Target] {
            let infra = NixInfra {
                flake: "/srv/nix".to_owned(),
                build_on,
            };
            // The test machine has nix (scripts/setup-test installs it).
            assert!(NixosProvider::from_infra(&infra, NixosOptions::default()).is_ok());
        }
        assert!(!on_path("surely-no-such-program-here"));
    }
}
