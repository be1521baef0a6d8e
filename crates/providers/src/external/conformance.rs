//! The conformance runner: exercises an external provider the way the engine will, and says
//! check by check what holds and what does not.
//!
//! For each example the provider's hello offers (inputs to create, update to, and refuse),
//! on a fresh address of operator `conformance-test`: read before it exists, create, create
//! again (adoption), read with and without the recorded outputs (crash recovery), update,
//! diff (if offered), a transient failure (if the provider has test hooks), bad input, delete,
//! read after delete, delete again. Then: an unknown method, a restart, and every message the
//! provider wrote checked against the protocol's JSON Schema.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fediversity_engine::ProviderError;
use fediversity_engine::events::{Event, EventSink, ProgressReporter};
use fediversity_engine::provider::{
    CallContext, ChangeKind, Deletion, ErrorKind, Outputs, Provider,
};
use fediversity_model::Retention;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_model::names::OperatorId;
use serde::Serialize;
use serde_json::{Value, json};

use super::protocol::{Example, SCHEMA, TestHook, method};
use super::{Direction, ExternalOptions, ExternalProvider, resource_params};
use crate::error::Error;

/// The operator every conformance resource belongs to.
pub const OPERATOR: &str = "conformance-test";

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It holds.
    Pass,
    /// It does not.
    Fail,
    /// It could not be tried (an optional ability, or an earlier check failed).
    Skip,
}

/// One check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Short name, with the kind in parentheses for per-kind checks.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What was seen; for a failure, what is wrong. Never a secret value.
    pub detail: String,
}

/// Every check of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConformanceReport {
    /// The executable tested.
    pub executable: PathBuf,
    /// Its name, when the handshake got that far.
    pub provider: Option<String>,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl ConformanceReport {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(|c| c.outcome == Outcome::Fail)
    }

    /// How many checks ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn record(&mut self, name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            outcome,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for ConformanceReport {
    /// A table a person can read: one line per check, then the counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.provider {
            Some(name) => writeln!(
                f,
                "conformance of external provider `{name}` ({})",
                self.executable.display()
            )?,
            None => writeln!(f, "conformance of {}", self.executable.display())?,
        }
        writeln!(f)?;
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let mark = match check.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            writeln!(f, "  {mark}  {:width$}  {}", check.name, check.detail)?;
        }
        writeln!(f)?;
        write!(
            f,
            "conformance: {} checks passed, {} failed, {} skipped",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip)
        )
    }
}

/// How the runner runs the provider.
#[derive(Clone, Debug)]
pub struct ConformanceOptions {
    /// Arguments, environment and deadlines (the observer is the runner's own).
    pub external: ExternalOptions,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        Self {
            external: ExternalOptions {
                call_timeout: Duration::from_secs(30),
                ..ExternalOptions::default()
            },
        }
    }
}

/// Runs every check against `exe` with default options.
pub async fn conformance(exe: impl AsRef<Path>) -> crate::Result<ConformanceReport> {
    conformance_with(exe, ConformanceOptions::default()).await
}

/// Counts progress events, to say how many a call sent.
#[derive(Default)]
struct ProgressCount(Mutex<usize>);

impl EventSink for ProgressCount {
    fn emit(&self, event: &Event) {
        if matches!(event, Event::Progress { .. })
            && let Ok(mut n) = self.0.lock()
        {
            *n += 1;
        }
    }
}

/// Schema violations seen so far, described without values.
type Violations = Arc<Mutex<Vec<String>>>;

/// The definitions a message is checked against, most specific first.
const DEFINITIONS: [&str; 13] = [
    "request_hello",
    "request_create",
    "request_read",
    "request_update",
    "request_delete",
    "request_diff",
    "progress",
    "response_error",
    "response_hello",
    "response_outputs",
    "response_read",
    "response_delete",
    "response_diff",
];

/// Checks messages against the protocol's schema: first against the definition the message
/// should match (a result is matched with its request's method), so a problem is reported at
/// its place, then against the whole schema.
struct SchemaChecker {
    whole: jsonschema::Validator,
    definitions: std::collections::BTreeMap<&'static str, jsonschema::Validator>,
    /// The method of each request sent, by id.
    methods: Mutex<std::collections::HashMap<u64, String>>,
}

impl SchemaChecker {
    fn new() -> crate::Result<Self> {
        let schema: Value =
            serde_json::from_str(SCHEMA).map_err(|e| Error::Schema(e.to_string()))?;
        let compile = |schema: &Value| {
            jsonschema::validator_for(schema).map_err(|e| Error::Schema(e.to_string()))
        };
        let mut definitions = std::collections::BTreeMap::new();
        for definition in DEFINITIONS {
            let mut only = schema.clone();
            if let Some(map) = only.as_object_mut() {
                map.remove("oneOf");
                map.insert("$ref".to_owned(), json!(format!("#/$defs/{definition}")));
            }
            definitions.insert(definition, compile(&only)?);
        }
        Ok(Self {
            whole: compile(&schema)?,
            definitions,
            methods: Mutex::default(),
        })
    }

    /// The definition `message` should match, if the checker knows one.
    fn definition(&self, direction: Direction, message: &Value) -> Option<String> {
        let id = message.get("id").and_then(Value::as_u64);
        match direction {
            Direction::ToProvider => {
                let method = message.get("method").and_then(Value::as_str)?.to_owned();
                if let (Some(id), Ok(mut methods)) = (id, self.methods.lock()) {
                    methods.insert(id, method.clone());
                }
                let definition = format!("request_{method}");
                self.definitions
                    .contains_key(definition.as_str())
                    .then_some(definition)
            }
            Direction::FromProvider if message.get("progress").is_some() => {
                Some("progress".to_owned())
            }
            Direction::FromProvider if message.get("error").is_some() => {
                Some("response_error".to_owned())
            }
            Direction::FromProvider => {
                let method = self.methods.lock().ok()?.get(&id?)?.clone();
                let definition = match method.as_str() {
                    method::CREATE | method::UPDATE => "response_outputs".to_owned(),
                    other => format!("response_{other}"),
                };
                self.definitions
                    .contains_key(definition.as_str())
                    .then_some(definition)
            }
        }
    }

    /// What is wrong with `message`, described by place (never by value), if anything.
    fn check(&self, direction: Direction, message: &Value) -> Option<String> {
        let definition = self.definition(direction, message);
        let specific = definition.as_deref().and_then(|d| self.definitions.get(d));
        if direction == Direction::ToProvider && specific.is_none() {
            return None; // A method the protocol does not have, sent on purpose.
        }
        let places = |validator: &jsonschema::Validator| -> Vec<String> {
            validator
                .iter_errors(message)
                .map(|e| {
                    format!(
                        "at `{}` (schema {})",
                        e.instance_path().as_str(),
                        e.schema_path().as_str()
                    )
                })
                .collect()
        };
        let mut problems = specific.map(places).unwrap_or_default();
        if problems.is_empty() {
            problems = places(&self.whole);
        }
        if problems.is_empty() {
            return None;
        }
        let who = match direction {
            Direction::FromProvider => "a message from the provider",
            Direction::ToProvider => "a request from the platform (a platform bug)",
        };
        let id = message.get("id").map(Value::to_string).unwrap_or_default();
        let against = definition.map(|d| format!(" ({d})")).unwrap_or_default();
        Some(format!(
            "{who}, id {id}{against}, does not match the schema {}",
            problems.join("; ")
        ))
    }
}

/// Runs every check against `exe`. An `Err` only when the executable cannot be run at all or
/// this build's schema is broken; everything about the provider is in the report.
pub async fn conformance_with(
    exe: impl AsRef<Path>,
    options: ConformanceOptions,
) -> crate::Result<ConformanceReport> {
    let exe = exe.as_ref().to_owned();
    std::fs::metadata(&exe).map_err(|e| Error::NotExecutable {
        path: exe.clone(),
        reason: e.to_string(),
    })?;
    let checker = Arc::new(SchemaChecker::new()?);
    let violations: Violations = Arc::default();
    let observer = {
        let (checker, violations) = (checker.clone(), violations.clone());
        Arc::new(move |direction: Direction, message: &Value| {
            if let Some(problem) = checker.check(direction, message)
                && let Ok(mut v) = violations.lock()
            {
                v.push(problem);
            }
        })
    };
    let external = ExternalOptions {
        observer: Some(observer),
        ..options.external
    };
    let mut report = ConformanceReport {
        executable: exe.clone(),
        provider: None,
        checks: Vec::new(),
    };
    let provider = match ExternalProvider::start(&exe, external).await {
        Ok(provider) => provider,
        Err(error) => {
            report.record("handshake", Outcome::Fail, error.to_string());
            schema_check(&mut report, &violations);
            return Ok(report);
        }
    };
    let hello = provider.hello().clone();
    report.provider = Some(hello.name.clone());
    report.record(
        "handshake",
        Outcome::Pass,
        format!(
            "protocol {}, kinds {}, concurrency {}{}{}",
            hello.protocol,
            hello.kinds.join(", "),
            hello.concurrency,
            if hello.diff { ", diff" } else { "" },
            if hello.test_hooks { ", test hooks" } else { "" },
        ),
    );
    if hello.examples.is_empty() {
        report.record(
            "examples",
            Outcome::Fail,
            "the hello offers no `examples`: give inputs to create, update to and refuse for at least one kind",
        );
    }
    for example in &hello.examples {
        exercise(&provider, example, &mut report).await;
    }
    unknown_method(&provider, &mut report).await;
    restart(&provider, &mut report).await;
    provider.stop().await;
    schema_check(&mut report, &violations);
    Ok(report)
}

fn schema_check(report: &mut ConformanceReport, violations: &Violations) {
    let seen = violations.lock().map(|v| v.clone()).unwrap_or_default();
    if seen.is_empty() {
        report.record(
            "schema",
            Outcome::Pass,
            "every message matches docs/provider-protocol.schema.json",
        );
    } else {
        let mut detail = seen.iter().take(3).cloned().collect::<Vec<_>>().join(" | ");
        if seen.len() > 3 {
            detail.push_str(&format!(" | and {} more", seen.len() - 3));
        }
        report.record("schema", Outcome::Fail, detail);
    }
}

/// A fresh context for `address`.
fn context(
    address: &ResourceAddress,
    step: &str,
    progress: Arc<ProgressCount>,
) -> Option<CallContext> {
    Some(CallContext {
        operator: OperatorId::try_from(OPERATOR).ok()?,
        address: address.clone(),
        idempotency_key: format!("{OPERATOR}-{}-{step}", address.name()),
        progress: ProgressReporter::new(progress, address.clone()),
    })
}

/// The fields of `observed` that `inputs` also has and that differ.
fn disagreements(inputs: &Value, observed: &Value) -> Vec<String> {
    let (Some(inputs), Some(observed)) = (inputs.as_object(), observed.as_object()) else {
        return Vec::new();
    };
    observed
        .iter()
        .filter(|(key, value)| inputs.get(*key).is_some_and(|wanted| wanted != *value))
        .map(|(key, _)| format!("`{key}`"))
        .collect()
}

fn describe_outputs(outputs: &Outputs) -> String {
    let names: Vec<String> = outputs
        .values
        .keys()
        .map(|k| {
            if outputs.sensitive.contains(k) {
                format!("{k} (sensitive)")
            } else {
                k.clone()
            }
        })
        .collect();
    if names.is_empty() {
        "no outputs".to_owned()
    } else {
        format!("outputs {}", names.join(", "))
    }
}

fn failed_call(error: &ProviderError) -> String {
    let kind = match error.kind {
        ErrorKind::Transient => "transient",
        ErrorKind::Permanent => "permanent",
    };
    format!("failed ({kind}): {}", error.message)
}

/// Every per-resource check for one example.
async fn exercise(provider: &ExternalProvider, example: &Example, report: &mut ConformanceReport) {
    let kind = ResourceKind::ALL
        .into_iter()
        .find(|k| k.as_str() == example.kind);
    let label = |check: &str| format!("{check} ({})", example.kind);
    let suffix = format!("{:08x}", rand::random::<u32>());
    let address =
        kind.and_then(|kind| ResourceAddress::new(kind, format!("conformance-{suffix}")).ok());
    let progress = Arc::new(ProgressCount::default());
    let ctx = address
        .as_ref()
        .and_then(|a| context(a, "main", progress.clone()));
    let (Some(address), Some(ctx)) = (address, ctx) else {
        report.record(
            label("examples"),
            Outcome::Fail,
            format!("`{}` is not a resource kind", example.kind),
        );
        return;
    };
    let (create, update) = (&example.create, &example.update);

    match provider.read(&ctx, create, None).await {
        Ok(None) => report.record(
            label("read-missing"),
            Outcome::Pass,
            "a resource never made is not found",
        ),
        Ok(Some(_)) => report.record(
            label("read-missing"),
            Outcome::Fail,
            format!("found {address}, which was never made: read must answer null"),
        ),
        Err(e) => report.record(label("read-missing"), Outcome::Fail, failed_call(&e)),
    }

    let outputs = match provider.create(&ctx, create).await {
        Ok(outputs) => {
            let sent = progress.0.lock().map(|n| *n).unwrap_or(0);
            let plural = if sent == 1 { "" } else { "s" };
            report.record(
                label("create"),
                Outcome::Pass,
                format!(
                    "{}; {sent} progress message{plural}",
                    describe_outputs(&outputs)
                ),
            );
            outputs
        }
        Err(e) => {
            report.record(label("create"), Outcome::Fail, failed_call(&e));
            for check in [
                "create-again",
                "read-found",
                "read-by-identity",
                "update",
                "diff",
                "transient-error",
                "delete",
                "read-after-delete",
                "delete-again",
            ] {
                report.record(label(check), Outcome::Skip, "create failed");
            }
            bad_input(provider, example, &address, report, &label).await;
            return;
        }
    };

    match provider.create(&ctx, create).await {
        Ok(_) => report.record(
            label("create-again"),
            Outcome::Pass,
            "a repeated create adopts what the first made",
        ),
        Err(e) => report.record(
            label("create-again"),
            Outcome::Fail,
            format!(
                "a repeated create (as after a crash) must adopt the resource, but {}",
                failed_call(&e)
            ),
        ),
    }

    match provider.read(&ctx, create, Some(&outputs)).await {
        Ok(Some(observed)) => {
            let wrong = disagreements(create, &observed.inputs);
            if wrong.is_empty() {
                report.record(
                    label("read-found"),
                    Outcome::Pass,
                    format!("found; {}", describe_outputs(&observed.outputs)),
                );
            } else {
                report.record(
                    label("read-found"),
                    Outcome::Fail,
                    format!(
                        "observed inputs {} differ from what was created",
                        wrong.join(", ")
                    ),
                );
            }
        }
        Ok(None) => report.record(
            label("read-found"),
            Outcome::Fail,
            "read with the recorded outputs did not find what create made",
        ),
        Err(e) => report.record(label("read-found"), Outcome::Fail, failed_call(&e)),
    }

    match provider.read(&ctx, create, None).await {
        Ok(Some(_)) => report.record(label("read-by-identity"), Outcome::Pass, "found by operator and address alone"),
        Ok(None) => report.record(
            label("read-by-identity"),
            Outcome::Fail,
            "read without recorded outputs did not find it: after a crash the platform could not adopt it and would make it twice",
        ),
        Err(e) => report.record(label("read-by-identity"), Outcome::Fail, failed_call(&e)),
    }

    let outputs = match provider.update(&ctx, update, &outputs).await {
        Ok(updated) => match provider.read(&ctx, update, Some(&updated)).await {
            Ok(Some(observed)) => {
                let wrong = disagreements(update, &observed.inputs);
                if wrong.is_empty() {
                    report.record(
                        label("update"),
                        Outcome::Pass,
                        "updated, and read observes the new inputs",
                    );
                } else {
                    report.record(
                        label("update"),
                        Outcome::Fail,
                        format!(
                            "after update, read observes {} unlike the new inputs",
                            wrong.join(", ")
                        ),
                    );
                }
                updated
            }
            Ok(None) => {
                report.record(
                    label("update"),
                    Outcome::Fail,
                    "after update, read does not find the resource",
                );
                updated
            }
            Err(e) => {
                report.record(
                    label("update"),
                    Outcome::Fail,
                    format!("after update, read {}", failed_call(&e)),
                );
                updated
            }
        },
        Err(e) => {
            report.record(label("update"), Outcome::Fail, failed_call(&e));
            outputs
        }
    };

    if provider.hello().diff {
        match provider.remote_diff(&address, create, update).await {
            Ok(changes) if !changes.is_empty() => {
                let paths: Vec<String> = changes
                    .iter()
                    .map(|c| match c.kind {
                        ChangeKind::InPlace => format!("{} (in place)", c.path),
                        ChangeKind::Replace => format!("{} (replace)", c.path),
                    })
                    .collect();
                report.record(label("diff"), Outcome::Pass, paths.join(", "));
            }
            Ok(_) => report.record(
                label("diff"),
                Outcome::Fail,
                "diff found no change between the create and update examples",
            ),
            Err(e) => report.record(label("diff"), Outcome::Fail, failed_call(&e)),
        }
    } else {
        report.record(
            label("diff"),
            Outcome::Skip,
            "the provider does not answer `diff` (optional)",
        );
    }

    if provider.hello().test_hooks {
        let mut params = resource_params(&ctx, update, None, None);
        params.test = Some(TestHook {
            fail: ErrorKind::Transient,
        });
        let result = match serde_json::to_value(params) {
            Ok(params) => {
                provider
                    .request(method::CREATE, params, None, &address.to_string())
                    .await
            }
            Err(e) => Err(ProviderError::permanent(e.to_string())),
        };
        match result {
            Err(e) if e.kind == ErrorKind::Transient => report.record(
                label("transient-error"),
                Outcome::Pass,
                "answered a transient error when told to",
            ),
            Err(e) => report.record(
                label("transient-error"),
                Outcome::Fail,
                format!("told to fail transiently, it {}", failed_call(&e)),
            ),
            Ok(_) => report.record(
                label("transient-error"),
                Outcome::Fail,
                "told to fail transiently (params.test), it succeeded",
            ),
        }
    } else {
        report.record(
            label("transient-error"),
            Outcome::Skip,
            "the provider declares no test hooks",
        );
    }

    bad_input(provider, example, &address, report, &label).await;

    match provider
        .delete(&ctx, update, &outputs, Retention::Delete)
        .await
    {
        Ok(Deletion::Removed) => report.record(label("delete"), Outcome::Pass, "removed"),
        Ok(Deletion::Kept { .. }) => report.record(
            label("delete"),
            Outcome::Fail,
            "retention was `delete`, and it kept the resource",
        ),
        Err(e) => report.record(label("delete"), Outcome::Fail, failed_call(&e)),
    }
    match provider.read(&ctx, update, None).await {
        Ok(None) => report.record(label("read-after-delete"), Outcome::Pass, "gone"),
        Ok(Some(_)) => report.record(
            label("read-after-delete"),
            Outcome::Fail,
            "still found after delete",
        ),
        Err(e) => report.record(label("read-after-delete"), Outcome::Fail, failed_call(&e)),
    }
    match provider
        .delete(&ctx, update, &outputs, Retention::Delete)
        .await
    {
        Ok(Deletion::Removed) => report.record(
            label("delete-again"),
            Outcome::Pass,
            "deleting what is gone succeeds",
        ),
        Ok(Deletion::Kept { .. }) => report.record(
            label("delete-again"),
            Outcome::Fail,
            "retention was `delete`, and it answered kept",
        ),
        Err(e) => report.record(
            label("delete-again"),
            Outcome::Fail,
            format!(
                "deleting what is gone must succeed, but {}",
                failed_call(&e)
            ),
        ),
    }
}

/// Create with invalid inputs on a fresh address must fail permanently.
async fn bad_input(
    provider: &ExternalProvider,
    example: &Example,
    address: &ResourceAddress,
    report: &mut ConformanceReport,
    label: &dyn Fn(&str) -> String,
) {
    let invalid = example
        .invalid
        .clone()
        .unwrap_or_else(|| json!("not an object"));
    let Ok(bad) = ResourceAddress::new(address.kind(), format!("{}-bad", address.name())) else {
        return;
    };
    let Some(ctx) = context(&bad, "bad", Arc::default()) else {
        return;
    };
    // Sent raw: only an error the provider itself answers counts, not one the platform
    // makes of a malformed answer.
    let params = match serde_json::to_value(resource_params(&ctx, &invalid, None, None)) {
        Ok(params) => params,
        Err(e) => {
            report.record(
                label("bad-input"),
                Outcome::Fail,
                format!("internal error: {e}"),
            );
            return;
        }
    };
    match provider
        .request(method::CREATE, params, None, &bad.to_string())
        .await
    {
        Err(e) if e.kind == ErrorKind::Permanent => {
            report.record(
                label("bad-input"),
                Outcome::Pass,
                format!("refused: {}", e.message),
            );
        }
        Err(e) => report.record(
            label("bad-input"),
            Outcome::Fail,
            format!(
                "invalid inputs must fail permanently (retrying cannot fix them), but it {}",
                failed_call(&e)
            ),
        ),
        Ok(result) => {
            report.record(
                label("bad-input"),
                Outcome::Fail,
                "invalid inputs were accepted",
            );
            if let Ok(outputs) = serde_json::from_value::<Outputs>(result) {
                let _ = provider
                    .delete(&ctx, &invalid, &outputs, Retention::Delete)
                    .await;
            }
        }
    }
}

/// A method the provider does not know must fail permanently, so that the platform can add
/// optional methods.
async fn unknown_method(provider: &ExternalProvider, report: &mut ConformanceReport) {
    let result = provider
        .request(
            "conformance-unknown-method",
            json!({}),
            None,
            "an unknown method",
        )
        .await;
    match result {
        Err(e) if e.kind == ErrorKind::Permanent => {
            report.record("unknown-method", Outcome::Pass, "refused permanently")
        }
        Err(e) => report.record(
            "unknown-method",
            Outcome::Fail,
            format!(
                "an unknown method must fail permanently, but it {}",
                failed_call(&e)
            ),
        ),
        Ok(_) => report.record(
            "unknown-method",
            Outcome::Fail,
            "an unknown method was answered with a result",
        ),
    }
}

/// After its process is stopped, the provider starts again on the next call.
async fn restart(provider: &ExternalProvider, report: &mut ConformanceReport) {
    provider.stop().await;
    let Some(example) = provider.hello().examples.first() else {
        report.record("restart", Outcome::Skip, "no example to read with");
        return;
    };
    let Some(kind) = ResourceKind::ALL
        .into_iter()
        .find(|k| k.as_str() == example.kind)
    else {
        report.record("restart", Outcome::Skip, "no example of a known kind");
        return;
    };
    let Some(ctx) = ResourceAddress::new(kind, "conformance-restart")
        .ok()
        .and_then(|a| context(&a, "restart", Arc::default()))
    else {
        return;
    };
    match provider.read(&ctx, &example.create, None).await {
        Ok(_) => report.record(
            "restart",
            Outcome::Pass,
            "stopped, then started again by the next call",
        ),
        Err(e) => report.record(
            "restart",
            Outcome::Fail,
            format!("after a stop, the next call {}", failed_call(&e)),
        ),
    }
}
