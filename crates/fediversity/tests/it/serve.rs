//! `fediversity serve` and `fediversity admin create`, as the binary runs them: the panel
//! answers its health checks on the default store and sandbox, takes its sign-up mode from the
//! environment and stops cleanly on SIGTERM;
//! administrators are made from the command line. (The panel's pages are tested in
//! `crates/panel/tests/it`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{TempDir, fediversity};

/// `GET path` over HTTP/1.0; the status line and body.
fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_answers_health_checks_and_stops_on_sigterm() {
    let data = TempDir::new("serve");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fediversity"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env_remove("FEDIVERSITY_INFRA")
        .env_remove("FEDIVERSITY_DATABASE_URL")
        .env_remove("FEDIVERSITY_KEY_FILE")
        // `--sign-up` from the environment reaches the panel.
        .env("FEDIVERSITY_SIGN_UP", "invitation")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    let address = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_owned();

    assert!(
        get(&address, "/healthz").starts_with("HTTP/1.0 200"),
        "healthz"
    );
    let ready = get(&address, "/readyz");
    assert!(
        ready.starts_with("HTTP/1.0 200") && ready.ends_with("ready\n"),
        "{ready}"
    );
    assert!(get(&address, "/").contains("location: /sign-in"));
    let sign_up = get(&address, "/sign-up");
    assert!(sign_up.contains("Sign-up is by invitation"), "{sign_up}");
    assert!(
        data.path().join("fediversity.db").exists(),
        "SQLite in the data directory"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("Stopping"), "{rest}");
    assert!(
        rest.contains("/metrics is open to anyone who reaches the panel"),
        "without a metrics token, a warning says /metrics is open: {rest}"
    );
}

#[test]
fn admin_create_makes_an_administrator_once() {
    let data = TempDir::new("admin");
    let dir = data.path().to_str().unwrap();
    let create = |email: &str, password: &str| {
        fediversity(["admin", "create", "--email", email, "--data-dir", dir])
            .env("FEDIVERSITY_ADMIN_PASSWORD", password)
            .run()
    };
    let made = create("Root@Host.example", "a long enough password");
    made.exits(0);
    assert!(
        made.stdout.contains("root@host.example created"),
        "{}",
        made.stdout
    );
    let again = create("root@host.example", "a long enough password");
    again.exits(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let short = create("other@host.example", "short");
    short.exits(1);
    assert!(
        short.stderr.contains("at least 12 characters"),
        "{}",
        short.stderr
    );

    // Without the variable, the password is the first line of standard input.
    fediversity([
        "admin",
        "create",
        "--email",
        "ops@host.example",
        "--data-dir",
        dir,
    ])
    .stdin("another long password\n")
    .run()
    .exits(0);
}

#[test]
fn serve_refuses_a_missing_empty_or_shared_metrics_token_file() {
    use std::os::unix::fs::PermissionsExt as _;

    let data = TempDir::new("metrics-token");
    let dir = data.path().to_str().unwrap().to_owned();
    let empty = data.write("empty", "\n");
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = data.write("shared", "hunter2-token\n");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = data.path().join("missing");
    for (file, says) in [
        (&missing, "cannot read the secret file"),
        (&empty, "is empty"),
        (&shared, "chmod 600"),
    ] {
        let served = fediversity(["serve", "--listen", "127.0.0.1:0", "--data-dir", &dir])
            .env("FEDIVERSITY_METRICS_TOKEN_FILE", file.to_str().unwrap())
            .run();
        served.exits(1);
        for expected in ["--metrics-token-file", says, file.to_str().unwrap()] {
            assert!(
                served.stderr.contains(expected),
                "{expected}: {}",
                served.stderr
            );
        }
        assert!(!served.stderr.contains("hunter2"), "{}", served.stderr);
    }
    assert!(
        !data.path().join("fediversity.db").exists(),
        "serve stops before it opens the store"
    );
}
