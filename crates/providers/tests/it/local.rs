//! The sandbox provider, kind by kind, on a temporary directory: create, read (with and
//! without recorded outputs), drift from hand edits, update, delete and keep.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fediversity_engine::Provider;
use fediversity_engine::provider::{CallContext, Deletion, ErrorKind, Outputs};
use fediversity_engine::value::mask;
use fediversity_model::Retention;
use fediversity_providers::{LocalProvider, SshKeyProvider};
use serde_json::{Value, json};

use crate::ctx;

const OP: &str = "example-org";

fn vm_inputs(name: &str, key: &str) -> Value {
    json!({"name": name, "cores": 4, "memory_mib": 8192, "disk_gib": 80, "ssh_public_key": key})
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value = read_json(path);
    edit(&mut value);
    fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// Deletes for good, and checks the provider says it removed the resource (deleting what is
/// already gone counts as removing it).
async fn remove(local: &LocalProvider, c: &CallContext, inputs: &Value, made: &Outputs) {
    let deletion = local
        .delete(c, inputs, made, Retention::Delete)
        .await
        .unwrap();
    assert_eq!(deletion, Deletion::Removed);
}

fn text(outputs: &Outputs, name: &str) -> String {
    outputs.values[name].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn vms_are_directories_with_unique_loopback_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let c = ctx(OP, "vm.mastodon");
    let inputs = vm_inputs(
        "fedi-example-org-mastodon",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7 deploy",
    );
    let made = local.create(&c, &inputs).await.unwrap();
    let ipv4: std::net::Ipv4Addr = text(&made, "ipv4").parse().unwrap();
    assert!(ipv4.is_loopback() && ipv4 != std::net::Ipv4Addr::LOCALHOST);
    assert!(text(&made, "host_key").starts_with("ssh-ed25519 "));
    assert!(!made.values.contains_key("ipv6"), "no IPv6 unless asked");
    assert!(made.sensitive.is_empty());

    let vm_dir = dir.path().join("example-org/vms/fedi-example-org-mastodon");
    let record = read_json(&vm_dir.join("vm.json"));
    assert_eq!(record["state"], "running");
    assert_eq!(record["cores"], 4);
    assert!(vm_dir.join("disk").is_dir());

    // Found by its stable name alone, as after a crash.
    let found = local.read(&c, &inputs, None).await.unwrap().unwrap();
    assert_eq!(found.inputs, inputs);
    assert_eq!(found.outputs, made);

    // A hand edit is drift.
    edit_json(&vm_dir.join("vm.json"), |v| v["cores"] = json!(8));
    let drifted = local.read(&c, &inputs, Some(&made)).await.unwrap().unwrap();
    assert_eq!(drifted.inputs["cores"], 8);

    // Update repairs it and keeps the address and host key; a create again adopts it.
    let updated = local.update(&c, &inputs, &made).await.unwrap();
    assert_eq!(updated, made);
    assert_eq!(read_json(&vm_dir.join("vm.json"))["cores"], 4);
    assert_eq!(local.create(&c, &inputs).await.unwrap(), made);

    // Addresses are unique across VMs and operators; IPv6 only when asked.
    let mut seen = BTreeSet::from([text(&made, "ipv4")]);
    for (operator, name) in [(OP, "two"), ("other-org", "three"), ("other-org", "four")] {
        let mut inputs = vm_inputs(name, "ssh-ed25519 AAAA x");
        inputs["ipv6"] = json!(true);
        let out = local
            .create(&ctx(operator, &format!("vm.{name}")), &inputs)
            .await
            .unwrap();
        assert!(seen.insert(text(&out, "ipv4")), "a duplicate address");
        assert!(text(&out, "ipv6").starts_with("fd00:fed1::"));
    }

    // Another resource cannot take the name.
    let error = local
        .create(&ctx(OP, "vm.imposter"), &inputs)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(
        error.message.contains("already belongs to vm.mastodon"),
        "{}",
        error.message
    );

    let address = "vm.mastodon".parse().unwrap();
    assert_eq!(local.replace_on(&address), ["name"]);
}

#[tokio::test]
async fn vms_are_kept_stopped_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let c = ctx(OP, "vm.pixelfed");
    let inputs = vm_inputs("fedi-example-org-pixelfed", "ssh-ed25519 AAAA x");
    let made = local.create(&c, &inputs).await.unwrap();
    let vm_dir = dir.path().join("example-org/vms/fedi-example-org-pixelfed");

    let Deletion::Kept { note } = local
        .delete(&c, &inputs, &made, Retention::Keep)
        .await
        .unwrap()
    else {
        panic!("retention keep must keep the VM");
    };
    assert!(
        note.contains(&vm_dir.join("disk").display().to_string()),
        "{note}"
    );
    assert_eq!(read_json(&vm_dir.join("vm.json"))["state"], "stopped");

    // Turned on again, it is adopted with its address.
    assert_eq!(local.create(&c, &inputs).await.unwrap(), made);
    assert_eq!(read_json(&vm_dir.join("vm.json"))["state"], "running");

    remove(&local, &c, &inputs, &made).await;
    assert!(!vm_dir.exists());
    assert!(
        local
            .read(&c, &inputs, Some(&made))
            .await
            .unwrap()
            .is_none()
    );
    remove(&local, &c, &inputs, &made).await;
    let addresses = read_json(&dir.path().join("addresses.json"));
    assert!(
        addresses["ipv4"].as_object().unwrap().is_empty(),
        "the address is freed"
    );
}

fn dns_inputs(name: &str, ttl: u32, values: &[&str]) -> Value {
    json!({"zone": "example.org", "name": name, "type": "A", "ttl": ttl, "values": values})
}

#[tokio::test]
async fn dns_record_sets_share_a_zone_file() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let zone = dir.path().join("example-org/dns/example.org.zone");
    let (social, video) = (ctx(OP, "dns.mastodon-a"), ctx(OP, "dns.peertube-a"));
    let social_inputs = dns_inputs("social.example.org", 300, &["127.1.2.3"]);
    let video_inputs = dns_inputs("video.example.org", 300, &["127.1.2.4"]);
    let made = local.create(&social, &social_inputs).await.unwrap();
    local.create(&video, &video_inputs).await.unwrap();
    let file = fs::read_to_string(&zone).unwrap();
    assert!(
        file.contains("social.example.org. 300 IN A 127.1.2.3\n"),
        "{file}"
    );
    assert!(
        file.contains("video.example.org. 300 IN A 127.1.2.4\n"),
        "{file}"
    );

    let found = local
        .read(&social, &social_inputs, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.inputs, social_inputs);
    assert_eq!(found.outputs.values["fqdn"], "social.example.org");

    // Edited by hand: drift.
    fs::write(
        &zone,
        file.replace(
            "social.example.org. 300 IN A",
            "social.example.org. 60 IN A",
        ),
    )
    .unwrap();
    let drifted = local
        .read(&social, &social_inputs, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drifted.inputs["ttl"], 60);

    let two = dns_inputs("social.example.org", 300, &["127.1.2.3", "127.1.2.5"]);
    local.update(&social, &two, &made).await.unwrap();
    let found = local.read(&social, &two, None).await.unwrap().unwrap();
    assert_eq!(found.inputs, two);
    assert!(
        local
            .read(&video, &video_inputs, None)
            .await
            .unwrap()
            .is_some(),
        "the other set is untouched"
    );

    remove(&local, &social, &two, &made).await;
    assert!(local.read(&social, &two, None).await.unwrap().is_none());
    assert!(
        fs::read_to_string(&zone)
            .unwrap()
            .contains("video.example.org.")
    );
    remove(&local, &video, &video_inputs, &made).await;
    assert!(!zone.exists(), "an empty zone file is removed");
    remove(&local, &video, &video_inputs, &made).await;

    let error = local
        .create(
            &social,
            &dns_inputs("social.example.net", 300, &["127.1.2.3"]),
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("is not in the zone `example.org`"),
        "{}",
        error.message
    );
    let error = local
        .create(
            &social,
            &dns_inputs("social.example.org", 300, &["not-an-ip"]),
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("not valid data for a A record"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn many_records_written_at_once_all_land_in_the_zone() {
    let dir = tempfile::tempdir().unwrap();
    let local = std::sync::Arc::new(LocalProvider::new(dir.path()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let local = local.clone();
        tasks.spawn(async move {
            let inputs = dns_inputs(&format!("host-{i}.example.org"), 300, &["127.0.0.2"]);
            local
                .create(&ctx(OP, &format!("dns.host-{i}")), &inputs)
                .await
                .unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}
    let file = fs::read_to_string(dir.path().join("example-org/dns/example.org.zone")).unwrap();
    assert_eq!(
        file.lines().filter(|l| l.contains(" IN A ")).count(),
        24,
        "{file}"
    );
}

fn bucket_inputs(quota: u64) -> Value {
    json!({
        "alias": "fedi-example-org-mastodon-media",
        "quota_bytes": quota,
        "website": true,
        "cors_allowed_origins": ["https://social.example.org"],
    })
}

#[tokio::test]
async fn buckets_are_directories_kept_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let c = ctx(OP, "bucket.mastodon-media");
    let inputs = bucket_inputs(1000);
    let made = local.create(&c, &inputs).await.unwrap();
    let id = text(&made, "id");
    assert_eq!(id.len(), 64);
    assert_eq!(made.values["alias"], "fedi-example-org-mastodon-media");
    let bucket = dir
        .path()
        .join("example-org/buckets/fedi-example-org-mastodon-media");
    assert_eq!(read_json(&bucket.join(".bucket.json"))["quota_bytes"], 1000);
    fs::write(bucket.join("cat.jpg"), "an object").unwrap();

    assert_eq!(
        local.read(&c, &inputs, None).await.unwrap().unwrap().inputs,
        inputs
    );
    edit_json(&bucket.join(".bucket.json"), |v| {
        v["website"] = json!(false)
    });
    assert_eq!(
        local.read(&c, &inputs, None).await.unwrap().unwrap().inputs["website"],
        false
    );

    let bigger = bucket_inputs(2000);
    let updated = local.update(&c, &bigger, &made).await.unwrap();
    assert_eq!(text(&updated, "id"), id, "the id stays");
    assert_eq!(read_json(&bucket.join(".bucket.json"))["website"], true);

    let Deletion::Kept { note } = local
        .delete(&c, &bigger, &updated, Retention::Keep)
        .await
        .unwrap()
    else {
        panic!("retention keep must keep the bucket");
    };
    assert!(note.contains(&bucket.display().to_string()), "{note}");
    assert!(bucket.join("cat.jpg").exists(), "the objects stay");

    // Removed by hand: the bucket is missing.
    fs::remove_dir_all(&bucket).unwrap();
    assert!(
        local
            .read(&c, &bigger, Some(&updated))
            .await
            .unwrap()
            .is_none()
    );
    local.create(&c, &bigger).await.unwrap();
    remove(&local, &c, &bigger, &updated).await;
    assert!(!bucket.exists());
    remove(&local, &c, &bigger, &updated).await;

    let address = "bucket.x".parse().unwrap();
    assert_eq!(local.replace_on(&address), ["alias"]);
}

#[tokio::test]
async fn s3_keys_hold_a_secret_and_their_grants() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let bucket = local
        .create(&ctx(OP, "bucket.mastodon-media"), &bucket_inputs(1000))
        .await
        .unwrap();
    let c = ctx(OP, "s3key.mastodon");
    let grant = |write: bool| json!([{"bucket": text(&bucket, "id"), "read": true, "write": write, "owner": false}]);
    let inputs = json!({"name": "fedi-example-org-mastodon", "grants": grant(true)});
    let made = local.create(&c, &inputs).await.unwrap();
    assert!(text(&made, "access_key_id").starts_with("GK"));
    assert_eq!(text(&made, "secret_access_key").len(), 64);
    assert_eq!(
        made.sensitive,
        BTreeSet::from(["secret_access_key".to_owned()])
    );
    let file = dir
        .path()
        .join("example-org/keys/fedi-example-org-mastodon.json");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let found = local.read(&c, &inputs, None).await.unwrap().unwrap();
    assert_eq!(found.outputs, made);
    assert_eq!(found.inputs, inputs);

    let read_only = json!({"name": "fedi-example-org-mastodon", "grants": grant(false)});
    let updated = local.update(&c, &read_only, &made).await.unwrap();
    assert_eq!(updated, made, "the key pair stays");
    assert_eq!(read_json(&file)["grants"][0]["write"], false);

    let stray =
        json!({"name": "fedi-example-org-x", "grants": [{"bucket": "no-such-id", "read": true}]});
    let error = local.create(&ctx(OP, "s3key.x"), &stray).await.unwrap_err();
    assert!(
        error.message.contains("no bucket of operator"),
        "{}",
        error.message
    );

    remove(&local, &c, &read_only, &updated).await;
    assert!(!file.exists());
    assert!(local.read(&c, &read_only, None).await.unwrap().is_none());
    remove(&local, &c, &read_only, &updated).await;
}

#[tokio::test]
async fn nixos_hosts_write_the_spec_and_secrets_into_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let key = SshKeyProvider::new()
        .create(
            &ctx(OP, "sshkey.deploy"),
            &json!({"algorithm": "ed25519", "comment": "deploy"}),
        )
        .await
        .unwrap();
    let vm = local
        .create(
            &ctx(OP, "vm.mastodon"),
            &vm_inputs("fedi-example-org-mastodon", &text(&key, "public_key")),
        )
        .await
        .unwrap();
    let c = ctx(OP, "nixos.mastodon");
    let spec = json!({"version": 1, "service": "mastodon", "fqdn": "social.example.org"});
    let inputs = json!({
        "host": text(&vm, "ipv4"),
        "host_key": text(&vm, "host_key"),
        "secrets": {"admin-password": "poison-one", "secret-key-base": "poison-two"},
        "spec": spec,
        "ssh_private_key": text(&key, "private_key"),
    });
    let made = local.create(&c, &inputs).await.unwrap();
    assert_eq!(text(&made, "generation").len(), 32);
    assert_eq!(made.values["vm"], "fedi-example-org-mastodon");
    let vm_dir = dir.path().join("example-org/vms/fedi-example-org-mastodon");
    assert_eq!(read_json(&vm_dir.join("host-spec.json")), spec);
    let secret = vm_dir.join("secrets/admin-password");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "poison-one");
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(vm_dir.join("secrets"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Read finds it with no record, and reports nothing secret.
    let found = local.read(&c, &inputs, None).await.unwrap().unwrap();
    assert_eq!(found.outputs, made);
    let shown = found.inputs.to_string();
    assert!(
        !shown.contains("poison") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
    assert!(
        found.inputs.get("secrets").is_none(),
        "unchanged secrets are not reported"
    );

    // Secrets and spec edited by hand are drift, shown without values.
    fs::write(&secret, "tampered").unwrap();
    fs::remove_file(vm_dir.join("secrets/secret-key-base")).unwrap();
    fs::write(vm_dir.join("secrets/stray"), "x").unwrap();
    edit_json(&vm_dir.join("host-spec.json"), |v| {
        v["fqdn"] = json!("evil.example.org")
    });
    let drifted = local.read(&c, &inputs, Some(&made)).await.unwrap().unwrap();
    assert_eq!(
        drifted.inputs["secrets"]["admin-password"],
        "(changed outside the platform)"
    );
    assert_eq!(drifted.inputs["secrets"]["secret-key-base"], "(missing)");
    assert_eq!(
        drifted.inputs["secrets"]["stray"],
        "(not deployed by the platform)"
    );
    assert_eq!(drifted.inputs["spec"]["fqdn"], "evil.example.org");
    assert_ne!(
        drifted.outputs.values["generation"],
        made.values["generation"]
    );
    let masked = mask(&drifted.inputs).to_string();
    assert!(
        !masked.contains("poison") && !masked.contains("tampered"),
        "{masked}"
    );

    // Update repairs everything and removes what was not asked for.
    let mut fewer = inputs.clone();
    fewer["secrets"] = json!({"admin-password": "poison-one"});
    local.update(&c, &fewer, &made).await.unwrap();
    assert_eq!(fs::read_to_string(&secret).unwrap(), "poison-one");
    assert!(!vm_dir.join("secrets/stray").exists());
    assert_eq!(read_json(&vm_dir.join("host-spec.json")), spec);
    assert!(
        local
            .read(&c, &fewer, None)
            .await
            .unwrap()
            .unwrap()
            .inputs
            .get("secrets")
            .is_none()
    );

    // The connection is checked as SSH would.
    let mut wrong_host_key = inputs.clone();
    wrong_host_key["host_key"] = json!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther root@x");
    let error = local.create(&c, &wrong_host_key).await.unwrap_err();
    assert!(error.message.contains("host key"), "{}", error.message);
    let other_key = SshKeyProvider::new()
        .create(&ctx(OP, "sshkey.other"), &json!({"algorithm": "ed25519"}))
        .await
        .unwrap();
    let mut wrong_key = inputs.clone();
    wrong_key["ssh_private_key"] = other_key.values["private_key"].clone();
    let error = local.create(&c, &wrong_key).await.unwrap_err();
    assert!(
        error.message.contains("does not let the deployment key in"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("PRIVATE"), "{}", error.message);
    let mut nowhere = inputs.clone();
    nowhere["host"] = json!("127.250.250.250");
    let error = local.create(&c, &nowhere).await.unwrap_err();
    assert!(error.message.contains("no sandbox VM"), "{}", error.message);

    remove(&local, &c, &fewer, &made).await;
    assert!(!vm_dir.join("host-spec.json").exists() && !vm_dir.join("secrets").exists());
    assert!(vm_dir.join("vm.json").exists(), "the VM stays");
    assert!(local.read(&c, &fewer, None).await.unwrap().is_none());
    remove(&local, &c, &fewer, &made).await;
}

#[tokio::test]
async fn s3_clusters_write_a_garage_layout() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let c = ctx(OP, "s3cluster.garage");
    let inputs = |nodes: &[&str]| {
        json!({
            "admin_endpoint": "http://127.1.1.1:3903",
            "admin_token": "poison-token",
            "capacity_bytes": 1000,
            "nodes": nodes,
            "replication_factor": 1,
            "zone": "dc1",
        })
    };
    let one = inputs(&["127.1.1.1"]);
    let made = local.create(&c, &one).await.unwrap();
    assert_eq!(made.values["layout_version"], 1);
    let layout_file = dir
        .path()
        .join("example-org/s3clusters/garage/garage-layout.json");
    let layout = fs::read_to_string(&layout_file).unwrap();
    assert!(!layout.contains("poison"), "the admin token is not written");
    assert_eq!(
        local.create(&c, &one).await.unwrap().values["layout_version"],
        1,
        "unchanged layout, same version"
    );
    let two = inputs(&["127.1.1.1", "127.1.1.2"]);
    assert_eq!(
        local.update(&c, &two, &made).await.unwrap().values["layout_version"],
        2
    );
    let found = local.read(&c, &two, None).await.unwrap().unwrap();
    assert_eq!(found.inputs["nodes"], json!(["127.1.1.1", "127.1.1.2"]));
    assert!(found.inputs.get("admin_token").is_none());
    let error = local
        .create(
            &c,
            &json!({"capacity_bytes": 1, "nodes": [], "replication_factor": 3, "zone": "dc1"}),
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("replication factor of 3"),
        "{}",
        error.message
    );
    remove(&local, &c, &two, &made).await;
    assert!(local.read(&c, &two, None).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_inputs_and_foreign_kinds_are_refused_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let error = local
        .create(&ctx(OP, "vm.x"), &json!({"name": "x", "cores": "poison", "memory_mib": 1, "disk_gib": 1, "ssh_public_key": ""}))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(!error.message.contains("poison"), "{}", error.message);
    let error = local
        .create(&ctx(OP, "vm.x"), &vm_inputs("../escape", "k"))
        .await
        .unwrap_err();
    assert!(
        error.message.contains("cannot be used as a file name"),
        "{}",
        error.message
    );
    let error = local
        .create(&ctx(OP, "secret.x"), &json!({}))
        .await
        .unwrap_err();
    assert!(
        error.message.contains("the `secret` provider does"),
        "{}",
        error.message
    );
    assert!(
        !dir.path().join("example-org/vms").exists(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_rotated_deployment_key_changes_the_sandbox_vm_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path());
    let c = ctx(OP, "vm.mastodon");
    let old = vm_inputs("fedi-example-org-mastodon", "ssh-ed25519 AAAAold deploy");
    let new = vm_inputs("fedi-example-org-mastodon", "ssh-ed25519 AAAAnew deploy");
    let made = local.create(&c, &old).await.unwrap();
    let changes = local.diff(&c.address, &old, &new);
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind))
            .collect::<Vec<_>>(),
        [(
            "ssh_public_key",
            fediversity_engine::provider::ChangeKind::InPlace
        )],
        "a new key must not replace the VM"
    );
    let updated = local.update(&c, &new, &made).await.unwrap();
    assert_eq!(updated, made, "the same VM");
    let record = read_json(
        &dir.path()
            .join("example-org/vms/fedi-example-org-mastodon/vm.json"),
    );
    assert_eq!(record["ssh_public_key"], "ssh-ed25519 AAAAnew deploy");
}
