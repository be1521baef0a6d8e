//! The resource graph: the configurator's output and the engine's input.
//!
//! A resource is addressed `kind.name` (`vm.mastodon`, `bucket.mastodon-media`). Its inputs
//! are JSON in which a string may reference another resource's output as
//! `${kind.name.output}` (`${vm.mastodon.ipv4}`): those references, plus explicit
//! `depends_on` entries for ordering without data, are the graph's edges. Everything is kept in
//! sorted maps, so a graph serialises the same bytes for the same input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names::OperatorId;
use crate::operator::{Retention, ServiceKind};

/// The version of the serialised graph format.
pub const GRAPH_VERSION: u32 = 1;

/// What sort of thing a resource is. Which provider makes it is chosen per resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A key pair the platform deploys with.
    Sshkey,
    /// A generated or operator-provided secret.
    Secret,
    /// A virtual machine.
    Vm,
    /// A DNS record set.
    Dns,
    /// A dedicated Garage cluster's layout.
    S3cluster,
    /// An S3 bucket.
    Bucket,
    /// An S3 access key and its grants.
    S3key,
    /// A NixOS system deployed to a VM.
    Nixos,
    /// A check of the operator's own identity provider (LDAP bind and search, or OIDC
    /// discovery), which the service hosts depend on.
    Identity,
    /// A client of the panel's OpenID Connect provider, one per service.
    OidcClient,
}

impl ResourceKind {
    /// Every kind, in graph order.
    pub const ALL: [ResourceKind; 10] = [
        Self::Sshkey,
        Self::Secret,
        Self::Vm,
        Self::Dns,
        Self::S3cluster,
        Self::Bucket,
        Self::S3key,
        Self::Nixos,
        Self::Identity,
        Self::OidcClient,
    ];

    /// The name used in addresses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sshkey => "sshkey",
            Self::Secret => "secret",
            Self::Vm => "vm",
            Self::Dns => "dns",
            Self::S3cluster => "s3cluster",
            Self::Bucket => "bucket",
            Self::S3key => "s3key",
            Self::Nixos => "nixos",
            Self::Identity => "identity",
            Self::OidcClient => "oidc_client",
        }
    }
}

/// `kind.name`: a resource's stable address within one operator's graph.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceAddress {
    kind: ResourceKind,
    name: String,
}

impl ResourceAddress {
    /// An address; `name` has 1 to 63 characters from `a-z`, `0-9` and `-`.
    pub fn new(kind: ResourceKind, name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        let ok = (1..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self { kind, name })
        } else {
            Err(format!(
                "`{name}` is not a valid resource name: use 1 to 63 characters from a-z, 0-9 and '-'"
            ))
        }
    }

    /// The resource's kind.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The resource's name within its kind.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A reference to one of this resource's outputs, `${kind.name.output}`.
    pub fn output(&self, output: &str) -> String {
        format!("${{{self}.{output}}}")
    }
}

impl fmt::Display for ResourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for ResourceAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, name) = text
            .split_once('.')
            .ok_or_else(|| format!("`{text}` is not a resource address `kind.name`"))?;
        let kind = ResourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| format!("`{kind}` is not a resource kind"))?;
        Self::new(kind, name)
    }
}

impl Serialize for ResourceAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A reference to one output of another resource, as written in inputs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// The resource referred to.
    pub address: ResourceAddress,
    /// Which of its outputs.
    pub output: String,
}

impl Reference {
    /// Every `${…}` in `value`'s strings that is not a well-formed reference: a typo that
    /// would otherwise be passed on as plain text.
    pub fn malformed_in(value: &Value) -> Vec<String> {
        let mut found = Vec::new();
        collect_malformed(value, &mut found);
        found
    }

    /// Every well-formed `${kind.name.output}` in `value`'s strings, however deeply nested.
    pub fn all_in(value: &Value) -> BTreeSet<Reference> {
        let mut found = BTreeSet::new();
        collect_references(value, &mut found);
        found
    }
}

fn collect_references(value: &Value, found: &mut BTreeSet<Reference>) {
    match value {
        Value::String(text) => found.extend(references_in(text)),
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, found)),
        Value::Object(fields) => fields.values().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

fn collect_malformed(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            let well_formed = references_in(text).count();
            if text.matches("${").count() != well_formed {
                found.push(text.clone());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_malformed(v, found)),
        Value::Object(fields) => fields.values().for_each(|v| collect_malformed(v, found)),
        _ => {}
    }
}

fn references_in(text: &str) -> impl Iterator<Item = Reference> + '_ {
    text.split("${").skip(1).filter_map(|rest| {
        let inner = &rest[..rest.find('}')?];
        let (address, output) = inner.rsplit_once('.')?;
        let address = address.parse().ok()?;
        let output_ok = !output.is_empty()
            && output
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        output_ok.then(|| Reference {
            address,
            output: output.to_owned(),
        })
    })
}

/// One resource the operator's deployment needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The provider that makes it (`proxmox`, `garage`, `dns`, `local`, …).
    pub provider: String,
    /// The service it belongs to, if it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceKind>,
    /// Whether deleting it deletes data, so that the operator's retention choice applies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holds_data: bool,
    /// The provider's inputs; strings may reference outputs as `${kind.name.output}`.
    pub inputs: Value,
    /// Resources that must exist first although no input refers to them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<ResourceAddress>,
}

impl Resource {
    /// Everything this resource waits for: referenced resources and `depends_on`.
    pub fn dependencies(&self) -> BTreeSet<ResourceAddress> {
        Reference::all_in(&self.inputs)
            .into_iter()
            .map(|r| r.address)
            .chain(self.depends_on.iter().cloned())
            .collect()
    }
}

/// Every resource one operator's configuration needs, and what to do with data of services
/// that are switched off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredGraph {
    /// Format version of this document.
    pub version: u32,
    /// Whose resources these are.
    pub operator: OperatorId,
    /// Each configured service's retention choice, applied when its data-holding resources are
    /// removed (the service was switched off, or the account deleted).
    pub retention: BTreeMap<ServiceKind, Retention>,
    /// The resources, by address.
    pub resources: BTreeMap<ResourceAddress, Resource>,
}

impl DesiredGraph {
    /// Problems with the graph's edges: malformed references, references to resources that are
    /// not in the graph, and cycles. A configurator must only produce graphs for which this is
    /// empty.
    pub fn edge_problems(&self) -> Vec<String> {
        let malformed = self.resources.iter().flat_map(|(address, resource)| {
            Reference::malformed_in(&resource.inputs)
                .into_iter()
                .map(move |text| format!("{address} has a malformed reference in `{text}`"))
        });
        let mut problems: Vec<String> = malformed.collect();
        problems.extend(
            self.resources
                .iter()
                .flat_map(|(address, resource)| {
                    resource
                        .dependencies()
                        .into_iter()
                        .filter(|d| !self.resources.contains_key(d))
                        .map(move |d| {
                            format!("{address} depends on `{d}`, which is not in the graph")
                        })
                })
                .collect::<Vec<_>>(),
        );
        if problems.is_empty() && self.topological_order().is_none() {
            problems.push("the graph has a cycle".to_owned());
        }
        problems
    }

    /// The addresses in an order where every resource comes after its dependencies (Kahn's
    /// algorithm, ties broken by address so the order is stable); `None` if there is a cycle.
    pub fn topological_order(&self) -> Option<Vec<&ResourceAddress>> {
        let mut waiting: BTreeMap<&ResourceAddress, BTreeSet<ResourceAddress>> = self
            .resources
            .iter()
            .map(|(address, r)| (address, r.dependencies()))
            .collect();
        let mut order = Vec::with_capacity(waiting.len());
        while !waiting.is_empty() {
            let ready: Vec<&ResourceAddress> = waiting
                .iter()
                .filter(|(_, deps)| deps.iter().all(|d| !waiting.contains_key(d)))
                .map(|(address, _)| *address)
                .collect();
            if ready.is_empty() {
                return None;
            }
            for address in ready {
                waiting.remove(address);
                order.push(address);
            }
        }
        Some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn address(text: &str) -> ResourceAddress {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(address("vm.mastodon").to_string(), "vm.mastodon");
        assert_eq!(
            address("bucket.peertube-videos").kind(),
            ResourceKind::Bucket
        );
        for bad in ["vm", "vm.", "disk.x", "vm.Mastodon", "vm.a.b"] {
            assert!(bad.parse::<ResourceAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references_are_found_anywhere_in_inputs() {
        let inputs = json!({
            "host": "${vm.mastodon.ipv4}",
            "url": "http://${vm.s3-1.ipv4}:3903/",
            "nested": [{"key": "${s3key.mastodon.secret_access_key}"}],
            "not": "${nonsense} ${vm.x} $vm.y.z ${vm.x.Bad}",
        });
        let found: Vec<String> = Reference::all_in(&inputs)
            .into_iter()
            .map(|r| format!("{}.{}", r.address, r.output))
            .collect();
        assert_eq!(
            found,
            [
                "vm.mastodon.ipv4",
                "vm.s3-1.ipv4",
                "s3key.mastodon.secret_access_key"
            ]
        );
    }

    fn graph(edges: &[(&str, &[&str])]) -> DesiredGraph {
        let resources = edges
            .iter()
            .map(|(from, to)| {
                let inputs = json!(
                    to.iter()
                        .map(|t| format!("${{{t}.id}}"))
                        .collect::<Vec<_>>()
                );
                let resource = Resource {
                    provider: "local".into(),
                    service: None,
                    holds_data: false,
                    inputs,
                    depends_on: BTreeSet::new(),
                };
                (address(from), resource)
            })
            .collect();
        DesiredGraph {
            version: GRAPH_VERSION,
            operator: OperatorId::try_from("uni").unwrap(),
            retention: BTreeMap::new(),
            resources,
        }
    }

    #[test]
    fn topological_order_puts_dependencies_first() {
        let g = graph(&[
            ("nixos.a", &["vm.a", "secret.a"]),
            ("vm.a", &["sshkey.deploy"]),
            ("sshkey.deploy", &[]),
            ("secret.a", &[]),
        ]);
        let order: Vec<String> = g
            .topological_order()
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(order, ["sshkey.deploy", "secret.a", "vm.a", "nixos.a"]);
        assert!(g.edge_problems().is_empty());
    }

    #[test]
    fn dangling_references_and_cycles_are_reported() {
        let dangling = graph(&[("vm.a", &["sshkey.missing"])]);
        assert_eq!(
            dangling.edge_problems(),
            ["vm.a depends on `sshkey.missing`, which is not in the graph"]
        );
        let mut typo = graph(&[("vm.a", &[])]);
        typo.resources
            .values_mut()
            .for_each(|r| r.inputs = json!({"host": "${vm.b.ipv4"}));
        assert_eq!(
            typo.edge_problems(),
            ["vm.a has a malformed reference in `${vm.b.ipv4`"]
        );
        let cycle = graph(&[("vm.a", &["vm.b"]), ("vm.b", &["vm.a"])]);
        assert_eq!(cycle.edge_problems(), ["the graph has a cycle"]);
    }
}
