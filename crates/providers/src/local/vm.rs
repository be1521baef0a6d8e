//! Sandbox VMs: `vms/<name>/vm.json` records the size, the state, the loopback address and
//! the host key; `vms/<name>/disk/` stands for the VM's disk (the data retention applies to).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use fediversity_engine::ProviderResult;
use fediversity_engine::provider::{Deletion, Observed, Outputs};
use fediversity_model::Retention;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Kind, NAME, Place, addresses, observed_inputs, outputs, parse_inputs, taken_by};
use crate::files::{
    PUBLIC_FILE, check_component, create_dir, read_json, remove_dir_all, write_json,
};

/// The inputs of a sandbox VM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmInputs {
    /// The VM's name: its directory, and its identity.
    name: String,
    cores: u32,
    memory_mib: u64,
    disk_gib: u64,
    /// The deployment key's public half, as cloud-init would install it.
    ssh_public_key: String,
    /// Whether the VM gets an IPv6 address too.
    #[serde(default)]
    ipv6: bool,
}

/// Whether a VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// It runs.
    Running,
    /// It was stopped and kept (retention `keep`).
    Stopped,
}

/// `vm.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    /// The address of the resource that made this VM.
    pub resource: String,
    /// The VM's name.
    pub name: String,
    /// Virtual CPU cores.
    pub cores: u32,
    /// Memory.
    pub memory_mib: u64,
    /// Disk size.
    pub disk_gib: u64,
    /// Running or stopped.
    pub state: VmState,
    /// Its loopback address, unique in the sandbox.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Its SSH host key (public, OpenSSH one-line format).
    pub host_key: String,
    /// The key allowed to log in (OpenSSH one-line format).
    pub ssh_public_key: String,
}

/// The directory of the VM `name`.
pub fn vm_dir(at: &Place, name: &str) -> PathBuf {
    at.operator_dir().join("vms").join(name)
}

/// The recorded VM `name`, whoever made it.
pub fn load(at: &Place, name: &str) -> ProviderResult<Option<VmRecord>> {
    read_json(&vm_dir(at, name).join("vm.json"))
}

/// The operator's VMs, by name.
pub fn all(at: &Place) -> ProviderResult<Vec<VmRecord>> {
    let mut found = Vec::new();
    for name in crate::files::list_dir(&at.operator_dir().join("vms"))? {
        if check_component("VM name", &name).is_err() {
            continue;
        }
        if let Some(record) = load(at, &name)? {
            found.push(record);
        }
    }
    Ok(found)
}

fn allocation_key(at: &Place, name: &str) -> String {
    format!("{}/{name}", at.operator)
}

/// A new SSH host key (its public half; a sandbox VM runs no SSH server to need the other).
fn new_host_key(name: &str) -> ProviderResult<String> {
    let seed: [u8; 32] = crate::secret::random_array()?;
    let keypair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    ssh_key::PublicKey::new(
        ssh_key::public::KeyData::Ed25519(keypair.public),
        format!("root@{name}"),
    )
    .to_openssh()
    .map_err(|e| {
        fediversity_engine::ProviderError::permanent(format!("cannot encode a host key: {e}"))
    })
}

fn vm_outputs(record: &VmRecord) -> Outputs {
    let mut result = outputs([
        ("ipv4", json!(record.ipv4.to_string())),
        ("host_key", json!(record.host_key)),
    ]);
    if let Some(ipv6) = record.ipv6 {
        result
            .values
            .insert("ipv6".to_owned(), json!(ipv6.to_string()));
    }
    result
}

pub struct Vm;

impl Kind for Vm {
    fn replace_on(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: VmInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_component("VM name", &inputs.name)?;
        let dir = vm_dir(at, &inputs.name);
        let existing = load(at, &inputs.name)?;
        if let Some(existing) = &existing
            && existing.resource != at.resource()
        {
            return Err(taken_by(
                at,
                &format!("VM `{}`", inputs.name),
                &existing.resource,
            ));
        }
        let ipv4 = addresses::allocate(&at.root, &allocation_key(at, &inputs.name))?;
        let host_key = match existing {
            Some(existing) => existing.host_key,
            None => new_host_key(&inputs.name)?,
        };
        let record = VmRecord {
            resource: at.resource(),
            name: inputs.name,
            cores: inputs.cores,
            memory_mib: inputs.memory_mib,
            disk_gib: inputs.disk_gib,
            state: VmState::Running,
            ipv4,
            ipv6: inputs.ipv6.then(|| addresses::ipv6_for(ipv4)),
            host_key,
            ssh_public_key: inputs.ssh_public_key,
        };
        create_dir(&dir.join("disk"), 0o755)?;
        write_json(&dir.join("vm.json"), &record, PUBLIC_FILE)?;
        tracing::info!(vm = %record.name, ipv4 = %record.ipv4, "sandbox VM running");
        Ok(vm_outputs(&record))
    }

    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>> {
        let parsed: VmInputs = parse_inputs(&at.address, NAME, inputs)?;
        let Some(record) = load(at, &parsed.name)? else {
            return Ok(None);
        };
        if record.resource != at.resource() {
            return Ok(None);
        }
        let observed = Map::from_iter([
            ("name".to_owned(), json!(record.name)),
            ("cores".to_owned(), json!(record.cores)),
            ("memory_mib".to_owned(), json!(record.memory_mib)),
            ("disk_gib".to_owned(), json!(record.disk_gib)),
            ("ssh_public_key".to_owned(), json!(record.ssh_public_key)),
            ("ipv6".to_owned(), json!(record.ipv6.is_some())),
        ]);
        Ok(Some(Observed {
            inputs: observed_inputs(inputs, observed),
            outputs: vm_outputs(&record),
        }))
    }

    fn delete(&self, at: &Place, inputs: &Value, retention: Retention) -> ProviderResult<Deletion> {
        let inputs: VmInputs = parse_inputs(&at.address, NAME, inputs)?;
        let dir = vm_dir(at, &inputs.name);
        let Some(mut record) = load(at, &inputs.name)? else {
            // Gone already (perhaps by hand): make sure its address is free too.
            if !dir.exists() {
                addresses::release(&at.root, &allocation_key(at, &inputs.name))?;
            }
            return Ok(Deletion::Removed);
        };
        if record.resource != at.resource() {
            return Ok(Deletion::Removed);
        }
        match retention {
            Retention::Keep => {
                record.state = VmState::Stopped;
                write_json(&dir.join("vm.json"), &record, PUBLIC_FILE)?;
                Ok(Deletion::Kept {
                    note: format!(
                        "sandbox VM `{}` is stopped and kept with its disk in {}; it keeps its address {}",
                        record.name,
                        dir.join("disk").display(),
                        record.ipv4
                    ),
                })
            }
            Retention::Delete => {
                remove_dir_all(&dir)?;
                addresses::release(&at.root, &allocation_key(at, &inputs.name))?;
                Ok(Deletion::Removed)
            }
        }
    }
}
