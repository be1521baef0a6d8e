//! The `dns` provider against a real PowerDNS (the testkit's), every record checked with a real
//! DNS query to the server, never with the provider's own answers: every record type made,
//! changed and removed; drift made by hand reported by refresh and repaired by apply through
//! the engine; a wrong TSIG key refused with the server's answer; a name outside the
//! operator's delegation refused before anything is sent.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use fediversity_engine::clock::SystemClock;
use fediversity_engine::memory::MemoryStore;
use fediversity_engine::provider::{ErrorKind, Provider};
use fediversity_engine::{Approval, Engine, EngineOptions};
use fediversity_model::Retention;
use fediversity_model::graph::DesiredGraph;
use fediversity_model::infra::{DnsInfra, TsigAlgorithm};
use fediversity_providers::DnsProvider;
use fediversity_testkit::pdns::{KEY_NAME, PowerDns};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::{Events, ctx};

const ZONE: &str = "hosting.test";
const DELEGATION: &str = "ngo.hosting.test";

fn infra(pdns: &PowerDns, key_file: &Path, key_name: &str) -> DnsInfra {
    DnsInfra {
        server: pdns.server(),
        zone: ZONE.try_into().unwrap(),
        tsig_key_name: key_name.to_owned(),
        tsig_algorithm: TsigAlgorithm::HmacSha256,
        tsig_secret_file: key_file.to_owned(),
        ttl: 300,
    }
}

fn provider(pdns: &PowerDns) -> DnsProvider {
    DnsProvider::from_infra(&infra(pdns, &pdns.write_key_file(), KEY_NAME)).unwrap()
}

fn record(name: &str, record_type: &str, ttl: u32, values: &[&str]) -> Value {
    json!({"zone": ZONE, "delegation": DELEGATION, "name": name, "type": record_type,
           "ttl": ttl, "values": values})
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[tokio::test]
async fn records_of_every_type_are_made_changed_and_removed() {
    let pdns = PowerDns::start(ZONE);
    let p = provider(&pdns);
    let cases = [
        (
            "dns.social-a",
            "social.ngo.hosting.test",
            "A",
            vec!["192.0.2.10", "192.0.2.11"],
            RecordType::A,
            vec!["192.0.2.10", "192.0.2.11"],
        ),
        (
            "dns.s3-web-a",
            "*.s3-web.ngo.hosting.test",
            "A",
            vec!["192.0.2.40"],
            RecordType::A,
            vec!["192.0.2.40"],
        ),
        (
            "dns.social-aaaa",
            "social.ngo.hosting.test",
            "AAAA",
            vec!["2001:db8::10"],
            RecordType::AAAA,
            vec!["2001:db8::10"],
        ),
        (
            "dns.www",
            "www.ngo.hosting.test",
            "CNAME",
            vec!["social.ngo.hosting.test"],
            RecordType::CNAME,
            vec!["social.ngo.hosting.test."],
        ),
        (
            "dns.spf",
            "ngo.hosting.test",
            "TXT",
            vec!["v=spf1 mx -all"],
            RecordType::TXT,
            vec!["v=spf1 mx -all"],
        ),
        (
            "dns.mx",
            "ngo.hosting.test",
            "MX",
            vec!["10 mail.ngo.hosting.test", "20 backup.ngo.hosting.test"],
            RecordType::MX,
            vec!["10 mail.ngo.hosting.test.", "20 backup.ngo.hosting.test."],
        ),
        (
            "dns.srv",
            "_matrix._tcp.ngo.hosting.test",
            "SRV",
            vec!["10 5 8448 social.ngo.hosting.test"],
            RecordType::SRV,
            vec!["10 5 8448 social.ngo.hosting.test."],
        ),
    ];
    for (address, name, record_type, values, wire_type, on_the_wire) in &cases {
        let c = ctx("ngo", address);
        let inputs = record(name, record_type, 600, values);
        let outputs = p.create(&c, &inputs).await.unwrap();
        assert_eq!(outputs.values["fqdn"], json!(name));
        assert_eq!(
            pdns.query(name, *wire_type),
            Some((600, owned(on_the_wire))),
            "{address}"
        );
        let read = p.read(&c, &inputs, Some(&outputs)).await.unwrap().unwrap();
        assert_eq!(
            read.inputs,
            json!({"ttl": 600, "values": values}),
            "{address}"
        );
        // Creating again (a retry after a lost answer) leaves the same record set.
        p.create(&c, &inputs).await.unwrap();
        assert_eq!(
            pdns.query(name, *wire_type),
            Some((600, owned(on_the_wire)))
        );
    }

    // Update: a new TTL and a new address replace the whole record set.
    let c = ctx("ngo", "dns.social-a");
    let changed = record("social.ngo.hosting.test", "A", 120, &["192.0.2.99"]);
    let outputs = p.update(&c, &changed, &Default::default()).await.unwrap();
    assert_eq!(
        pdns.query("social.ngo.hosting.test", RecordType::A),
        Some((120, owned(&["192.0.2.99"])))
    );
    // The other record sets at the same name are untouched.
    assert_eq!(
        pdns.query("social.ngo.hosting.test", RecordType::AAAA),
        Some((600, owned(&["2001:db8::10"])))
    );

    // A long TXT value survives the 255-byte split.
    let long = "k=".to_owned() + &"x".repeat(400);
    let c_txt = ctx("ngo", "dns.dkim");
    p.create(
        &c_txt,
        &record("dkim._domainkey.ngo.hosting.test", "TXT", 300, &[&long]),
    )
    .await
    .unwrap();
    let read = p
        .read(
            &c_txt,
            &record("dkim._domainkey.ngo.hosting.test", "TXT", 300, &[&long]),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.inputs["values"], json!([long]));

    // Delete removes each record set; deleting again succeeds.
    for (address, name, record_type, values, wire_type, _) in &cases {
        let c = ctx("ngo", address);
        let inputs = record(name, record_type, 600, values);
        p.delete(&c, &inputs, &outputs, Retention::Delete)
            .await
            .unwrap();
        assert_eq!(pdns.query(name, *wire_type), None, "{address}");
        assert!(p.read(&c, &inputs, None).await.unwrap().is_none());
        p.delete(&c, &inputs, &outputs, Retention::Delete)
            .await
            .unwrap();
    }
}

fn graph(ttl: u32, address: &str) -> DesiredGraph {
    let resource =
        |inputs: Value| json!({"provider": "dns", "service": "mastodon", "inputs": inputs});
    serde_json::from_value(json!({
        "version": 1,
        "operator": "ngo",
        "retention": {"mastodon": "delete"},
        "resources": {
            "dns.social-a": resource(record("social.ngo.hosting.test", "A", ttl, &[address])),
            "dns.mail": resource(record("ngo.hosting.test", "MX", ttl, &["10 mail.ngo.hosting.test"])),
        }
    }))
    .unwrap()
}

async fn apply(engine: &Engine, graph: &DesiredGraph) {
    let report = engine
        .apply(graph, Arc::new(Events::default()), Approval::Automatic)
        .await
        .unwrap()
        .unwrap();
    assert!(report.succeeded(), "{report:#?}");
}

#[tokio::test]
async fn drift_made_by_hand_is_reported_by_refresh_and_repaired_by_apply() {
    let pdns = PowerDns::start(ZONE);
    let mut providers = BTreeMap::new();
    providers.insert(
        "dns".to_owned(),
        Arc::new(provider(&pdns)) as Arc<dyn Provider>,
    );
    let engine = Engine::new(
        providers,
        Arc::new(MemoryStore::default()),
        Arc::new(SystemClock),
        EngineOptions::default(),
    );
    let desired = graph(300, "192.0.2.20");
    apply(&engine, &desired).await;
    let clean = engine.refresh(&desired.operator).await.unwrap();
    assert!(
        clean.drifted.is_empty() && clean.missing.is_empty(),
        "{clean:#?}"
    );

    // An administrator changes the address and removes the MX records, behind our back.
    pdns.replace_rrset("social.ngo", "A", 60, &["198.51.100.1"]);
    pdns.pdnsutil(&["delete-rrset", ZONE, "ngo", "MX"]);
    let drift = engine.refresh(&desired.operator).await.unwrap();
    let drifted: Vec<String> = drift.drifted.keys().map(ToString::to_string).collect();
    assert_eq!(drifted, ["dns.social-a"], "{drift:#?}");
    let fields = serde_json::to_string(&drift.drifted).unwrap();
    assert!(
        fields.contains("198.51.100.1") && fields.contains("ttl"),
        "{fields}"
    );
    let missing: Vec<String> = drift.missing.iter().map(ToString::to_string).collect();
    assert_eq!(missing, ["dns.mail"], "{drift:#?}");

    apply(&engine, &desired).await;
    assert_eq!(
        pdns.query("social.ngo.hosting.test", RecordType::A),
        Some((300, owned(&["192.0.2.20"])))
    );
    assert_eq!(
        pdns.query("ngo.hosting.test", RecordType::MX),
        Some((300, owned(&["10 mail.ngo.hosting.test."])))
    );
    let repaired = engine.refresh(&desired.operator).await.unwrap();
    assert!(
        repaired.drifted.is_empty() && repaired.missing.is_empty(),
        "{repaired:#?}"
    );

    // A changed address in the graph is an update in place.
    apply(&engine, &graph(300, "192.0.2.21")).await;
    assert_eq!(
        pdns.query("social.ngo.hosting.test", RecordType::A),
        Some((300, owned(&["192.0.2.21"])))
    );
}

#[tokio::test]
async fn a_wrong_tsig_key_is_refused_with_the_server_key_and_rcode() {
    let pdns = PowerDns::start(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let wrong_secret = dir.path().join("wrong.key");
    std::fs::write(
        &wrong_secret,
        "d3JvbmcgYnV0IHBlcmZlY3RseSB2YWxpZCBiYXNlNjQ=\n",
    )
    .unwrap();
    let inputs = record("social.ngo.hosting.test", "A", 300, &["192.0.2.30"]);
    // PowerDNS answers a bad signature or an unknown key with REFUSED (BIND and Knot with
    // NOTAUTH and the TSIG error); its log says which.
    for (key_name, logged) in [
        (KEY_NAME, "failed to validate"),
        ("unknown-key", "unknown-key"),
    ] {
        let p = DnsProvider::from_infra(&infra(&pdns, &wrong_secret, key_name)).unwrap();
        let error = p
            .create(&ctx("ngo", "dns.social-a"), &inputs)
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent, "{error:?}");
        for part in [&pdns.server().to_string(), key_name, "REFUSED"] {
            assert!(error.message.contains(part), "{part} in: {}", error.message);
        }
        assert!(pdns.log().contains(logged), "{}", pdns.log());
        assert!(!error.message.contains("d3Jvbm"), "{}", error.message);
    }
    assert_eq!(pdns.query("social.ngo.hosting.test", RecordType::A), None);
}

#[tokio::test]
async fn names_outside_the_delegation_are_refused_before_anything_is_sent() {
    let pdns = PowerDns::start(ZONE);
    let real = provider(&pdns);
    // A server that only counts connections: the provider must not even connect.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut counting = infra(&pdns, &pdns.write_key_file(), KEY_NAME);
    counting.server = listener.local_addr().unwrap();
    let counted = DnsProvider::from_infra(&counting).unwrap();
    pdns.replace_rrset("www", "A", 300, &["192.0.2.1"]);
    for (name, zone, expected) in [
        (
            "www.hosting.test",
            ZONE,
            "outside the operator's delegation",
        ),
        (
            "other-ngo.hosting.test",
            ZONE,
            "outside the operator's delegation",
        ),
        (
            "mail.example.net",
            "example.net",
            "outside the operator's delegation",
        ),
    ] {
        let mut inputs = record(name, "A", 300, &["203.0.113.66"]);
        inputs["zone"] = json!(zone);
        let c = ctx("ngo", "dns.evil");
        for p in [&real, &counted] {
            let error = p.create(&c, &inputs).await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Permanent);
            assert!(error.message.contains(expected), "{}", error.message);
            assert!(
                p.delete(&c, &inputs, &Default::default(), Retention::Delete)
                    .await
                    .is_err()
            );
            assert!(p.read(&c, &inputs, None).await.is_err());
        }
    }
    assert!(
        listener
            .accept()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the provider connected to the server"
    );
    assert_eq!(
        pdns.query("www.hosting.test", RecordType::A),
        Some((300, owned(&["192.0.2.1"])))
    );
    assert_eq!(pdns.query("other-ngo.hosting.test", RecordType::A), None);
}
