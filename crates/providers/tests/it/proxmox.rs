//! The `proxmox` provider against the Proxmox VE simulator (fediversity_testkit::proxmox):
//! the VM's life (create, adopt, resize, cores with a reboot, replacement, delete with keep
//! and with delete), failures (a failing clone task, a connection lost mid-clone and the run
//! that converges after it, a 500, a wrong token, a certificate that is not the pinned one),
//! and the conformance of every request and answer to Proxmox's own API schema.

use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::clock::SystemClock;
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::provider::{ChangeKind, Deletion, ErrorKind, Provider};
use fediversity_engine::retry::RetryPolicy;
use fediversity_engine::{Approval, Engine, EngineOptions, Providers};
use fediversity_model::Retention;
use fediversity_model::graph::DesiredGraph;
use fediversity_model::infra::{Ipv4Pool, Ipv6Pool};
use fediversity_providers::SecretString;
use fediversity_providers::proxmox::{
    MemoryAddressPool, ProxmoxOptions, ProxmoxProvider, Timing, Trust,
};
use fediversity_providers::tls;
use fediversity_testkit::proxmox::schema::ApiSchema;
use fediversity_testkit::proxmox::{
    Fault, FaultAction, ProxmoxSim, RecordedRequest, SimOptions, TaskFailure,
};
use serde_json::{Value, json};

use crate::{Events, ctx};

const OPERATOR: &str = "example-org";
const ADDRESS: &str = "vm.mastodon";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVkMjU1MTkta2V5LWZvci10aGUtdGVzdHMtb25seQ deploy@fediversity";

fn options(sim: &ProxmoxSim, trust: Trust, secret: &str) -> ProxmoxOptions {
    ProxmoxOptions {
        endpoint: sim.endpoint(),
        token_id: sim.options().token_id.clone(),
        token_secret: SecretString::new(secret),
        trust,
        nodes: vec![sim.options().node.clone()],
        ipv4: Ipv4Pool {
            prefix_length: 24,
            gateway: "192.0.2.1".parse().unwrap(),
            first: "192.0.2.10".parse().unwrap(),
            last: "192.0.2.20".parse().unwrap(),
        },
        ipv6: Some(Ipv6Pool {
            prefix_length: 64,
            gateway: "2001:db8::1".parse().unwrap(),
            first: "2001:db8::10".parse().unwrap(),
            last: "2001:db8::ff".parse().unwrap(),
        }),
        ciuser: "root".to_owned(),
        timing: Timing {
            request: Duration::from_secs(5),
            poll: Duration::from_millis(20),
            task: Duration::from_secs(10),
            boot: Duration::from_secs(10),
        },
    }
}

fn ca_trust(sim: &ProxmoxSim) -> Trust {
    Trust {
        ca_pem: Some(std::fs::read(sim.ca_file()).unwrap()),
        fingerprint: None,
    }
}

/// A simulator and a provider trusting its CA, with an in-memory address pool.
async fn setup() -> (ProxmoxSim, ProxmoxProvider, Arc<MemoryAddressPool>) {
    let sim = ProxmoxSim::start(SimOptions::default()).await;
    let pool = Arc::new(MemoryAddressPool::default());
    let secret = sim.options().token_secret.clone();
    let provider =
        ProxmoxProvider::new(options(&sim, ca_trust(&sim), &secret), pool.clone()).unwrap();
    (sim, provider, pool)
}

/// Creates the test's VM (2 cores, 40 GiB); its outputs and VM id.
async fn create(
    provider: &ProxmoxProvider,
    ctx: &fediversity_engine::provider::CallContext,
) -> (fediversity_engine::provider::Outputs, u32) {
    let outputs = provider.create(ctx, &inputs(2, 40)).await.unwrap();
    let vmid = u32::try_from(outputs.values["vmid"].as_u64().unwrap()).unwrap();
    (outputs, vmid)
}

fn ctx_for(address: &str) -> fediversity_engine::provider::CallContext {
    ctx(OPERATOR, address)
}

fn inputs(cores: u32, disk_gib: u64) -> Value {
    json!({
        "bridge": "vmbr0",
        "cores": cores,
        "disk_gib": disk_gib,
        "ipv6": true,
        "memory_mib": 4096,
        "name": "fedi-example-org-mastodon",
        "ssh_public_key": KEY,
        "storage": "linstor-nvme",
        "tags": ["fediversity", "operator-example-org", "resource-mastodon"],
        "template_vmid": 9000
    })
}

/// Every request `sim` saw conforms to Proxmox's API schema, and so does every answer.
fn assert_conforms(requests: &[RecordedRequest]) {
    let schema = ApiSchema::get();
    for request in requests {
        let operation = schema
            .operation(&request.method, &request.path)
            .unwrap_or_else(|e| panic!("{} {}: {e}", request.method, request.path));
        let errors = operation.check_parameters(&request.params);
        assert!(
            errors.is_empty(),
            "{} {} {:?}: {errors:?}",
            request.method,
            request.path,
            request.params
        );
        if let Some(data) = &request.data {
            let problems = operation.check_returns(data);
            assert!(
                problems.is_empty(),
                "the answer to {} {}: {problems:?}",
                request.method,
                request.path
            );
        }
    }
}

fn count(requests: &[RecordedRequest], method: &str, suffix: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .count()
}

#[tokio::test]
async fn a_vm_is_cloned_configured_started_and_found_again() {
    let (sim, provider, pool) = setup().await;
    let ctx = ctx(OPERATOR, ADDRESS);
    let (outputs, vmid) = create(&provider, &ctx).await;
    let values = &outputs.values;
    assert_eq!(values["ipv4"], "192.0.2.10");
    assert_eq!(values["ipv6"], "2001:db8::10");
    assert_eq!(values["node"], "pve1");
    let vm = sim.vm(vmid).unwrap();
    assert_eq!(values["host_key"], vm.host_key.as_str());
    assert!(vm.running && vm.lock.is_none() && vm.pending.is_empty());
    assert_eq!(vm.config["cores"], "2");
    assert_eq!(vm.config["memory"], "4096");
    assert_eq!(vm.disk_gib(), Some(40));
    assert!(vm.config["scsi0"].starts_with("linstor-nvme:"));
    assert_eq!(
        vm.config["ipconfig0"],
        "ip=192.0.2.10/24,gw=192.0.2.1,ip6=2001:db8::10/64,gw6=2001:db8::1"
    );
    assert_eq!(
        vm.config["tags"],
        "fediversity;operator-example-org;resource-mastodon"
    );
    assert!(vm.config["sshkeys"].starts_with("ssh-ed25519%20AAAA"));
    assert_eq!(pool.allocations().len(), 2);

    // Found by its tags without a record, as after a crash before the state was written.
    let observed = provider
        .read(&ctx, &inputs(2, 40), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(observed.outputs, outputs);
    assert_eq!(observed.inputs["ssh_public_key"], KEY);
    assert_eq!(observed.inputs["disk_gib"], 40);

    // A create that runs again adopts the VM instead of making a second one.
    let again = provider.create(&ctx, &inputs(2, 40)).await.unwrap();
    assert_eq!(again, outputs);
    assert_eq!(sim.vms().len(), 1);
    let requests = sim.requests();
    assert_eq!(count(&requests, "POST", "/clone"), 1);
    assert_conforms(&requests);
}

#[tokio::test]
async fn a_disk_grows_and_new_cores_apply_after_a_reboot() {
    let (sim, provider, _pool) = setup().await;
    let ctx = ctx(OPERATOR, ADDRESS);
    let (outputs, vmid) = create(&provider, &ctx).await;

    let updated = provider
        .update(&ctx, &inputs(4, 60), &outputs)
        .await
        .unwrap();
    assert_eq!(updated, outputs);
    let vm = sim.vm(vmid).unwrap();
    assert_eq!(vm.disk_gib(), Some(60));
    assert_eq!(
        vm.config["cores"], "4",
        "the reboot applied the pending change"
    );
    assert!(vm.pending.is_empty() && vm.running);
    let requests = sim.requests();
    assert_eq!(
        count(&requests, "PUT", "/resize"),
        2,
        "grown from the template's size, then to 60"
    );
    assert_eq!(count(&requests, "POST", "/status/reboot"), 1);
    let observed = provider
        .read(&ctx, &inputs(4, 60), Some(&outputs))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(observed.inputs["cores"], 4);

    // Nothing to change: no reboot, no resize.
    provider
        .update(&ctx, &inputs(4, 60), &outputs)
        .await
        .unwrap();
    let requests = sim.requests();
    assert_eq!(count(&requests, "POST", "/status/reboot"), 1);
    assert_eq!(count(&requests, "PUT", "/resize"), 2);
    assert_conforms(&requests);
}

#[tokio::test]
async fn a_new_template_storage_or_smaller_disk_means_a_new_vm() {
    let (_sim, provider, _pool) = setup().await;
    let address = "vm.mastodon".parse().unwrap();
    let kinds = |desired: Value| -> Vec<(String, ChangeKind)> {
        provider
            .diff(&address, &inputs(2, 40), &desired)
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect()
    };
    let mut template = inputs(2, 40);
    template["template_vmid"] = json!(9001);
    assert_eq!(
        kinds(template),
        [("template_vmid".to_owned(), ChangeKind::Replace)]
    );
    let mut storage = inputs(2, 40);
    storage["storage"] = json!("ceph");
    assert_eq!(
        kinds(storage),
        [("storage".to_owned(), ChangeKind::Replace)]
    );
    assert_eq!(
        kinds(inputs(2, 20)),
        [("disk_gib".to_owned(), ChangeKind::Replace)]
    );
    assert_eq!(
        kinds(inputs(4, 80)),
        [
            ("cores".to_owned(), ChangeKind::InPlace),
            ("disk_gib".to_owned(), ChangeKind::InPlace)
        ]
    );
}

#[tokio::test]
async fn a_replacement_destroys_the_old_vm_and_reuses_its_address() {
    let (sim, provider, pool) = setup().await;
    let ctx = ctx(OPERATOR, ADDRESS);
    let old = provider.create(&ctx, &inputs(2, 40)).await.unwrap();
    let deletion = provider
        .delete(&ctx, &inputs(2, 40), &old, Retention::Delete)
        .await
        .unwrap();
    assert_eq!(deletion, Deletion::Removed);
    assert!(sim.vms().is_empty(), "destroyed with its disks");
    assert!(
        pool.allocations().is_empty(),
        "its addresses are free again"
    );
    let requests = sim.requests();
    let destroy = requests.iter().find(|r| r.method == "DELETE").unwrap();
    assert_eq!(destroy.params["purge"], "1");
    assert_eq!(destroy.params["destroy-unreferenced-disks"], "1");

    // Deleting what is gone succeeds.
    let again = provider
        .delete(&ctx, &inputs(2, 40), &old, Retention::Delete)
        .await
        .unwrap();
    assert_eq!(again, Deletion::Removed);

    let new = provider.create(&ctx, &inputs(2, 20)).await.unwrap();
    assert_eq!(count(&sim.requests(), "POST", "/clone"), 2, "a fresh clone");
    assert_eq!(new.values["ipv4"], old.values["ipv4"]);
    assert_ne!(new.values["host_key"], old.values["host_key"]);
    // Another resource's record naming the same VM id does not make it touch this VM.
    let other = ctx_for("vm.pixelfed");
    let mut other_inputs = inputs(2, 20);
    other_inputs["name"] = json!("fedi-example-org-pixelfed");
    let found = provider
        .read(&other, &other_inputs, Some(&new))
        .await
        .unwrap();
    assert_eq!(found, None, "the VM carries another resource's tags");
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn keeping_a_vm_stops_it_and_keeps_its_disk_and_address() {
    let (sim, provider, pool) = setup().await;
    let ctx = ctx(OPERATOR, ADDRESS);
    let (outputs, vmid) = create(&provider, &ctx).await;
    let deletion = provider
        .delete(&ctx, &inputs(2, 40), &outputs, Retention::Keep)
        .await
        .unwrap();
    let Deletion::Kept { note } = deletion else {
        panic!("kept, not {deletion:?}")
    };
    assert!(
        note.contains(&format!("VM {vmid}")) && note.contains("pve1"),
        "{note}"
    );
    let vm = sim.vm(vmid).unwrap();
    assert!(!vm.running, "stopped");
    assert_eq!(vm.disk_gib(), Some(40));
    assert_eq!(pool.allocations().len(), 2, "a kept VM keeps its addresses");
    assert_eq!(count(&sim.requests(), "DELETE", ""), 0);
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn a_failing_clone_reports_its_exit_status_and_log_tail() {
    let (sim, provider, _pool) = setup().await;
    sim.fail_next_task(TaskFailure {
        task_type: "qmclone".to_owned(),
        exitstatus: "storage 'linstor-nvme' does not have enough free space".to_owned(),
        log: vec![
            "create full clone of drive scsi0 (local-lvm:base-9000-disk-0)".to_owned(),
            "linstor: resource creation failed: not enough space".to_owned(),
        ],
    });
    let error = provider
        .create(&ctx(OPERATOR, ADDRESS), &inputs(2, 40))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert!(
        error
            .message
            .contains("exit status `storage 'linstor-nvme' does not have enough free space`"),
        "{error}"
    );
    assert!(
        error.message.contains("not enough space | TASK ERROR"),
        "{error}"
    );
    assert!(sim.vms().is_empty(), "Proxmox removes a failed clone");
    assert_conforms(&sim.requests());
}

fn graph(with_vm: bool) -> DesiredGraph {
    let mut resources = serde_json::Map::new();
    if with_vm {
        resources.insert(
            ADDRESS.to_owned(),
            json!({"provider": "proxmox", "service": "mastodon", "holds_data": true, "inputs": inputs(2, 40)}),
        );
    }
    serde_json::from_value(json!({
        "version": 1,
        "operator": OPERATOR,
        "retention": {"mastodon": "delete"},
        "resources": resources,
    }))
    .unwrap()
}

#[tokio::test]
async fn a_connection_lost_mid_clone_converges_without_a_second_vm() {
    let (sim, provider, _pool) = setup().await;
    // The clone starts, but its answer never arrives.
    sim.inject(Fault {
        method: "POST".to_owned(),
        path_suffix: "/clone".to_owned(),
        action: FaultAction::DropAfter,
        times: 1,
    });
    let mut providers = Providers::new();
    providers.insert(
        "proxmox".to_owned(),
        Arc::new(provider) as Arc<dyn Provider>,
    );
    let engine = Engine::new(
        providers,
        Arc::new(MemoryStore::default()),
        Arc::new(SystemClock),
        EngineOptions {
            retry: RetryPolicy {
                attempts: 4,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
            },
            ..EngineOptions::default()
        },
    );
    let apply = |graph: DesiredGraph| {
        let engine = engine.clone();
        async move {
            engine
                .apply(&graph, Arc::new(Events::default()), Approval::Automatic)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let report = apply(graph(true)).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(
        sim.vms().len(),
        1,
        "the clone that lost its answer was adopted"
    );
    let vm = &sim.vms()[0];
    assert!(vm.running && vm.config["tags"].contains("resource-mastodon"));
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path.ends_with("/clone") && r.status.is_none()),
        "the clone's answer was lost"
    );
    let clones = count(&requests, "POST", "/clone");
    assert_eq!(clones, 1);

    let again = apply(graph(true)).await;
    assert!(again.succeeded() && again.done.is_empty(), "{again:#?}");
    assert_eq!(count(&sim.requests(), "POST", "/clone"), clones);

    let removed = apply(graph(false)).await;
    assert!(removed.succeeded(), "{removed:#?}");
    assert!(sim.vms().is_empty());
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn a_500_is_transient_and_names_the_endpoint() {
    let (sim, provider, _pool) = setup().await;
    sim.inject(Fault {
        method: "GET".to_owned(),
        path_suffix: "/cluster/resources".to_owned(),
        action: FaultAction::ServerError("cluster not ready - no quorum?".to_owned()),
        times: 1,
    });
    let error = provider
        .read(&ctx(OPERATOR, ADDRESS), &inputs(2, 40), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    assert!(
        error
            .message
            .contains("GET /cluster/resources: 500 cluster not ready - no quorum?"),
        "{error}"
    );
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn a_dropped_or_slow_answer_is_transient() {
    let sim = ProxmoxSim::start(SimOptions::default()).await;
    let mut options = options(&sim, ca_trust(&sim), &sim.options().token_secret.clone());
    options.timing.request = Duration::from_millis(300);
    let provider = ProxmoxProvider::new(options, Arc::new(MemoryAddressPool::default())).unwrap();
    let ctx = ctx(OPERATOR, ADDRESS);
    for action in [
        FaultAction::DropBefore,
        FaultAction::Delay(Duration::from_secs(2)),
    ] {
        sim.inject(Fault {
            method: "GET".to_owned(),
            path_suffix: "/cluster/resources".to_owned(),
            action: action.clone(),
            times: 1,
        });
        let error = provider.read(&ctx, &inputs(2, 40), None).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Transient, "{action:?}: {error}");
        assert!(
            error
                .message
                .contains("did not answer GET /cluster/resources"),
            "{action:?}: {error}"
        );
    }
    assert_eq!(
        provider.read(&ctx, &inputs(2, 40), None).await.unwrap(),
        None
    );
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn a_clone_outlasting_its_wait_is_adopted_once_its_lock_is_gone() {
    let sim = ProxmoxSim::start(SimOptions {
        clone_time: Duration::from_millis(1500),
        ..SimOptions::default()
    })
    .await;
    let secret = sim.options().token_secret.clone();
    let pool: Arc<MemoryAddressPool> = Arc::default();
    let mut impatient = options(&sim, ca_trust(&sim), &secret);
    impatient.timing.task = Duration::from_millis(200);
    let impatient = ProxmoxProvider::new(impatient, pool.clone()).unwrap();
    let ctx = ctx(OPERATOR, ADDRESS);
    let error = impatient.create(&ctx, &inputs(2, 40)).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    assert!(error.message.contains("did not finish"), "{error}");
    assert_eq!(sim.vms()[0].lock.as_deref(), Some("clone"));

    let patient = ProxmoxProvider::new(options(&sim, ca_trust(&sim), &secret), pool).unwrap();
    let outputs = patient.create(&ctx, &inputs(2, 40)).await.unwrap();
    assert_eq!(
        count(&sim.requests(), "POST", "/clone"),
        1,
        "adopted, not cloned again"
    );
    assert_eq!(outputs.values["vmid"], sim.vms()[0].vmid);
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_permanent_error() {
    let sim = ProxmoxSim::start(SimOptions::default()).await;
    let provider = ProxmoxProvider::new(
        options(&sim, ca_trust(&sim), "not-the-secret"),
        Arc::new(MemoryAddressPool::default()),
    )
    .unwrap();
    let error = provider
        .create(&ctx(OPERATOR, ADDRESS), &inputs(2, 40))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert!(
        error.message.contains("401 authentication failure"),
        "{error}"
    );
    assert!(error.message.contains("token_secret_file"), "{error}");
    assert!(
        !error.message.contains("not-the-secret"),
        "no secret in messages"
    );
    assert!(sim.vms().is_empty());
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn only_the_pinned_certificate_is_trusted() {
    let sim = ProxmoxSim::start(SimOptions::default()).await;
    let secret = sim.options().token_secret.clone();
    let pinned = |fingerprint: [u8; 32]| {
        let trust = Trust {
            ca_pem: None,
            fingerprint: Some(fingerprint),
        };
        ProxmoxProvider::new(
            options(&sim, trust, &secret),
            Arc::new(MemoryAddressPool::default()),
        )
        .unwrap()
    };
    let ctx = ctx(OPERATOR, ADDRESS);
    let error = pinned([0xAB; 32])
        .read(&ctx, &inputs(2, 40), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert!(error.message.contains("not the pinned one"), "{error}");
    assert!(
        sim.requests().is_empty(),
        "nothing was sent to an unknown server"
    );

    let right = tls::parse_fingerprint(&sim.fingerprint()).unwrap();
    assert_eq!(
        pinned(right)
            .read(&ctx, &inputs(2, 40), None)
            .await
            .unwrap(),
        None
    );
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn the_infra_section_reads_its_files_and_names_a_missing_one() {
    let sim = ProxmoxSim::start(SimOptions::default()).await;
    let infra_toml = format!(
        r#"
        endpoint = "{}"
        token_id = "{}"
        token_secret_file = "{}"
        ca_file = "{}"
        nodes = ["pve1"]
        template_vmid = 9000
        storage = "linstor-nvme"
        bridge = "vmbr0"
        ipv4 = {{ prefix_length = 24, gateway = "192.0.2.1", first = "192.0.2.10", last = "192.0.2.20" }}
        "#,
        sim.endpoint(),
        sim.options().token_id,
        sim.token_secret_file().display(),
        sim.ca_file().display(),
    );
    let mut infra: fediversity_model::infra::ProxmoxInfra = toml::from_str(&infra_toml).unwrap();
    let pool: Arc<MemoryAddressPool> = Arc::default();
    let provider = ProxmoxProvider::from_infra(&infra, pool.clone()).unwrap();
    let outputs = provider
        .create(&ctx(OPERATOR, ADDRESS), &inputs(1, 10))
        .await
        .unwrap();
    assert_eq!(outputs.values["ipv4"], "192.0.2.10");
    assert!(
        !outputs.values.contains_key("ipv6"),
        "no IPv6 pool, no IPv6 address"
    );

    // A pinned fingerprint from infra.toml is checked on the connection, and a malformed one
    // is refused before any.
    infra.fingerprint = Some("AB:".repeat(31) + "AB");
    let pinned_wrong = ProxmoxProvider::from_infra(&infra, pool.clone()).unwrap();
    let error = pinned_wrong
        .create(&ctx(OPERATOR, "vm.other"), &inputs(1, 10))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    infra.fingerprint = Some("not-hex".to_owned());
    let error = ProxmoxProvider::from_infra(&infra, pool.clone()).unwrap_err();
    assert!(
        error.to_string().contains("[proxmox] fingerprint"),
        "{error}"
    );
    infra.fingerprint = Some(sim.fingerprint());
    ProxmoxProvider::from_infra(&infra, pool.clone()).unwrap();

    infra.token_secret_file = "/nonexistent/token".into();
    let error = ProxmoxProvider::from_infra(&infra, pool).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("API token secret file /nonexistent/token"),
        "{error}"
    );
    assert_conforms(&sim.requests());
}

#[tokio::test]
async fn every_request_and_answer_of_a_whole_life_matches_the_api_schema() {
    let (sim, provider, _pool) = setup().await;
    let ctx = ctx(OPERATOR, ADDRESS);
    let outputs = provider.create(&ctx, &inputs(2, 40)).await.unwrap();
    provider
        .update(&ctx, &inputs(3, 50), &outputs)
        .await
        .unwrap();
    provider
        .read(&ctx, &inputs(3, 50), Some(&outputs))
        .await
        .unwrap();
    provider
        .delete(&ctx, &inputs(3, 50), &outputs, Retention::Keep)
        .await
        .unwrap();
    provider
        .delete(&ctx, &inputs(3, 50), &outputs, Retention::Delete)
        .await
        .unwrap();
    sim.fail_next_task(TaskFailure {
        task_type: "qmclone".to_owned(),
        exitstatus: "clone failed".to_owned(),
        log: vec!["it broke".to_owned()],
    });
    provider.create(&ctx, &inputs(2, 40)).await.unwrap_err();

    let requests = sim.requests();
    let mut operations: Vec<String> = requests
        .iter()
        .map(|r| {
            let op = ApiSchema::get().operation(&r.method, &r.path).unwrap();
            format!("{} {}", r.method, op.template)
        })
        .collect();
    operations.sort();
    operations.dedup();
    assert_eq!(
        operations,
        [
            "DELETE /nodes/{node}/qemu/{vmid}",
            "GET /cluster/nextid",
            "GET /cluster/resources",
            "GET /nodes/{node}/qemu/{vmid}/agent/file-read",
            "GET /nodes/{node}/qemu/{vmid}/config",
            "GET /nodes/{node}/qemu/{vmid}/pending",
            "GET /nodes/{node}/qemu/{vmid}/status/current",
            "GET /nodes/{node}/tasks/{upid}/log",
            "GET /nodes/{node}/tasks/{upid}/status",
            "POST /nodes/{node}/qemu/{vmid}/agent/ping",
            "POST /nodes/{node}/qemu/{vmid}/clone",
            "POST /nodes/{node}/qemu/{vmid}/status/reboot",
            "POST /nodes/{node}/qemu/{vmid}/status/start",
            "POST /nodes/{node}/qemu/{vmid}/status/stop",
            "PUT /nodes/{node}/qemu/{vmid}/config",
            "PUT /nodes/{node}/qemu/{vmid}/resize",
        ],
        "the whole life touches every operation the provider uses"
    );
    assert!(
        requests.iter().all(|r| r.status != Some(400)),
        "no request failed the parameter check"
    );
    assert_conforms(&requests);
}

#[tokio::test]
async fn a_rotated_deployment_key_changes_cloud_init_in_place() {
    let (sim, provider, _pool) = setup().await;
    let ctx = ctx(OPERATOR, ADDRESS);
    let (outputs, vmid) = create(&provider, &ctx).await;
    let rotated_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOQ3HAL6vDJkTsQIT7yHBRBwfhzAFW4YAOe4HGMhJiJo fediversity-deploy";
    let mut rotated = inputs(2, 40);
    rotated["ssh_public_key"] = json!(rotated_key);

    let changes = provider.diff(&ADDRESS.parse().unwrap(), &inputs(2, 40), &rotated);
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind))
            .collect::<Vec<_>>(),
        [("ssh_public_key", ChangeKind::InPlace)],
        "a new key must not replace the VM"
    );
    let updated = provider.update(&ctx, &rotated, &outputs).await.unwrap();
    assert_eq!(updated, outputs, "the same VM");
    let vm = sim.vm(vmid).unwrap();
    assert!(
        vm.config["sshkeys"].contains("AAAAIOQ3HAL6vDJkTsQIT7yH"),
        "cloud-init has the new key for future boots: {}",
        vm.config["sshkeys"]
    );
}
