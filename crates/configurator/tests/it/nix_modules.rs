//! The NixOS modules in `nix/` against the host specs this crate produces: every `.nix` file
//! parses; the pure mapping (`nix/lib`) turns every golden host spec into the settings held in
//! `tests/golden/nix/`, with the services' S3 quirks and no secret out of place; the script that
//! makes environment files from secrets writes them and refuses what it cannot carry; and, where
//! a nixpkgs checkout is given (`FEDIVERSITY_NIXPKGS`), each service's module evaluates as a
//! whole NixOS system.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fediversity_testkit::golden::assert_golden;
use serde_json::Value;

use super::golden_dir;

/// The repository's `nix/` directory.
fn nix_dir() -> PathBuf {
    fediversity_testkit::workspace_root().join("nix")
}

/// Runs `nix-instantiate` with `args`, failing the test with the setup script's name when the
/// tool is missing.
fn nix_instantiate(args: &[&str]) -> Output {
    Command::new("nix-instantiate")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run nix-instantiate ({e}): run scripts/setup-test, which installs Debian's nix-bin")
        })
}

/// Fails the test with `what` and the command's error output unless it succeeded.
fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Evaluates `expr` strictly: its JSON value, or Nix's error message.
fn eval(expr: &str) -> Result<Value, String> {
    let out = nix_instantiate(&["--eval", "--strict", "--json", "-E", expr]);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Evaluates `expr` strictly and returns its JSON value.
fn eval_json(expr: &str) -> Value {
    eval(expr).unwrap_or_else(|e| panic!("nix-instantiate failed on\n{expr}\n{e}"))
}

/// A Nix string literal holding `s` (`${` is escaped).
fn nix_string(s: &str) -> String {
    serde_json::to_string(s).unwrap().replace("${", "\\${")
}

/// The golden graphs, by file stem (`all-services.example`).
fn golden_graphs() -> Vec<(String, PathBuf)> {
    let mut graphs: Vec<(String, PathBuf)> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let stem = name.strip_suffix(".graph.json")?.to_owned();
            Some((stem, path))
        })
        .collect();
    graphs.sort();
    assert!(
        !graphs.is_empty(),
        "no golden graphs in {}",
        golden_dir().display()
    );
    graphs
}

/// What `nix/lib` makes of every NixOS host of the graph at `path`: host name → `describe`.
fn describe_hosts(path: &Path) -> Value {
    let expr = format!(
        r#"
        let
          lib = import {nix};
          graph = builtins.fromJSON (builtins.readFile {graph});
          hosts = builtins.filter (a: builtins.substring 0 6 a == "nixos.") (builtins.attrNames graph.resources);
        in
        builtins.listToAttrs (map (a: {{
          name = builtins.substring 6 (builtins.stringLength a) a;
          value = lib.describe (lib.spec.check graph.resources.${{a}}.inputs.spec);
        }}) hosts)
        "#,
        nix = nix_string(&nix_dir().join("lib").display().to_string()),
        graph = nix_string(&path.display().to_string()),
    );
    eval_json(&expr)
}

/// The host specs of a golden graph, by host name.
fn host_specs(path: &Path) -> Vec<(String, Value)> {
    let graph: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    graph["resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(address, resource)| {
            let host = address.strip_prefix("nixos.")?;
            Some((host.to_owned(), resource["inputs"]["spec"].clone()))
        })
        .collect()
}

fn every_nix_file(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_nix_file(&path, found);
        } else if path.extension().is_some_and(|e| e == "nix") {
            found.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    every_nix_file(&nix_dir(), &mut files);
    files.sort();
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f.strip_prefix(nix_dir()).unwrap().display().to_string())
        .collect();
    for expected in [
        "flake.nix",
        "lib/system.nix",
        "modules/common.nix",
        "modules/mastodon.nix",
        "modules/pixelfed.nix",
        "modules/peertube.nix",
        "modules/garage.nix",
    ] {
        assert!(
            names.contains(expected),
            "nix/{expected} is missing: {names:?}"
        );
    }
    for file in &files {
        let out = nix_instantiate(&["--parse", &file.display().to_string()]);
        assert_success(&out, &format!("{} does not parse", file.display()));
    }
}

#[test]
fn mappings_match_their_golden_files() {
    for (stem, path) in golden_graphs() {
        let described = describe_hosts(&path);
        let json = serde_json::to_string_pretty(&described).unwrap() + "\n";
        assert_golden(golden_dir().join("nix").join(format!("{stem}.json")), &json);
    }
}

/// Every string inside `value`, with where it is.
fn strings<'v>(value: &'v Value, at: String, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::String(s) => out.push((at, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{at}[{i}]"), out);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                strings(item, format!("{at}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// The secret names a mapping reads, from its own fields (not from `secrets_read`, which the
/// check compares with).
fn secrets_in_mapping(mapping: &Value) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = mapping["secretEnv"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["secret"].as_str().unwrap().to_owned())
        .collect();
    names.extend(
        mapping["secretFileOptions"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap().to_owned()),
    );
    if let Some(password) = mapping["admin"]["passwordSecret"].as_str() {
        names.insert(password.to_owned());
    }
    if let Some(token) = mapping["apiToken"]["secret"].as_str() {
        names.insert(token.to_owned());
    }
    if let Some(plugin) = mapping["plugin"].as_object() {
        names.extend(
            plugin["secretSettings"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
    }
    names
}

/// The identity settings of one host: each service reads the `identity` section its own way.
fn check_identity(what: &str, spec: &Value, mapping: &Value, health: &Value) {
    let env = &mapping["env"];
    let secret_env = &mapping["secretEnv"];
    let identity = &spec["identity"];
    let units = health["units"].as_array().unwrap();
    let plugin_unit = Value::from("fediversity-peertube-sso.service");
    match (spec["service"].as_str().unwrap(), identity) {
        ("mastodon", Value::Object(section)) if section.contains_key("ldap") => {
            assert_eq!(env["LDAP_ENABLED"], "true", "{what}");
            assert_eq!(env["LDAP_METHOD"], "simple_tls", "{what}");
            assert_eq!(
                secret_env["LDAP_PASSWORD"]["secret"], "identity-bind-password",
                "{what}"
            );
        }
        ("mastodon", Value::Object(section)) if section.contains_key("oidc") => {
            assert_eq!(env["OIDC_ISSUER"], identity["oidc"]["issuer"], "{what}");
            assert_eq!(
                env["OIDC_CLIENT_ID"], identity["oidc"]["client_id"],
                "{what}"
            );
            assert_eq!(
                env["OIDC_REDIRECT_URI"],
                format!(
                    "https://{}/auth/auth/openid_connect/callback",
                    spec["fqdn"].as_str().unwrap()
                ),
                "{what}"
            );
            // SSO from the first start, and the admin unit's account re-attached by e-mail.
            assert_eq!(env["OMNIAUTH_ONLY"], "true", "{what}");
            assert_eq!(env["ALLOW_UNSAFE_AUTH_PROVIDER_REATTACH"], "true", "{what}");
            // Only the panel, which admits the operator's own members alone, is taken at its
            // word on e-mail; an operator's own provider must mark it verified.
            let from_panel = identity["oidc"]["panel"] == true;
            assert_eq!(
                env["OIDC_SECURITY_ASSUME_EMAIL_IS_VERIFIED"],
                if from_panel { "true" } else { "false" },
                "{what}"
            );
            assert_eq!(
                secret_env["OIDC_CLIENT_SECRET"]["secret"], "identity-client-secret",
                "{what}"
            );
        }
        ("pixelfed", Value::Object(section)) => {
            assert!(
                !section.contains_key("ldap"),
                "{what}: Pixelfed is given no LDAP"
            );
            let oidc = &identity["oidc"];
            for (var, field) in [
                ("PF_OIDC_AUTHORIZE_URL", "authorization_endpoint"),
                ("PF_OIDC_TOKEN_URL", "token_endpoint"),
                ("PF_OIDC_PROFILE_URL", "userinfo_endpoint"),
                ("PF_OIDC_CLIENT_ID", "client_id"),
            ] {
                assert_eq!(env[var], oidc[field], "{what}: {var}");
            }
            assert_eq!(env["PF_OIDC_FIELD_ID"], "sub", "{what}");
            assert_eq!(
                secret_env["PF_OIDC_CLIENT_SECRET"]["secret"], "identity-client-secret",
                "{what}"
            );
            assert_eq!(mapping["admin"]["promoteOnSignIn"], true, "{what}");
            assert_eq!(mapping["admin"]["passwordSecret"], Value::Null, "{what}");
        }
        ("peertube", Value::Object(section)) => {
            let plugin = &mapping["plugin"];
            if section.contains_key("ldap") {
                assert_eq!(plugin["npmName"], "peertube-plugin-auth-ldap", "{what}");
                assert_eq!(plugin["settings"]["url"], identity["ldap"]["url"]);
                assert_eq!(
                    plugin["secretSettings"]["bind-credentials"],
                    "identity-bind-password"
                );
            } else {
                let issuer = identity["oidc"]["issuer"].as_str().unwrap();
                assert_eq!(
                    plugin["npmName"], "peertube-plugin-auth-openid-connect",
                    "{what}"
                );
                assert_eq!(
                    plugin["settings"]["discover-url"],
                    format!("{issuer}/.well-known/openid-configuration"),
                    "{what}"
                );
                assert_eq!(
                    plugin["secretSettings"]["client-secret"], "identity-client-secret",
                    "{what}"
                );
            }
            assert!(units.contains(&plugin_unit), "{what}: {units:?}");
        }
        (_, Value::Null) => {
            assert!(
                env.as_object()
                    .unwrap()
                    .keys()
                    .all(|k| !k.starts_with("LDAP_") && !k.contains("OIDC_")),
                "{what}: {env}"
            );
            assert_eq!(mapping["plugin"], Value::Null, "{what}");
            assert!(!units.contains(&plugin_unit), "{what}");
            if let Some(admin) = mapping["admin"].as_object() {
                assert_eq!(admin["passwordSecret"], "admin-password", "{what}");
            }
        }
        (service, other) => panic!("{what}: unexpected identity for {service}: {other}"),
    }
}

fn check_service_quirks(what: &str, spec: &Value, mapping: &Value) {
    let env = &mapping["env"];
    let buckets = &spec["s3"]["buckets"];
    match spec["service"].as_str().unwrap() {
        "mastodon" => {
            assert_eq!(env["S3_PERMISSION"], "", "{what}: Garage has no ACLs");
            assert_eq!(env["S3_ENABLED"], "true", "{what}");
            let public = buckets["media"]["public_url"].as_str().unwrap();
            assert_eq!(
                Some(env["S3_ALIAS_HOST"].as_str().unwrap()),
                public.strip_prefix("https://"),
                "{what}: media is served by the website endpoint, named without a scheme"
            );
        }
        "pixelfed" => {
            assert_eq!(env["AWS_USE_PATH_STYLE_ENDPOINT"], "true", "{what}");
            assert_eq!(env["PF_ENABLE_CLOUD"], "true", "{what}");
            assert_eq!(env["FILESYSTEM_CLOUD"], "s3", "{what}");
            assert_eq!(env["AWS_URL"], buckets["media"]["public_url"], "{what}");
            assert_eq!(
                mapping["secretEnv"]["APP_KEY"]["prefix"], "base64:",
                "{what}"
            );
        }
        "peertube" => {
            let storage = &mapping["settings"]["object_storage"];
            assert_eq!(storage["enabled"], true, "{what}");
            assert_eq!(
                storage["upload_acl"]["public"],
                Value::Null,
                "{what}: no ACLs"
            );
            for (section, purpose) in [
                ("streaming_playlists", "playlists"),
                ("web_videos", "videos"),
            ] {
                assert_eq!(
                    storage[section]["base_url"], buckets[purpose]["public_url"],
                    "{what}: {section}"
                );
                assert_eq!(
                    storage[section]["bucket_name"], buckets[purpose]["name"],
                    "{what}"
                );
            }
            assert_eq!(
                mapping["secretEnv"]["PT_INITIAL_ROOT_PASSWORD"]["secret"], "admin-password",
                "{what}"
            );
        }
        "garage" => {
            let settings = &mapping["settings"];
            assert_eq!(
                settings["replication_factor"], spec["replication_factor"],
                "{what}"
            );
            let node = usize::try_from(spec["node"].as_u64().unwrap()).unwrap();
            let own = spec["peers"][node - 1].as_str().unwrap();
            assert_eq!(settings["rpc_public_addr"], format!("{own}:3901"), "{what}");
            assert_eq!(
                settings["s3_web"]["root_domain"],
                format!(".{}", spec["web_root_domain"].as_str().unwrap()),
                "{what}"
            );
            assert_eq!(
                mapping["secretEnv"]["GARAGE_RPC_SECRET"]["secret"], "garage-rpc-secret",
                "{what}"
            );
        }
        other => panic!("{what}: unexpected service {other}"),
    }
}

/// Which kind of identity provider a host spec names.
fn identity_kind(identity: &Value) -> &'static str {
    if identity.get("ldap").is_some() {
        "ldap"
    } else if identity["oidc"]["panel"] == true {
        "panel"
    } else if identity.get("oidc").is_some() {
        "oidc"
    } else {
        "none"
    }
}

#[test]
fn every_golden_host_gets_the_quirks_and_only_its_own_secrets() {
    let mut hosts = 0;
    let mut identities = BTreeSet::new();
    for (stem, path) in golden_graphs() {
        let described = describe_hosts(&path);
        for (host, spec) in host_specs(&path) {
            let what = format!("{stem} {host}");
            let d = &described[&host];
            let mapping = &d["mapping"];
            let listed: BTreeSet<String> = spec["secret_files"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let read: BTreeSet<String> = d["secrets_read"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(read, secrets_in_mapping(mapping), "{what}");
            assert!(
                read.is_subset(&listed),
                "{what}: reads {:?}, which secret_files does not list",
                read.difference(&listed).collect::<Vec<_>>()
            );
            // Plain settings end up in the Nix store: no secret path, and no reference to a
            // secret output, may appear in them.
            let mut plain = Vec::new();
            strings(&mapping["env"], "env".into(), &mut plain);
            strings(&mapping["settings"], "settings".into(), &mut plain);
            for (at, value) in plain {
                assert!(
                    !value.contains("/var/lib/fediversity/secrets")
                        && !value.contains("${secret.")
                        && !value.contains("secret_access_key"),
                    "{what}: {at} = {value} is a secret or a secret's path"
                );
            }
            for check in d["health"]["http"].as_array().unwrap() {
                let url = check["url"].as_str().unwrap();
                assert!(url.starts_with("http://127.0.0.1:"), "{what}: {url}");
            }
            assert_eq!(d["health"]["service"], spec["service"], "{what}");
            check_service_quirks(&what, &spec, mapping);
            if spec["service"] != "garage" {
                check_identity(&what, &spec, mapping, &d["health"]);
                identities.insert((
                    spec["service"].as_str().unwrap().to_owned(),
                    identity_kind(&spec["identity"]),
                ));
            }
            hosts += 1;
        }
    }
    assert!(hosts >= 10, "only {hosts} golden hosts were checked");
    // Each service meets each kind of provider it can use somewhere in the goldens.
    for service in ["mastodon", "pixelfed", "peertube"] {
        for kind in ["panel", "oidc", "none"] {
            assert!(
                identities.contains(&(service.to_owned(), kind)),
                "no golden {service} host with identity {kind}: {identities:?}"
            );
        }
    }
    for service in ["mastodon", "peertube"] {
        assert!(
            identities.contains(&(service.to_owned(), "ldap")),
            "{identities:?}"
        );
    }
}

/// The host spec of `host` in the all-services graph.
fn all_services_spec(host: &str) -> Value {
    let path = golden_dir().join("all-services.example.graph.json");
    host_specs(&path)
        .into_iter()
        .find(|(name, _)| name == host)
        .map(|(_, spec)| spec)
        .unwrap()
}

/// Evaluates `lib.describe` on `spec`, written to a file under `dir`: the JSON, or the error.
fn describe_spec(dir: &Path, spec: &Value) -> Result<Value, String> {
    let file = dir.join("spec.json");
    std::fs::write(&file, serde_json::to_string(spec).unwrap()).unwrap();
    let expr = format!(
        "let lib = import {nix}; in lib.describe (lib.spec.read {spec})",
        nix = nix_string(&nix_dir().join("lib").display().to_string()),
        spec = nix_string(&file.display().to_string()),
    );
    eval(&expr)
}

/// Adds a mail relay with a login, and the secret file its password comes in.
fn with_mail(mut spec: Value) -> Value {
    spec["mail"] = serde_json::json!({
        "host": "smtp.example.org", "port": 465, "from": "noreply@example.org",
        "username": "fediversity", "tls": "tls"
    });
    spec["secret_files"]["smtp-password"] = "/var/lib/fediversity/secrets/smtp-password".into();
    spec
}

#[test]
fn mail_and_oidc_settings_read_their_secrets_and_missing_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mastodon = with_mail(all_services_spec("mastodon"));
    mastodon["identity"] = serde_json::json!({
        "oidc": {"issuer": "https://id.example.org", "client_id": "fedi", "groups_claim": "groups"}
    });
    let files = mastodon["secret_files"].as_object_mut().unwrap();
    files.remove("identity-bind-password");
    files.insert(
        "identity-client-secret".into(),
        "/var/lib/fediversity/secrets/identity-client-secret".into(),
    );
    let d = describe_spec(tmp.path(), &mastodon).unwrap();
    let (env, secret_env) = (&d["mapping"]["env"], &d["mapping"]["secretEnv"]);
    assert_eq!(env["OIDC_ISSUER"], "https://id.example.org");
    assert_eq!(
        env["OIDC_REDIRECT_URI"],
        "https://social.example.org/auth/auth/openid_connect/callback"
    );
    assert_eq!(
        secret_env["OIDC_CLIENT_SECRET"]["secret"],
        "identity-client-secret"
    );
    assert!(env.get("LDAP_ENABLED").is_none(), "{env}");
    assert_eq!(env["SMTP_SERVER"], "smtp.example.org");
    assert_eq!(env["SMTP_TLS"], "true");
    assert_eq!(env["SMTP_LOGIN"], "fediversity");
    assert_eq!(secret_env["SMTP_PASSWORD"]["secret"], "smtp-password");

    let pixelfed = describe_spec(tmp.path(), &with_mail(all_services_spec("pixelfed"))).unwrap();
    assert_eq!(pixelfed["mapping"]["env"]["MAIL_ENCRYPTION"], "ssl");
    assert_eq!(
        pixelfed["mapping"]["secretEnv"]["MAIL_PASSWORD"]["secret"],
        "smtp-password"
    );
    let peertube = describe_spec(tmp.path(), &with_mail(all_services_spec("peertube"))).unwrap();
    assert_eq!(peertube["mapping"]["settings"]["smtp"]["tls"], true);
    assert_eq!(
        peertube["mapping"]["secretFileOptions"]["smtpPasswordFile"],
        "smtp-password"
    );

    // A module needing a secret file the spec does not list refuses to evaluate, and says which.
    let mut missing = with_mail(all_services_spec("pixelfed"));
    missing["secret_files"]
        .as_object_mut()
        .unwrap()
        .remove("smtp-password");
    let error = describe_spec(tmp.path(), &missing).unwrap_err();
    assert!(error.contains("`smtp-password`"), "{error}");

    // LDAP without TLS would send the bind password in clear.
    let mut plain = all_services_spec("mastodon");
    plain["identity"]["ldap"]["url"] = "ldap://ldap.example.org".into();
    let error = describe_spec(tmp.path(), &plain).unwrap_err();
    assert!(error.contains("ldaps:// or start_tls"), "{error}");
    plain["identity"]["ldap"]["start_tls"] = true.into();
    let d = describe_spec(tmp.path(), &plain).unwrap();
    assert_eq!(d["mapping"]["env"]["LDAP_METHOD"], "start_tls");
    assert_eq!(d["mapping"]["env"]["LDAP_PORT"], "389");

    // A spec of another version is refused rather than half-read.
    let mut future = all_services_spec("peertube");
    future["version"] = 2.into();
    let error = describe_spec(tmp.path(), &future).unwrap_err();
    assert!(error.contains("version 2"), "{error}");
}

/// The host spec of `host` in the golden graph `stem`.
fn golden_spec(stem: &str, host: &str) -> Value {
    let path = golden_dir().join(format!("{stem}.graph.json"));
    host_specs(&path)
        .into_iter()
        .find(|(name, _)| name == host)
        .map(|(_, spec)| spec)
        .unwrap()
}

#[test]
fn identity_sections_a_service_cannot_use_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The configurator gives Pixelfed no LDAP section; one written by hand is refused.
    let mut pixelfed = golden_spec("all-services-local.sandbox", "pixelfed");
    pixelfed["identity"] = all_services_spec("mastodon")["identity"].clone();
    let error = describe_spec(tmp.path(), &pixelfed).unwrap_err();
    assert!(
        error.contains("Pixelfed cannot sign in against LDAP"),
        "{error}"
    );

    // PeerTube's LDAP plugin has no StartTLS: the bind password would cross in clear.
    let mut peertube = all_services_spec("peertube");
    peertube["identity"]["ldap"]["url"] = "ldap://ldap.example.org".into();
    peertube["identity"]["ldap"]["start_tls"] = true.into();
    let error = describe_spec(tmp.path(), &peertube).unwrap_err();
    assert!(error.contains("cannot use StartTLS"), "{error}");

    // Pixelfed takes the endpoints from the spec; without them (no identity check ran) it is
    // refused rather than configured with empty URLs.
    let mut unchecked = golden_spec("all-services-oidc.example", "pixelfed");
    unchecked["identity"]["oidc"]
        .as_object_mut()
        .unwrap()
        .remove("token_endpoint");
    let error = describe_spec(tmp.path(), &unchecked).unwrap_err();
    assert!(error.contains("no token_endpoint"), "{error}");
}

/// Runs `sql` on the database at `url` with psql, failing the test on an error.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-tA", "-d", url, "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql ({e}): run scripts/setup-test"));
    assert_success(&out, sql);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn pixelfed_makes_the_account_first_signed_in_with_the_admin_email_an_administrator() {
    let server = fediversity_testkit::postgres::PostgresServer::shared();
    let url = server.create_database("promote");
    psql(
        &url,
        "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE, is_admin boolean DEFAULT false)",
    );
    psql(
        &url,
        "INSERT INTO users (email) VALUES ('Admin@Example.org.old')",
    );
    let script = eval_json(&format!(
        "(import {nix}).promoteOnSignIn {{ database = {url}; table = \"users\"; email = \"it's-admin@example.org\"; promote = \"NEW.is_admin := true;\"; }}",
        nix = nix_string(&nix_dir().join("lib").display().to_string()),
        url = nix_string(&url),
    ));
    // Twice: every start installs it again, without doubling it.
    for _ in 0..2 {
        let status = Command::new("bash")
            .args(["-e", "-c", script.as_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    psql(
        &url,
        "INSERT INTO users (email) VALUES ('member@example.org'), ('It''s-Admin@example.org')",
    );
    assert_eq!(
        psql(
            &url,
            "SELECT email || '=' || is_admin FROM users ORDER BY id"
        ),
        "Admin@Example.org.old=false\nmember@example.org=false\nIt's-Admin@example.org=true"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'fediversity_promote_admin'"
        ),
        "1"
    );
}

/// The pixelfed host spec of the all-services graph, with its secret files moved under `dir`.
fn pixelfed_spec_with_secrets_in(dir: &Path) -> Value {
    let mut spec = all_services_spec("pixelfed");
    for (name, file) in spec["secret_files"].as_object_mut().unwrap() {
        *file = Value::from(dir.join(name).display().to_string());
    }
    spec
}

/// Writes the env-file script for `spec_file` to `script` and runs it with bash.
fn run_env_file_script(spec_file: &Path, run_dir: &Path, script: &Path) -> Output {
    let expr = format!(
        r#"
        let
          lib = import {nix};
          spec = lib.spec.read {spec};
          m = lib.forSpec spec;
        in
        lib.envFileScript {{ dir = {dir}; envFiles.pixelfed = lib.secretEnvPaths spec m.secretEnv; }}
        "#,
        nix = nix_string(&nix_dir().join("lib").display().to_string()),
        spec = nix_string(&spec_file.display().to_string()),
        dir = nix_string(&run_dir.display().to_string()),
    );
    let text = eval_json(&expr);
    std::fs::write(script, text.as_str().unwrap()).unwrap();
    Command::new("bash").arg(script).output().unwrap()
}

#[test]
fn env_files_carry_secrets_and_refuse_what_they_cannot_carry() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    let run_dir = tmp.path().join("run");
    std::fs::create_dir(&secrets).unwrap();
    let spec = pixelfed_spec_with_secrets_in(&secrets);
    let spec_file = tmp.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_string(&spec).unwrap()).unwrap();
    for name in spec["secret_files"].as_object().unwrap().keys() {
        std::fs::write(secrets.join(name), format!("value-of-{name}\n")).unwrap();
    }
    let script = tmp.path().join("write-env-files.sh");

    let out = run_env_file_script(&spec_file, &run_dir, &script);
    assert_success(&out, "the env-file script failed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env_file = run_dir.join("pixelfed.env");
    let written = std::fs::read_to_string(&env_file).unwrap();
    assert_eq!(
        written,
        "APP_KEY='base64:value-of-app-key'\nAWS_SECRET_ACCESS_KEY='value-of-s3-secret-access-key'\nMAIL_PASSWORD='value-of-smtp-password'\n"
    );
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(
        !std::fs::read_to_string(&script)
            .unwrap()
            .contains("value-of-"),
        "the script holds a secret value"
    );

    // A value an environment file cannot carry literally is refused without being printed, and
    // the file written before stays as it was.
    std::fs::write(secrets.join("app-key"), "poison'value").unwrap();
    let out = run_env_file_script(&spec_file, &run_dir, &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a quote in a secret was accepted");
    assert!(
        stderr.contains("app-key") && stderr.contains("APP_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("poison") && !String::from_utf8_lossy(&out.stdout).contains("poison"));
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), written);
    let leftovers: Vec<_> = std::fs::read_dir(&run_dir).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "a half-written file was left: {leftovers:?}"
    );
}

/// Runs the admin-once script in `dir` with a stub `psql` that answers `exists` and logs its
/// arguments, and `setPassword` set to `set_password`; returns whether it succeeded and the log.
fn run_admin_once(dir: &Path, exists: &str, set_password: &str) -> (bool, String) {
    let log = dir.join("log");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let psql = bin.join("psql");
    std::fs::write(
        &psql,
        format!(
            "#!/bin/sh\necho \"psql $*\" >>'{}'\necho {exists}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&psql, std::fs::Permissions::from_mode(0o755)).unwrap();
    let expr = format!(
        "(import {nix}).adminOnce {{ stamp = {stamp}; database = \"db\"; existsQuery = \"SELECT 1 FROM users WHERE username = 'it''s'\"; create = {create}; setPassword = {set}; }}",
        nix = nix_string(&nix_dir().join("lib").display().to_string()),
        stamp = nix_string(&dir.join("stamp").display().to_string()),
        create = nix_string(&format!("echo create >>'{}'", log.display())),
        set = nix_string(set_password),
    );
    let script = eval_json(&expr);
    // NixOS runs a unit's script with `set -e`, as here.
    let status = Command::new("bash")
        .args(["-e", "-c", script.as_str().unwrap()])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .status()
        .unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    (status.success(), log)
}

#[test]
fn admin_accounts_are_made_once_and_a_failed_run_is_repeated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("log");
    let set_password = format!("echo password >>'{}'", log.display());

    // A password that cannot be set leaves no stamp, so the next start tries again.
    let (ok, _) = run_admin_once(dir, "", "false");
    assert!(!ok);
    assert!(!dir.join("stamp").exists());

    std::fs::remove_file(&log).unwrap();
    let (ok, first) = run_admin_once(dir, "", &set_password);
    assert!(ok);
    assert_eq!(
        first,
        "psql -d db -tAc SELECT 1 FROM users WHERE username = 'it''s'\ncreate\npassword\n"
    );
    assert!(dir.join("stamp").exists());

    // Once done, nothing runs again: a password the operator changed stays changed.
    let (ok, again) = run_admin_once(dir, "", &set_password);
    assert!(ok);
    assert_eq!(again, first);

    // An account that exists already is not created twice.
    std::fs::remove_file(dir.join("stamp")).unwrap();
    std::fs::remove_file(&log).unwrap();
    let (ok, existing) = run_admin_once(dir, "1", &set_password);
    assert!(ok);
    assert_eq!(
        existing,
        "psql -d db -tAc SELECT 1 FROM users WHERE username = 'it''s'\npassword\n"
    );
}

#[test]
fn the_modules_evaluate_as_nixos_systems_when_nixpkgs_is_given() {
    let Some(nixpkgs) = std::env::var_os("FEDIVERSITY_NIXPKGS") else {
        // Written past libtest's capture, so that the skip shows in a passing run's output.
        writeln!(
            std::io::stderr(),
            "nix_modules: the NixOS systems were NOT evaluated: set FEDIVERSITY_NIXPKGS to a nixpkgs checkout to evaluate them"
        )
        .unwrap();
        return;
    };
    let nixpkgs = PathBuf::from(nixpkgs);
    let tmp = tempfile::tempdir().unwrap();
    let path = golden_dir().join("all-services.infra-dedicated.graph.json");
    let system = nix_dir().join("lib/system.nix").display().to_string();
    for (host, spec) in host_specs(&path) {
        let spec_file = tmp.path().join(format!("{host}.json"));
        std::fs::write(&spec_file, serde_json::to_string(&spec).unwrap()).unwrap();
        let out = nix_instantiate(&[
            &system,
            "--argstr",
            "nixpkgs",
            &nixpkgs.display().to_string(),
            "--argstr",
            "specFile",
            &spec_file.display().to_string(),
            "-A",
            "config.system.build.toplevel",
        ]);
        assert_success(&out, &format!("{host} does not evaluate as a NixOS system"));
        let health = eval_json(&format!(
            "(import {system} {{ nixpkgs = {nixpkgs}; specFile = {spec}; }}).config.environment.etc.\"fediversity/health.json\".text",
            system = nix_string(&system),
            nixpkgs = nix_string(&nixpkgs.display().to_string()),
            spec = nix_string(&spec_file.display().to_string()),
        ));
        let health: Value = serde_json::from_str(health.as_str().unwrap()).unwrap();
        assert_eq!(health["service"], spec["service"], "{host}");
    }
}

/// One request the stub PeerTube received: method, path, headers (lower-case names), body.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Reads one HTTP/1.1 request (with a Content-Length body) from `stream`.
fn read_request(stream: &mut std::net::TcpStream) -> Request {
    use std::io::{BufRead as _, BufReader, Read as _};
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Request {
        method,
        path,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// A stub of PeerTube's API on a free loopback port: the answers the plugin unit needs, with the
/// plugin `installed` or not and `root` with the address `root_email`. Returns its base URL and
/// the requests it received, once `count` have arrived.
fn stub_peertube(
    count: usize,
    installed: bool,
    root_email: &str,
) -> (String, std::thread::JoinHandle<Vec<Request>>) {
    let me = serde_json::json!({"id": 1, "username": "root", "email": root_email}).to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let request = read_request(&mut stream);
            let (status, body) = match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/api/v1/ping") => ("200 OK", String::new()),
                ("GET", "/api/v1/oauth-clients/local") => (
                    "200 OK",
                    r#"{"client_id":"local-id","client_secret":"local-secret"}"#.to_owned(),
                ),
                ("POST", "/api/v1/users/token") => {
                    ("200 OK", r#"{"access_token":"token-value"}"#.to_owned())
                }
                ("GET", "/api/v1/users/me") => ("200 OK", me.clone()),
                ("GET", _) if installed => ("200 OK", "{}".to_owned()),
                ("GET", _) => ("404 Not Found", String::new()),
                _ => ("200 OK", "{}".to_owned()),
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            seen.push(request);
        }
        seen
    });
    (base, server)
}

#[test]
fn peertube_plugin_unit_installs_the_plugin_and_writes_its_settings_once() {
    let tmp = tempfile::tempdir().unwrap();
    let credentials = tmp.path().join("credentials");
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::write(credentials.join("admin-password"), "root-pass\n").unwrap();
    std::fs::write(
        credentials.join("identity-client-secret"),
        "client\"secret\n",
    )
    .unwrap();
    let spec = golden_spec("all-services-oidc.example", "peertube");
    let d = describe_spec(tmp.path(), &spec).unwrap();
    let plugin = &d["mapping"]["plugin"];
    let settings_file = tmp.path().join("settings.json");
    std::fs::write(&settings_file, plugin["settings"].to_string()).unwrap();
    let stamp = tmp.path().join("stamp");

    let run = |base: &str| {
        let script = eval_json(&format!(
            "(import {nix}).peertubePluginScript {{ plugin = builtins.fromJSON {plugin}; base = {base}; stamp = {stamp}; settingsFile = {settings}; adminPasswordCredential = \"admin-password\"; rootEmail = \"root@tube.example.org\"; pingAttempts = 1; }}",
            nix = nix_string(&nix_dir().join("lib").display().to_string()),
            plugin = nix_string(&plugin.to_string()),
            base = nix_string(base),
            stamp = nix_string(&stamp.display().to_string()),
            settings = nix_string(&settings_file.display().to_string()),
        ));
        let out = Command::new("bash")
            .args(["-e", "-c", script.as_str().unwrap()])
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env("RUNTIME_DIRECTORY", &runtime)
            .output()
            .unwrap();
        assert_success(&out, "the plugin script failed");
        (script.as_str().unwrap().to_owned(), out)
    };

    let (base, server) = stub_peertube(8, false, "admin@uni.example.org");
    let (script, _) = run(&base);
    let requests = server.join().unwrap();
    let calls: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let npm = "peertube-plugin-auth-openid-connect";
    assert_eq!(
        calls,
        [
            "GET /api/v1/ping".to_owned(),
            "GET /api/v1/oauth-clients/local".to_owned(),
            "POST /api/v1/users/token".to_owned(),
            "GET /api/v1/users/me".to_owned(),
            "PUT /api/v1/users/1".to_owned(),
            format!("GET /api/v1/plugins/{npm}"),
            "POST /api/v1/plugins/install".to_owned(),
            format!("PUT /api/v1/plugins/{npm}/settings"),
        ]
    );
    let body = |i: usize| -> Value { serde_json::from_str(&requests[i].body).unwrap() };
    assert_eq!(body(2)["password"], "root-pass");
    assert_eq!(body(2)["username"], "root");
    assert_eq!(body(2)["client_id"], "local-id");
    assert_eq!(
        body(4),
        serde_json::json!({"email": "root@tube.example.org", "emailVerified": true}),
        "root leaves the operator's address to the operator's own sign-in"
    );
    assert_eq!(body(6), serde_json::json!({ "npmName": npm }));
    let settings = &body(7)["settings"];
    assert_eq!(settings["client-secret"], "client\"secret");
    assert_eq!(settings["discover-url"], plugin["settings"]["discover-url"]);
    for request in &requests[3..] {
        assert!(
            request
                .headers
                .contains(&("authorization".into(), "Bearer token-value".into())),
            "{request:?}"
        );
    }
    // The secrets are in no command line: the script holds only their file names.
    assert!(!script.contains("root-pass") && !script.contains("client\"secret"));
    assert!(
        std::fs::read_dir(&runtime).unwrap().next().is_none(),
        "the token's header file is left behind"
    );

    // Unchanged settings: nothing to do, not even a sign-in (nothing listens on port 9).
    run("http://127.0.0.1:9");
    // A rotated secret: signed in again and the settings written, the plugin left installed.
    std::fs::write(credentials.join("identity-client-secret"), "rotated\n").unwrap();
    let (base, server) = stub_peertube(6, true, "root@tube.example.org");
    run(&base);
    let requests = server.join().unwrap();
    assert_eq!(requests[3].path, "/api/v1/users/me", "{requests:?}");
    assert_eq!(
        requests[5].method, "PUT",
        "root is left as it is: {requests:?}"
    );
    let settings: Value = serde_json::from_str(&requests[5].body).unwrap();
    assert_eq!(settings["settings"]["client-secret"], "rotated");
}
