//! The panel under load, as a table: `cargo bench -p fediversity --bench panel`.
//!
//! Starts a real `fediversity serve` (this build's binary: SQLite and the local sandbox in a
//! temporary directory), signs up one operator, deploys Mastodon and Pixelfed for it, then
//! has `wrk` (Debian's, installed by scripts/setup-test) drive 100 concurrent connections on
//! its dashboard for a fixed time. Prints requests/s, p50/p99 latency and the server's
//! resident memory (VmRSS) idle before the load and after it.
//!
//! `FEDIVERSITY_BENCH_SECONDS` sets the load's length (default 15). The load generator runs
//! on the same machine as the server, as it would for any single-host figure: on a 2-core
//! machine they share the cores.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops at its first failure"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Concurrent connections, as the issue's figure asks.
const CLIENTS: u32 = 100;
const OPERATOR: &str = "bench";

/// A response, read whole (every request says `Connection: close`).
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    /// The `name=value` of every cookie the response sets.
    fn cookies(&self) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|line| line.strip_prefix("set-cookie: "))
            .map(|cookie| cookie.split(';').next().unwrap().to_owned())
            .collect()
    }

    fn location(&self) -> &str {
        self.head
            .lines()
            .find_map(|line| line.strip_prefix("location: "))
            .unwrap_or("")
    }
}

/// A minimal HTTP/1.1 client: the set-up makes a dozen requests, and `wrk` makes the load.
struct Client {
    address: SocketAddr,
    cookies: Vec<String>,
}

impl Client {
    fn request(&mut self, method: &str, path: &str, form: &[(&str, &str)]) -> Response {
        let body = form
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut stream = TcpStream::connect(self.address).unwrap();
        let cookie = self.cookies.join("; ");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        // Header names are case-insensitive; values (cookies) are not.
        let head = head
            .lines()
            .map(|line| match line.split_once(':') {
                Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let response = Response {
            status,
            head,
            body: body.to_owned(),
        };
        for cookie in response.cookies() {
            let name = cookie.split('=').next().unwrap().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(cookie);
        }
        response
    }

    /// Posts `form` to `path` with the CSRF token of the form on `page`, as a browser would.
    fn submit(&mut self, page: &str, path: &str, form: &[(&str, &str)]) -> Response {
        let shown = self.request("GET", page, &[]);
        let csrf = field(&shown.body, "csrf");
        let mut form = form.to_vec();
        form.push(("csrf", &csrf));
        self.request("POST", path, &form)
    }
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the (hidden) field `name` in `html`.
fn field(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A running `fediversity serve`, stopped (SIGTERM) when dropped, also when the bench fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Starts `fediversity serve` on `address` with its data in `dir`, and waits until it answers.
fn start_server(address: SocketAddr, dir: &Path) -> Server {
    let server = Command::new(env!("CARGO_BIN_EXE_fediversity"))
        .args(["serve", "--listen", &address.to_string(), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "fediversity serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(server)
}

/// Signs up the operator, configures two services and deploys them; returns its cookies.
fn set_up(address: SocketAddr) -> Vec<String> {
    let mut client = Client {
        address,
        cookies: Vec::new(),
    };
    let email = format!("admin@{OPERATOR}.example");
    let signed_up = client.submit(
        "/sign-up",
        "/sign-up",
        &[
            ("operator", OPERATOR),
            ("email", &email),
            ("password", "correct horse battery staple"),
        ],
    );
    assert_eq!(signed_up.status, 303, "{}", signed_up.body);
    let configure = format!("/operators/{OPERATOR}/configure");
    let configured = client.submit(
        &configure,
        &configure,
        &[
            ("name", "Bench Club"),
            ("domain", "bench.example.org"),
            ("mastodon_enable", "on"),
            ("mastodon_size", "small"),
            ("mastodon_retention", "keep"),
            ("pixelfed_enable", "on"),
            ("pixelfed_size", "small"),
            ("pixelfed_retention", "keep"),
            ("admin_username", "boss"),
            ("admin_email", "boss@example.org"),
            ("time_zone", "Europe/Amsterdam"),
            ("window_0_day_sun", "on"),
            ("window_0_start", "02:00"),
            ("window_0_duration", "120"),
        ],
    );
    assert_eq!(configured.status, 303, "{}", configured.body);
    let plan = format!("/operators/{OPERATOR}/plan");
    let version = field(&client.request("GET", &plan, &[]).body, "version");
    let deployed = client.submit(
        &plan,
        &format!("/operators/{OPERATOR}/deployments"),
        &[("version", &version)],
    );
    assert_eq!(deployed.status, 303, "{}", deployed.body);
    let deployment = deployed.location().to_owned();
    let started = Instant::now();
    while !client
        .request("GET", &deployment, &[])
        .body
        .contains("<strong>succeeded</strong>")
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the deployment did not succeed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dashboard = client.request("GET", &format!("/operators/{OPERATOR}"), &[]);
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(
        dashboard
            .body
            .contains("https://pixelfed.bench.example.org"),
        "{}",
        dashboard.body
    );
    client.cookies
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// What `wrk` measured.
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
}

/// A `wrk` duration (`812.00us`, `1.20ms`, `2.01s`) in milliseconds.
fn millis(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().unwrap();
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        other => panic!("unknown wrk unit {other}"),
    }
}

fn parse_wrk(output: &str) -> Load {
    assert!(
        !output.contains("Non-2xx or 3xx responses") && !output.contains("Socket errors"),
        "wrk saw errors:\n{output}"
    );
    let after = |prefix: &str| -> &str {
        output
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in wrk's output:\n{output}"))
            .trim()
    };
    Load {
        requests_per_second: after("Requests/sec:").parse().unwrap(),
        p50_ms: millis(after("50%")),
        p99_ms: millis(after("99%")),
        requests: output
            .lines()
            .find(|line| line.contains(" requests in "))
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_else(|| panic!("no request count in wrk's output:\n{output}"))
            .parse()
            .unwrap(),
    }
}

fn wrk_path() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("wrk"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("wrk is missing: run scripts/setup-test to install it"))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must not load the machine.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let wrk = wrk_path();
    let seconds: u64 =
        std::env::var("FEDIVERSITY_BENCH_SECONDS").map_or(15, |s| s.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("fediversity-bench-panel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = free_address();
    let server = start_server(address, &dir);
    let cookies = set_up(address);
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_mib(server.0.id());

    let output = Command::new(&wrk)
        .args([
            "-t2",
            &format!("-c{CLIENTS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
        ])
        .arg(format!("Cookie: {}", cookies.join("; ")))
        .arg(format!("http://{address}/operators/{OPERATOR}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let load = parse_wrk(&String::from_utf8_lossy(&output.stdout));
    let loaded_rss = rss_mib(server.0.id());

    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();

    println!(
        "The dashboard of one signed-in operator (2 services deployed), SQLite, {CLIENTS} connections, {seconds} s (wrk -t2):"
    );
    println!("| requests | requests/s | p50 | p99 | idle RSS | RSS after the load |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {:.2} ms | {:.2} ms | {idle_rss:.1} MiB | {loaded_rss:.1} MiB |",
        load.requests, load.requests_per_second, load.p50_ms, load.p99_ms
    );
}
