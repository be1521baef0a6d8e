//! The configuration form's maintenance windows: every window of a configuration saved through
//! the API is a row of the form, and saving, editing, removing and adding rows changes exactly
//! the windows concerned.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{call, token};
use crate::harness::{Browser, Panel};

const FORM: &str = "/operators/uni/configure";

/// A configuration with three windows, the second listing its days out of weekday order.
fn three_windows() -> Value {
    json!({
        "version": 1,
        "operator": {"id": "uni", "name": "Org"},
        "domain": "uni.example.org",
        "services": {"mastodon": {"enable": true, "size": "small"}},
        "admin": {"username": "boss", "email": "boss@example.org"},
        "maintenance": {"time_zone": "UTC", "windows": [
            {"days": ["sun"], "start": "02:00", "duration_minutes": 120},
            {"days": ["sat", "wed"], "start": "23:30", "duration_minutes": 60},
            {"days": ["mon", "tue", "thu"], "start": "05:15", "duration_minutes": 45},
        ]}
    })
}

/// The value of attribute `name` in the inside of an HTML tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!(r#" {name}=""#);
    let start = tag.find(&marker)? + marker.len();
    tag[start..].split('"').next()
}

/// What a browser sends for the configuration form on `html` when nothing is changed: every
/// text field, the ticked boxes and radio buttons, the selected options and the CSRF token.
fn shown_fields(html: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!(r#"action="{FORM}""#))
        .unwrap_or_else(|| panic!("no configuration form in {html}"));
    let form = &html[start..];
    let form = &form[..form.find("</form>").unwrap()];
    let mut fields = Vec::new();
    let mut select = None;
    for tag in form.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        let ticked = tag.split_whitespace().any(|word| word == "checked");
        if tag.starts_with("input ") {
            let kind = attribute(tag, "type").unwrap_or("text");
            if matches!(kind, "checkbox" | "radio") && !ticked {
                continue;
            }
            let name = attribute(tag, "name").unwrap();
            let value = attribute(tag, "value").unwrap_or("on");
            fields.push((name.to_owned(), value.to_owned()));
        } else if tag.starts_with("select ") {
            select = attribute(tag, "name");
        } else if tag.starts_with("option ") && tag.split_whitespace().any(|w| w == "selected") {
            let value = attribute(tag, "value").unwrap();
            fields.push((select.unwrap().to_owned(), value.to_owned()));
        }
    }
    fields
}

/// Opens the form, changes `edits` (an empty value drops the field, as an unticked box is
/// not sent) and saves it.
async fn save_form(browser: &Browser, edits: &[(&str, &str)]) -> crate::harness::Page {
    let mut fields = shown_fields(&browser.get(FORM).await.body);
    for (name, value) in edits {
        fields.retain(|(field, _)| field != name);
        if !value.is_empty() {
            fields.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser.post(FORM, &fields).await
}

/// The windows of every saved configuration version, oldest first.
async fn saved_windows(panel: &Panel) -> Vec<Value> {
    let operator = "uni".try_into().unwrap();
    panel
        .store
        .configurations(&operator)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.config["maintenance"]["windows"].clone())
        .collect()
}

#[tokio::test]
async fn the_form_edits_every_maintenance_window() {
    let panel = Panel::start().await;
    let browser = panel.operator("uni").await;
    let secret = token(&browser, "uni").await;
    let (status, body) = call(
        &browser,
        Some(&secret),
        Method::POST,
        "/api/v1/operators/uni/configurations",
        Some(three_windows().to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let original = three_windows()["maintenance"]["windows"].clone();

    // Every window is a row, then one empty row to add a window.
    let form = browser.get(FORM).await.body;
    for shown in [
        r#"name="window_0_start" value="02:00""#,
        r#"name="window_1_start" value="23:30""#,
        r#"name="window_2_duration" value="45""#,
        r#"name="window_1_day_sat" checked"#,
        r#"name="window_1_remove""#,
        r#"name="window_3_start" value="""#,
    ] {
        assert!(form.contains(shown), "{shown}: {form}");
    }
    assert!(!form.contains("window_4_"), "{form}");
    assert!(!form.contains(r#"name="window_3_remove""#), "{form}");

    // Saved unchanged, nothing new is saved.
    let unchanged = save_form(&browser, &[]).await;
    assert_eq!(
        unchanged.status,
        StatusCode::SEE_OTHER,
        "{}",
        unchanged.body
    );
    assert_eq!(saved_windows(&panel).await, std::slice::from_ref(&original));

    // Editing the second window changes only the second.
    let edited = save_form(
        &browser,
        &[("window_1_start", "22:00"), ("window_1_day_sat", "")],
    )
    .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let mut expected = original.clone();
    expected[1] = json!({"days": ["wed"], "start": "22:00", "duration_minutes": 60});
    assert_eq!(saved_windows(&panel).await.last(), Some(&expected));

    // Removing one removes it.
    let removed = save_form(&browser, &[("window_0_remove", "on")]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    let expected = json!([expected[1], expected[2]]);
    assert_eq!(saved_windows(&panel).await.last(), Some(&expected));

    // Filling in the empty row adds a window.
    let added = save_form(
        &browser,
        &[
            ("window_2_day_fri", "on"),
            ("window_2_start", "12:00"),
            ("window_2_duration", "30"),
        ],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let new = json!({"days": ["fri"], "start": "12:00", "duration_minutes": 30});
    let expected = json!([expected[0], expected[1], new]);
    assert_eq!(saved_windows(&panel).await.last(), Some(&expected));
    assert_eq!(saved_windows(&panel).await.len(), 4);

    // A problem is shown on the row it concerns, and the last window cannot be removed.
    let refused = save_form(&browser, &[("window_1_duration", "5")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains(r#"id="window_1_duration-error""#),
        "{}",
        refused.body
    );
    let refused = save_form(
        &browser,
        &[
            ("window_0_remove", "on"),
            ("window_1_remove", "on"),
            ("window_2_remove", "on"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains(r#"id="windows-error""#) && refused.body.contains("at least 1"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"name="window_2_remove" checked"#),
        "the form shows what was sent: {}",
        refused.body
    );
    assert_eq!(saved_windows(&panel).await.len(), 4, "nothing saved");
    panel.stop().await;
}
