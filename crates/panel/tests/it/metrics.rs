//! `/metrics` after a deployment: deployments by state, their durations and the requests
//! served, in Prometheus' text format; with a metrics token, only for scrapes that carry it.

use fediversity_panel::{MetricsToken, PanelOptions};
use fediversity_providers::SecretString;
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

#[tokio::test]
async fn with_a_token_metrics_answers_only_the_scrapes_that_carry_it() {
    let token = MetricsToken::new(&SecretString::new("scrape-me-0123456789"));
    let panel = Panel::start_with(|options| PanelOptions {
        metrics_token: Some(token),
        ..options
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/metrics", panel.base);
    let scrape = |authorization: Option<&'static str>| {
        let mut request = client.get(&url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };

    for refused in [
        None,
        Some("Bearer scrape-me-012345678"),
        Some("Bearer someone-else"),
        Some("Basic c2NyYXBlLW1lLTAxMjM0NTY3ODk="),
    ] {
        let response = scrape(refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"metrics\"",
            "{refused:?}"
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains("fediversity_"), "{body}");
        assert!(!body.contains("scrape-me"), "{body}");
    }

    let response = scrape(Some("Bearer scrape-me-0123456789")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_eq!(
        sample(&text, "fediversity_deployments{state=\"queued\"}"),
        0.0
    );
    // The refused scrapes are counted like any request.
    assert_eq!(
        sample(
            &text,
            "fediversity_http_requests_total{route=\"/metrics\",status=\"401\"}"
        ),
        4.0
    );
    panel.stop().await;
}
