//! The `nixos` provider against real hosts: network namespaces with their own sshd and Nix
//! store (`fediversity_testkit::hosts`), deployed with the test system
//! (`crates/testkit/fixtures/nixos-test-system`), which records each activation under the
//! host's root and serves its health endpoint with python3. Needs root, like the hosts.

use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fediversity_engine::provider::{ErrorKind, Outputs, Provider};
use fediversity_providers::{NixosOptions, NixosProvider};
use fediversity_testkit::hosts::{TestHost, TestHosts, test_system_flake};
use serde_json::{Value, json};

use crate::{Events, ctx, ctx_with};

fn provider(hosts: &TestHosts) -> NixosProvider {
    NixosProvider::new(NixosOptions {
        hosts_root: Some(hosts.roots()),
        // The test machine has no Internet access: Nix must not wait on cache.nixos.org.
        nix_options: [("substituters".to_owned(), String::new())].into(),
        activation_timeout: Duration::from_secs(30),
        health_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(50),
        ..NixosOptions::default()
    })
}

/// The inputs the configurator would make for `host`, with the test system steered by `test`.
fn inputs(hosts: &TestHosts, host: &TestHost, test: Value, secrets: Value) -> Value {
    json!({
        "build_on": "deployer",
        "flake": test_system_flake(),
        "host": host.address().to_string(),
        "host_key": host.host_key(),
        "secrets": secrets,
        "spec": {"service": "mastodon", "fqdn": "social.example.org", "test": test},
        "ssh_private_key": hosts.client_private_key(),
    })
}

/// What the test system last wrote as its label on `host`.
fn label(host: &TestHost) -> String {
    std::fs::read_to_string(host.root().join("var/lib/fedi-test/label"))
        .unwrap()
        .trim()
        .to_owned()
}

/// How many times a test system was activated on `host`.
fn activations(host: &TestHost) -> usize {
    std::fs::read_to_string(host.root().join("var/lib/fedi-test/activations"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn generation(outputs: &Outputs) -> u64 {
    outputs.values["generation"].as_u64().unwrap()
}

fn progress(events: &Events) -> Vec<String> {
    events
        .all()
        .into_iter()
        .filter_map(|event| match event {
            fediversity_engine::events::Event::Progress { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn first_unchanged_and_changed_deploys() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let secrets = json!({"admin-password": "first-password"});

    let events = Arc::new(Events::default());
    let c = ctx_with("example-org", "nixos.mastodon", events.clone());
    let first = nixos
        .create(
            &c,
            &inputs(&hosts, host, json!({"label": "v1"}), secrets.clone()),
        )
        .await
        .unwrap();
    assert_eq!(generation(&first), 1);
    let system = first.values["system"].as_str().unwrap().to_owned();
    assert!(system.starts_with("/nix/store/"), "{system}");
    assert!(
        host.root().join(system.trim_start_matches('/')).exists(),
        "the closure is in the host's own store"
    );
    assert_eq!((label(host), activations(host)), ("v1".to_owned(), 1));
    assert_eq!(
        host.logins(),
        1,
        "copy, secrets, activation and health share one connection"
    );
    let phases: Vec<String> = progress(&events)
        .iter()
        .map(|m| m.split(':').next().unwrap().to_owned())
        .collect();
    for phase in ["build", "copy", "secrets", "activate", "health"] {
        assert!(
            phases.iter().any(|p| p == phase),
            "no {phase} in {phases:?}"
        );
    }
    let secrets_dir = host.root().join("var/lib/fediversity/secrets");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secrets_dir), 0o700);
    assert_eq!(mode(&secrets_dir.join("admin-password")), 0o600);
    assert_eq!(
        std::fs::read_to_string(secrets_dir.join("admin-password")).unwrap(),
        "first-password"
    );

    // The same system again: nothing is copied or switched.
    let events = Arc::new(Events::default());
    let c = ctx_with("example-org", "nixos.mastodon", events.clone());
    let started = Instant::now();
    let again = nixos
        .update(
            &c,
            &inputs(&hosts, host, json!({"label": "v1"}), secrets.clone()),
            &first,
        )
        .await
        .unwrap();
    let unchanged_took = started.elapsed();
    assert_eq!(again, first);
    assert_eq!(activations(host), 1, "an unchanged system is not switched");
    assert_eq!(host.logins(), 2);
    let messages = progress(&events);
    assert!(
        messages.iter().any(|m| m.starts_with("copy: skipped")),
        "{messages:?}"
    );
    assert!(
        !messages.iter().any(|m| m.starts_with("activate")),
        "{messages:?}"
    );
    assert!(
        unchanged_took < Duration::from_secs(5),
        "{unchanged_took:?}"
    );

    // A changed system: a new generation, copied and switched.
    let changed = nixos
        .update(
            &ctx("example-org", "nixos.mastodon"),
            &inputs(&hosts, host, json!({"label": "v2"}), secrets),
            &first,
        )
        .await
        .unwrap();
    assert_eq!(generation(&changed), 2);
    assert_ne!(changed.values["system"], first.values["system"]);
    assert_eq!((label(host), activations(host)), ("v2".to_owned(), 2));

    let read = nixos
        .read(
            &ctx("example-org", "nixos.mastodon"),
            &inputs(&hosts, host, json!({"label": "v2"}), json!({})),
            Some(&changed),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.outputs, changed);
}

#[tokio::test]
async fn failed_health_checks_and_activations_roll_back() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");

    // A first system that fails has nothing to roll back to, and says so.
    let error = nixos
        .create(
            &c,
            &inputs(
                &hosts,
                host,
                json!({"label": "v0", "healthy": false}),
                json!({}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(
        error.message.contains("no earlier generation"),
        "{}",
        error.message
    );

    let good = nixos
        .create(&c, &inputs(&hosts, host, json!({"label": "v1"}), json!({})))
        .await
        .unwrap();
    assert_eq!(label(host), "v1");

    let failed_update = |test: Value| {
        let inputs = inputs(&hosts, host, test, json!({}));
        let (nixos, c, good) = (&nixos, &c, &good);
        async move { nixos.update(c, &inputs, good).await.unwrap_err() }
    };
    let error = failed_update(json!({"label": "v2", "healthy": false})).await;
    assert_eq!(error.kind, ErrorKind::Permanent, "{}", error.message);
    assert!(
        error
            .message
            .contains("`test-http` (http://127.0.0.1:8080/health) answered HTTP 404"),
        "{}",
        error.message
    );
    let back = format!(
        "rolled {} back to generation {}",
        host.address(),
        generation(&good)
    );
    assert!(error.message.contains(&back), "{}", error.message);
    assert_eq!(label(host), "v1", "the host ends on the old system");

    let error = failed_update(json!({"label": "v3", "health_port": 8081})).await;
    assert!(
        error
            .message
            .contains("nothing accepts connections on 127.0.0.1:8081"),
        "{}",
        error.message
    );
    assert!(error.message.contains(&back), "{}", error.message);
    assert_eq!(label(host), "v1");

    let error = failed_update(json!({"label": "v3", "units": ["web.service"]})).await;
    // Test hosts run no systemd: the unit cannot be active.
    assert!(
        error.message.contains("web.service is unknown ("),
        "{}",
        error.message
    );
    assert!(error.message.contains(&back), "{}", error.message);
    assert_eq!(label(host), "v1");

    let error = failed_update(json!({"label": "v3", "activation_fails": true})).await;
    assert!(
        error.message.contains("exited with status 3"),
        "{}",
        error.message
    );
    assert!(error.message.contains(&back), "{}", error.message);
    assert_eq!(label(host), "v1");

    let read = nixos
        .read(
            &c,
            &inputs(&hosts, host, json!({"label": "v1"}), json!({})),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.outputs.values["system"], good.values["system"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_outlives_a_dropped_connection() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");
    let slow = inputs(
        &hosts,
        host,
        json!({"label": "slow", "activation_seconds": 3}),
        json!({}),
    );
    let deploy = nixos.create(&c, &slow);
    let drop_when_activating = async {
        while activations(host) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let logins = host.logins();
        tokio::task::block_in_place(|| host.drop_connections());
        logins
    };
    let (deployed, logins_before_drop) = tokio::join!(deploy, drop_when_activating);
    let deployed = deployed.unwrap();
    assert_eq!(generation(&deployed), 1);
    assert_eq!((label(host), activations(host)), ("slow".to_owned(), 1));
    assert!(
        host.logins() > logins_before_drop,
        "the provider logged in again to follow the activation"
    );
}

#[tokio::test]
async fn wrong_host_keys_refused_keys_and_closed_ports_fail_clearly() {
    let hosts = TestHosts::start(2);
    let (host, other) = (&hosts.hosts()[0], &hosts.hosts()[1]);
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");

    let mut mismatched = inputs(&hosts, host, json!({}), json!({}));
    mismatched["host_key"] = json!(other.host_key());
    let error = nixos.create(&c, &mismatched).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{}", error.message);
    assert!(
        error.message.contains("host key verification failed"),
        "{}",
        error.message
    );

    let stranger = fediversity_providers::SshKeyProvider::new()
        .create(&c, &json!({"algorithm": "ed25519"}))
        .await
        .unwrap();
    let mut refused = inputs(&hosts, host, json!({}), json!({}));
    refused["ssh_private_key"] = stranger.values["private_key"].clone();
    let error = nixos.create(&c, &refused).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{}", error.message);
    assert!(
        error.message.contains("refused the deployment key"),
        "{}",
        error.message
    );

    other.stop_sshd();
    let started = Instant::now();
    let error = nixos
        .create(&c, &inputs(&hosts, other, json!({}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{}", error.message);
    assert!(
        error.message.contains("connection refused"),
        "{}",
        error.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "one attempt, no retry loop"
    );
    assert_eq!(activations(host) + activations(other), 0);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_rotated_secret_reaches_the_host_and_nothing_else() {
    let (logs, _guard) = capture_logs();
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let events = Arc::new(Events::default());
    let c = ctx_with("example-org", "nixos.mastodon", events.clone());
    let (old, new) = ("poison-0ld-v4lue-8c1f", "poison-n3w-v4lue-77ad");
    let first = nixos
        .create(
            &c,
            &inputs(
                &hosts,
                host,
                json!({}),
                json!({"secret-key-base": old, "stale": old}),
            ),
        )
        .await
        .unwrap();
    let rotated = nixos
        .update(
            &c,
            &inputs(&hosts, host, json!({}), json!({"secret-key-base": new})),
            &first,
        )
        .await
        .unwrap();
    assert_eq!(rotated, first, "a secret is not part of the system");
    let secrets_dir = host.root().join("var/lib/fediversity/secrets");
    assert_eq!(
        std::fs::read_to_string(secrets_dir.join("secret-key-base")).unwrap(),
        new
    );
    assert!(
        !secrets_dir.join("stale").exists(),
        "secrets no longer wanted are removed"
    );

    // A failing deployment's error, too, must not carry it.
    let mut broken = inputs(
        &hosts,
        host,
        json!({"healthy": false}),
        json!({"secret-key-base": new}),
    );
    broken["spec"]["service"] = json!("broken");
    let error = nixos.update(&c, &broken, &first).await.unwrap_err();

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("host deployed"),
        "the logs were captured: {logs}"
    );
    for value in [old, new] {
        assert!(!logs.contains(value), "a secret in the logs");
        assert!(!events.json().contains(value), "a secret in the events");
        assert!(!error.message.contains(value), "a secret in an error");
    }
    let found = std::process::Command::new("grep")
        .args(["-rlF", new])
        .arg(host.root().join("nix"))
        .output()
        .unwrap();
    assert_eq!(
        found.status.code(),
        Some(1),
        "a secret in the host's store: {found:?}"
    );
}

/// A new deployment key: (private, public).
async fn deploy_key(name: &str) -> (String, String) {
    let made = fediversity_providers::SshKeyProvider::new()
        .create(
            &ctx("example-org", &format!("sshkey.{name}")),
            &json!({"algorithm": "ed25519"}),
        )
        .await
        .unwrap();
    let text = |output: &str| made.values[output].as_str().unwrap().to_owned();
    (text("private_key"), text("public_key"))
}

/// The inputs for `host` logging in with `private` and authorizing `public` (the spec's
/// `deploy_keys`, as the configurator writes them).
fn keyed_inputs(hosts: &TestHosts, host: &TestHost, private: &str, public: &str) -> Value {
    let mut inputs = inputs(hosts, host, json!({"label": "v1"}), json!({}));
    inputs["ssh_private_key"] = json!(private);
    inputs["spec"]["deploy_keys"] = json!([public]);
    inputs
}

#[tokio::test]
async fn a_rotated_deployment_key_is_authorized_before_the_old_one_stops_working() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");
    let (old, old_public) = deploy_key("old").await;
    let (new, new_public) = deploy_key("new").await;
    // As cloud-init would: the VM lets the first deployment key in.
    std::fs::create_dir_all(host.authorized_keys().parent().unwrap()).unwrap();
    std::fs::write(host.authorized_keys(), format!("{old_public}\n")).unwrap();

    let first = nixos
        .create(&c, &keyed_inputs(&hosts, host, &old, &old_public))
        .await
        .unwrap();
    assert!(first.sensitive.contains("ssh_private_key"), "{first:?}");
    assert_eq!(first.values["ssh_private_key"], json!(old));

    // The new key alone is refused before the rotation: the host does not know it yet.
    let refused = nixos
        .update(
            &c,
            &keyed_inputs(&hosts, host, &new, &new_public),
            &Outputs::default(),
        )
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("refused the deployment key"),
        "{refused:?}"
    );
    assert!(!refused.message.contains(&new) && !refused.message.contains(&old));

    // The rotation: the recorded (old) key lets the provider in, the new system authorizes the
    // new key, and the new key is proven before the record forgets the old one.
    let rotated = nixos
        .update(&c, &keyed_inputs(&hosts, host, &new, &new_public), &first)
        .await
        .unwrap();
    assert_eq!(rotated.values["ssh_private_key"], json!(new));
    assert_eq!(
        std::fs::read_to_string(host.authorized_keys())
            .unwrap()
            .trim(),
        new_public.trim(),
        "the old key is no longer authorized"
    );

    // A run interrupted after the activation, whose record still holds the old key, converges:
    // the new key is offered first and let in.
    let again = nixos
        .update(&c, &keyed_inputs(&hosts, host, &new, &new_public), &first)
        .await
        .unwrap();
    assert_eq!(
        generation(&again),
        generation(&rotated),
        "nothing left to do"
    );

    // The old key alone is now refused.
    let locked_out = nixos
        .read(&c, &keyed_inputs(&hosts, host, &old, &old_public), None)
        .await
        .unwrap_err();
    assert!(
        locked_out.message.contains("refused the deployment key"),
        "{locked_out:?}"
    );
}

#[tokio::test]
async fn a_system_that_does_not_authorize_the_new_key_is_rolled_back() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");
    let (old, old_public) = deploy_key("old").await;
    let (new, _) = deploy_key("new").await;
    std::fs::create_dir_all(host.authorized_keys().parent().unwrap()).unwrap();
    std::fs::write(host.authorized_keys(), format!("{old_public}\n")).unwrap();
    let first = nixos
        .create(&c, &keyed_inputs(&hosts, host, &old, &old_public))
        .await
        .unwrap();

    // The spec still names the old key only: the new key would never be let in.
    let mut wrong = keyed_inputs(&hosts, host, &new, &old_public);
    wrong["spec"]["test"]["label"] = json!("v2");
    let error = nixos.update(&c, &wrong, &first).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error:?}");
    assert!(
        error
            .message
            .contains("does not let the new deployment key in"),
        "{error:?}"
    );
    assert!(error.message.contains("back to generation 1"), "{error:?}");
    assert_eq!(label(host), "v1", "the previous system runs again");
    // The old key still works: nothing was locked out.
    nixos
        .read(
            &c,
            &keyed_inputs(&hosts, host, &old, &old_public),
            Some(&first),
        )
        .await
        .unwrap()
        .unwrap();
}

/// Runs `deploy` until `host` has recorded `n` activations, then drops it: what a deployer
/// killed at that moment leaves behind (the activation itself runs on, detached, on the host).
async fn interrupt_when_activated(
    deploy: impl std::future::Future<Output = Result<Outputs, fediversity_engine::ProviderError>>,
    host: &TestHost,
    n: usize,
) {
    tokio::select! {
        ended = deploy => panic!("the deployment ended before it could be interrupted: {ended:?}"),
        () = async {
            while activations(host) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => {}
    }
}

/// The generations of `host`'s system profile (`system-<N>-link`).
fn profile_generations(host: &TestHost) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(host.root().join("nix/var/nix/profiles"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("system-")?
                .strip_suffix("-link")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test]
async fn a_deployment_interrupted_after_the_switch_is_adopted_not_repeated() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");
    let first = nixos
        .create(&c, &inputs(&hosts, host, json!({"label": "v1"}), json!({})))
        .await
        .unwrap();
    let v2 = inputs(
        &hosts,
        host,
        json!({"label": "v2", "activation_seconds": 2}),
        json!({}),
    );

    interrupt_when_activated(nixos.update(&c, &v2, &first), host, 2).await;
    // The profile already points at v2, but v2 never passed its health check: the host does
    // not count as running it.
    let events = Arc::new(Events::default());
    let again = nixos
        .update(
            &ctx_with("example-org", "nixos.mastodon", events.clone()),
            &v2,
            &first,
        )
        .await
        .unwrap();
    assert_eq!(generation(&again), 2);
    assert_eq!(
        (label(host), activations(host)),
        ("v2".to_owned(), 2),
        "the interrupted activation was followed to its end, not started again"
    );
    assert_eq!(profile_generations(host), [1, 2]);
    let messages = progress(&events);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("following generation 2")),
        "{messages:?}"
    );
    let unchanged = nixos.update(&c, &v2, &again).await.unwrap();
    assert_eq!((unchanged, activations(host)), (again, 2));
}

#[tokio::test]
async fn a_deployment_whose_activation_died_is_activated_again_on_the_same_generation() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");
    let first = nixos
        .create(&c, &inputs(&hosts, host, json!({"label": "v1"}), json!({})))
        .await
        .unwrap();
    let slow = inputs(
        &hosts,
        host,
        json!({"label": "v2", "activation_seconds": 5}),
        json!({}),
    );

    interrupt_when_activated(nixos.update(&c, &slow, &first), host, 2).await;
    // The host restarts mid-activation: the activation dies without an exit status.
    let deploy_dir = host.root().join("var/lib/fediversity/deploy");
    for entry in std::fs::read_dir(&deploy_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pid") {
            let pid = std::fs::read_to_string(&path).unwrap();
            std::process::Command::new("kill")
                .args(["-9", "--", &format!("-{}", pid.trim())])
                .status()
                .unwrap();
        }
    }

    let again = nixos.update(&c, &slow, &first).await.unwrap();
    assert_eq!(generation(&again), 2, "the generation is reused");
    assert_eq!(profile_generations(host), [1, 2]);
    assert_eq!(
        (label(host), activations(host)),
        ("v2".to_owned(), 3),
        "activated once more, to its end"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&deploy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        leftovers,
        ["deployed"],
        "the ended activations' files are removed"
    );
}

/// Collects the `tracing` output of the current thread until dropped.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn a_failed_deployment_puts_the_previous_secrets_back() {
    let (logs, _guard) = capture_logs();
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let events = Arc::new(Events::default());
    let c = ctx_with("example-org", "nixos.mastodon", events.clone());
    let (old, new) = ("poison-0ld-s3cret-41c2", "poison-n3w-s3cret-9e07");
    let secret = |value: &str| json!({"secret-key-base": value, "smtp-password": "same"});
    let secrets_dir = host.root().join("var/lib/fediversity/secrets");
    let in_force = || std::fs::read_to_string(secrets_dir.join("secret-key-base")).unwrap();
    let first = nixos
        .create(
            &c,
            &inputs(&hosts, host, json!({"label": "v1"}), secret(old)),
        )
        .await
        .unwrap();

    // A new system with a rotated secret fails its health check: the old system comes back
    // with the old secret.
    let error = nixos
        .update(
            &c,
            &inputs(
                &hosts,
                host,
                json!({"label": "v2", "healthy": false}),
                secret(new),
            ),
            &first,
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("rolled ") && error.message.contains("previous secrets are back"),
        "{}",
        error.message
    );
    assert_eq!((label(host), in_force()), ("v1".to_owned(), old.to_owned()));

    // The same system with a rotated secret, and a service that no longer answers: the
    // secret goes back too.
    let http_pid = std::fs::read_to_string(host.root().join("var/lib/fedi-test/http.pid")).unwrap();
    std::process::Command::new("kill")
        .args(["-9", http_pid.trim()])
        .status()
        .unwrap();
    let error = nixos
        .update(
            &c,
            &inputs(&hosts, host, json!({"label": "v1"}), secret(new)),
            &first,
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("previous secrets are back"),
        "{}",
        error.message
    );
    assert_eq!(in_force(), old);

    // A good deployment with the rotated secret keeps it, and only its set remains.
    let rotated = nixos
        .update(
            &c,
            &inputs(&hosts, host, json!({"label": "v3"}), secret(new)),
            &first,
        )
        .await
        .unwrap();
    assert_eq!((generation(&rotated), in_force()), (3, new.to_owned()));
    let sets = std::fs::read_dir(host.root().join("var/lib/fediversity/secret-sets"))
        .unwrap()
        .count();
    assert_eq!(sets, 1, "the earlier secret sets are removed");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("rolled back"),
        "the logs were captured: {logs}"
    );
    for value in [old, new] {
        assert!(!logs.contains(value), "a secret in the logs");
        assert!(!events.json().contains(value), "a secret in the events");
        assert!(!error.message.contains(value), "a secret in an error");
    }
}

#[tokio::test]
async fn a_system_built_on_the_host_is_deployed_unchanged_and_rolled_back_like_one_copied() {
    let hosts = TestHosts::start(1);
    let host = &hosts.hosts()[0];
    let nixos = provider(&hosts);
    let c = ctx("example-org", "nixos.mastodon");
    // A label no other run used: the system cannot be in the deployer's store already.
    let unique = format!(
        "on-host-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let on_host = |test: Value| {
        let mut inputs = inputs(&hosts, host, test, json!({"admin-password": "first"}));
        inputs["build_on"] = json!("target");
        inputs
    };
    let events = Arc::new(Events::default());
    let first = nixos
        .create(
            &ctx_with("example-org", "nixos.mastodon", events.clone()),
            &on_host(json!({"label": unique})),
        )
        .await
        .unwrap();
    let system = first.values["system"].as_str().unwrap();
    assert!(
        host.root().join(system.trim_start_matches('/')).exists(),
        "built in the host's store"
    );
    assert!(
        !std::path::Path::new(system).exists(),
        "not built on the deployer"
    );
    assert_eq!((label(host), activations(host)), (unique.clone(), 1));
    assert_eq!(
        host.logins(),
        1,
        "one connection for the copy, the build and the rest"
    );
    let messages = progress(&events);
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("build: ") && m.ends_with(&format!("on {}", host.address()))),
        "{messages:?}"
    );

    let again = nixos
        .update(&c, &on_host(json!({"label": unique})), &first)
        .await
        .unwrap();
    assert_eq!((again.clone(), activations(host)), (first.clone(), 1));

    let error = nixos
        .update(
            &c,
            &on_host(json!({"label": format!("{unique}-bad"), "healthy": false})),
            &first,
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("answered HTTP 404")
            && error.message.contains("back to generation 1"),
        "{}",
        error.message
    );
    assert_eq!(label(host), unique);

    // A system that does not build on the host: nothing is switched, and a rotated secret
    // does not stay in force without the system it was meant for.
    let mut broken = on_host(json!({"label": format!("{unique}-broken"), "build_fails": true}));
    broken["secrets"] = json!({"admin-password": "second"});
    let error = nixos.update(&c, &broken, &first).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{}", error.message);
    assert!(
        error.message.contains("the build fails as asked")
            && error.message.contains("previous secrets are back"),
        "{}",
        error.message
    );
    assert_eq!((label(host), activations(host)), (unique.clone(), 3));
    let secret = host
        .root()
        .join("var/lib/fediversity/secrets/admin-password");
    assert_eq!(std::fs::read_to_string(secret).unwrap(), "first");
}
