//! `/metrics` after a deployment: deployments by state, their durations and the requests
//! served, in Prometheus' text format.

use reqwest::StatusCode;

use crate::harness::{Panel, deploy_mastodon, follow};

/// The value of the sample `series` (name and labels, exactly) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_deployments_by_state_their_durations_and_requests() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let before = browser.get("/metrics").await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(
        sample(&before.body, "fediversity_deployments{state=\"succeeded\"}"),
        0.0
    );

    let deployment = deploy_mastodon(&browser, "uni").await;
    follow(&browser, &deployment).await;
    assert_eq!(
        browser.get("/no/such/page").await.status,
        StatusCode::NOT_FOUND
    );

    let response = browser
        .client
        .get(format!("{}/metrics", panel.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    for (state, count) in [
        ("queued", 0.0),
        ("running", 0.0),
        ("succeeded", 1.0),
        ("failed", 0.0),
    ] {
        let series = format!("fediversity_deployments{{state=\"{state}\"}}");
        assert_eq!(sample(&text, &series), count, "{series}");
    }
    assert!(text.contains("# TYPE fediversity_deployment_duration_seconds histogram"));
    assert_eq!(
        sample(&text, "fediversity_deployment_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "fediversity_deployment_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    // A sandbox deployment takes well under a minute.
    assert_eq!(
        sample(
            &text,
            "fediversity_deployment_duration_seconds_bucket{le=\"60\"}"
        ),
        1.0
    );
    assert!(sample(&text, "fediversity_deployment_duration_seconds_sum") < 60.0);
    // Requests are counted by route pattern, never by the path (which names the operator).
    assert!(
        sample(
            &text,
            "fediversity_http_requests_total{route=\"/operators/{operator}/plan\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "fediversity_http_requests_total{route=\"/operators/{operator}/deployments\",status=\"303\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &text,
            "fediversity_http_requests_total{route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert!(!text.contains("uni"), "no operator in any label: {text}");
    assert!(text.contains("# TYPE fediversity_provider_errors_total counter"));
    panel.stop().await;
}
