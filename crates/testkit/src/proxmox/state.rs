//! The simulated cluster's state: VMs with their current and pending configuration, and
//! tasks (UPIDs) that take time, hold locks and can fail.
//!
//! Time is real time read on each request: a task whose time has come is finished (and its
//! effect applied) by [`State::settle`] before the request is answered, so no background work
//! runs and the order of effects is the order of requests.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Configuration keys that a running VM takes only at its next start or reboot (no hotplug).
const PENDING_WHILE_RUNNING: &[&str] = &["cores", "memory", "ciuser", "sshkeys", "ipconfig0"];

/// A simulated VM.
#[derive(Clone, Debug, PartialEq)]
pub struct Vm {
    /// Its id.
    pub vmid: u32,
    /// The node it lives on.
    pub node: String,
    /// Whether it is a template (clones are made from it).
    pub template: bool,
    /// The configuration in force.
    pub config: BTreeMap<String, String>,
    /// Changes waiting for the next start or reboot.
    pub pending: BTreeMap<String, String>,
    /// Whether it runs.
    pub running: bool,
    /// The configuration lock (`clone`, …) while a task holds it.
    pub lock: Option<String>,
    /// When it last booted, for the guest agent's readiness.
    pub booted_at: Option<Instant>,
    /// Its SSH host public key, readable through the guest agent.
    pub host_key: String,
}

impl Vm {
    /// The disk size of `scsi0` in GiB, from its `size=` option.
    pub fn disk_gib(&self) -> Option<u64> {
        let disk = self.config.get("scsi0")?;
        let size = disk.split(',').find_map(|o| o.strip_prefix("size="))?;
        size.strip_suffix('G')?.parse().ok()
    }

    fn apply_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.config.extend(pending);
    }

    /// Sets `key`: pending when the VM runs and cannot take it live, else at once.
    pub(crate) fn set(&mut self, key: &str, value: String) {
        if self.running && PENDING_WHILE_RUNNING.contains(&key) {
            if self.config.get(key) == Some(&value) {
                self.pending.remove(key);
            } else {
                self.pending.insert(key.to_owned(), value);
            }
        } else {
            self.config.insert(key.to_owned(), value);
        }
    }
}

/// What a task does to its VM when it finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A clone: the new VM is unlocked (or removed, when the task failed).
    Clone,
    /// The VM starts, taking its pending changes.
    Start,
    /// The VM stops.
    Stop,
    /// The VM restarts, taking its pending changes.
    Reboot,
    /// The VM is removed.
    Destroy,
    /// Nothing beyond what the request already did.
    Nothing,
}

/// A failure the test arranged for the next task of one type.
#[derive(Clone, Debug)]
pub struct TaskFailure {
    /// The task type to fail (`qmclone`, `qmstart`, …).
    pub task_type: String,
    /// The exit status Proxmox reports (the error message).
    pub exitstatus: String,
    /// The task log's lines before the final `TASK ERROR` line.
    pub log: Vec<String>,
}

/// A task.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub upid: String,
    pub node: String,
    pub task_type: String,
    pub vmid: u32,
    pub target: u32,
    pub pid: u32,
    pub starttime: u64,
    pub user: String,
    pub done_at: Instant,
    pub effect: Effect,
    pub failure: Option<TaskFailure>,
    pub finished: bool,
    pub log: Vec<String>,
}

impl Task {
    /// The exit status once it finished.
    pub fn exitstatus(&self) -> Option<String> {
        self.finished.then(|| match &self.failure {
            Some(failure) => failure.exitstatus.clone(),
            None => "OK".to_owned(),
        })
    }
}

/// The whole simulated cluster.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub vms: BTreeMap<u32, Vm>,
    pub tasks: Vec<Task>,
    pub task_failures: VecDeque<TaskFailure>,
    next_pid: u32,
    keys_made: u64,
}

/// The SSH host key of the `serial`-th VM: a well-formed Ed25519 public key.
fn host_key(serial: u64) -> String {
    let key: [u8; 32] = Sha256::digest(format!("simulated host key {serial}")).into();
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), key.as_slice()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("ssh-ed25519 {encoded} root@simulated")
}

impl State {
    /// A new VM (a template, or a clone's target), unlocked and stopped.
    pub fn add_vm(&mut self, vmid: u32, node: &str, config: BTreeMap<String, String>) -> &mut Vm {
        self.keys_made += 1;
        let vm = Vm {
            vmid,
            node: node.to_owned(),
            template: false,
            config,
            pending: BTreeMap::new(),
            running: false,
            lock: None,
            booted_at: None,
            host_key: host_key(self.keys_made),
        };
        self.vms.entry(vmid).insert_entry(vm).into_mut()
    }

    /// Starts a task of `task_type` about `vmid` (`target` is the VM its effect applies to),
    /// taking `duration`; returns its UPID.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per task kind, all named"
    )]
    pub fn start_task(
        &mut self,
        node: &str,
        task_type: &str,
        vmid: u32,
        target: u32,
        user: &str,
        duration: Duration,
        effect: Effect,
    ) -> String {
        self.next_pid += 1;
        let starttime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pid = 40_000 + self.next_pid;
        let pstart = 1_000_000 + u64::from(self.next_pid);
        let upid = format!(
            "UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{vmid}:{user}:"
        );
        let failure = self
            .task_failures
            .iter()
            .position(|f| f.task_type == task_type)
            .and_then(|at| self.task_failures.remove(at));
        self.tasks.push(Task {
            upid: upid.clone(),
            node: node.to_owned(),
            task_type: task_type.to_owned(),
            vmid,
            target,
            pid,
            starttime,
            user: user.to_owned(),
            done_at: Instant::now() + duration,
            effect,
            failure,
            finished: false,
            log: vec![format!("starting {task_type} of VM {vmid}")],
        });
        upid
    }

    /// Finishes every task whose time has come, applying its effect.
    pub fn settle(&mut self, now: Instant) {
        let due: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| !self.tasks[i].finished && self.tasks[i].done_at <= now)
            .collect();
        for i in due {
            let task = &mut self.tasks[i];
            task.finished = true;
            match &task.failure {
                Some(failure) => {
                    task.log.extend(failure.log.iter().cloned());
                    task.log.push(format!("TASK ERROR: {}", failure.exitstatus));
                }
                None => task.log.push("TASK OK".to_owned()),
            }
            let (effect, target, failed) = (task.effect, task.target, task.failure.is_some());
            self.finish(effect, target, failed, now);
        }
    }

    fn finish(&mut self, effect: Effect, target: u32, failed: bool, now: Instant) {
        if effect == Effect::Clone && failed || effect == Effect::Destroy && !failed {
            self.vms.remove(&target);
            return;
        }
        let Some(vm) = self.vms.get_mut(&target) else {
            return;
        };
        vm.lock = None;
        if failed {
            return;
        }
        match effect {
            Effect::Start | Effect::Reboot => {
                vm.running = true;
                vm.booted_at = Some(now);
                vm.apply_pending();
            }
            Effect::Stop => {
                vm.running = false;
                vm.booted_at = None;
            }
            Effect::Clone | Effect::Destroy | Effect::Nothing => {}
        }
    }

    /// The lowest VM id from 100 on that is free.
    pub fn next_id(&self) -> u32 {
        (100..).find(|id| !self.vms.contains_key(id)).unwrap_or(100)
    }
}
