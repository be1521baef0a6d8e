//! `apply`, `state`, `refresh` and `destroy` on the sandbox, as a user runs them: a first
//! deployment, a no-op one, turning a service off with its data kept, drift repaired, events as
//! JSON lines, account deletion — and no secret ever printed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{Fediversity, Outcome, TempDir, fediversity, workspace_root};

const OPERATOR: &str = "uni-utrecht";

fn fed<const N: usize>(data: &TempDir, args: [&str; N]) -> Fediversity {
    fediversity(args).env("FEDIVERSITY_DATA_DIR", data.path().to_str().unwrap())
}

fn sandbox(data: &TempDir) -> PathBuf {
    data.path().join("sandbox").join(OPERATOR)
}

/// Every secret value the sandbox holds: key secrets and uploaded host secrets.
fn secret_values(dir: &Path) -> Vec<String> {
    let mut values = Vec::new();
    for entry in walk(dir) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if entry.parent().is_some_and(|p| p.ends_with("secrets"))
            || entry
                .parent()
                .is_some_and(|p| p.ends_with("operator-secrets"))
        {
            values.push(text.trim().to_owned());
        } else if entry.parent().is_some_and(|p| p.ends_with("keys")) {
            let key: Value = serde_json::from_str(&text).unwrap();
            values.push(key["secret_access_key"].as_str().unwrap().to_owned());
        }
    }
    values.retain(|v| v.len() >= 8);
    values
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_deployment_from_first_apply_to_account_deletion() {
    let data = TempDir::new("deploy");
    let config = workspace_root().join("examples/operators/university.json");
    let config = config.to_str().unwrap();
    let mut printed = String::new();
    let mut keep =
        |outcome: &Outcome| printed.push_str(&format!("{}{}", outcome.stdout, outcome.stderr));

    // The LDAP bind password is the operator's own secret: until it is stored, what needs it
    // cannot be deployed, and the message says how to store it.
    let first = fed(&data, ["apply", "-f", config, "--auto-approve"]).run();
    keep(&first);
    first.exits(1);
    assert!(
        first
            .stdout
            .contains("failed: secret.identity-bind-password"),
        "{first}"
    );
    assert!(
        first.stdout.contains("not attempted: nixos.mastodon"),
        "{first}"
    );
    let secrets_dir = sandbox(&data).join("operator-secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    std::fs::write(
        secrets_dir.join("ldap-bind-password"),
        "ldap-bind-hunter2-value",
    )
    .unwrap();

    let second = fed(&data, ["apply", "-f", config, "--auto-approve"]).run();
    keep(&second);
    second.exits(0);
    assert!(
        second
            .stdout
            .contains("Deployment of uni-utrecht succeeded"),
        "{second}"
    );

    let noop = fed(&data, ["apply", "-f", config, "--auto-approve"]).run();
    keep(&noop);
    noop.exits(0);
    assert!(
        noop.stdout.contains("0 changed") && noop.stdout.contains("(0 provider calls)"),
        "{noop}"
    );

    // Turning Mastodon off with retention keep: the key goes, the bucket and VM stay.
    let mut off: Value = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    off["services"]["mastodon"]["enable"] = Value::Bool(false);
    let off_file = data.write("off.json", &off.to_string());
    let off_file = off_file.to_str().unwrap();
    let unasked = fed(&data, ["apply", "-f", off_file]).run();
    keep(&unasked);
    unasked.exits(1);
    assert!(unasked.stderr.contains("pass --auto-approve"), "{unasked}");
    assert!(
        unasked.stdout.contains("- s3key.mastodon"),
        "the plan is shown: {unasked}"
    );
    let turned_off = fed(&data, ["apply", "-f", off_file, "--auto-approve"]).run();
    keep(&turned_off);
    turned_off.exits(0);
    assert!(
        turned_off.stdout.contains("kept: bucket.mastodon-media"),
        "{turned_off}"
    );
    assert!(
        sandbox(&data)
            .join("buckets/fedi-uni-utrecht-mastodon-media")
            .is_dir()
    );
    assert!(
        !sandbox(&data)
            .join("keys/fedi-uni-utrecht-mastodon.json")
            .exists()
    );
    let listed = fed(&data, ["state", "list", "--operator", OPERATOR]).run();
    keep(&listed);
    assert!(
        listed
            .stdout
            .contains("bucket.mastodon-media\tlocal\tkept:"),
        "{listed}"
    );

    let shown = fed(
        &data,
        [
            "state",
            "show",
            "--operator",
            OPERATOR,
            "secret.pixelfed-admin",
        ],
    )
    .run();
    keep(&shown);
    shown.exits(0);
    assert!(shown.stdout.contains("\"value\": \"(secret)\""), "{shown}");

    // Drift: a bucket removed by hand is found by refresh and made again by apply.
    std::fs::remove_dir_all(sandbox(&data).join("buckets/fedi-uni-utrecht-pixelfed-media"))
        .unwrap();
    let refresh = fed(&data, ["refresh", "--operator", OPERATOR]).run();
    keep(&refresh);
    refresh.exits(0);
    assert!(
        refresh.stdout.contains("gone: bucket.pixelfed-media"),
        "{refresh}"
    );
    let repaired = fed(&data, ["apply", "-f", off_file, "--auto-approve", "--json"]).run();
    keep(&repaired);
    repaired.exits(0);
    let events: Vec<Value> = repaired
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.last().unwrap()["event"]["type"],
        "finished",
        "{repaired}"
    );
    assert!(
        events.iter().any(|e| e["event"]["type"] == "succeeded"
            && e["event"]["address"] == "bucket.pixelfed-media")
    );
    assert!(
        sandbox(&data)
            .join("buckets/fedi-uni-utrecht-pixelfed-media")
            .is_dir()
    );

    // Account deletion: everything goes but the data the operator chose to keep.
    let destroyed = fed(&data, ["destroy", "--operator", OPERATOR, "--auto-approve"]).run();
    keep(&destroyed);
    destroyed.exits(0);
    assert!(
        destroyed.stdout.contains("kept: bucket.pixelfed-media"),
        "{destroyed}"
    );
    assert!(
        !sandbox(&data)
            .join("keys/fedi-uni-utrecht-pixelfed.json")
            .exists()
    );

    let secrets = secret_values(&sandbox(&data));
    assert!(secrets.iter().any(|s| s == "ldap-bind-hunter2-value"));
    for secret in &secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "a secret was printed: {secret}"
        );
    }
}

#[test]
fn a_replacement_of_an_unknown_address_is_refused_before_anything_is_recorded() {
    let data = TempDir::new("replace-unknown");
    let config = workspace_root().join("examples/operators/university.json");
    let refused = fed(
        &data,
        [
            "apply",
            "-f",
            config.to_str().unwrap(),
            "--auto-approve",
            "--replace",
            "secret.no-such-secret",
        ],
    )
    .run();
    refused.exits(1);
    assert!(
        refused.stderr.contains(
            "cannot replace secret.no-such-secret: operator `uni-utrecht` has no such resource"
        ),
        "{refused}"
    );
    assert!(
        !data.path().join("fediversity.db").exists() && !sandbox(&data).exists(),
        "nothing was recorded or made"
    );
}

/// One operator's domain is never another's: a configuration naming the same domain, or one
/// under it, is refused before anything is made, without saying whose it is; once the first
/// operator is deleted, the domain is free.
#[test]
fn another_operators_domain_is_refused_until_it_is_released() {
    let data = TempDir::new("domain-claims");
    let config = workspace_root().join("examples/operators/photo-club.json");
    fed(
        &data,
        ["apply", "-f", config.to_str().unwrap(), "--auto-approve"],
    )
    .run()
    .exits(0);
    let mut document: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let owner = document["operator"]["id"].as_str().unwrap().to_owned();
    let domain = document["domain"].as_str().unwrap().to_owned();
    document["operator"]["id"] = "squatter".into();
    for claimed in [domain.clone(), format!("social.{domain}")] {
        document["domain"] = claimed.clone().into();
        let other = data.path().join("squatter.json");
        std::fs::write(&other, document.to_string()).unwrap();
        let refused = fed(
            &data,
            ["apply", "-f", other.to_str().unwrap(), "--auto-approve"],
        )
        .run();
        refused.exits(1);
        assert!(
            refused
                .stderr
                .contains(&format!("the domain `{claimed}` cannot be used")),
            "{refused}"
        );
        assert!(!refused.stderr.contains(&owner), "{refused}");
        assert!(
            !data.path().join("sandbox/squatter").exists(),
            "nothing was made"
        );
    }
    fed(&data, ["destroy", "--operator", &owner, "--auto-approve"])
        .run()
        .exits(0);
    let other = data.path().join("squatter.json");
    fed(
        &data,
        ["apply", "-f", other.to_str().unwrap(), "--auto-approve"],
    )
    .run()
    .exits(0);
}

/// `examples/infra.toml` with only the sections the sandbox can stand in for left out: sizes,
/// limits and `[panel]` stay, so the panel is every operator's identity provider.
fn sandbox_infra_with_panel(data: &TempDir) -> PathBuf {
    let example = std::fs::read_to_string(workspace_root().join("examples/infra.toml")).unwrap();
    let real = ["[dns]", "[garage]", "[nix]", "[proxmox", "[smtp]"];
    let mut kept = String::new();
    let mut skipping = false;
    for line in example.lines() {
        if line.starts_with('[') {
            skipping = real.iter().any(|section| line.starts_with(section));
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    assert!(kept.contains("[panel]"), "{kept}");
    let path = data.path().join("infra.toml");
    std::fs::write(&path, kept).unwrap();
    path
}

#[test]
fn with_a_panel_each_service_is_registered_as_its_client() {
    let data = TempDir::new("panel-clients");
    let infra = sandbox_infra_with_panel(&data);
    let config = workspace_root().join("examples/operators/photo-club.json");
    let applied = fed(
        &data,
        [
            "apply",
            "-f",
            config.to_str().unwrap(),
            "--infra",
            infra.to_str().unwrap(),
            "--auto-approve",
        ],
    )
    .run();
    applied.exits(0);
    let shown = fed(
        &data,
        [
            "state",
            "show",
            "--operator",
            "photo-club",
            "oidc_client.pixelfed",
        ],
    )
    .run();
    shown.exits(0);
    assert!(shown.stdout.contains("photo-club-pixelfed"), "{shown}");
    assert!(
        shown.stdout.contains("https://panel.example.net"),
        "{shown}"
    );
    assert!(
        shown.stdout.contains(r#""client_secret": "(secret)""#),
        "the client's secret is masked: {shown}"
    );
}
