//! No secret value anywhere a person or a log collector could see it: a whole life of an
//! example operator on the sandbox (plan, apply with JSON events, apply again for people, state
//! list and show of every resource, refresh, a rotation of the Mastodon admin password and
//! of the deployment key with `apply --replace`, destroy), every command at the most verbose log
//! level, and then every byte printed, every event and deployment stored (unsealed with the
//! platform key, as the panel would read them) and the raw database files are searched for
//! every secret value that exists: the hosts' secret files, the operator's stored secret, the
//! S3 keys' secrets, every value the state holds as a secret (the deployment key's private
//! half among them) and the platform key itself, both before and after the rotation: neither
//! the old values nor the new ones may show.

use std::path::Path;

use fediversity_engine::store::StateStore;
use fediversity_engine::value::SECRET_KEY;
use fediversity_model::names::OperatorId;
use fediversity_store::{SealingKey, Store};
use serde_json::Value;

use crate::cli::{Fediversity, Outcome, TempDir, fediversity, workspace_root};
use crate::deploy::walk;

const OPERATOR: &str = "uni-utrecht";
const STORED_SECRET: &str = "operator-stored-ldap-poison-7f3a";

fn fed<const N: usize>(data: &TempDir, args: [&str; N]) -> Fediversity {
    fediversity(args)
        .env("FEDIVERSITY_DATA_DIR", data.path().to_str().unwrap())
        .env("FEDIVERSITY_LOG", "trace")
}

/// Every secret file the sandbox holds: hosts' secrets, the operator's, the S3 keys'.
fn sandbox_secrets(sandbox: &Path) -> Vec<String> {
    let mut values = Vec::new();
    for path in walk(sandbox) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let parent = path.parent().unwrap();
        let public = path.to_string_lossy().ends_with("public-key");
        if (parent.ends_with("secrets") || parent.ends_with("operator-secrets")) && !public {
            values.push(text.trim().to_owned());
        } else if parent.ends_with("keys") {
            let key: Value = serde_json::from_str(&text).unwrap();
            values.push(key["secret_access_key"].as_str().unwrap().to_owned());
        }
    }
    values
}

/// Every value wrapped as a secret in `value`.
fn wrapped_secrets(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(SECRET_KEY) => {
            found.push(match &map[SECRET_KEY] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
        }
        Value::Object(map) => map.values().for_each(|v| wrapped_secrets(v, found)),
        Value::Array(items) => items.iter().for_each(|v| wrapped_secrets(v, found)),
        _ => {}
    }
}

async fn open_store(data: &Path) -> Store {
    let key = SealingKey::from_file(data.join("platform.key")).unwrap();
    let url = format!("sqlite://{}", data.join("fediversity.db").display());
    Store::connect(&url, key).await.unwrap()
}

/// The secrets the state holds, unsealed.
async fn state_secrets(store: &Store, operator: &OperatorId) -> Vec<String> {
    let state = store.load_state(operator).await.unwrap();
    let mut found = Vec::new();
    for record in state.resources.values() {
        wrapped_secrets(&record.inputs, &mut found);
        wrapped_secrets(&record.outputs, &mut found);
    }
    found
}

/// Everything the store keeps that the panel shows: deployments with their reports, every
/// event of each (unsealed), and the configurations.
async fn stored_history(store: &Store, operator: &OperatorId) -> String {
    let mut text = String::new();
    let deployments = store.deployments(operator).await.unwrap();
    assert!(!deployments.is_empty(), "the CLI records its deployments");
    for deployment in &deployments {
        text.push_str(&format!("{deployment:?}\n"));
        let events = store
            .events_since(operator, deployment.id, 0)
            .await
            .unwrap();
        for event in events {
            text.push_str(&serde_json::to_string(&event.event).unwrap());
            text.push('\n');
        }
    }
    let configurations = store.configurations(operator).await.unwrap();
    text.push_str(&format!("{configurations:?}\n"));
    text
}

/// The pieces of `secret` worth searching for: itself, and each long line of a multi-line one
/// (a PEM key's body), so a key printed in part is found too.
fn needles(secret: &str) -> Vec<String> {
    let mut found = vec![secret.to_owned()];
    if secret.contains('\n') {
        found.extend(
            secret
                .lines()
                .map(str::trim)
                .filter(|line| line.len() >= 16 && !line.starts_with("-----"))
                .map(str::to_owned),
        );
    }
    found
}

/// Runs `command`, expecting exit `code`, and keeps what it printed.
fn run(printed: &mut String, command: Fediversity, code: i32) -> Outcome {
    let outcome = command.run();
    outcome.exits(code);
    printed.push_str(&outcome.stdout);
    printed.push_str(&outcome.stderr);
    outcome
}

#[tokio::test]
async fn no_secret_value_is_printed_logged_or_stored_in_the_clear() {
    let data = TempDir::new("secret-grep");
    let config = workspace_root().join("examples/operators/university.json");
    let config = config.to_str().unwrap();
    let sandbox = data.path().join("sandbox").join(OPERATOR);
    std::fs::create_dir_all(sandbox.join("operator-secrets")).unwrap();
    std::fs::write(
        sandbox.join("operator-secrets/ldap-bind-password"),
        format!("{STORED_SECRET}\n"),
    )
    .unwrap();

    let mut printed = String::new();
    let mut run = |command: Fediversity, code: i32| run(&mut printed, command, code);
    run(fed(&data, ["plan", "-f", config]), 0);
    run(fed(&data, ["plan", "-f", config, "--json"]), 0);
    let applied = run(
        fed(&data, ["apply", "-f", config, "--auto-approve", "--json"]),
        0,
    );
    assert!(applied.stdout.contains("\"succeeded\""), "{applied}");
    run(fed(&data, ["apply", "-f", config, "--auto-approve"]), 0);
    let listed = run(fed(&data, ["state", "list", "--operator", OPERATOR]), 0);
    for address in listed.stdout.lines().filter_map(|l| l.split('\t').next()) {
        run(
            fed(&data, ["state", "show", "--operator", OPERATOR, address]),
            0,
        );
    }
    run(fed(&data, ["refresh", "--operator", OPERATOR]), 0);

    // Every secret that exists, before and after the rotation, while it all still exists.
    let operator = OperatorId::try_from(OPERATOR).unwrap();
    let store = open_store(data.path()).await;
    let mut secrets = sandbox_secrets(&sandbox);
    secrets.extend(state_secrets(&store, &operator).await);
    store.close().await;
    let admin_password = sandbox.join("vms/fedi-uni-utrecht-mastodon/secrets/admin-password");
    let before = std::fs::read_to_string(&admin_password).unwrap();
    let rotation = [
        "apply",
        "-f",
        config,
        "--auto-approve",
        "--replace",
        "secret.mastodon-admin",
        "--replace",
        "sshkey.deploy",
    ];
    let rotated = run(fed(&data, rotation), 0);
    assert!(
        rotated.stdout.contains("replacement requested"),
        "{rotated}"
    );
    // Once more with JSON events: a second rotation, its old values being the first's new ones.
    let mut as_json = [""; 9];
    as_json[..8].copy_from_slice(&rotation);
    as_json[8] = "--json";
    let again = run(fed(&data, as_json), 0);
    assert!(again.stdout.contains("\"succeeded\""), "{again}");
    let after = std::fs::read_to_string(&admin_password).unwrap();
    assert_ne!(before, after, "the host has the new admin password");
    let store = open_store(data.path()).await;
    secrets.extend(sandbox_secrets(&sandbox));
    secrets.extend(state_secrets(&store, &operator).await);
    secrets.push(
        std::fs::read_to_string(data.path().join("platform.key"))
            .unwrap()
            .trim()
            .to_owned(),
    );
    store.close().await;
    assert!(secrets.iter().any(|s| s == STORED_SECRET));
    assert!(
        secrets.iter().any(|s| s.contains("OPENSSH PRIVATE KEY")),
        "the deployment key's private half is among the secrets"
    );
    assert!(secrets.len() > 15, "{} secrets", secrets.len());

    run(
        fed(
            &data,
            [
                "destroy",
                "--operator",
                OPERATOR,
                "--auto-approve",
                "--json",
            ],
        ),
        0,
    );
    assert!(
        printed.contains("TRACE") || printed.contains("DEBUG"),
        "the most verbose logging is on"
    );

    let store = open_store(data.path()).await;
    let mut haystack = printed;
    haystack.push_str(&stored_history(&store, &operator).await);
    store.close().await;
    for path in walk(data.path()) {
        let outside_sandbox = !path.starts_with(data.path().join("sandbox"));
        if outside_sandbox && !path.ends_with("platform.key") {
            haystack.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    // The search sees what it should: masked secrets, stored events, and the public half of
    // the deployment key, which is no secret and shows in `state show`.
    for shown in ["(secret)", "\"type\":\"succeeded\"", "ssh-ed25519 AAAA"] {
        assert!(haystack.contains(shown), "{shown} is nowhere to be seen");
    }
    let searched: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .flat_map(|s| needles(s))
        .collect();
    assert!(searched.len() >= secrets.len() - 1, "{searched:?}");
    for (number, needle) in searched.iter().enumerate() {
        // The message never quotes the secret: a test log is a log too.
        assert!(
            !haystack.contains(needle.as_str()),
            "secret #{number} of {} ({} characters) shows outside the secret stores",
            searched.len(),
            needle.len()
        );
    }
}
