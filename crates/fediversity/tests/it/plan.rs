//! `fediversity plan`: the JSON graph is complete and byte-stable, and the text for people is
//! exactly its golden file, coloured only when colours are asked for.

use fediversity_testkit::golden::assert_golden;
use serde_json::Value;

use crate::cli::{fediversity, file_name, files_in, tests_dir, workspace_root};

/// The example operator files, relative to the workspace root.
fn examples() -> Vec<String> {
    files_in(&workspace_root().join("examples/operators"), "json")
        .iter()
        .map(|path| format!("examples/operators/{}", file_name(path)))
        .collect()
}

/// Each infrastructure the examples are planned on, as extra arguments.
const INFRAS: [&[&str]; 2] = [&[], &["--infra", "examples/infra.toml"]];

/// The plans for people that have a golden file in `tests/golden/plan`.
const PLAN_GOLDENS: [(&str, &[&str]); 2] = [
    (
        "university-on-example-infra",
        &[
            "plan",
            "-f",
            "examples/operators/university.json",
            "--infra",
            "examples/infra.toml",
        ],
    ),
    (
        "photo-club-on-sandbox",
        &["plan", "-f", "examples/operators/photo-club.json"],
    ),
];

#[test]
fn plan_json_is_complete_and_the_same_bytes_every_time() {
    for example in examples() {
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(workspace_root().join(&example)).expect("an example"),
        )
        .expect("an example is JSON");
        for infra in INFRAS {
            let mut args = vec!["plan", "--json", "-f", &example];
            args.extend(infra);
            let first = fediversity(&args).run();
            first.exits(0);
            assert!(first.stderr.is_empty(), "{first}");
            let graph: Value = serde_json::from_str(&first.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{first}"));
            for key in ["version", "operator", "retention", "resources"] {
                assert!(graph.get(key).is_some(), "no `{key}`:\n{first}");
            }
            assert_eq!(graph["operator"], config["operator"]["id"], "{first}");
            assert!(
                graph["resources"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "no resources:\n{first}"
            );
            let second = fediversity(&args).run();
            second.exits(0);
            assert!(
                first.stdout == second.stdout,
                "two runs differ:\n{first}\n\n{second}"
            );
        }
    }
}

#[test]
fn plan_for_people_matches_its_golden() {
    for (name, args) in PLAN_GOLDENS {
        let outcome = fediversity(args).run();
        outcome.exits(0);
        assert!(outcome.stderr.is_empty(), "{outcome}");
        assert!(
            !outcome.stdout.contains('\x1b'),
            "colours under NO_COLOR:\n{outcome}"
        );
        assert_golden(
            tests_dir().join("golden/plan").join(format!("{name}.txt")),
            &outcome.stdout,
        );
    }
}

/// `text` without its ANSI SGR sequences (`ESC [ … m`).
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("\x1b[") {
        plain.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('m').expect("an SGR sequence ends with `m`");
        rest = &after[end + 1..];
    }
    plain.push_str(rest);
    plain
}

#[test]
fn plan_is_coloured_only_when_asked() {
    for (_, args) in PLAN_GOLDENS {
        let forced = fediversity(args)
            .env_remove("NO_COLOR")
            .env("CLICOLOR_FORCE", "1")
            .run();
        forced.exits(0);
        assert!(forced.stdout.contains("\x1b["), "no colours:\n{forced}");
        // Standard output is a pipe: anstream drops the colours on its own.
        let piped = fediversity(args).env_remove("NO_COLOR").run();
        piped.exits(0);
        assert!(
            !piped.stdout.contains('\x1b'),
            "colours in a pipe:\n{piped}"
        );
        assert_eq!(
            without_colours(&forced.stdout),
            piped.stdout,
            "colours changed more than the colours"
        );
    }
}
