//! The JSON API: token auth, the configure → plan → deploy path, errors as JSON, tenancy, and
//! the OpenAPI document matching the routes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Browser, Panel};

/// Makes an API token on the dashboard of `operator`.
pub(crate) async fn token(browser: &Browser, operator: &str) -> String {
    let dashboard = format!("/operators/{operator}");
    let page = browser
        .submit(
            &dashboard,
            &format!("{dashboard}/tokens"),
            &[("name", "ci")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let start = page.body.find(r#"<pre id="token">"#).unwrap() + r#"<pre id="token">"#.len();
    let token = page.body[start..].split('<').next().unwrap().to_owned();
    assert!(token.starts_with("fdv_"), "{token}");
    token
}

/// A JSON request with the token; the status and the JSON answer.
pub(crate) async fn call(
    browser: &Browser,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut request = browser
        .client
        .request(method, format!("{}{path}", browser.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

fn config(operator: &str) -> Value {
    json!({
        "version": 1,
        "operator": {"id": operator, "name": "Org"},
        "domain": format!("{operator}.example.org"),
        "services": {"pixelfed": {"enable": true, "size": "small"}},
        "admin": {"username": "boss", "email": "boss@example.org"},
        "maintenance": {"time_zone": "UTC", "windows": [{"days": ["sun"], "start": "02:00", "duration_minutes": 60}]}
    })
}

#[tokio::test]
async fn configure_plan_and_deploy_through_the_api() {
    use reqwest::Method;
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let secret = token(&browser, "uni").await;
    let token = Some(secret.as_str());
    let base = "/api/v1/operators/uni";

    let (status, body) = call(
        &browser,
        None,
        Method::GET,
        &format!("{base}/deployments"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("Bearer"));
    let (status, _) = call(
        &browser,
        Some("fdv_forged"),
        Method::GET,
        &format!("{base}/deployments"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let configurations = format!("{base}/configurations");
    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &configurations,
        Some("{not json".into()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{body}"
    );
    let mut bad = config("uni");
    bad["domain"] = json!("<script>");
    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &configurations,
        Some(bad.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["problems"][0]["path"], "domain", "{body}");
    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &configurations,
        Some(config("other").to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["problems"][0]["path"], "operator.id", "{body}");

    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &configurations,
        Some(config("uni").to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"version": 1, "saved": true}));
    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &configurations,
        Some(config("uni").to_string()),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"version": 1, "saved": false}))
    );

    let (status, body) = call(&browser, token, Method::GET, &format!("{base}/plan"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["plan"]["steps"]["vm.pixelfed"]["action"], "create",
        "{body}"
    );

    let deployments = format!("{base}/deployments");
    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &deployments,
        Some("[]".into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &browser,
        token,
        Method::POST,
        &deployments,
        Some(r#"{"version": 1}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let url = body["url"].as_str().unwrap().to_owned();

    let mut deployment = Value::Null;
    for _ in 0..600 {
        (_, deployment) = call(&browser, token, Method::GET, &url, None).await;
        if deployment["status"] == "succeeded" || deployment["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(deployment["status"], "succeeded", "{deployment}");
    let (_, events) = call(&browser, token, Method::GET, &format!("{url}/events"), None).await;
    let events = events.as_array().unwrap();
    assert_eq!(events.first().unwrap()["event"]["type"], "planned");
    assert_eq!(events.last().unwrap()["event"]["type"], "finished");
    let last = events.last().unwrap()["seq"].as_i64().unwrap();
    let (_, after) = call(
        &browser,
        token,
        Method::GET,
        &format!("{url}/events?after={last}"),
        None,
    )
    .await;
    assert_eq!(after, json!([]));

    // The same events as a stream, then the finished deployment; resumable by event id.
    let streamed = stream(&browser, &secret, &format!("{url}/stream"), None).await;
    assert_eq!(
        streamed.matches("event: event\n").count(),
        events.len(),
        "{streamed}"
    );
    assert!(streamed.contains(r#""type":"planned""#), "{streamed}");
    assert!(streamed.contains(&format!("id: {last}\n")), "{streamed}");
    assert!(streamed.contains("event: done\n"), "{streamed}");
    assert!(streamed.contains(r#""status":"succeeded""#), "{streamed}");
    let resumed = stream(&browser, &secret, &format!("{url}/stream"), Some(last)).await;
    assert!(!resumed.contains("event: event"), "{resumed}");
    assert!(resumed.contains("event: done\n"), "{resumed}");
    panel.stop().await;
}

/// Reads an API event stream to its end, resuming after `last_event` when given.
async fn stream(browser: &Browser, token: &str, path: &str, last_event: Option<i64>) -> String {
    let mut request = browser
        .client
        .get(format!("{}{path}", browser.base))
        .bearer_auth(token);
    if let Some(last) = last_event {
        request = request.header("last-event-id", last.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the stream ends after its done event")
        .unwrap()
}

#[tokio::test]
async fn another_operators_token_gets_404_on_every_api_route() {
    use reqwest::Method;
    let panel = Panel::start().await;
    let a = panel.operator("alpha").await;
    let a_token = token(&a, "alpha").await;
    let body = Some(config("alpha").to_string());
    call(
        &a,
        Some(&a_token),
        Method::POST,
        "/api/v1/operators/alpha/configurations",
        body,
    )
    .await;
    let (_, queued) = call(
        &a,
        Some(&a_token),
        Method::POST,
        "/api/v1/operators/alpha/deployments",
        Some(r#"{"version": 1}"#.into()),
    )
    .await;
    let url = queued["url"].as_str().unwrap().to_owned();

    let b = panel.operator("beta").await;
    let b_token = token(&b, "beta").await;
    for (method, path, body) in [
        (
            Method::GET,
            "/api/v1/operators/alpha/configurations".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/operators/alpha/configurations".to_owned(),
            Some(config("alpha").to_string()),
        ),
        (Method::GET, "/api/v1/operators/alpha/plan".to_owned(), None),
        (
            Method::GET,
            "/api/v1/operators/alpha/deployments".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/operators/alpha/deployments".to_owned(),
            Some(r#"{"version": 1}"#.to_owned()),
        ),
        (Method::GET, url.clone(), None),
        (Method::GET, format!("{url}/events"), None),
        (Method::GET, format!("{url}/stream"), None),
        (Method::GET, url.replace("alpha", "beta"), None),
        (Method::GET, "/api/v1/no/such/route".to_owned(), None),
    ] {
        let (status, answer) = call(&b, Some(&b_token), method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(answer["error"].is_string());
    }
    panel.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_routes_there_are() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let token = token(&browser, "uni").await;
    let (status, document) = call(
        &browser,
        None,
        reqwest::Method::GET,
        "/api/v1/openapi.json",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    assert!(
        document["components"]["schemas"]["OperatorConfig"]["properties"]["services"].is_object()
    );
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 11);
    for (path, item) in paths {
        let path = path
            .replace("{operator}", "uni")
            .replace("{deployment}", "1");
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = browser
                .client
                .request(method.clone(), format!("{}{path}", browser.base))
                .bearer_auth(&token)
                .body("{}")
                .send()
                .await
                .unwrap();
            // Routed: answered by the route (an empty body is refused, deployment 1 does not
            // exist yet), never by the fallback or with a wrong method.
            let text = response.status();
            assert_ne!(text, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if text == StatusCode::NOT_FOUND {
                assert!(
                    // The fleet and invitations are the administrators' (tests/it/fleet_api.rs,
                    // tests/it/invitations.rs).
                    path.contains("/deployments/1")
                        || path.starts_with("/api/v1/fleet/")
                        || path == "/api/v1/invitations",
                    "{method} {path} is not routed"
                );
            }
        }
    }
    panel.stop().await;
}
