//! `fediversity fleet`: a release is published (or only summarised with `--dry-run`), its
//! rollout shown, paused and resumed.

use crate::cli::{TempDir, fediversity};

/// The sandbox's sizes and limits with 6 GiB instead of 4 for `small`: a release that changes
/// every operator's VMs.
fn release_infra() -> String {
    let infra = crate::infra::SIZES_AND_LIMITS.replace("memory_mib = 4096", "memory_mib = 6144");
    assert_ne!(infra, crate::infra::SIZES_AND_LIMITS);
    infra
}

#[test]
fn a_release_is_summarised_published_paused_and_resumed() {
    let dir = TempDir::new("fleet");
    let infra = dir.write("release.toml", &release_infra());
    let infra = infra.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let release = |extra: &[&str]| {
        let mut args = vec![
            "fleet",
            "release",
            "--infra",
            infra,
            "--title",
            "Bigger VMs",
            "--severity",
            "routine",
            "--data-dir",
            data,
        ];
        args.extend_from_slice(extra);
        fediversity(args).run()
    };

    let dry = release(&["--dry-run"]);
    dry.exits(0);
    assert!(dry.stdout.contains("0 of 0 operators affected"), "{dry}");
    let none = fediversity(["fleet", "status", "--data-dir", data]).run();
    none.exits(1);
    assert!(
        none.stderr.contains("no release has been published"),
        "{none}"
    );

    let published = release(&["--concurrency", "2"]);
    published.exits(0);
    assert!(
        published.stdout.contains("Release 1 published"),
        "{published}"
    );
    let status = fediversity(["fleet", "status", "1", "--data-dir", data]).run();
    status.exits(0);
    assert!(
        status
            .stdout
            .contains("Release 1: Bigger VMs (routine) — running"),
        "{status}"
    );

    let paused = fediversity(["fleet", "pause", "1", "--data-dir", data]).run();
    paused.exits(0);
    let status = fediversity(["fleet", "status", "--data-dir", data]).run();
    assert!(status.stdout.contains("— paused"), "{status}");
    fediversity(["fleet", "resume", "1", "--data-dir", data])
        .run()
        .exits(0);
    let status = fediversity(["fleet", "status", "--data-dir", data]).run();
    assert!(status.stdout.contains("— running"), "{status}");

    let unknown = fediversity(["fleet", "pause", "7", "--data-dir", data]).run();
    unknown.exits(1);
    let canary = release(&["--canary", "nobody"]);
    canary.exits(1);
    assert!(canary.stderr.contains("no operator `nobody`"), "{canary}");
}
