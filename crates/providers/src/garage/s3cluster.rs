//! The layout of an operator's own Garage cluster (dedicated mode): every listed node gets a
//! role (zone and capacity), the layout is applied as the next version, and the call returns
//! once the cluster is healthy, so buckets can be made right after. Applying again changes
//! nothing when every node already has its role.
//!
//! Nodes are listed by the address their VM has (`10.0.0.5`), or by `address:port` where
//! several nodes share an address (tests on loopback); they are matched to Garage's node ids
//! through the RPC addresses `GetClusterStatus` reports.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fediversity_engine::provider::{CallContext, Deletion, Outputs};
use fediversity_engine::{ProviderError, ProviderResult};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{ClusterStatus, Node, Role, RoleChange};
use super::{NAME, Target};
use crate::inputs::parse_inputs;
use crate::outputs::outputs;

/// How long a newly applied layout may take to make the cluster healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);
/// How often to ask meanwhile.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// The inputs of a cluster layout (the cluster fields already split off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterInputs {
    zone: String,
    capacity_bytes: u64,
    /// Set in each node's configuration file, not in the layout: only checked against the
    /// number of nodes listed.
    replication_factor: u32,
    nodes: Vec<String>,
}

impl ClusterInputs {
    fn role(&self) -> Role {
        Role {
            zone: self.zone.clone(),
            capacity: Some(self.capacity_bytes),
            tags: Vec::new(),
        }
    }
}

/// Whether `node` is the node listed as `listed` (an IP address or a socket address).
fn is_listed(node: &Node, listed: &str) -> bool {
    let Some(addr) = node
        .addr
        .as_deref()
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        return false;
    };
    match listed.parse::<SocketAddr>() {
        Ok(socket) => socket == addr,
        Err(_) => listed.parse::<IpAddr>().is_ok_and(|ip| ip == addr.ip()),
    }
}

/// The status's node for each listed node, in the listed order.
fn listed_nodes<'a>(
    target: &Target,
    status: &'a ClusterStatus,
    inputs: &ClusterInputs,
) -> ProviderResult<Vec<&'a Node>> {
    inputs
        .nodes
        .iter()
        .map(|listed| {
            status
                .nodes
                .iter()
                .find(|node| is_listed(node, listed))
                .ok_or_else(|| {
                    ProviderError::transient(format!(
                        "Garage cluster at {}: node {listed} is not connected to it (yet)",
                        target.admin.endpoint()
                    ))
                })
        })
        .collect()
}

fn layout_outputs(version: u64) -> Outputs {
    outputs([("layout_version", json!(version))])
}

/// Gives every listed node its role, applies the layout, and waits until the cluster is
/// healthy.
pub(super) async fn apply(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Outputs> {
    let inputs: ClusterInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    let wanted = usize::try_from(inputs.replication_factor).unwrap_or(usize::MAX);
    if wanted == 0 || inputs.nodes.len() < wanted {
        return Err(ProviderError::permanent(format!(
            "{}: a replication factor of {} needs at least as many nodes, and {} are listed",
            ctx.address,
            inputs.replication_factor,
            inputs.nodes.len()
        )));
    }
    let admin = &target.admin;
    let status = admin.status().await?;
    let role = inputs.role();
    let changes: Vec<RoleChange> = listed_nodes(target, &status, &inputs)?
        .into_iter()
        .filter(|node| node.role.as_ref() != Some(&role))
        .map(|node| RoleChange {
            id: node.id.clone(),
            role: role.clone(),
        })
        .collect();
    let mut layout = admin.layout().await?;
    if !changes.is_empty() {
        layout = admin.stage_roles(&changes).await?;
    }
    // Staged changes left by a run that crashed before applying them are applied too.
    if !layout.staged_role_changes.is_empty() {
        admin.apply_layout(layout.version + 1).await?;
        layout = admin.layout().await?;
        tracing::info!(version = layout.version, endpoint = %admin.endpoint(), "Garage layout applied");
    }
    wait_healthy(target).await?;
    Ok(layout_outputs(layout.version))
}

/// Waits until the cluster reports itself healthy, or fails transiently.
async fn wait_healthy(target: &Target) -> ProviderResult<()> {
    let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
    loop {
        let health = target.admin.health().await?;
        if health.status == "healthy" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProviderError::transient(format!(
                "Garage cluster at {} is still {} {}s after its layout was applied: {} of {} \
                 storage nodes up",
                target.admin.endpoint(),
                health.status,
                HEALTHY_WITHIN.as_secs(),
                health.storage_nodes_up,
                health.storage_nodes
            )));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The listed nodes' roles as Garage has them; `None` while none has a role (the layout was
/// never assigned).
pub(super) async fn read(
    target: &Target,
    ctx: &CallContext,
    inputs: &Value,
) -> ProviderResult<Option<(Map<String, Value>, Outputs)>> {
    let inputs: ClusterInputs = parse_inputs(&ctx.address, NAME, inputs)?;
    let status = target.admin.status().await?;
    let role = inputs.role();
    let mut assigned = Vec::new();
    let mut any_role = false;
    for (listed, node) in inputs
        .nodes
        .iter()
        .zip(listed_nodes(target, &status, &inputs)?)
    {
        if let Some(r) = &node.role {
            any_role = true;
            if *r == role {
                assigned.push(listed.clone());
            }
        }
    }
    if !any_role {
        return Ok(None);
    }
    // A node whose role differs shows as a node missing from the layout: drift, repaired by
    // giving it its role again.
    let layout = target.admin.layout().await?;
    let observed = Map::from_iter([
        ("zone".to_owned(), json!(inputs.zone)),
        ("capacity_bytes".to_owned(), json!(inputs.capacity_bytes)),
        ("nodes".to_owned(), json!(assigned)),
    ]);
    Ok(Some((observed, layout_outputs(layout.version))))
}

/// Removing a cluster's layout would make its data unreachable: the layout goes with the
/// nodes (the S3 VMs), which their own resources remove or keep.
pub(super) fn delete() -> Deletion {
    Deletion::Removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(addr: &str) -> Node {
        Node {
            id: "n".into(),
            addr: Some(addr.into()),
            role: None,
        }
    }

    #[test]
    fn nodes_are_matched_by_address_or_address_and_port() {
        assert!(is_listed(&node("10.0.0.5:3901"), "10.0.0.5"));
        assert!(!is_listed(&node("10.0.0.6:3901"), "10.0.0.5"));
        assert!(is_listed(&node("127.0.0.1:4001"), "127.0.0.1:4001"));
        assert!(!is_listed(&node("127.0.0.1:4002"), "127.0.0.1:4001"));
        assert!(is_listed(&node("[fd00::5]:3901"), "fd00::5"));
        assert!(!is_listed(
            &Node {
                addr: None,
                ..node("x")
            },
            "10.0.0.5"
        ));
    }
}
