//! `fediversity infra`: the checked-in `examples/infra.toml` is exactly what `infra example`
//! prints and passes `infra check`; a broken infra.toml is refused with all its problems.

use fediversity_testkit::golden::assert_golden;

use crate::cli::{TempDir, fediversity, workspace_root};

/// The sections every infra.toml needs, to which the broken ones below add their mistakes.
pub(crate) const SIZES_AND_LIMITS: &str = r#"version = 1

[sizes.small]
cores = 2
memory_mib = 4096
disk_gib = 40
bucket_quota_gib = 100

[limits.default]
vms = 4
vcpus = 16
memory_mib = 32768
disk_gib = 500
buckets = 8
"#;

/// Well formed, but wrong as a whole: shared Garage without its admin API, and an IPv4 pool
/// that starts in another network than its gateway's.
const INCONSISTENT: &str = r#"
[garage]
mode = "shared"
admin_token_file = "/etc/fediversity/garage-admin-token"
s3_endpoint = "https://s3.example.net"
web_root_domain = "web.example.net"

[proxmox]
endpoint = "https://pve.example.net:8006"
token_id = "fediversity@pve!deploy"
token_secret_file = "/etc/fediversity/proxmox-token"
nodes = ["pve1"]
template_vmid = 9000
storage = "local-lvm"
bridge = "vmbr0"

[proxmox.ipv4]
prefix_length = 24
gateway = "192.0.2.1"
first = "198.51.100.10"
last = "192.0.2.250"

[nix]
flake = "/var/lib/fediversity/nix"
"#;

/// Malformed: an unknown field, a number written as a string, an address without `https://`.
const MALFORMED: &str = r#"
[dns]
server = "192.0.2.53:53"
zone = "fedi.example.net"
tsig_key_name = "fediversity"
tsig_secret_file = "/etc/fediversity/tsig.key"
ttl = "300"

[proxmox]
endpoint = "pve.example.net:8006"
token_id = "fediversity@pve!deploy"
token_secret_file = "/etc/fediversity/proxmox-token"
nodes = ["pve1"]
template_vmid = 9000
storage = "local-lvm"
bridge = "vmbr0"
vlan = 42

[proxmox.ipv4]
prefix_length = 24
gateway = "192.0.2.1"
first = "192.0.2.10"
last = "192.0.2.250"

[nix]
flake = "/var/lib/fediversity/nix"
"#;

#[test]
fn infra_example_matches_the_checked_in_golden() {
    let outcome = fediversity(["infra", "example"]).run();
    outcome.exits(0);
    assert!(outcome.stderr.is_empty(), "{outcome}");
    assert_golden(
        workspace_root().join("examples/infra.toml"),
        &outcome.stdout,
    );
}

#[test]
fn the_example_infra_passes_its_check() {
    let outcome = fediversity(["infra", "check", "-f", "examples/infra.toml"]).run();
    outcome.exits(0);
    assert!(outcome.stderr.is_empty(), "{outcome}");
    assert_eq!(outcome.stdout, "examples/infra.toml is valid\n");
}

/// Checks `text` as an infra.toml, expecting exactly `problems` (`path: message`), all at once.
fn assert_refused(label: &str, text: &str, problems: &[&str]) {
    let dir = TempDir::new(label);
    let path = dir.write("infra.toml", text);
    let path = path.to_str().expect("a UTF-8 temporary path");
    let outcome = fediversity(["infra", "check", "-f", path]).run();
    outcome.exits(1).prints_nothing();
    let header = format!(
        "error: {path} is not a valid infra.toml: {} problems found:\n",
        problems.len()
    );
    assert!(
        outcome.stderr.starts_with(&header),
        "no `{header}`:\n{outcome}"
    );
    for problem in problems {
        assert!(
            outcome.stderr.contains(&format!("\n  - {problem}")),
            "`{problem}` is not reported:\n{outcome}"
        );
    }
    // The same file refuses every plan that would use it.
    let outcome = fediversity([
        "validate",
        "-f",
        "examples/operators/photo-club.json",
        "--infra",
        path,
    ])
    .run();
    outcome.exits(1).prints_nothing();
    assert!(outcome.stderr.starts_with(&header), "{outcome}");
}

#[test]
fn an_inconsistent_infra_reports_every_problem() {
    assert_refused(
        "inconsistent",
        &format!("{SIZES_AND_LIMITS}{INCONSISTENT}"),
        &[
            "garage.admin_endpoint: missing: required in shared mode",
            "proxmox.ipv4.first: is outside the gateway's /24 network",
            "proxmox.ipv4.last: comes before `first`",
        ],
    );
}

#[test]
fn a_malformed_infra_reports_every_problem() {
    assert_refused(
        "malformed",
        &format!("{SIZES_AND_LIMITS}{MALFORMED}"),
        &[
            "dns.ttl: expected an integer, found a string",
            "proxmox.endpoint: `pve.example.net:8006` is not a valid address: it must start with https://",
            "proxmox.vlan: unknown field `vlan`: check its spelling, or remove it",
        ],
    );
}
