//! Sandbox NixOS hosts: what the real `nixos` provider would deploy, written into the VM's
//! directory instead: `vms/<vm>/host-spec.json` (the host spec the NixOS modules read) and each
//! secret as its own 0600 file under `vms/<vm>/secrets/`.
//!
//! The VM is found by its address (the `host` input), and the connection is checked as SSH
//! would check it: the host key must be the VM's, and the deployment key must be the one the
//! VM lets in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fediversity_engine::provider::{Deletion, Observed, Outputs};
use fediversity_engine::value::secret;
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::vm::{self, VmRecord};
use super::{Kind, NAME, Place, observed_inputs, outputs, parse_inputs};
use crate::files::{
    PRIVATE_FILE, PUBLIC_FILE, check_component, create_dir, list_dir, read_json, read_text,
    remove_dir_all, remove_file, write_atomic, write_json,
};
use crate::sensitive::SecretString;

/// What `read` reports for a secret file that differs from its input: never the value.
pub const CHANGED: &str = "(changed outside the platform)";
/// What `read` reports for a secret file that is missing.
pub const MISSING: &str = "(missing)";
/// What `read` reports for a secret file nobody asked for.
pub const UNEXPECTED: &str = "(not deployed by the platform)";

/// The inputs of a NixOS host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NixosInputs {
    /// The VM's address.
    host: String,
    /// The VM's SSH host key, as the VM reported it.
    host_key: String,
    /// Secret file name → value.
    #[serde(default)]
    secrets: BTreeMap<String, SecretString>,
    /// The host spec.
    spec: Value,
    /// The deployment key (OpenSSH PEM).
    ssh_private_key: SecretString,
}

const SPEC: &str = "host-spec.json";
const SECRETS: &str = "secrets";

/// The VM at `host`, or a permanent error saying there is none.
fn find_vm(at: &Place, host: &str) -> ProviderResult<Option<VmRecord>> {
    Ok(vm::all(at)?
        .into_iter()
        .find(|vm| vm.ipv4.to_string() == host || vm.ipv6.is_some_and(|v6| v6.to_string() == host)))
}

fn no_vm(at: &Place, host: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "{}: no sandbox VM of operator `{}` has the address {host}",
        at.address, at.operator
    ))
}

/// Checks the connection as SSH would: the VM's host key, and the deployment key it lets in.
fn check_connection(at: &Place, inputs: &NixosInputs, vm: &VmRecord) -> ProviderResult<()> {
    if vm
        .host_key
        .split_whitespace()
        .take(2)
        .ne(inputs.host_key.split_whitespace().take(2))
    {
        return Err(ProviderError::permanent(format!(
            "{}: the host key of VM `{}` is not the expected one: the VM was made anew or \
             changed; refresh to pick up its new key",
            at.address, vm.name
        )));
    }
    let private =
        ssh_key::PrivateKey::from_openssh(inputs.ssh_private_key.expose()).map_err(|_| {
            ProviderError::permanent(format!(
                "{}: `ssh_private_key` is not an OpenSSH private key",
                at.address
            ))
        })?;
    let allowed = ssh_key::PublicKey::from_openssh(&vm.ssh_public_key).ok();
    if allowed.as_ref().map(ssh_key::PublicKey::key_data) != Some(private.public_key().key_data()) {
        return Err(ProviderError::permanent(format!(
            "{}: VM `{}` does not let the deployment key in (its ssh_public_key is another key)",
            at.address, vm.name
        )));
    }
    Ok(())
}

/// JSON with object keys sorted at every level: the same spec always hashes the same.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The generation: a hash of the host spec (the secrets are not part of it, as they are not
/// part of a NixOS system closure; a hash of a weak operator secret would also leak it).
fn generation(spec: &Value) -> String {
    let digest = Sha256::digest(canonical(spec).to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn nixos_outputs(vm: &VmRecord, spec: &Value) -> Outputs {
    outputs([
        ("generation", json!(generation(spec))),
        ("vm", json!(vm.name)),
    ])
}

fn vm_dir(at: &Place, vm: &VmRecord) -> PathBuf {
    vm::vm_dir(at, &vm.name)
}

pub struct Nixos;

impl Kind for Nixos {
    fn replace_on(&self) -> &'static [&'static str] {
        &[]
    }

    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: NixosInputs = parse_inputs(&at.address, NAME, inputs)?;
        let vm = find_vm(at, &inputs.host)?.ok_or_else(|| no_vm(at, &inputs.host))?;
        check_connection(at, &inputs, &vm)?;
        for name in inputs.secrets.keys() {
            check_component("secret file", name)?;
        }
        let dir = vm_dir(at, &vm);
        let secrets_dir = dir.join(SECRETS);
        create_dir(&secrets_dir, 0o700)?;
        for (name, value) in &inputs.secrets {
            write_atomic(
                &secrets_dir.join(name),
                value.expose().as_bytes(),
                PRIVATE_FILE,
            )?;
        }
        for stale in list_dir(&secrets_dir)? {
            if !stale.starts_with('.') && !inputs.secrets.contains_key(&stale) {
                remove_file(&secrets_dir.join(stale))?;
            }
        }
        // The spec last: its presence means the host is deployed.
        write_json(&dir.join(SPEC), &inputs.spec, PUBLIC_FILE)?;
        tracing::info!(vm = %vm.name, generation = %generation(&inputs.spec), "sandbox host deployed");
        Ok(nixos_outputs(&vm, &inputs.spec))
    }

    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>> {
        let parsed: NixosInputs = parse_inputs(&at.address, NAME, inputs)?;
        let Some(vm) = find_vm(at, &parsed.host)? else {
            return Ok(None);
        };
        let dir = vm_dir(at, &vm);
        let Some(spec) = read_json::<Value>(&dir.join(SPEC))? else {
            return Ok(None);
        };
        // Secrets are compared here, against the inputs: one that still matches is reported
        // as the same secret (wrapped, so it stays one), one that does not by a marker, so
        // drift shows without any value leaving this function.
        let secrets_dir = dir.join(SECRETS);
        let mut secrets = Map::new();
        let mut drifted = false;
        for (name, wanted) in &parsed.secrets {
            check_component("secret file", name)?;
            let observed = match read_text(&secrets_dir.join(name))? {
                Some(found) if found == wanted.expose() => secret(wanted.expose()),
                Some(_) => {
                    drifted = true;
                    json!(CHANGED)
                }
                None => {
                    drifted = true;
                    json!(MISSING)
                }
            };
            secrets.insert(name.clone(), observed);
        }
        for extra in list_dir(&secrets_dir)? {
            if !extra.starts_with('.') && !parsed.secrets.contains_key(&extra) {
                drifted = true;
                secrets.insert(extra, json!(UNEXPECTED));
            }
        }
        let mut observed = Map::from_iter([
            ("host".to_owned(), json!(parsed.host)),
            ("host_key".to_owned(), json!(vm.host_key)),
        ]);
        // The spec is reported only when it differs: it carries no secret by design (secrets
        // go in `secrets`), and this keeps it that way should one ever slip in unchanged.
        if spec != parsed.spec {
            observed.insert("spec".to_owned(), spec.clone());
        }
        if drifted {
            observed.insert("secrets".to_owned(), Value::Object(secrets));
        }
        Ok(Some(Observed {
            inputs: observed_inputs(inputs, observed),
            outputs: nixos_outputs(&vm, &spec),
        }))
    }

    fn delete(
        &self,
        at: &Place,
        inputs: &Value,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let inputs: NixosInputs = parse_inputs(&at.address, NAME, inputs)?;
        if let Some(vm) = find_vm(at, &inputs.host)? {
            let dir = vm_dir(at, &vm);
            remove_file(&dir.join(SPEC))?;
            remove_dir_all(&dir.join(SECRETS))?;
        }
        Ok(Deletion::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_ignores_key_order() {
        let a = json!({"a": 1, "b": {"c": 2, "d": [1, 2]}});
        let b: Value = serde_json::from_str(r#"{"b": {"d": [1, 2], "c": 2}, "a": 1}"#).unwrap();
        assert_eq!(generation(&a), generation(&b));
        assert_ne!(generation(&a), generation(&json!({"a": 2})));
        assert_eq!(generation(&a).len(), 32);
    }
}
