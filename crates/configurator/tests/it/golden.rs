//! Golden graphs: the exact JSON the configurator produces, reviewed once and then held still.
//! `scripts/update-golden` rewrites them on purpose.

use fediversity_configurator::{admin_credential, configure};
use fediversity_model::ServiceKind;
use fediversity_model::graph::{ResourceAddress, ResourceKind};
use fediversity_testkit::golden::assert_golden;

use super::{golden_dir, infra, read_operator};

/// (operator input, infrastructure) pairs; the golden file is `<input>.<infra>.graph.json`.
const CASES: &[(&str, &str)] = &[
    ("mastodon", "example"),
    ("pixelfed", "example"),
    ("peertube", "example"),
    ("all-services", "example"),
    ("mastodon-off", "example"),
    ("nothing-enabled", "example"),
    ("all-services", "sandbox"),
    ("all-services", "infra-dedicated"),
    ("all-services-oidc", "example"),
    ("all-services-local", "sandbox"),
];

#[test]
fn graphs_match_their_golden_files() {
    for (input, infra_name) in CASES {
        let graph = configure(&read_operator(input), &infra(infra_name))
            .unwrap_or_else(|p| panic!("{input} on {infra_name}: {p}"));
        let json = serde_json::to_string_pretty(&graph).unwrap() + "\n";
        assert_golden(
            golden_dir().join(format!("{input}.{infra_name}.graph.json")),
            &json,
        );
    }
}

#[test]
fn the_admin_credentials_the_user_sync_reads_are_generated_and_reach_their_host() {
    let graph = configure(&read_operator("all-services"), &infra("example")).unwrap();
    for (kind, file) in [
        (ServiceKind::Mastodon, "admin-api-token"),
        (ServiceKind::Peertube, "admin-password"),
    ] {
        let address = admin_credential(kind).unwrap();
        let secret = &graph.resources[&address];
        assert_eq!(secret.provider, "secret", "{address}");
        assert_eq!(
            secret.inputs["generate"],
            if kind == ServiceKind::Mastodon {
                "hex"
            } else {
                "password"
            }
        );
        let host = ResourceAddress::new(ResourceKind::Nixos, kind.as_str()).unwrap();
        assert_eq!(
            graph.resources[&host].inputs["secrets"][file],
            address.output("value"),
            "{kind}"
        );
    }
    assert_eq!(admin_credential(ServiceKind::Pixelfed), None);
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    for (input, infra_name) in CASES {
        let render = || {
            serde_json::to_string(&configure(&read_operator(input), &infra(infra_name)).unwrap())
                .unwrap()
        };
        assert_eq!(render(), render(), "{input} on {infra_name}");
    }
}

#[test]
fn turning_a_service_off_removes_its_resources_and_records_retention() {
    let off = configure(&read_operator("mastodon-off"), &infra("example")).unwrap();
    assert!(
        off.resources
            .keys()
            .all(|a| !a.name().starts_with("mastodon")),
        "{:?}",
        off.resources.keys()
    );
    assert_eq!(
        off.retention[&fediversity_model::ServiceKind::Mastodon],
        fediversity_model::Retention::Keep
    );
    let all = configure(&read_operator("all-services"), &infra("example")).unwrap();
    let removed: Vec<String> = all
        .resources
        .keys()
        .filter(|a| !off.resources.contains_key(*a))
        .map(ToString::to_string)
        .collect();
    assert!(
        removed.iter().all(|a| a.contains("mastodon")),
        "{removed:?}"
    );
    assert!(
        removed.contains(&"bucket.mastodon-media".to_owned()),
        "{removed:?}"
    );
}

#[test]
fn refusals_name_the_field_and_the_numbers() {
    let mut config = read_operator("all-services");
    let problems = |config: &fediversity_model::OperatorConfig, infra_name: &str| -> Vec<String> {
        configure(config, &infra(infra_name))
            .err()
            .map(|p| p.as_slice().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    };
    if let Some(peertube) = config.services.peertube.as_mut() {
        peertube.subdomain = Some("s3".try_into().unwrap());
    }
    assert_eq!(
        problems(&config, "infra-dedicated"),
        [
            "services.peertube.subdomain: `s3.example.org` and `s3-web.example.org` are reserved for the operator's own S3 storage: choose another subdomain"
        ]
    );
    assert_eq!(
        problems(&config, "example"),
        Vec::<String>::new(),
        "only dedicated mode reserves names"
    );
    for service in [
        &mut config.services.mastodon,
        &mut config.services.pixelfed,
        &mut config.services.peertube,
    ] {
        if let Some(service) = service.as_mut() {
            service.size = "large".into();
        }
    }
    assert_eq!(
        problems(&config, "example"),
        [
            "services: needs 24 vCPUs, 8 more than the 16 operator `example-org` may use; choose smaller sizes or fewer services, or ask the hosting provider to raise the limit",
            "services: needs 49152 MiB of memory, 16384 more than the 32768 operator `example-org` may use; choose smaller sizes or fewer services, or ask the hosting provider to raise the limit",
        ]
    );
    assert_eq!(
        problems(&config, "infra-dedicated"),
        [
            "services.mastodon.size: unknown size `large`: the sizes on offer are medium, small",
            "services.peertube.size: unknown size `large`: the sizes on offer are medium, small",
            "services.peertube.subdomain: `s3.example.org` and `s3-web.example.org` are reserved for the operator's own S3 storage: choose another subdomain",
            "services.pixelfed.size: unknown size `large`: the sizes on offer are medium, small",
        ]
    );
}

#[test]
fn mail_settings_reach_every_host_with_the_password_as_a_secret_reference() {
    let graph = configure(&read_operator("all-services"), &infra("example")).unwrap();
    let password: fediversity_model::graph::ResourceAddress =
        "secret.smtp-password".parse().unwrap();
    assert_eq!(
        graph.resources[&password].inputs,
        serde_json::json!({"file": "/etc/fediversity/smtp-password"})
    );
    for service in ["mastodon", "pixelfed", "peertube"] {
        let host = &graph.resources[&format!("nixos.{service}").parse().unwrap()].inputs;
        let mail = &host["spec"]["mail"];
        assert_eq!(mail["host"], "smtp.example.net", "{service}");
        assert_eq!(mail["tls"], "starttls");
        assert_eq!(
            mail["from"],
            format!("example-org-{service}@mail.example.net")
        );
        assert!(mail.get("password").is_none(), "{mail}");
        assert_eq!(
            host["secrets"]["smtp-password"],
            "${secret.smtp-password.value}"
        );
        assert_eq!(
            host["spec"]["secret_files"]["smtp-password"],
            "/var/lib/fediversity/secrets/smtp-password"
        );
    }
    let sandbox = configure(&read_operator("all-services"), &infra("sandbox")).unwrap();
    assert!(!sandbox.resources.contains_key(&password));
    assert!(
        sandbox
            .resources
            .values()
            .all(|r| r.inputs["spec"].get("mail").is_none()),
        "no relay, no mail"
    );
}

/// The `identity` section and secret files of `service`'s host in `graph`.
fn host_identity(
    graph: &fediversity_model::graph::DesiredGraph,
    service: &str,
) -> (serde_json::Value, serde_json::Value) {
    let inputs = &graph.resources[&format!("nixos.{service}").parse().unwrap()].inputs;
    (
        inputs["spec"]["identity"].clone(),
        inputs["secrets"].clone(),
    )
}

#[test]
fn without_an_identity_provider_the_panel_signs_members_in_to_every_service() {
    let mut config = read_operator("all-services");
    config.identity = None;
    let graph = configure(&config, &infra("example")).unwrap();
    for (service, callback) in [
        (
            "mastodon",
            "https://social.example.org/auth/auth/openid_connect/callback",
        ),
        ("pixelfed", "https://photos.example.org/auth/oidc/callback"),
        (
            "peertube",
            "https://video.example.org/plugins/auth-openid-connect/router/code-cb",
        ),
    ] {
        let client = &graph.resources[&format!("oidc_client.{service}").parse().unwrap()];
        assert_eq!(client.provider, "oidc");
        assert_eq!(
            client.service.map(|s| s.to_string()),
            Some(service.to_owned())
        );
        assert_eq!(
            client.inputs,
            serde_json::json!({
                "redirect_uris": [callback],
                "client_secret": format!("${{secret.{service}-oidc-client.value}}"),
            })
        );
        let secret = &graph.resources[&format!("secret.{service}-oidc-client").parse().unwrap()];
        assert!(
            secret.holds_data,
            "kept with the service's data, like its other keys"
        );
        assert_eq!(
            secret.inputs,
            serde_json::json!({"generate": "password", "length": 48})
        );
        let (identity, secrets) = host_identity(&graph, service);
        assert_eq!(
            identity,
            serde_json::json!({"oidc": {
                "issuer": format!("${{oidc_client.{service}.issuer}}"),
                "client_id": format!("${{oidc_client.{service}.client_id}}"),
                "groups_claim": "groups",
                "admin_group": "admins",
                "authorization_endpoint": "https://panel.example.net/oidc/authorize",
                "token_endpoint": "https://panel.example.net/oidc/token",
                "userinfo_endpoint": "https://panel.example.net/oidc/userinfo",
                "panel": true,
            }})
        );
        assert_eq!(
            secrets["identity-client-secret"],
            format!("${{secret.{service}-oidc-client.value}}")
        );
    }
    // No panel, no identity provider: local accounts only.
    let sandbox = configure(&config, &infra("sandbox")).unwrap();
    assert!(sandbox.resources.values().all(|r| r.provider != "oidc"));
    assert!(
        sandbox
            .resources
            .values()
            .all(|r| r.inputs["spec"].get("identity").is_none())
    );
}

#[test]
fn the_operators_own_provider_is_checked_before_any_host_uses_it() {
    let graph = configure(&read_operator("all-services"), &infra("example")).unwrap();
    let check = &graph.resources[&"identity.ldap".parse().unwrap()];
    assert_eq!(check.provider, "identity");
    assert_eq!(check.service, None);
    assert_eq!(
        check.inputs["bind_password"],
        "${secret.identity-bind-password.value}"
    );
    assert!(check.inputs["ldap"].get("bind_password").is_none());
    assert!(
        graph
            .resources
            .keys()
            .all(|a| a.kind().as_str() != "oidc_client")
    );
    for service in ["mastodon", "peertube"] {
        let (identity, secrets) = host_identity(&graph, service);
        assert_eq!(identity["ldap"]["checked"], "${identity.ldap.checked}");
        assert!(identity["ldap"].get("bind_password").is_none());
        assert_eq!(
            secrets["identity-bind-password"],
            "${secret.identity-bind-password.value}"
        );
    }
    let (identity, secrets) = host_identity(&graph, "pixelfed");
    assert!(
        identity.is_null(),
        "Pixelfed keeps local accounts with LDAP"
    );
    assert!(secrets.get("identity-bind-password").is_none());

    let oidc = configure(&read_operator("all-services-oidc"), &infra("example")).unwrap();
    let check = &oidc.resources[&"identity.oidc".parse().unwrap()];
    assert_eq!(
        check.inputs["oidc"]["issuer"],
        "https://id.example.org/realms/staff"
    );
    assert!(check.inputs["oidc"].get("client_secret").is_none());
    for service in ["mastodon", "pixelfed", "peertube"] {
        let (identity, secrets) = host_identity(&oidc, service);
        for output in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "checked",
        ] {
            assert_eq!(
                identity["oidc"][output],
                format!("${{identity.oidc.{output}}}")
            );
        }
        assert_eq!(
            secrets["identity-client-secret"],
            "${secret.identity-client-secret.value}"
        );
    }

    // PeerTube's LDAP plugin has no StartTLS: behind it, PeerTube keeps local accounts.
    let mut start_tls = read_operator("all-services");
    if let Some(fediversity_model::operator::IdentityProvider::Ldap(ldap)) =
        start_tls.identity.as_mut()
    {
        ldap.url = "ldap://ldap.example.org".try_into().unwrap();
        ldap.start_tls = true;
    }
    let graph = configure(&start_tls, &infra("example")).unwrap();
    assert!(host_identity(&graph, "peertube").0.is_null());
    assert_eq!(
        host_identity(&graph, "mastodon").0["ldap"]["url"],
        "ldap://ldap.example.org"
    );

    // The sandbox reaches no directory: no check there, and nothing waits for one.
    let sandbox = configure(&read_operator("all-services"), &infra("sandbox")).unwrap();
    assert!(
        sandbox
            .resources
            .keys()
            .all(|a| a.kind().as_str() != "identity")
    );
    let (identity, _) = host_identity(&sandbox, "mastodon");
    assert!(identity["ldap"].get("checked").is_none());
}
