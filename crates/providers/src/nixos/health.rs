//! The health contract of nix/'s systems (docs/nix-modules.md, "The health contract"): each
//! system lists in `etc/fediversity/health.json` the systemd units that must be active and the
//! plain-HTTP loopback URLs that must answer one of the expected statuses.
//!
//! Units are asked with `systemctl is-active` on the host; URLs are fetched through an SSH
//! stdio forward (`ssh -W 127.0.0.1:PORT` over the host's master connection), so the request
//! is made from the host itself and needs nothing there but sshd. Checks are repeated until
//! all pass or the health timeout ends: a first start runs migrations and can take minutes.

use std::time::{Duration, Instant};

use fediversity_engine::ProviderError;
use fediversity_engine::events::ProgressReporter;
use serde::Deserialize;

use super::ssh::Session;

/// What a system declares in `etc/fediversity/health.json`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Contract {
    /// systemd units that must be `active`.
    #[serde(default)]
    units: Vec<String>,
    /// Loopback URLs that must answer one of their expected statuses.
    #[serde(default)]
    http: Vec<HttpCheck>,
}

/// One URL of the contract.
#[derive(Debug, Deserialize)]
struct HttpCheck {
    name: String,
    url: String,
    #[serde(default = "default_statuses")]
    expect_status: Vec<u16>,
}

fn default_statuses() -> Vec<u16> {
    vec![200]
}

/// Where a check's URL points: the forward's target and the request's path.
#[derive(Debug, PartialEq)]
struct Target {
    authority: String,
    path: String,
}

/// Where a system keeps its contract.
fn contract_path(system: &str) -> String {
    format!("{system}/etc/fediversity/health.json")
}

impl Contract {
    /// The contract of `system`, read from the deployer's store (the system was built there);
    /// an empty one when the system declares none.
    pub async fn of(system: &str) -> Result<Contract, ProviderError> {
        let path = contract_path(system);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => Contract::parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contract::default()),
            Err(e) => Err(ProviderError::transient(format!("cannot read {path}: {e}"))),
        }
    }

    /// `system`'s contract as `text`, read from the host (a system built there is not in the
    /// deployer's store); empty text is a system that declares nothing.
    pub fn from_host(system: &str, text: &str) -> Result<Contract, ProviderError> {
        if text.trim().is_empty() {
            return Ok(Contract::default());
        }
        Contract::parse(&contract_path(system), text)
    }

    fn parse(path: &str, text: &str) -> Result<Contract, ProviderError> {
        serde_json::from_str(text)
            .map_err(|e| ProviderError::permanent(format!("{path} is not valid: {e}")))
    }

    /// Waits until every unit is active and every URL answers as expected, asking again every
    /// `poll` until `timeout`; `Err` says what still failed then.
    pub async fn wait(
        &self,
        session: &Session,
        progress: &ProgressReporter,
        timeout: Duration,
        poll: Duration,
    ) -> Result<(), String> {
        progress.report(
            format!(
                "health: {} unit(s) and {} URL(s) on {}",
                self.units.len(),
                self.http.len(),
                session.host()
            ),
            Some(0.9),
        );
        let deadline = Instant::now() + timeout;
        loop {
            let outcome = self.check(session, poll.max(Duration::from_secs(2))).await;
            match outcome {
                Ok(()) => return Ok(()),
                Err(failure) if Instant::now() > deadline => {
                    return Err(format!(
                        "the health check did not pass within {timeout:?}: {failure}"
                    ));
                }
                Err(_) => tokio::time::sleep(poll).await,
            }
        }
    }

    /// One round of checks.
    async fn check(&self, session: &Session, timeout: Duration) -> Result<(), String> {
        if !self.units.is_empty() {
            let units: Vec<&str> = self.units.iter().map(String::as_str).collect();
            let ran = session
                .script("units", &units, None, timeout + Duration::from_secs(10))
                .await
                .map_err(|e| e.message)?;
            if !ran.success {
                let states = ran.stdout.split_whitespace().collect::<Vec<_>>();
                let inactive: Vec<String> = units
                    .iter()
                    .zip(states.iter().chain(std::iter::repeat(&"unknown")))
                    .filter(|(_, state)| **state != "active")
                    .map(|(unit, state)| format!("{unit} is {state}"))
                    .collect();
                return Err(format!("{} ({})", inactive.join(", "), ran.stderr.trim()));
            }
        }
        for check in &self.http {
            let target = target(&check.url).ok_or_else(|| {
                format!(
                    "`{}` names {}, not a plain-HTTP loopback URL",
                    check.name, check.url
                )
            })?;
            let answer = probe(session, &target, timeout)
                .await
                .map_err(|e| format!("`{}` ({}): {e}", check.name, check.url))?;
            if !check.expect_status.contains(&answer) {
                return Err(format!(
                    "`{}` ({}) answered HTTP {answer}, not {:?}",
                    check.name, check.url, check.expect_status
                ));
            }
        }
        Ok(())
    }
}

/// `http://HOST:PORT/PATH` on the loopback as a forward target and a path.
fn target(url: &str) -> Option<Target> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback || port.parse::<u16>().is_err() {
        return None;
    }
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(Target {
        authority,
        path: path.to_owned(),
    })
}

/// The status of one `GET` to `target`, made from the host.
async fn probe(session: &Session, target: &Target, timeout: Duration) -> Result<u16, String> {
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: fediversity-health\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    let answer = session
        .forward(&target.authority, request.as_bytes(), timeout)
        .await
        .map_err(|e| e.message)?;
    http_status(&answer).ok_or_else(|| "no HTTP answer".to_owned())
}

/// The status code of an HTTP answer.
fn http_status(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let mut words = text.lines().next()?.split_whitespace();
    words
        .next()
        .filter(|v| v.starts_with("HTTP/"))
        .and_then(|_| words.next())
        .and_then(|code| code.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_lines_parse() {
        assert_eq!(http_status(b"HTTP/1.0 200 OK\r\n\r\nok"), Some(200));
        assert_eq!(
            http_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(http_status(b""), None);
        assert_eq!(http_status(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn only_loopback_urls_are_targets() {
        let t = |authority: &str, path: &str| {
            Some(Target {
                authority: authority.to_owned(),
                path: path.to_owned(),
            })
        };
        assert_eq!(
            target("http://127.0.0.1:55001/health"),
            t("127.0.0.1:55001", "/health")
        );
        assert_eq!(target("http://localhost:9000"), t("127.0.0.1:9000", "/"));
        assert_eq!(
            target("http://[::1]:3903/health"),
            t("[::1]:3903", "/health")
        );
        assert_eq!(
            target("http://127.0.0.1/x?y=1"),
            t("127.0.0.1:80", "/x?y=1")
        );
        assert_eq!(target("https://127.0.0.1:443/"), None);
        assert_eq!(target("http://social.example.org/health"), None);
        assert_eq!(target("http://127.0.0.1:port/"), None);
    }

    /// Every health contract nix/'s modules publish, as the configurator's golden files
    /// record them, is one this provider reads and can check.
    #[test]
    fn every_contract_of_the_modules_is_understood() {
        let dir =
            fediversity_testkit::workspace_root().join("crates/configurator/tests/golden/nix");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let hosts: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for (host, described) in hosts {
                let contract: Contract =
                    serde_json::from_value(described["health"].clone()).unwrap();
                assert!(!contract.units.is_empty(), "{host} in {}", path.display());
                for check in &contract.http {
                    assert!(
                        target(&check.url).is_some(),
                        "{} in {}",
                        check.url,
                        path.display()
                    );
                    assert!(!check.expect_status.is_empty());
                }
                seen += 1;
            }
        }
        assert!(seen >= 4, "only {seen} contracts in {}", dir.display());
    }

    #[test]
    fn the_modules_contract_parses() {
        let contract: Contract = serde_json::from_str(
            r#"{"version": 1, "service": "garage", "units": ["garage.service"],
                "http": [{"name": "garage-admin", "url": "http://127.0.0.1:3903/health",
                          "expect_status": [200, 503]}]}"#,
        )
        .unwrap();
        assert_eq!(contract.units, ["garage.service"]);
        assert_eq!(contract.http[0].expect_status, [200, 503]);
    }
}
