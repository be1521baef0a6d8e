//! A throwaway SMTP server for the e-mail tests: Debian's aiosmtpd (`python3-aiosmtpd`, which
//! `scripts/setup-test` installs) with its `Mailbox` handler, which stores every message it
//! accepts in a Maildir of its own temporary directory.
//!
//! It listens on a free loopback port without TLS (the tests use `tls = "none"` on loopback).
//! [`SmtpServer::messages`] reads the Maildir back with Python's `email` package, which decodes
//! the MIME parts, so tests check what a mail client would show.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a server that cannot start is a failed test"
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The Python the server runs with: Debian's, where `python3-aiosmtpd` is installed.
const PYTHON: &str = "/usr/bin/python3";

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Prints the Maildir's messages as JSON, oldest first: headers and decoded text parts.
const READER: &str = r#"
import email, email.policy, json, mailbox, re, sys
out = []
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
def received(key):
    # A Maildir key starts with the delivery's seconds and microseconds: SECONDS.MUSECSP...
    seconds, micros = re.match(r"(\d+)\.M(\d+)", key).groups()
    return (int(seconds), int(micros))
for key in sorted(box.keys(), key=received):
    with box.get_file(key) as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    parts = [
        {"content_type": p.get_content_type(), "text": p.get_content()}
        for p in msg.walk() if p.get_content_maintype() == "text"
    ]
    out.append({
        "from": str(msg["From"]), "to": str(msg["To"]), "subject": str(msg["Subject"]),
        "content_type": msg.get_content_type(), "parts": parts,
    })
print(json.dumps(out))
"#;

/// A message the server received.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// The `From` header.
    pub from: String,
    /// The `To` header.
    pub to: String,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// The message's own content type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// Its text parts: content type (`text/plain`, `text/html`) and decoded text.
    pub parts: Vec<(String, String)>,
}

impl Delivered {
    /// The decoded text of the part of `content_type`.
    ///
    /// # Panics
    /// When the message has no such part.
    pub fn part(&self, content_type: &str) -> &str {
        self.parts
            .iter()
            .find(|(kind, _)| kind == content_type)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no {content_type} part in {self:#?}"))
    }
}

/// A running aiosmtpd, stopped and deleted when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    address: SocketAddr,
    dir: TempDir,
    child: Child,
}

impl SmtpServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    /// When aiosmtpd is not installed or does not start, with what to do about it.
    pub fn start() -> SmtpServer {
        SmtpServer::start_on(free_port())
    }

    /// Starts a server on `port` (e.g. one a test first left closed to see the relay down).
    ///
    /// # Panics
    /// As [`SmtpServer::start`].
    pub fn start_on(port: u16) -> SmtpServer {
        check_installed();
        let dir = tempfile::Builder::new()
            .prefix("fediversity-smtp-")
            .tempdir()
            .expect("cannot create a temporary directory for aiosmtpd");
        let mailbox = dir.path().join("Maildir");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &address.to_string()])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&mailbox)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run python3 -m aiosmtpd");
        let mut server = SmtpServer {
            address,
            dir,
            child,
        };
        server.wait_until_it_accepts();
        server
    }

    /// The address it listens on (127.0.0.1 and a port).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every message received so far, oldest first.
    ///
    /// # Panics
    /// When the Maildir cannot be read.
    pub fn messages(&self) -> Vec<Delivered> {
        let mailbox = self.dir.path().join("Maildir");
        if !mailbox.join("new").exists() {
            return Vec::new();
        }
        let output = Command::new(PYTHON)
            .args(["-c", READER])
            .arg(&mailbox)
            .output()
            .expect("cannot run python3 to read the Maildir");
        assert!(
            output.status.success(),
            "reading the Maildir failed: {}",
            crate::describe(&output)
        );
        let parsed: Vec<Value> =
            serde_json::from_slice(&output.stdout).expect("the Maildir reader printed no JSON");
        parsed.iter().map(delivered).collect()
    }

    fn wait_until_it_accepts(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aiosmtpd on {} exited at start: {status}", self.address);
            }
            if TcpStream::connect(self.address).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "aiosmtpd did not accept connections on {} within {START_TIMEOUT:?}",
            self.address
        );
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot find a free loopback port")
        .port()
}

fn check_installed() {
    let found = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "aiosmtpd is missing ({PYTHON} cannot import it): run scripts/setup-test, which installs \
         Debian's python3-aiosmtpd"
    );
}

fn delivered(message: &Value) -> Delivered {
    let text = |field: &str| message[field].as_str().unwrap_or_default().to_owned();
    let parts = message["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .map(|part| {
                    (
                        part["content_type"].as_str().unwrap_or_default().to_owned(),
                        part["text"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Delivered {
        from: text("from"),
        to: text("to"),
        subject: text("subject"),
        content_type: text("content_type"),
        parts,
    }
}
