//! Runs the built `fediversity` binary the way a user would, in an environment that does not
//! depend on the developer's shell: no colours unless a test asks for them, no infra.toml from
//! `FEDIVERSITY_INFRA`, and the workspace root as the current directory so that the paths the
//! command prints are relative and stable.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root, where `examples/` lives.
pub fn workspace_root() -> PathBuf {
    fediversity_testkit::workspace_root()
}

/// This crate's `tests/` directory, where the corpus and the golden files live.
pub fn tests_dir() -> PathBuf {
    fediversity_testkit::workspace_root().join("crates/fediversity/tests")
}

/// The files in `dir` whose names end with `.{extension}`, sorted by name; never empty.
pub fn files_in(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .{extension} file in {}",
        dir.display()
    );
    files
}

/// The file name of `path`, for messages and golden names.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Variables that would change what the binary does or how it prints, removed from every run.
const CLEARED: &[&str] = &[
    "FEDIVERSITY_INFRA",
    "FEDIVERSITY_DATA_DIR",
    "FEDIVERSITY_DATABASE_URL",
    "FEDIVERSITY_KEY_FILE",
    "FEDIVERSITY_LOG",
    "FEDIVERSITY_METRICS_TOKEN_FILE",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "NO_COLOR",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
];

/// One invocation of `fediversity`, built up and then [`run`](Fediversity::run).
pub struct Fediversity {
    command: Command,
    stdin: Option<Vec<u8>>,
}

/// `fediversity <args>`, from the workspace root, with `NO_COLOR=1`.
pub fn fediversity<I, S>(args: I) -> Fediversity
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_fediversity"));
    command.args(args).current_dir(workspace_root());
    for name in CLEARED {
        command.env_remove(name);
    }
    command.env("NO_COLOR", "1");
    Fediversity {
        command,
        stdin: None,
    }
}

impl Fediversity {
    /// Runs in `dir` instead of the workspace root.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.command.env(name, value);
        self
    }

    /// Removes an environment variable for the child (for instance `NO_COLOR`).
    pub fn env_remove(mut self, name: &str) -> Self {
        self.command.env_remove(name);
        self
    }

    /// Feeds `input` to the child's standard input (otherwise it reads nothing).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs the command to its end. A panic in the binary fails the test here, whatever the
    /// test expects: a user never sees one.
    pub fn run(mut self) -> Outcome {
        let described = format!("{:?}", self.command);
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
        // Written from another thread so that a child which answers before reading all of its
        // input cannot block on a full output pipe while this thread blocks on its input.
        let writer = child.stdin.take().zip(self.stdin).map(|(mut pipe, input)| {
            std::thread::spawn(move || {
                // The child may exit without reading everything; that is its right.
                let _ = pipe.write_all(&input);
            })
        });
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {described}: {e}"));
        if let Some(writer) = writer {
            writer.join().expect("the stdin writer thread");
        }
        let text = |bytes: Vec<u8>, stream: &str| {
            String::from_utf8(bytes)
                .unwrap_or_else(|e| panic!("{described} wrote non-UTF-8 to {stream}: {e}"))
        };
        let (stdout, stderr) = (text(output.stdout, "stdout"), text(output.stderr, "stderr"));
        let outcome = Outcome {
            described,
            status: output.status,
            stdout,
            stderr,
        };
        assert!(
            !outcome.stderr.contains("panicked") && !outcome.stderr.contains("RUST_BACKTRACE"),
            "the binary panicked:\n{outcome}"
        );
        outcome
    }
}

/// What one run did.
pub struct Outcome {
    described: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Asserts the exit code (a signal is never the expected end), and returns `self`.
    #[track_caller]
    pub fn exits(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit code {code}:\n{self}"
        );
        self
    }

    /// Asserts that standard output is empty, and returns `self`.
    #[track_caller]
    pub fn prints_nothing(&self) -> &Self {
        assert!(self.stdout.is_empty(), "expected no output:\n{self}");
        self
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.described, self.status, self.stdout, self.stderr
        )
    }
}

/// A directory of its own under the system's temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name contains `label`, the process id and a counter, so
    /// that tests running in parallel (and other runs) never share one.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fediversity-it-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover of an earlier run whose process had the same id.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
