//! Per-operator limits, checked before a single resource is made, with the numbers.

use fediversity_model::infra::{ResourceLimits, S3Mode, Size};
use fediversity_model::{Infra, OperatorConfig, Problem};

use crate::services::bucket_count;

/// What a configuration uses, summed over all its VMs and buckets.
#[derive(Debug, Default, PartialEq)]
struct Usage {
    vms: u64,
    vcpus: u64,
    memory_mib: u64,
    disk_gib: u64,
    buckets: u64,
}

impl Usage {
    fn add_vms(&mut self, count: u64, size: &Size) {
        self.vms += count;
        self.vcpus += count * u64::from(size.cores);
        self.memory_mib += count * size.memory_mib;
        self.disk_gib += count * size.disk_gib;
    }
}

/// Sizes must already be known to exist; unknown ones are skipped here.
fn usage(config: &OperatorConfig, infra: &Infra) -> Usage {
    let mut usage = Usage::default();
    for (kind, service) in config.services.enabled() {
        if let Some(size) = infra.size(&service.size) {
            usage.add_vms(1, size);
        }
        usage.buckets += bucket_count(kind);
    }
    let dedicated = infra
        .garage
        .as_ref()
        .filter(|g| g.mode == S3Mode::Dedicated);
    if let Some(garage) = dedicated
        && usage.vms > 0
        && let Some(size) = garage.dedicated_size.as_deref().and_then(|s| infra.size(s))
    {
        usage.add_vms(u64::from(garage.dedicated_nodes.unwrap_or(1)), size);
    }
    usage
}

/// How much of one limit a configuration uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitUse {
    /// What is counted, in words: `VMs`, `vCPUs`, `MiB of memory`, `GiB of disk`, `buckets`.
    pub what: &'static str,
    /// How much the configuration needs.
    pub used: u64,
    /// How much the operator may use.
    pub limit: u64,
}

/// What `config` uses of each of its operator's limits on `infra`: for the plan-time check
/// and for the hosting provider's view of its operators.
pub fn usage_against_limits(config: &OperatorConfig, infra: &Infra) -> Vec<LimitUse> {
    let usage = usage(config, infra);
    let limits: &ResourceLimits = infra.limits.for_operator(&config.operator.id);
    [
        ("VMs", usage.vms, limits.vms),
        ("vCPUs", usage.vcpus, limits.vcpus),
        ("MiB of memory", usage.memory_mib, limits.memory_mib),
        ("GiB of disk", usage.disk_gib, limits.disk_gib),
        ("buckets", usage.buckets, limits.buckets),
    ]
    .into_iter()
    .map(|(what, used, limit)| LimitUse { what, used, limit })
    .collect()
}

/// One problem per limit the configuration exceeds, saying by how much.
pub fn problems(config: &OperatorConfig, infra: &Infra) -> Vec<Problem> {
    usage_against_limits(config, infra)
        .into_iter()
        .filter(|u| u.used > u.limit)
        .map(|LimitUse { what, used, limit }| {
            Problem::new(
                "services",
                format!(
                    "needs {used} {what}, {} more than the {limit} operator `{}` may use; choose smaller sizes or fewer services, or ask the hosting provider to raise the limit",
                    used - limit,
                    config.operator.id
                ),
            )
        })
        .collect()
}
