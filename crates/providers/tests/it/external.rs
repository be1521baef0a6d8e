//! External providers: the Python example through the trait, and deliberately broken scripts
//! for each way a process can fail (exits, hangs, writes junk, answers the wrong request).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fediversity_engine::Provider;
use fediversity_engine::ProviderError;
use fediversity_engine::events::Event;
use fediversity_engine::provider::{Deletion, ErrorKind};
use fediversity_model::Retention;
use fediversity_providers::{Error, ExternalOptions, ExternalProvider};
use serde_json::json;

use crate::{Events, ctx, ctx_with, require_python3, script, workspace};

pub fn notes_exe() -> PathBuf {
    require_python3();
    workspace().join("examples/providers/notes.py")
}

pub fn notes_options(dir: &Path) -> ExternalOptions {
    ExternalOptions {
        env: vec![("NOTES_DIR".into(), dir.as_os_str().to_owned())],
        call_timeout: Duration::from_secs(20),
        ..ExternalOptions::default()
    }
}

fn record(ttl: u32) -> serde_json::Value {
    json!({"zone": "example.org", "name": "social.example.org", "type": "A", "ttl": ttl, "values": ["192.0.2.10"]})
}

#[tokio::test]
async fn the_example_provider_works_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let notes = ExternalProvider::start(notes_exe(), notes_options(dir.path()))
        .await
        .unwrap();
    assert_eq!(notes.name(), "notes");
    assert_eq!(notes.concurrency(), 1);
    assert_eq!(
        notes.replace_on(&"dns.a".parse().unwrap()),
        ["zone", "name", "type"]
    );

    let events = Arc::new(Events::default());
    let c = ctx_with("example-org", "dns.mastodon-a", events.clone());
    assert!(notes.read(&c, &record(300), None).await.unwrap().is_none());
    let made = notes.create(&c, &record(300)).await.unwrap();
    assert_eq!(made.values["fqdn"], "social.example.org");
    assert!(made.sensitive.contains("token"));
    assert!(
        events.all().iter().any(|e| matches!(e, Event::Progress { message, fraction: Some(f), .. } if message == "writing the note" && (*f - 0.5).abs() < 1e-6)),
        "progress messages become events"
    );
    let note = dir.path().join("example-org/dns.mastodon-a.note");
    assert!(note.exists());

    // Found by identity alone; hand edits show as drift.
    assert_eq!(
        notes
            .read(&c, &record(300), None)
            .await
            .unwrap()
            .unwrap()
            .outputs,
        made
    );
    let text = std::fs::read_to_string(&note)
        .unwrap()
        .replace("ttl: 300", "ttl: 5");
    std::fs::write(&note, text).unwrap();
    assert_eq!(
        notes
            .read(&c, &record(300), Some(&made))
            .await
            .unwrap()
            .unwrap()
            .inputs["ttl"],
        5
    );

    let updated = notes.update(&c, &record(600), &made).await.unwrap();
    assert_eq!(updated, made, "the token stays");
    assert_eq!(
        notes
            .read(&c, &record(600), None)
            .await
            .unwrap()
            .unwrap()
            .inputs["ttl"],
        600
    );

    let error = notes
        .create(&c, &json!({"zone": "example.org"}))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);

    assert_eq!(
        notes
            .delete(&c, &record(600), &updated, Retention::Keep)
            .await
            .unwrap(),
        Deletion::Removed
    );
    assert!(notes.read(&c, &record(600), None).await.unwrap().is_none());
    assert_eq!(
        notes
            .delete(&c, &record(600), &updated, Retention::Delete)
            .await
            .unwrap(),
        Deletion::Removed
    );

    // Stopped, it starts again on the next call.
    notes.stop().await;
    assert!(notes.read(&c, &record(600), None).await.unwrap().is_none());
    let diff = notes
        .remote_diff(&"dns.a".parse().unwrap(), &record(300), &record(600))
        .await
        .unwrap();
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].path, "ttl");
    assert_eq!(diff[0].after, Some(json!(600)));
}

/// A provider that answers hello (with `extra` hello fields) and handles requests with
/// `handle`, a Python function body taking `request` and returning the message to send (or
/// doing something worse).
fn scripted(dir: &Path, name: &str, handle: &str) -> PathBuf {
    require_python3();
    let body = format!(
        r#"#!/usr/bin/env python3
import json, sys, time, os
def send(message):
    print(json.dumps(message), flush=True)
def handle(request):
{handle}
for line in sys.stdin:
    request = json.loads(line)
    if request["method"] == "hello":
        send({{"id": request["id"], "result": {{"protocol": 1, "name": "broken", "kinds": ["dns"]}}}})
        continue
    answer = handle(request)
    if answer is not None:
        send(answer)
"#
    );
    script(dir, name, &body)
}

fn fast(dir: &Path) -> ExternalOptions {
    ExternalOptions {
        call_timeout: Duration::from_secs(2),
        ..notes_options(dir)
    }
}

/// Starts the scripted provider `name` (see [`scripted`]) and asks it to create `dns.a`,
/// which the script makes fail: the provider and the error it gave.
async fn failed_create(dir: &Path, name: &str, handle: &str) -> (ExternalProvider, ProviderError) {
    let exe = scripted(dir, name, handle);
    let provider = ExternalProvider::start(&exe, fast(dir)).await.unwrap();
    let error = provider
        .create(&ctx("example-org", "dns.a"), &record(300))
        .await
        .unwrap_err();
    (provider, error)
}

/// Checks that `error` is of `kind` and mentions every one of `fragments`.
fn assert_error(error: &ProviderError, kind: ErrorKind, fragments: &[&str]) {
    assert_eq!(error.kind, kind, "{}", error.message);
    for fragment in fragments {
        assert!(
            error.message.contains(fragment),
            "`{fragment}` is not in: {}",
            error.message
        );
    }
}

/// The provider answers again: its process was started anew.
async fn assert_restarted(provider: &ExternalProvider) {
    let c = ctx("example-org", "dns.a");
    assert!(
        provider
            .read(&c, &record(300), None)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_provider_that_exits_fails_the_call_transiently_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, error) = failed_create(
        dir.path(),
        "dies.py",
        r#"    if request["method"] == "create":
        print("about to die", file=sys.stderr, flush=True)
        sys.exit(3)
    return {"id": request["id"], "result": None}"#,
    )
    .await;
    let expected = [
        "dies.py",
        "exited",
        "exit status: 3",
        "started again on the next call",
    ];
    assert_error(&error, ErrorKind::Transient, &expected);
    assert_restarted(&provider).await;
}

#[tokio::test]
async fn a_provider_that_hangs_times_out_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (provider, error) = failed_create(
        dir.path(),
        "hangs.py",
        r#"    if request["method"] == "create":
        time.sleep(60)
    return {"id": request["id"], "result": None}"#,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let expected = ["did not answer `create` of dns.a within 2 s", "hangs.py"];
    assert_error(&error, ErrorKind::Transient, &expected);
    assert_restarted(&provider).await;
}

#[tokio::test]
async fn a_provider_that_writes_junk_breaks_the_protocol_without_the_junk_being_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, error) = failed_create(
        dir.path(),
        "junk.py",
        r#"    if request["method"] == "create":
        print("password=poison-junk", flush=True)
        return None
    if request["method"] == "update":
        return {"id": request["id"] + 1000, "result": {"values": {}}}
    if request["method"] == "delete":
        return {"id": request["id"], "result": {"gone": True}}
    return {"id": request["id"], "result": None}"#,
    )
    .await;
    assert_error(
        &error,
        ErrorKind::Permanent,
        &["broke the protocol", "not JSON", "junk.py"],
    );
    assert!(!error.message.contains("poison"), "{}", error.message);
    let c = ctx("example-org", "dns.a");

    let outputs = Default::default();
    let error = provider
        .update(&c, &record(300), &outputs)
        .await
        .unwrap_err();
    assert!(
        error.message.contains("not waiting for one"),
        "{}",
        error.message
    );

    let error = provider
        .delete(&c, &record(300), &outputs, Retention::Delete)
        .await
        .unwrap_err();
    let expected = ["answered `delete` of dns.a with a result of the wrong shape"];
    assert_error(&error, ErrorKind::Permanent, &expected);
}

#[tokio::test]
async fn providers_that_cannot_start_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing =
        ExternalProvider::start(dir.path().join("nowhere"), ExternalOptions::default()).await;
    assert!(
        matches!(missing, Err(Error::NotExecutable { .. })),
        "{missing:?}"
    );

    require_python3();
    let old = script(
        dir.path(),
        "old.py",
        "#!/usr/bin/env python3\nimport json, sys\nfor line in sys.stdin:\n    r = json.loads(line)\n    print(json.dumps({\"id\": r[\"id\"], \"result\": {\"protocol\": 2, \"name\": \"old\", \"kinds\": [\"dns\"]}}), flush=True)\n",
    );
    let error = ExternalProvider::start(&old, ExternalOptions::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("speaks protocol version 2"),
        "{error}"
    );
    assert!(error.to_string().contains("old.py"), "{error}");

    let silent = script(dir.path(), "silent.sh", "#!/bin/sh\nexit 0\n");
    let error = ExternalProvider::start(&silent, ExternalOptions::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("silent.sh") && error.to_string().contains("exited"),
        "{error}"
    );
}
