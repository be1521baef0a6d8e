//! The simulated `/api2/json` endpoints: one function per operation, each answering the
//! `data` of Proxmox's `{"data": …}` envelope or an [`ApiError`] shaped the way Proxmox makes
//! its errors.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::SimOptions;
use super::state::{Effect, State, Vm};

/// An error answer: the message goes into the HTTP reason phrase, the body is
/// `{"data": null}` with `errors` on parameter checks.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl ApiError {
    /// A `500` with `message`, how Proxmox reports almost every failure.
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            errors: None,
        }
    }

    /// A `501` for a method and path the simulator does not serve, worded like Proxmox's.
    pub fn not_implemented(call: &Call<'_>) -> Self {
        Self {
            status: 501,
            message: format!(
                "Method '{} /{}' not implemented",
                call.method,
                call.segments.join("/")
            ),
            errors: None,
        }
    }

    /// A `400` parameter verification failure.
    pub fn parameters(errors: BTreeMap<String, String>) -> Self {
        Self {
            status: 400,
            message: "Parameter verification failed.".to_owned(),
            errors: Some(errors),
        }
    }
}

type Answer = Result<Value, ApiError>;

/// One request, its path split below `/api2/json`, with its parameters (query or form).
pub(crate) struct Call<'a> {
    pub method: &'a str,
    pub segments: Vec<&'a str>,
    pub params: &'a BTreeMap<String, String>,
    pub user: &'a str,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("1" | "true" | "yes" | "on"))
    }
}

/// Answers `call` against `state`.
pub(crate) fn handle(state: &mut State, options: &SimOptions, call: &Call<'_>) -> Answer {
    state.settle(Instant::now());
    match (call.method, call.segments.as_slice()) {
        ("GET", ["cluster", "nextid"]) => Ok(json!(state.next_id().to_string())),
        ("GET", ["cluster", "resources"]) => Ok(resources(state, call)),
        ("GET", ["nodes", node, "qemu"]) => Ok(list(state, node)),
        ("GET", ["nodes", node, "tasks", upid, "status"]) => task_status(state, node, upid),
        ("GET", ["nodes", node, "tasks", upid, "log"]) => task_log(state, node, upid, call),
        (_, ["nodes", node, "qemu", vmid, rest @ ..]) => {
            let vmid: u32 = vmid
                .parse()
                .map_err(|_| ApiError::server(format!("invalid VM id {vmid}")))?;
            vm_call(state, options, call, node, vmid, rest)
        }
        _ => Err(ApiError::not_implemented(call)),
    }
}

fn vm_call(
    state: &mut State,
    options: &SimOptions,
    call: &Call<'_>,
    node: &str,
    vmid: u32,
    rest: &[&str],
) -> Answer {
    let vm = find(state, node, vmid)?;
    match (call.method, rest) {
        ("GET", ["config"]) => Ok(config(&vm, call.flag("current"))),
        ("GET", ["pending"]) => Ok(pending(&vm)),
        ("PUT", ["config"]) => set_config(state, call, vmid).map(|()| Value::Null),
        ("POST", ["config"]) => {
            set_config(state, call, vmid)?;
            let upid = task(
                state,
                call,
                node,
                "qmconfig",
                vmid,
                Effect::Nothing,
                options,
            );
            Ok(json!(upid))
        }
        ("PUT", ["resize"]) => resize(state, options, call, node, vmid),
        ("POST", ["clone"]) => clone(state, options, call, node, &vm),
        ("GET", ["status", "current"]) => Ok(status(&vm)),
        ("POST", ["status", action]) => power(state, options, call, node, &vm, action),
        ("DELETE", []) => destroy(state, options, call, node, &vm),
        ("POST", ["agent", "ping"]) => agent(&vm, options).map(|()| json!({"result": {}})),
        ("GET", ["agent", "file-read"]) => {
            agent(&vm, options)?;
            file_read(&vm, call.param("file").unwrap_or_default())
        }
        _ => Err(ApiError::not_implemented(call)),
    }
}

/// The VM `vmid` on `node`, or Proxmox's error for a missing one.
fn find(state: &State, node: &str, vmid: u32) -> Result<Vm, ApiError> {
    state
        .vms
        .get(&vmid)
        .filter(|vm| vm.node == node)
        .cloned()
        .ok_or_else(|| {
            ApiError::server(format!(
                "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
            ))
        })
}

fn check_lock(vm: &Vm) -> Result<(), ApiError> {
    match &vm.lock {
        Some(lock) => Err(ApiError::server(format!("VM is locked ({lock})"))),
        None => Ok(()),
    }
}

fn task(
    state: &mut State,
    call: &Call<'_>,
    node: &str,
    task_type: &str,
    vmid: u32,
    effect: Effect,
    options: &SimOptions,
) -> String {
    let duration = match effect {
        Effect::Clone => options.clone_time,
        Effect::Nothing => std::time::Duration::ZERO,
        _ => options.task_time,
    };
    state.start_task(node, task_type, vmid, vmid, call.user, duration, effect)
}

fn memory_bytes(vm: &Vm) -> u64 {
    let mib: u64 = vm
        .config
        .get("memory")
        .and_then(|m| m.trim_start_matches("current=").parse().ok())
        .unwrap_or(512);
    mib * 1024 * 1024
}

fn summary(vm: &Vm) -> serde_json::Map<String, Value> {
    let mut entry = serde_json::Map::new();
    entry.insert("vmid".into(), json!(vm.vmid));
    entry.insert(
        "status".into(),
        json!(if vm.running { "running" } else { "stopped" }),
    );
    entry.insert("template".into(), json!(u8::from(vm.template)));
    entry.insert("maxmem".into(), json!(memory_bytes(vm)));
    entry.insert(
        "maxdisk".into(),
        json!(vm.disk_gib().unwrap_or(0) * 1024 * 1024 * 1024),
    );
    for key in ["name", "tags"] {
        if let Some(value) = vm.config.get(key) {
            entry.insert(key.into(), json!(value));
        }
    }
    if let Some(lock) = &vm.lock {
        entry.insert("lock".into(), json!(lock));
    }
    entry
}

fn resources(state: &State, call: &Call<'_>) -> Value {
    if call.param("type").is_some_and(|t| t != "vm") {
        return json!([]);
    }
    let entries: Vec<Value> = state
        .vms
        .values()
        .map(|vm| {
            let mut entry = summary(vm);
            entry.insert("id".into(), json!(format!("qemu/{}", vm.vmid)));
            entry.insert("type".into(), json!("qemu"));
            entry.insert("node".into(), json!(vm.node));
            entry.insert("maxcpu".into(), json!(cores(vm)));
            Value::Object(entry)
        })
        .collect();
    Value::Array(entries)
}

fn cores(vm: &Vm) -> u64 {
    vm.config
        .get("cores")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

fn list(state: &State, node: &str) -> Value {
    let entries: Vec<Value> = state
        .vms
        .values()
        .filter(|vm| vm.node == node)
        .map(|vm| {
            let mut entry = summary(vm);
            entry.insert("cpus".into(), json!(cores(vm)));
            Value::Object(entry)
        })
        .collect();
    Value::Array(entries)
}

fn digest(config: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let text: String = config.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    let hash = Sha256::digest(text);
    hash.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

fn config(vm: &Vm, current: bool) -> Value {
    let mut shown = vm.config.clone();
    if !current {
        shown.extend(vm.pending.clone());
    }
    let mut object: serde_json::Map<String, Value> = shown
        .iter()
        .map(|(key, value)| {
            let value = match key.as_str() {
                "cores" => value
                    .parse::<u64>()
                    .map_or_else(|_| json!(value), |n| json!(n)),
                _ => json!(value),
            };
            (key.clone(), value)
        })
        .collect();
    object.insert("digest".into(), json!(digest(&vm.config)));
    if vm.template {
        object.insert("template".into(), json!(1));
    }
    if let Some(lock) = &vm.lock {
        object.insert("lock".into(), json!(lock));
    }
    Value::Object(object)
}

fn pending(vm: &Vm) -> Value {
    let mut keys: Vec<&String> = vm.config.keys().chain(vm.pending.keys()).collect();
    keys.sort();
    keys.dedup();
    let entries: Vec<Value> = keys
        .into_iter()
        .map(|key| {
            let mut entry = json!({"key": key});
            if let Some(value) = vm.config.get(key) {
                entry["value"] = json!(value);
            }
            if let Some(value) = vm.pending.get(key) {
                entry["pending"] = json!(value);
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

/// Parameters that steer a request rather than set configuration.
const CONTROL: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "skiplock",
    "delete",
    "background_delay",
];

fn set_config(state: &mut State, call: &Call<'_>, vmid: u32) -> Result<(), ApiError> {
    let vm = state
        .vms
        .get_mut(&vmid)
        .ok_or_else(|| ApiError::server(format!("VM {vmid} vanished")))?;
    check_lock(vm)?;
    if let Some(expected) = call.param("digest")
        && expected != digest(&vm.config)
    {
        return Err(ApiError::server(
            "detected modified configuration - file changed by other user? Try again.",
        ));
    }
    for (key, value) in call.params {
        if !CONTROL.contains(&key.as_str()) {
            vm.set(key, value.clone());
        }
    }
    Ok(())
}

/// A size as `resize` takes it, in GiB: `+10G`, `50G`, or a plain number of bytes.
fn parse_size(size: &str) -> Option<(bool, f64)> {
    let (relative, size) = match size.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, size),
    };
    let (number, unit) = match size.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => (&size[..at], c),
        _ => (size, 'B'),
    };
    let number: f64 = number.parse().ok()?;
    let gib = match unit {
        'K' => number / (1024.0 * 1024.0),
        'M' => number / 1024.0,
        'G' => number,
        'T' => number * 1024.0,
        _ => number / (1024.0 * 1024.0 * 1024.0),
    };
    Some((relative, gib))
}

fn resize(
    state: &mut State,
    options: &SimOptions,
    call: &Call<'_>,
    node: &str,
    vmid: u32,
) -> Answer {
    let (disk, size) = (
        call.param("disk").unwrap_or_default(),
        call.param("size").unwrap_or_default(),
    );
    let vm = state
        .vms
        .get_mut(&vmid)
        .ok_or_else(|| ApiError::server(format!("VM {vmid} vanished")))?;
    check_lock(vm)?;
    let current = vm
        .config
        .get(disk)
        .cloned()
        .ok_or_else(|| ApiError::server(format!("disk '{disk}' does not exist")))?;
    let old_gib = vm.disk_gib().unwrap_or(0) as f64;
    let (relative, gib) =
        parse_size(size).ok_or_else(|| ApiError::server(format!("invalid size '{size}'")))?;
    let new_gib = if relative { old_gib + gib } else { gib };
    if new_gib < old_gib {
        return Err(ApiError::server("shrinking disks is not supported"));
    }
    let volume = current.split(',').next().unwrap_or_default();
    vm.config.insert(
        disk.to_owned(),
        format!("{volume},size={}G", new_gib.ceil() as u64),
    );
    let upid = task(state, call, node, "resize", vmid, Effect::Nothing, options);
    Ok(json!(upid))
}

fn clone(
    state: &mut State,
    options: &SimOptions,
    call: &Call<'_>,
    node: &str,
    source: &Vm,
) -> Answer {
    let newid: u32 = call
        .param("newid")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::server("newid missing"))?;
    if state.vms.contains_key(&newid) {
        return Err(ApiError::server(format!(
            "unable to create VM {newid}: config file already exists"
        )));
    }
    if !source.template && !call.flag("full") {
        return Err(ApiError::server(
            "parameter 'full' must be set for a normal VM",
        ));
    }
    let target = call.param("target").unwrap_or(node).to_owned();
    let storage = call.param("storage").unwrap_or("local-lvm");
    let mut config = source.config.clone();
    if let Some(gib) = source.disk_gib() {
        config.insert(
            "scsi0".to_owned(),
            format!("{storage}:vm-{newid}-disk-0,size={gib}G"),
        );
    }
    if let Some(name) = call.param("name") {
        config.insert("name".to_owned(), name.to_owned());
    }
    state.add_vm(newid, &target, config).lock = Some("clone".to_owned());
    let upid = state.start_task(
        node,
        "qmclone",
        source.vmid,
        newid,
        call.user,
        options.clone_time,
        Effect::Clone,
    );
    Ok(json!(upid))
}

fn status(vm: &Vm) -> Value {
    let mut entry = summary(vm);
    entry.insert("ha".into(), json!({"managed": 0}));
    entry.insert("cpus".into(), json!(cores(vm)));
    entry.insert("agent".into(), json!(1));
    entry.insert(
        "qmpstatus".into(),
        json!(if vm.running { "running" } else { "stopped" }),
    );
    Value::Object(entry)
}

fn power(
    state: &mut State,
    options: &SimOptions,
    call: &Call<'_>,
    node: &str,
    vm: &Vm,
    action: &str,
) -> Answer {
    check_lock(vm)?;
    let (task_type, effect) = match (action, vm.running) {
        ("start", false) => ("qmstart", Effect::Start),
        ("start", true) => {
            return Err(ApiError::server(format!("VM {} already running", vm.vmid)));
        }
        ("stop", _) => ("qmstop", Effect::Stop),
        ("shutdown", _) => ("qmshutdown", Effect::Stop),
        ("reboot", true) => ("qmreboot", Effect::Reboot),
        ("reboot", false) => {
            return Err(ApiError::server(format!("VM {} not running", vm.vmid)));
        }
        _ => {
            return Err(ApiError::not_implemented(call));
        }
    };
    Ok(json!(task(
        state, call, node, task_type, vm.vmid, effect, options
    )))
}

fn destroy(
    state: &mut State,
    options: &SimOptions,
    call: &Call<'_>,
    node: &str,
    vm: &Vm,
) -> Answer {
    check_lock(vm)?;
    if vm.running {
        return Err(ApiError::server(format!(
            "VM {} is running - destroy failed",
            vm.vmid
        )));
    }
    if let Some(stored) = state.vms.get_mut(&vm.vmid) {
        stored.lock = Some("destroyed".to_owned());
    }
    Ok(json!(task(
        state,
        call,
        node,
        "qmdestroy",
        vm.vmid,
        Effect::Destroy,
        options
    )))
}

fn agent(vm: &Vm, options: &SimOptions) -> Result<(), ApiError> {
    let booted = vm
        .booted_at
        .filter(|_| vm.running)
        .ok_or_else(|| ApiError::server(format!("VM {} is not running", vm.vmid)))?;
    if booted.elapsed() < options.boot_time {
        return Err(ApiError::server("QEMU guest agent is not running"));
    }
    Ok(())
}

fn file_read(vm: &Vm, file: &str) -> Answer {
    if file == "/etc/ssh/ssh_host_ed25519_key.pub" {
        Ok(json!({"content": format!("{}\n", vm.host_key)}))
    } else {
        Err(ApiError::server(format!(
            "guest-file-open: Failed to open file '{file}': No such file or directory"
        )))
    }
}

fn find_task<'s>(
    state: &'s State,
    node: &str,
    upid: &str,
) -> Result<&'s super::state::Task, ApiError> {
    state
        .tasks
        .iter()
        .find(|t| t.upid == upid && t.node == node)
        .ok_or_else(|| ApiError::server(format!("no such task '{upid}'")))
}

fn task_status(state: &State, node: &str, upid: &str) -> Answer {
    let task = find_task(state, node, upid)?;
    let mut answer = json!({
        "upid": task.upid,
        "node": task.node,
        "pid": task.pid,
        "pstart": 1_000_000 + task.pid,
        "starttime": task.starttime,
        "type": task.task_type,
        "id": task.vmid.to_string(),
        "user": task.user,
        "status": if task.finished { "stopped" } else { "running" },
    });
    if let Some(exitstatus) = task.exitstatus() {
        answer["exitstatus"] = json!(exitstatus);
    }
    Ok(answer)
}

fn task_log(state: &State, node: &str, upid: &str, call: &Call<'_>) -> Answer {
    let task = find_task(state, node, upid)?;
    let start: usize = call
        .param("start")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let limit: usize = call
        .param("limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let lines: Vec<Value> = task
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, t)| json!({"n": i + 1, "t": t}))
        .collect();
    Ok(Value::Array(lines))
}
