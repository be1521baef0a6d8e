//! The conformance runner: every check passes on the example provider, and a deliberately
//! broken provider gets a report that says what is wrong.

use fediversity_providers::Error;
use fediversity_providers::external::{ConformanceOptions, Outcome, conformance, conformance_with};

use crate::external::{notes_exe, notes_options};
use crate::{require_python3, script};

#[tokio::test]
async fn the_example_provider_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let options = ConformanceOptions {
        external: notes_options(dir.path()),
    };
    let report = conformance_with(notes_exe(), options).await.unwrap();
    let table = report.to_string();
    assert!(report.passed(), "{table}");
    assert_eq!(report.provider.as_deref(), Some("notes"));
    assert_eq!(report.count(Outcome::Skip), 0, "{table}");
    for check in [
        "handshake",
        "read-missing (dns)",
        "create (dns)",
        "create-again (dns)",
        "read-found (dns)",
        "read-by-identity (dns)",
        "update (dns)",
        "diff (dns)",
        "transient-error (dns)",
        "bad-input (dns)",
        "delete (dns)",
        "read-after-delete (dns)",
        "delete-again (dns)",
        "unknown-method",
        "restart",
        "schema",
    ] {
        assert_eq!(
            report.check(check).map(|c| c.outcome),
            Some(Outcome::Pass),
            "{check}: {table}"
        );
    }
    assert!(table.contains("  PASS  read-by-identity (dns)"), "{table}");
    assert!(
        table.ends_with("conformance: 16 checks passed, 0 failed, 0 skipped"),
        "{table}"
    );
    assert!(
        report
            .check("create (dns)")
            .unwrap()
            .detail
            .contains("token (sensitive)"),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checks"][0]["outcome"], "pass");
}

/// Finds resources that do not exist, forgets nothing on delete, fails deletes, answers
/// unknown methods, and writes a result that does not match the schema.
const BROKEN: &str = r#"#!/usr/bin/env python3
import json, sys
EXAMPLE = {"kind": "dns", "create": {"ttl": 1}, "update": {"ttl": 2}}
def send(message):
    print(json.dumps(message), flush=True)
for line in sys.stdin:
    r = json.loads(line)
    m, i = r["method"], r["id"]
    if m == "hello":
        send({"id": i, "result": {"protocol": 1, "name": "broken", "kinds": ["dns"], "examples": [EXAMPLE]}})
    elif m == "read":
        send({"id": i, "result": {"inputs": {"ttl": 1}, "outputs": {"values": {}}}})
    elif m in ("create", "update"):
        send({"id": i, "result": {"values": {}, "sensitive": "not-a-list"}})
    elif m == "delete":
        send({"id": i, "error": {"kind": "transient", "message": "the disk is on fire"}})
    else:
        send({"id": i, "result": {}})
"#;

#[tokio::test]
async fn a_broken_provider_gets_a_clear_failing_report() {
    require_python3();
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "broken.py", BROKEN);
    let report = conformance(&exe).await.unwrap();
    let table = report.to_string();
    assert!(!report.passed(), "{table}");
    let outcome = |name: &str| report.check(name).map(|c| c.outcome);
    assert_eq!(outcome("handshake"), Some(Outcome::Pass), "{table}");
    for failed in [
        "read-missing (dns)",
        "create (dns)",
        "bad-input (dns)",
        "unknown-method",
        "schema",
    ] {
        assert_eq!(outcome(failed), Some(Outcome::Fail), "{failed}: {table}");
    }
    assert_eq!(outcome("update (dns)"), Some(Outcome::Skip), "{table}");
    assert!(table.contains("FAIL  read-missing (dns)"), "{table}");
    assert!(
        table.contains("which was never made: read must answer null"),
        "{table}"
    );
    assert!(
        table.contains("with a result of the wrong shape"),
        "{table}"
    );
    assert!(
        table.contains("an unknown method was answered with a result"),
        "{table}"
    );
    assert!(
        table.contains("does not match the schema at `/result/sensitive`"),
        "{table}"
    );
    assert!(table.contains("invalid inputs were accepted"), "{table}");
    assert!(table.contains(" failed, "), "{table}");
    assert_eq!(report.count(Outcome::Fail), 5, "{table}");
}

#[tokio::test]
async fn a_provider_that_never_shakes_hands_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "mute.sh", "#!/bin/sh\nsleep 30\n");
    let options = ConformanceOptions::default();
    let mut external = options.external.clone();
    external.hello_timeout = std::time::Duration::from_millis(500);
    let report = conformance_with(&exe, ConformanceOptions { external })
        .await
        .unwrap();
    let handshake = report.check("handshake").unwrap();
    assert_eq!(handshake.outcome, Outcome::Fail);
    assert!(
        handshake.detail.contains("mute.sh") && handshake.detail.contains("did not answer `hello`"),
        "{}",
        handshake.detail
    );

    let missing = conformance(dir.path().join("nowhere")).await;
    assert!(
        matches!(missing, Err(Error::NotExecutable { .. })),
        "{missing:?}"
    );
}
