//! External providers: any executable as a provider, speaking JSON lines over its standard
//! input and output (`docs/provider-protocol.md`, schema `docs/provider-protocol.schema.json`).
//!
//! [`ExternalProvider::start`] runs the executable and shakes hands (`hello`): the provider
//! says its name, the kinds it makes, which input changes force a replacement and how many
//! requests it takes at once. Each trait call is then one request and one answer (progress
//! messages may come first and become `Progress` events), with a deadline. A process that
//! exits, breaks the protocol or misses a deadline is stopped and the call fails with an error
//! naming the executable; the next call starts it again. Its standard error goes to the logs.
//!
//! [`conformance`] exercises a provider the way the engine will, for provider authors
//! (`fediversity provider test <exe>`).

mod conformance;
mod process;
pub mod protocol;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fediversity_engine::diff::{self, FieldChange};
use fediversity_engine::events::ProgressReporter;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

pub use conformance::{
    Check, ConformanceOptions, ConformanceReport, Outcome, conformance, conformance_with,
};
use process::Process;
use protocol::{
    DeleteResult, DiffParams, DiffResult, Hello, HelloParams, PROTOCOL_VERSION, ReadResult,
    ResourceParams, method,
};

use crate::error::Error;

/// Which way a protocol message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A request from the platform.
    ToProvider,
    /// A progress report or answer from the provider.
    FromProvider,
}

/// Sees every protocol message (for the conformance runner's schema checks). Messages carry
/// secret values: an observer must not log them.
pub type Observer = Arc<dyn Fn(Direction, &Value) + Send + Sync>;

/// How an external provider is run.
#[derive(Clone)]
pub struct ExternalOptions {
    /// Arguments to the executable.
    pub args: Vec<OsString>,
    /// Environment variables set for it (on top of the platform's own).
    pub env: Vec<(OsString, OsString)>,
    /// The longest a call may take before the process is stopped and the call fails
    /// (transient). Generous by default: creating a VM takes minutes.
    pub call_timeout: Duration,
    /// The longest the handshake may take.
    pub hello_timeout: Duration,
    /// Let the provider write to the platform's standard error directly, instead of to the
    /// logs (for `fediversity provider test`, where its author wants to see it).
    pub inherit_stderr: bool,
    /// Sees every message.
    pub observer: Option<Observer>,
}

impl Default for ExternalOptions {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            call_timeout: Duration::from_secs(600),
            hello_timeout: Duration::from_secs(10),
            inherit_stderr: false,
            observer: None,
        }
    }
}

impl fmt::Debug for ExternalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment may hold credentials: only its names are shown.
        f.debug_struct("ExternalOptions")
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("call_timeout", &self.call_timeout)
            .field("hello_timeout", &self.hello_timeout)
            .field("inherit_stderr", &self.inherit_stderr)
            .finish_non_exhaustive()
    }
}

/// A provider that is an executable.
pub struct ExternalProvider {
    exe: PathBuf,
    options: ExternalOptions,
    hello: Hello,
    /// Per kind, `hello.replace_on` as the trait hands it out (see [`leak`]).
    replace_on: BTreeMap<ResourceKind, Vec<&'static str>>,
    process: Mutex<Option<Arc<Process>>>,
    next_id: AtomicU64,
    slots: Semaphore,
}

impl fmt::Debug for ExternalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalProvider")
            .field("name", &self.hello.name)
            .field("exe", &self.exe)
            .field("kinds", &self.hello.kinds)
            .finish_non_exhaustive()
    }
}

/// `fields` as `'static` strings. The trait hands out `&[&str]` borrowed from the provider,
/// which cannot borrow from its own fields; the few short names of one handshake are leaked
/// once per provider, for the life of the platform process.
fn leak(fields: &[String]) -> Vec<&'static str> {
    fields.iter().map(|f| &*f.clone().leak()).collect()
}

/// What is wrong with a handshake answer, if anything.
fn check_hello(hello: &Hello) -> Result<(), String> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "it speaks protocol version {}, and this platform speaks version {PROTOCOL_VERSION}",
            hello.protocol
        ));
    }
    let name_ok = hello.name.len() <= 63
        && hello.name.starts_with(|c: char| c.is_ascii_lowercase())
        && hello
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(format!(
            "its name `{}` is not 1 to 63 characters from a-z, 0-9 and '-' starting with a letter",
            hello.name
        ));
    }
    if hello.kinds.is_empty() {
        return Err("it makes no kind of resource (`kinds` is empty)".to_owned());
    }
    for kind in hello.kinds.iter().chain(hello.replace_on.keys()) {
        if !ResourceKind::ALL.iter().any(|k| k.as_str() == kind) {
            return Err(format!(
                "`{kind}` is not a resource kind: use {}",
                ResourceKind::ALL.map(ResourceKind::as_str).join(", ")
            ));
        }
    }
    if let Some(kind) = hello.replace_on.keys().find(|k| !hello.kinds.contains(k)) {
        return Err(format!(
            "`replace_on` names the kind `{kind}`, which is not in `kinds`"
        ));
    }
    if !(1..=64).contains(&hello.concurrency) {
        return Err(format!(
            "its concurrency {} is not from 1 to 64",
            hello.concurrency
        ));
    }
    Ok(())
}

/// Starts a process of `exe` and shakes hands with it.
async fn launch(
    exe: &Path,
    options: &ExternalOptions,
    ids: &AtomicU64,
) -> Result<(Process, Hello), Error> {
    let process = Process::spawn(exe, options).map_err(|e| Error::NotExecutable {
        path: exe.to_owned(),
        reason: e.to_string(),
    })?;
    let handshake = |reason: String| Error::Handshake {
        path: exe.to_owned(),
        reason,
    };
    let params = serde_json::to_value(HelloParams {
        protocol: PROTOCOL_VERSION,
        platform: format!("fediversity {}", env!("CARGO_PKG_VERSION")),
    })
    .map_err(|e| handshake(e.to_string()))?;
    let id = ids.fetch_add(1, Ordering::Relaxed);
    let answer = process
        .request(
            id,
            method::HELLO,
            params,
            None,
            options.hello_timeout,
            "the handshake",
        )
        .await
        .map_err(|e| handshake(e.message))?;
    let hello: Hello = serde_json::from_value(answer).map_err(|e| {
        handshake(format!(
            "its answer to `hello` is not a hello result ({})",
            crate::inputs::without_values(&e.to_string())
        ))
    })?;
    check_hello(&hello).map_err(handshake)?;
    process.set_label(format!(
        "external provider `{}` ({})",
        hello.name,
        exe.display()
    ));
    Ok((process, hello))
}

impl ExternalProvider {
    /// Starts `exe` and shakes hands with it.
    pub async fn start(exe: impl Into<PathBuf>, options: ExternalOptions) -> crate::Result<Self> {
        let exe = exe.into();
        let next_id = AtomicU64::new(1);
        let (process, hello) = launch(&exe, &options, &next_id).await?;
        let replace_on = hello
            .replace_on
            .iter()
            .filter_map(|(kind, fields)| {
                let kind = ResourceKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
                Some((kind, leak(fields)))
            })
            .collect();
        Ok(Self {
            slots: Semaphore::new(hello.concurrency),
            exe,
            options,
            hello,
            replace_on,
            process: Mutex::new(Some(Arc::new(process))),
            next_id,
        })
    }

    /// What the provider said about itself.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The executable.
    pub fn executable(&self) -> &Path {
        &self.exe
    }

    fn label(&self) -> String {
        format!(
            "external provider `{}` ({})",
            self.hello.name,
            self.exe.display()
        )
    }

    /// The running process, started anew if the last one ended.
    async fn process(&self) -> ProviderResult<Arc<Process>> {
        let mut slot = self.process.lock().await;
        if let Some(process) = slot.as_ref().filter(|p| p.is_usable()) {
            return Ok(process.clone());
        }
        *slot = None;
        let (process, hello) = launch(&self.exe, &self.options, &self.next_id)
            .await
            .map_err(|e| match e {
                Error::NotExecutable { .. } => ProviderError::permanent(e.to_string()),
                _ => ProviderError::transient(e.to_string()),
            })?;
        let same = hello.name == self.hello.name
            && hello.kinds == self.hello.kinds
            && hello.replace_on == self.hello.replace_on
            && hello.concurrency == self.hello.concurrency;
        if !same {
            return Err(ProviderError::permanent(format!(
                "the {} declared other kinds, replacement fields or concurrency when it was \
                 started again: restart the platform to take the new declaration",
                self.label()
            )));
        }
        tracing::info!(provider = %self.hello.name, exe = %self.exe.display(), "external provider started again");
        let process = Arc::new(process);
        *slot = Some(process.clone());
        Ok(process)
    }

    /// Stops the process, if it runs; the next call starts it again.
    pub async fn stop(&self) {
        if let Some(process) = self.process.lock().await.take() {
            process.stop(ProviderError::transient(format!(
                "the {} was stopped",
                self.label()
            )));
        }
    }

    /// Sends one request and returns its result: the raw exchange, for the conformance runner
    /// and for methods the trait does not have. `subject` names what it is about, for errors.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        progress: Option<ProgressReporter>,
        subject: &str,
    ) -> ProviderResult<Value> {
        let _slot = self.slots.acquire().await.map_err(|_| {
            ProviderError::permanent("internal error: the provider's call slots were closed")
        })?;
        let process = self.process().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        process
            .request(
                id,
                method,
                params,
                progress,
                self.options.call_timeout,
                subject,
            )
            .await
    }

    /// The result of `method` as `T`, or a permanent error saying the provider answered
    /// something else.
    fn expect<T: DeserializeOwned>(
        &self,
        method: &str,
        subject: &str,
        result: Value,
    ) -> ProviderResult<T> {
        parse_result(&self.label(), method, subject, result)
    }

    async fn resource_call(
        &self,
        method: &str,
        ctx: &CallContext,
        params: ResourceParams,
    ) -> ProviderResult<Value> {
        let params = serde_json::to_value(params)
            .map_err(|e| ProviderError::permanent(format!("internal error: {e}")))?;
        let subject = ctx.address.to_string();
        self.request(method, params, Some(ctx.progress.clone()), &subject)
            .await
    }

    /// The provider's own `diff` (when its hello declared one): which fields differ and how
    /// each is changed. The engine's `Provider::diff` is pure and synchronous, so it uses
    /// `replace_on` instead; this is for the conformance runner and a future async diff.
    pub async fn remote_diff(
        &self,
        address: &ResourceAddress,
        recorded: &Value,
        desired: &Value,
    ) -> ProviderResult<Vec<FieldChange>> {
        if !self.hello.diff {
            return Ok(self.diff(address, recorded, desired));
        }
        let params = serde_json::to_value(DiffParams {
            address: address.to_string(),
            kind: address.kind().as_str().to_owned(),
            name: address.name().to_owned(),
            recorded: recorded.clone(),
            desired: desired.clone(),
        })
        .map_err(|e| ProviderError::permanent(format!("internal error: {e}")))?;
        let subject = address.to_string();
        let result = self.request(method::DIFF, params, None, &subject).await?;
        let answer: DiffResult = self.expect(method::DIFF, &subject, result)?;
        let ours = diff::changes(recorded, desired);
        Ok(answer
            .changes
            .into_iter()
            .map(|change| {
                let known = ours.iter().find(|c| c.path == change.path);
                FieldChange {
                    before: known.and_then(|c| c.before.clone()),
                    after: known.and_then(|c| c.after.clone()),
                    path: change.path,
                    kind: change.kind,
                }
            })
            .collect())
    }
}

/// The parameters of a call about `ctx`'s resource.
pub fn resource_params(
    ctx: &CallContext,
    inputs: &Value,
    recorded: Option<Option<&Outputs>>,
    retention: Option<Retention>,
) -> ResourceParams {
    ResourceParams {
        operator: ctx.operator.to_string(),
        address: ctx.address.to_string(),
        kind: ctx.address.kind().as_str().to_owned(),
        name: ctx.address.name().to_owned(),
        idempotency_key: ctx.idempotency_key.clone(),
        inputs: inputs.clone(),
        recorded: recorded.map(|r| r.cloned()),
        retention,
        test: None,
    }
}

/// A method's result as `T`, or a permanent error naming `label`.
fn parse_result<T: DeserializeOwned>(
    label: &str,
    method: &str,
    subject: &str,
    result: Value,
) -> ProviderResult<T> {
    serde_json::from_value(result).map_err(|e| {
        ProviderError::permanent(format!(
            "the {label} answered `{method}` of {subject} with a result of the wrong shape ({}): see docs/provider-protocol.md",
            crate::inputs::without_values(&e.to_string())
        ))
    })
}

#[async_trait]
impl Provider for ExternalProvider {
    fn name(&self) -> &str {
        &self.hello.name
    }

    fn concurrency(&self) -> usize {
        self.hello.concurrency
    }

    fn replace_on(&self, address: &ResourceAddress) -> &[&str] {
        self.replace_on
            .get(&address.kind())
            .map_or(&[], Vec::as_slice)
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let result = self
            .resource_call(
                method::CREATE,
                ctx,
                resource_params(ctx, inputs, None, None),
            )
            .await?;
        self.expect(method::CREATE, &ctx.address.to_string(), result)
    }

    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let params = resource_params(ctx, inputs, Some(recorded), None);
        let result = self.resource_call(method::READ, ctx, params).await?;
        let read: Option<ReadResult> =
            self.expect(method::READ, &ctx.address.to_string(), result)?;
        Ok(read.map(Observed::from))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        let params = resource_params(ctx, inputs, Some(Some(recorded)), None);
        let result = self.resource_call(method::UPDATE, ctx, params).await?;
        self.expect(method::UPDATE, &ctx.address.to_string(), result)
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        recorded: &Outputs,
        retention: Retention,
    ) -> ProviderResult<Deletion> {
        let params = resource_params(ctx, inputs, Some(Some(recorded)), Some(retention));
        let result = self.resource_call(method::DELETE, ctx, params).await?;
        let deletion: DeleteResult =
            self.expect(method::DELETE, &ctx.address.to_string(), result)?;
        Ok(deletion.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            protocol: 1,
            name: "notes".into(),
            kinds: vec!["dns".into()],
            replace_on: BTreeMap::from([("dns".into(), vec!["zone".into()])]),
            concurrency: 1,
            diff: false,
            test_hooks: false,
            examples: vec![],
        }
    }

    #[test]
    fn handshakes_are_checked() {
        check_hello(&hello()).unwrap();
        type Spoil = fn(&mut Hello);
        let cases: [(Spoil, &str); 6] = [
            (|h| h.protocol = 2, "protocol version 2"),
            (|h| h.name = "Notes".into(), "is not 1 to 63"),
            (|h| h.kinds.clear(), "no kind"),
            (|h| h.kinds = vec!["printer".into()], "not a resource kind"),
            (
                |h| h.replace_on = BTreeMap::from([("vm".into(), vec![])]),
                "not in `kinds`",
            ),
            (|h| h.concurrency = 0, "concurrency 0"),
        ];
        for (spoil, expected) in cases {
            let mut h = hello();
            spoil(&mut h);
            let error = check_hello(&h).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn options_do_not_show_environment_values() {
        let options = ExternalOptions {
            env: vec![("API_TOKEN".into(), "hunter2".into())],
            ..ExternalOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(
            shown.contains("API_TOKEN") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
