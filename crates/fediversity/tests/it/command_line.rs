//! The command line itself: misuse ends with clap's usage (or a hint to `--help`) and exit
//! code 2, a missing file with a message naming it and exit code 1, `-f -` reads standard input,
//! and `FEDIVERSITY_INFRA` stands in for `--infra`.

use crate::cli::{fediversity, tests_dir, workspace_root};

const UNIVERSITY: &str = "examples/operators/university.json";

#[test]
fn command_line_misuse_exits_2_with_a_hint() {
    for args in [
        &["frobnicate"][..],
        &[],
        &["validate"],
        &["plan"],
        &["plan", "--json"],
        &["validate", "-f"],
        &["validate", "-f", UNIVERSITY, "--colour"],
        &["plan", "-f", UNIVERSITY, "--infra"],
        &["schema"],
        &["schema", "graph"],
        &["infra"],
        &["infra", "check"],
        &["infra", "apply", "-f", "examples/infra.toml"],
    ] {
        let outcome = fediversity(args).run();
        outcome.exits(2).prints_nothing();
        assert!(
            outcome.stderr.contains("Usage: ") || outcome.stderr.contains("try '--help'"),
            "no usage or hint:\n{outcome}"
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    for args in [
        &["validate", "-f", "no-such-operator.json"][..],
        &["plan", "-f", "no-such-operator.json"],
        &["plan", "--json", "-f", "no-such-operator.json"],
        &["infra", "check", "-f", "no-such-infra.toml"],
        &[
            "validate",
            "-f",
            UNIVERSITY,
            "--infra",
            "no-such-infra.toml",
        ],
    ] {
        let outcome = fediversity(args).run();
        outcome.exits(1).prints_nothing();
        let missing = args
            .iter()
            .find(|a| a.starts_with("no-such-"))
            .expect("a missing file");
        assert!(
            outcome
                .stderr
                .starts_with(&format!("error: cannot open {missing}: ")),
            "the message does not name {missing}:\n{outcome}"
        );
    }
}

#[test]
fn dash_reads_standard_input() {
    let text = std::fs::read_to_string(workspace_root().join(UNIVERSITY)).expect("an example");

    let outcome = fediversity(["validate", "-f", "-"])
        .stdin(text.clone())
        .run();
    outcome.exits(0);
    assert!(
        outcome
            .stdout
            .starts_with("standard input is valid: operator `uni-utrecht` needs "),
        "{outcome}"
    );

    let from_stdin = fediversity(["plan", "--json", "-f", "-"])
        .stdin(text.clone())
        .run();
    let from_file = fediversity(["plan", "--json", "-f", UNIVERSITY]).run();
    from_stdin.exits(0);
    from_file.exits(0);
    assert!(
        from_stdin.stdout == from_file.stdout,
        "the plan of standard input differs from the file's:\n{from_stdin}\n\n{from_file}"
    );

    let broken = text.replace("\"uu.example.org\"", "\"UU.example.org\"");
    let outcome = fediversity(["validate", "-f", "-"]).stdin(broken).run();
    outcome.exits(1).prints_nothing();
    assert!(
        outcome
            .stderr
            .contains("\n  - domain: `UU.example.org` is not a valid domain"),
        "{outcome}"
    );

    // Nothing at all on standard input is an empty document, not a hang.
    let outcome = fediversity(["validate", "-f", "-"]).run();
    outcome.exits(1).prints_nothing();
    assert!(outcome.stderr.contains("the file is empty"), "{outcome}");
}

#[test]
fn fediversity_infra_stands_in_for_the_flag() {
    let corpus = tests_dir().join("corpus/invalid");
    let flag = fediversity([
        "validate",
        "-f",
        "limits-exceeded.json",
        "--infra",
        "../../../../../examples/infra.toml",
    ])
    .current_dir(&corpus)
    .run();
    let variable = fediversity(["validate", "-f", "limits-exceeded.json"])
        .env("FEDIVERSITY_INFRA", "../../../../../examples/infra.toml")
        .current_dir(&corpus)
        .run();
    flag.exits(1);
    variable.exits(1);
    assert!(flag.stderr.contains("vCPUs"), "{flag}");
    assert_eq!(flag.stderr, variable.stderr);
}
