//! What the sandbox holds, and what the state says it should hold: for leak checks.

use std::collections::BTreeSet;
use std::path::Path;

use fediversity_engine::state::RecordedState;
use fediversity_model::graph::ResourceKind;
use fediversity_model::names::OperatorId;

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The VMs, host specs, buckets and keys an operator's sandbox holds.
pub fn objects(root: &Path, operator: &OperatorId) -> BTreeSet<String> {
    let dir = root.join(operator.as_str());
    let mut found = BTreeSet::new();
    for vm in names(&dir.join("vms")) {
        if dir.join("vms").join(&vm).join("host-spec.json").exists() {
            found.insert(format!("host {vm}"));
        }
        found.insert(format!("vm {vm}"));
    }
    found.extend(
        names(&dir.join("buckets"))
            .into_iter()
            .map(|b| format!("bucket {b}")),
    );
    found.extend(
        names(&dir.join("keys"))
            .into_iter()
            .filter_map(|k| k.strip_suffix(".json").map(|k| format!("key {k}"))),
    );
    found
}

/// The same, as the state records it.
pub fn expected(state: &RecordedState) -> BTreeSet<String> {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let vm_by_ip = |ip: &serde_json::Value| {
        state
            .resources
            .iter()
            .find(|(a, r)| a.kind() == ResourceKind::Vm && &r.outputs["ipv4"] == ip)
            .map(|(_, r)| text(&r.inputs["name"]))
            .unwrap_or_default()
    };
    state
        .resources
        .iter()
        .filter_map(|(address, record)| match address.kind() {
            ResourceKind::Vm => Some(format!("vm {}", text(&record.inputs["name"]))),
            ResourceKind::Nixos => Some(format!("host {}", vm_by_ip(&record.inputs["host"]))),
            ResourceKind::Bucket => Some(format!("bucket {}", text(&record.inputs["alias"]))),
            ResourceKind::S3key => Some(format!("key {}", text(&record.inputs["name"]))),
            _ => None,
        })
        .collect()
}
