//! `/metrics`, in Prometheus' text format.
//!
//! Deployments by state and their durations are read from the store at each scrape, so they
//! count the work of every worker process sharing it. HTTP requests and provider errors are
//! counted in this process: the requests this panel served, and the failures of the
//! deployments this process's worker ran (a separate `fediversity worker` process does not
//! serve them). No label names an operator: the figures are the platform's, not a tenant's.
//!
//! With a [`MetricsToken`] (`fediversity serve --metrics-token-file`), a scrape must carry it as
//! `Authorization: Bearer <token>`; without one, `/metrics` is open, and the server says so once
//! when it starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fediversity_engine::report::Report;
use fediversity_model::graph::DesiredGraph;
use fediversity_providers::SecretString;
use fediversity_store::{Deployment, DeploymentStatus, Store};

use crate::AppState;
use crate::auth::{bearer_token, id_hash, same_token};

/// The token a Prometheus scrape of `/metrics` must carry. Only its SHA-256 is kept, and it is
/// compared in constant time with the hash of the one given, so neither timing nor length
/// tells a caller how close a guess came; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MetricsToken {
    hash: String,
}

impl MetricsToken {
    /// The token `secret` (as [`SecretString::from_file`] reads it from a token file).
    pub fn new(secret: &SecretString) -> Self {
        Self {
            hash: id_hash(secret.expose()),
        }
    }

    /// Whether `headers` carry this token as `Authorization: Bearer`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        bearer_token(headers).is_some_and(|given| same_token(&id_hash(given), &self.hash))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(…)")
    }
}

/// The upper bounds (seconds) of the deployment duration histogram's buckets: from a
/// sandbox run to a fleet of VMs installed from scratch.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The label of a request that matched no route: unknown paths must not grow the label set.
const UNMATCHED: &str = "unmatched";

/// The provider label of a failed resource that is no longer in the desired graph (one being
/// deleted): the graph is what names providers.
const UNKNOWN_PROVIDER: &str = "unknown";

/// The counters this process keeps. Shared by the panel and the worker of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by route pattern and status code.
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Failed resources by provider and resource kind.
    provider_errors: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    fn count_request(&self, route: &str, status: u16) {
        if let Ok(mut http) = self.http.lock() {
            *http.entry((route.to_owned(), status)).or_default() += 1;
        }
    }

    /// Counts the resources `report` says failed, by the provider `graph` names for each.
    pub fn count_failures(&self, graph: &DesiredGraph, report: &Report) {
        let Ok(mut errors) = self.provider_errors.lock() else {
            return;
        };
        for address in report.failed.keys() {
            let provider = graph
                .resources
                .get(address)
                .map_or(UNKNOWN_PROVIDER, |resource| resource.provider.as_str());
            let key = (provider.to_owned(), address.kind().as_str().to_owned());
            *errors.entry(key).or_default() += 1;
        }
    }

    /// The exposition of everything, with `deployments` (every operator's) from the store.
    fn render(&self, deployments: &[Deployment]) -> String {
        let mut out = String::new();
        render_states(&mut out, deployments);
        render_durations(&mut out, deployments);
        let errors = self
            .provider_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        header(
            &mut out,
            "fediversity_provider_errors_total",
            "counter",
            "Resources whose provider call failed, by provider and resource kind.",
        );
        for ((provider, kind), count) in errors {
            let _ = writeln!(
                out,
                "fediversity_provider_errors_total{{provider=\"{}\",kind=\"{}\"}} {count}",
                escape(&provider),
                escape(&kind)
            );
        }
        let http = self.http.lock().map(|h| h.clone()).unwrap_or_default();
        header(
            &mut out,
            "fediversity_http_requests_total",
            "counter",
            "HTTP requests served, by route and status code.",
        );
        for ((route, status), count) in http {
            let _ = writeln!(
                out,
                "fediversity_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                escape(&route)
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn render_states(out: &mut String, deployments: &[Deployment]) {
    header(
        out,
        "fediversity_deployments",
        "gauge",
        "Deployments in the store, by state.",
    );
    for state in [
        DeploymentStatus::Queued,
        DeploymentStatus::Running,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
    ] {
        let count = deployments.iter().filter(|d| d.status == state).count();
        let _ = writeln!(
            out,
            "fediversity_deployments{{state=\"{}\"}} {count}",
            state.as_str()
        );
    }
}

/// The run time (started to finished) of every finished deployment, as a histogram.
fn render_durations(out: &mut String, deployments: &[Deployment]) {
    let name = "fediversity_deployment_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "How long finished deployments ran, from a worker starting them to their end.",
    );
    let seconds: Vec<f64> = deployments
        .iter()
        .filter_map(|d| Some((d.finished_at? - d.started_at?).max(0) as f64 / 1000.0))
        .collect();
    for bound in DURATION_BUCKETS {
        let count = seconds.iter().filter(|s| **s <= bound).count();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", seconds.len());
    let _ = writeln!(out, "{name}_sum {}", seconds.iter().sum::<f64>());
    let _ = writeln!(out, "{name}_count {}", seconds.len());
}

/// Every operator's deployments.
async fn all_deployments(store: &Store) -> fediversity_store::Result<Vec<Deployment>> {
    let mut all = Vec::new();
    for operator in store.operators().await? {
        all.extend(store.deployments(&operator).await?);
    }
    Ok(all)
}

/// `GET /metrics`: 401 with a `Bearer` challenge unless the request carries the panel's
/// [`MetricsToken`], when it has one. The store is not read for a refused scrape.
pub(crate) async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.inner.options.metrics_token
        && !token.admits(&headers)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
            "/metrics needs the metrics token: Authorization: Bearer <token>\n",
        )
            .into_response();
    }
    match all_deployments(state.store()).await {
        Ok(deployments) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            state.metrics().render(&deployments),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "metrics: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer\n",
            )
                .into_response()
        }
    }
}

/// Counts every request by the route it matched and the status it got.
pub(crate) async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    state
        .metrics()
        .count_request(&route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use fediversity_model::graph::{ResourceAddress, ResourceKind};

    use super::*;

    #[test]
    fn failures_are_counted_by_the_provider_the_graph_names() {
        let config = fediversity_model::parse_operator_config(
            r#"{"version": 1, "operator": {"id": "uni", "name": "Uni"}, "domain": "uni.example.org",
                "services": {"mastodon": {"enable": true, "size": "small"}},
                "admin": {"username": "boss", "email": "boss@example.org"},
                "maintenance": {"time_zone": "UTC", "windows": [{"days": ["sun"], "start": "02:00", "duration_minutes": 60}]}}"#,
        )
        .unwrap();
        let graph =
            fediversity_configurator::configure(&config, &fediversity_model::Infra::sandbox())
                .unwrap();
        let vm = graph
            .resources
            .iter()
            .find(|(address, _)| address.kind() == ResourceKind::Vm)
            .map(|(address, resource)| (address.clone(), resource.provider.clone()))
            .unwrap();
        let mut report = Report::default();
        report.failed.insert(vm.0, "connection refused".to_owned());
        report.failed.insert(
            ResourceAddress::new(ResourceKind::Dns, "gone").unwrap(),
            "timeout".to_owned(),
        );
        let metrics = Metrics::default();
        metrics.count_failures(&graph, &report);
        metrics.count_failures(&graph, &report);
        let text = metrics.render(&[]);
        let line = format!(
            "fediversity_provider_errors_total{{provider=\"{}\",kind=\"vm\"}} 2",
            vm.1
        );
        assert!(text.contains(&line), "{text}");
        assert!(
            text.contains("fediversity_provider_errors_total{provider=\"unknown\",kind=\"dns\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn only_the_token_itself_is_admitted() {
        let token = MetricsToken::new(&SecretString::new("s3cret-token"));
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(token.admits(&with("Bearer s3cret-token")));
        assert!(!token.admits(&HeaderMap::new()));
        for refused in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Basic s3cret-token",
            "s3cret-token",
        ] {
            assert!(!token.admits(&with(refused)), "{refused}");
        }
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let metrics = Metrics::default();
        metrics.count_request("/operators/{operator}", 200);
        metrics.count_request("/operators/{operator}", 200);
        metrics.count_request(UNMATCHED, 404);
        let text = metrics.render(&[]);
        assert!(
            text.contains(
                "fediversity_http_requests_total{route=\"/operators/{operator}\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("fediversity_http_requests_total{route=\"unmatched\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fediversity_deployments{state=\"queued\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("fediversity_deployment_duration_seconds_count 0"),
            "{text}"
        );
    }
}
