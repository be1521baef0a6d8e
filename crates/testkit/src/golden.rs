//! Golden files: expected outputs checked into `tests/golden/`, compared byte for byte.
//!
//! A test never rewrites a golden file on its own. To accept new output on purpose, run
//! `scripts/update-golden` (which sets `FEDIVERSITY_UPDATE_GOLDEN=1`), then review the diff.

use std::path::Path;

/// The variable that lets golden tests write what they produced instead of comparing.
pub const UPDATE_VARIABLE: &str = "FEDIVERSITY_UPDATE_GOLDEN";

/// Compares `actual` with the file at `path`, or writes it there when updating was asked for.
///
/// # Panics
/// When the file is missing or differs (this is a test assertion), with a readable diff.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    let path = path.as_ref();
    if std::env::var_os(UPDATE_VARIABLE).is_some_and(|v| v == "1") {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}\nrun scripts/update-golden to create it, then review it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from what the test produced (- golden, + actual):\n{}\nif the change is intended, run scripts/update-golden and review the diff",
            path.display(),
            diff(&expected, actual)
        );
    }
}

/// A line diff that shows only the lines that differ, with their line numbers.
fn diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        let (e, a) = (expected.get(i), actual.get(i));
        if e != a {
            if let Some(e) = e {
                out.push_str(&format!("{:>5} - {e}\n", i + 1));
            }
            if let Some(a) = a {
                out.push_str(&format!("{:>5} + {a}\n", i + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_only() {
        assert_eq!(
            diff("a\nb\nc\n", "a\nB\nc\nd\n"),
            "    2 - b\n    2 + B\n    4 + d\n"
        );
    }
}
