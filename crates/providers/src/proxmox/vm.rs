//! The steps of a VM's life on Proxmox VE, each one idempotent so that any of them can be
//! repeated after a crash: find, clone, configure, resize, start or reboot, wait until the
//! guest agent answers and hands over the SSH host key, stop, destroy.

use std::collections::{BTreeMap, BTreeSet};

use fediversity_engine::{ProviderError, ProviderResult};
use serde_json::Value;

use super::client::{ApiFailure, Client, Params, percent_encode};

/// Where a VM is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    pub vmid: u32,
    pub node: String,
}

impl Located {
    fn path(&self, rest: &str) -> String {
        format!("/nodes/{}/qemu/{}{rest}", self.node, self.vmid)
    }
}

/// How the provider recognises its VM: the tags naming the operator and the resource, or —
/// for a clone whose tags were not set yet when the platform crashed — the name the clone
/// was given, on a VM with no resource tag at all.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub tags: BTreeSet<String>,
    pub name: String,
}

/// How a VM was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recognised {
    /// It carries the identity's tags.
    ByTags,
    /// It carries the clone's name and no resource's tag.
    ByName,
}

impl Identity {
    /// Whether the VM described by `entry` (a `/cluster/resources` entry or a status, both
    /// with `tags` and `name`) is this identity's, and how.
    pub(crate) fn recognises(&self, entry: &Value) -> Option<Recognised> {
        let tags = tag_set(entry["tags"].as_str().unwrap_or_default());
        if self.tags.is_subset(&tags) {
            Some(Recognised::ByTags)
        } else if entry["name"].as_str() == Some(self.name.as_str())
            && !tags.iter().any(|t| t.starts_with("resource-"))
        {
            Some(Recognised::ByName)
        } else {
            None
        }
    }
}

/// Tags as Proxmox writes them (`a;b`, also `,` or space separated), as a set.
pub(crate) fn tag_set(text: &str) -> BTreeSet<String> {
    text.split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The VM list of the whole cluster.
async fn vm_resources(client: &Client) -> ProviderResult<Vec<Value>> {
    let data = client
        .get("/cluster/resources", vec![("type", "vm".to_owned())])
        .await?;
    Ok(data.as_array().cloned().unwrap_or_default())
}

fn locate(entry: &Value) -> Option<Located> {
    Some(Located {
        vmid: u32::try_from(entry["vmid"].as_u64()?).ok()?,
        node: entry["node"].as_str()?.to_owned(),
    })
}

fn is_template(entry: &Value) -> bool {
    entry["template"] == 1 || entry["template"] == true
}

/// The VM `identity` names, if it exists.
pub(crate) async fn find(client: &Client, identity: &Identity) -> ProviderResult<Option<Located>> {
    let entries = vm_resources(client).await?;
    let qemu = entries
        .iter()
        .filter(|e| e["type"] == "qemu" && !is_template(e));
    let mut by_tags = Vec::new();
    let mut by_name = Vec::new();
    for entry in qemu {
        match identity.recognises(entry) {
            Some(Recognised::ByTags) => by_tags.extend(locate(entry)),
            Some(Recognised::ByName) => by_name.extend(locate(entry)),
            None => {}
        }
    }
    by_tags.sort_by_key(|l| l.vmid);
    by_name.sort_by_key(|l| l.vmid);
    if by_tags.len() + by_name.len() > 1 {
        tracing::warn!(name = %identity.name, "more than one Proxmox VM carries this resource's identity; using the lowest id");
    }
    Ok(by_tags.into_iter().chain(by_name).next())
}

/// The node the template lives on, and the node with the fewest VMs among `nodes` for a new
/// one.
pub(crate) async fn placement(
    client: &Client,
    template_vmid: u32,
    nodes: &[String],
) -> ProviderResult<(String, String)> {
    let entries = vm_resources(client).await?;
    let template_node = entries
        .iter()
        .find(|e| e["vmid"].as_u64() == Some(u64::from(template_vmid)))
        .and_then(|e| e["node"].as_str())
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "the template VM {template_vmid} does not exist in the Proxmox VE cluster: \
                 check template_vmid in infra.toml"
            ))
        })?
        .to_owned();
    let load = |node: &String| {
        entries
            .iter()
            .filter(|e| e["node"].as_str() == Some(node))
            .count()
    };
    let target = nodes
        .iter()
        .min_by_key(|node| load(node))
        .cloned()
        .unwrap_or_else(|| template_node.clone());
    Ok((template_node, target))
}

/// The VM's status (`status`, `lock`, …), or `None` when it does not exist there.
pub(crate) async fn status(client: &Client, at: &Located) -> ProviderResult<Option<Value>> {
    match client.get(&at.path("/status/current"), Vec::new()).await {
        Ok(status) => Ok(Some(status)),
        Err(failure) if failure.is_not_found() => Ok(None),
        Err(failure) => Err(failure.into()),
    }
}

/// The VM's configuration: the one in force (`current`), or with pending changes laid over.
pub(crate) async fn config(
    client: &Client,
    at: &Located,
    current: bool,
) -> Result<BTreeMap<String, Value>, ApiFailure> {
    let params: Params = if current {
        vec![("current", "1".to_owned())]
    } else {
        Vec::new()
    };
    let data = client.get(&at.path("/config"), params).await?;
    Ok(data
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// Waits while a task (a clone) holds the VM's lock. `false` when the VM went away meanwhile
/// (a failed clone is removed by Proxmox).
pub(crate) async fn wait_unlocked(client: &Client, at: &Located) -> ProviderResult<bool> {
    let deadline = tokio::time::Instant::now() + client.timing.task;
    loop {
        let Some(status) = status(client, at).await? else {
            return Ok(false);
        };
        let Some(lock) = status["lock"].as_str() else {
            return Ok(true);
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ProviderError::transient(format!(
                "Proxmox VM {} on {} is still locked ({lock})",
                at.vmid, at.node
            )));
        }
        tokio::time::sleep(client.timing.poll).await;
    }
}

/// Runs an asynchronous call and waits for its task; a call answering `null` (an older
/// Proxmox's synchronous `resize`) is done at once.
async fn run_task(
    client: &Client,
    node: &str,
    answer: Result<Value, ApiFailure>,
) -> ProviderResult<()> {
    match answer? {
        Value::String(upid) => client.wait_task(node, &upid).await,
        _ => Ok(()),
    }
}

/// What a new VM is cloned as.
pub(crate) struct CloneSpec<'a> {
    pub template_vmid: u32,
    pub template_node: &'a str,
    pub target: &'a str,
    pub name: &'a str,
    pub storage: &'a str,
}

/// Full-clones the template into a new VM id and waits for the clone to finish.
pub(crate) async fn clone(client: &Client, spec: &CloneSpec<'_>) -> ProviderResult<Located> {
    let newid = client.get("/cluster/nextid", Vec::new()).await?;
    let newid: u32 = match &newid {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64().and_then(|n| u32::try_from(n).ok()),
    }
    .ok_or_else(|| ProviderError::transient("Proxmox VE's /cluster/nextid answered no VM id"))?;
    let mut params: Params = vec![
        ("newid", newid.to_string()),
        ("name", spec.name.to_owned()),
        ("full", "1".to_owned()),
        ("storage", spec.storage.to_owned()),
    ];
    if spec.target != spec.template_node {
        params.push(("target", spec.target.to_owned()));
    }
    let template = Located {
        vmid: spec.template_vmid,
        node: spec.template_node.to_owned(),
    };
    let answer = client.post(&template.path("/clone"), params).await;
    run_task(client, spec.template_node, answer).await?;
    Ok(Located {
        vmid: newid,
        node: spec.target.to_owned(),
    })
}

/// The configuration the VM must have.
pub(crate) struct Desired {
    pub name: String,
    pub cores: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub bridge: String,
    pub ipconfig: String,
    pub ciuser: String,
    pub ssh_public_key: String,
    pub tags: BTreeSet<String>,
}

/// `net0` attached to `bridge`, keeping its model and MAC address.
fn net_on_bridge(current: Option<&str>, bridge: &str) -> String {
    let Some(current) = current else {
        return format!("virtio,bridge={bridge}");
    };
    let options: Vec<String> = current
        .split(',')
        .filter(|o| !o.starts_with("bridge="))
        .map(str::to_owned)
        .chain([format!("bridge={bridge}")])
        .collect();
    options.join(",")
}

/// The `size=` of a disk option string, in GiB.
pub(crate) fn disk_gib(disk: &str) -> Option<u64> {
    let size = disk.split(',').find_map(|o| o.strip_prefix("size="))?;
    let (number, unit) = size.split_at(size.len().checked_sub(1)?);
    let number: f64 = number.parse().ok()?;
    let gib = match unit {
        "T" => number * 1024.0,
        "G" => number,
        "M" => number / 1024.0,
        _ => return None,
    };
    Some(gib.ceil() as u64)
}

/// The MiB of a `memory` setting (`4096` or `current=4096,…` on newer Proxmox VE).
fn memory_mib(setting: &str) -> Option<u64> {
    setting
        .split(',')
        .find_map(|o| {
            o.strip_prefix("current=")
                .or(Some(o))
                .filter(|v| !v.contains('='))
        })?
        .parse()
        .ok()
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The configuration changes that bring `config` to `desired`.
fn config_changes(config: &BTreeMap<String, Value>, desired: &Desired) -> Params {
    let wanted: Params = vec![
        ("name", desired.name.clone()),
        ("cores", desired.cores.to_string()),
        ("memory", desired.memory_mib.to_string()),
        (
            "net0",
            net_on_bridge(text(config.get("net0")).as_deref(), &desired.bridge),
        ),
        ("ipconfig0", desired.ipconfig.clone()),
        ("ciuser", desired.ciuser.clone()),
        ("sshkeys", percent_encode(desired.ssh_public_key.trim())),
    ];
    let current_memory = text(config.get("memory")).as_deref().and_then(memory_mib);
    let mut changes: Params = wanted
        .into_iter()
        .filter(|(key, value)| match *key {
            "memory" => current_memory != Some(desired.memory_mib),
            _ => text(config.get(*key)).as_deref() != Some(value.as_str()),
        })
        .collect();
    let tags = tag_set(&text(config.get("tags")).unwrap_or_default());
    if tags != desired.tags {
        let joined: Vec<&str> = desired.tags.iter().map(String::as_str).collect();
        changes.push(("tags", joined.join(";")));
    }
    changes
}

/// Brings the VM to `desired` and running: configuration, disk size, then a start, or a
/// reboot when changes are pending on a running VM.
pub(crate) async fn converge(
    client: &Client,
    at: &Located,
    desired: &Desired,
) -> ProviderResult<()> {
    let config = config(client, at, false).await?;
    let changes = config_changes(&config, desired);
    if !changes.is_empty() {
        tracing::info!(vmid = at.vmid, keys = ?changes.iter().map(|(k, _)| *k).collect::<Vec<_>>(), "configuring Proxmox VM");
        client.put(&at.path("/config"), changes).await?;
    }
    resize(client, at, &config, desired.disk_gib).await?;
    let running = status(client, at)
        .await?
        .is_some_and(|s| s["status"] == "running");
    if !running {
        let answer = client.post(&at.path("/status/start"), Vec::new()).await;
        return run_task(client, &at.node, answer).await;
    }
    if has_pending(client, at).await? {
        tracing::info!(
            vmid = at.vmid,
            "rebooting Proxmox VM to apply pending changes"
        );
        let answer = client.post(&at.path("/status/reboot"), Vec::new()).await;
        run_task(client, &at.node, answer).await?;
    }
    Ok(())
}

async fn resize(
    client: &Client,
    at: &Located,
    config: &BTreeMap<String, Value>,
    wanted: u64,
) -> ProviderResult<()> {
    let current = text(config.get("scsi0"))
        .as_deref()
        .and_then(disk_gib)
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "Proxmox VM {} has no scsi0 disk with a size: the template must boot from scsi0",
                at.vmid
            ))
        })?;
    if wanted < current {
        return Err(ProviderError::permanent(format!(
            "Proxmox VM {} has a {current} GiB disk and {wanted} GiB was asked: disks only \
             grow (a smaller disk means a new VM)",
            at.vmid
        )));
    }
    if wanted > current {
        let params = vec![("disk", "scsi0".to_owned()), ("size", format!("{wanted}G"))];
        let answer = client.put(&at.path("/resize"), params).await;
        run_task(client, &at.node, answer).await?;
    }
    Ok(())
}

/// Whether any configuration change waits for the next reboot.
async fn has_pending(client: &Client, at: &Located) -> ProviderResult<bool> {
    let pending = client.get(&at.path("/pending"), Vec::new()).await?;
    Ok(pending.as_array().is_some_and(|entries| {
        entries
            .iter()
            .any(|e| e.get("pending").is_some() || e.get("delete").is_some())
    }))
}

/// The file the guest's SSH host key is read from.
const HOST_KEY_FILE: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// Waits until the guest agent answers, then reads the SSH host key through it: the key
/// arrives over the authenticated API, not from whoever answers on the VM's address.
pub(crate) async fn wait_reachable(client: &Client, at: &Located) -> ProviderResult<String> {
    let deadline = tokio::time::Instant::now() + client.timing.boot;
    loop {
        match host_key(client, at).await {
            Ok(key) => return Ok(key),
            Err(e) if e.kind == fediversity_engine::provider::ErrorKind::Permanent => {
                return Err(e);
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ProviderError::transient(format!(
                    "Proxmox VM {} on {} did not become reachable through its guest agent \
                     within {} s (is qemu-guest-agent in the template?): {e}",
                    at.vmid,
                    at.node,
                    client.timing.boot.as_secs()
                )));
            }
            Err(_) => tokio::time::sleep(client.timing.poll).await,
        }
    }
}

/// The SSH host key, read once through the guest agent.
pub(crate) async fn host_key(client: &Client, at: &Located) -> ProviderResult<String> {
    client.post(&at.path("/agent/ping"), Vec::new()).await?;
    let file = client
        .get(
            &at.path("/agent/file-read"),
            vec![("file", HOST_KEY_FILE.to_owned())],
        )
        .await?;
    let key = file["content"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if key.starts_with("ssh-ed25519 ") {
        Ok(key)
    } else {
        Err(ProviderError::transient(format!(
            "Proxmox VM {} has no SSH host key in {HOST_KEY_FILE} yet",
            at.vmid
        )))
    }
}

/// Stops the VM at once (it is being removed or kept switched off).
pub(crate) async fn stop(client: &Client, at: &Located) -> ProviderResult<()> {
    let answer = client.post(&at.path("/status/stop"), Vec::new()).await;
    run_task(client, &at.node, answer).await
}

/// Destroys the stopped VM with its disks, and removes it from backup, replication and HA
/// jobs.
pub(crate) async fn destroy(client: &Client, at: &Located) -> ProviderResult<()> {
    let params = vec![
        ("purge", "1".to_owned()),
        ("destroy-unreferenced-disks", "1".to_owned()),
    ];
    match client.delete(&at.path(""), params).await {
        Err(failure) if failure.is_not_found() => Ok(()),
        answer => run_task(client, &at.node, answer).await,
    }
}

/// Percent-decodes `text` (Proxmox keeps `sshkeys` encoded).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inputs and addresses a VM's configuration shows.
pub(crate) fn observed(
    config: &BTreeMap<String, Value>,
) -> (Value, Option<String>, Option<String>) {
    let mut inputs = serde_json::Map::new();
    if let Some(name) = text(config.get("name")) {
        inputs.insert("name".into(), Value::from(name));
    }
    if let Some(cores) = text(config.get("cores")).and_then(|t| t.parse::<u64>().ok()) {
        inputs.insert("cores".into(), Value::from(cores));
    }
    if let Some(mib) = text(config.get("memory")).as_deref().and_then(memory_mib) {
        inputs.insert("memory_mib".into(), Value::from(mib));
    }
    if let Some(gib) = text(config.get("scsi0")).as_deref().and_then(disk_gib) {
        inputs.insert("disk_gib".into(), Value::from(gib));
    }
    if let Some(bridge) = text(config.get("net0")).and_then(|n| {
        n.split(',')
            .find_map(|o| o.strip_prefix("bridge=").map(str::to_owned))
    }) {
        inputs.insert("bridge".into(), Value::from(bridge));
    }
    let key = text(config.get("sshkeys")).map(|k| percent_decode(&k).trim().to_owned());
    inputs.insert(
        "ssh_public_key".into(),
        Value::from(key.unwrap_or_default()),
    );
    let ipconfig = text(config.get("ipconfig0")).unwrap_or_default();
    let address = |prefix: &str| {
        ipconfig
            .split(',')
            .find_map(|o| o.strip_prefix(prefix))
            .and_then(|cidr| cidr.split('/').next())
            .map(str::to_owned)
    };
    (Value::Object(inputs), address("ip="), address("ip6="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net0_keeps_its_mac_when_the_bridge_changes() {
        assert_eq!(
            net_on_bridge(
                Some("virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1"),
                "vmbr1"
            ),
            "virtio=BC:24:11:00:00:01,firewall=1,bridge=vmbr1"
        );
        assert_eq!(net_on_bridge(None, "vmbr0"), "virtio,bridge=vmbr0");
    }

    #[test]
    fn disk_sizes_read_in_gib() {
        assert_eq!(disk_gib("local-lvm:vm-100-disk-0,size=32G"), Some(32));
        assert_eq!(
            disk_gib("ceph:vm-100-disk-0,iothread=1,size=1T"),
            Some(1024)
        );
        assert_eq!(disk_gib("local:vm-100-disk-0"), None);
    }

    #[test]
    fn memory_reads_in_both_notations() {
        assert_eq!(memory_mib("4096"), Some(4096));
        assert_eq!(memory_mib("current=2048"), Some(2048));
        assert_eq!(memory_mib("current=2048,other=1"), Some(2048));
        assert_eq!(memory_mib("lots"), None);
    }

    #[test]
    fn ssh_keys_survive_the_encoding_round_trip() {
        let key = "ssh-ed25519 AAAAC3Nza+/= deploy@fediversity";
        assert_eq!(percent_decode(&percent_encode(key)), key);
    }
}
