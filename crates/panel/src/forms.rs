//! The configuration form: an [`OperatorConfig`] as form fields and back.
//!
//! The form is flat (`domain`, `mastodon_enable`, `mastodon_size`, …). Each maintenance window
//! is a row of fields named after its row number (`window_0_day_sun`, `window_0_start`,
//! `window_0_duration`, `window_0_remove`), and the form always ends with one empty row that
//! adds a window when filled in, so it works without JavaScript. A row left entirely empty is
//! no window; a row whose "remove" box is ticked is dropped; fields of rows numbered 100 or
//! more are no form's and are ignored.
//!
//! What the form sends is turned into the configuration document and checked by the same code
//! that checks a file given to the CLI (`parse_operator_config`, then the configurator against
//! the infrastructure), so the panel can never accept what `fediversity apply` would refuse (at
//! least one window, for one); each problem is shown next to the field its path points at, a
//! window's problems next to the row it came from.
//!
//! What the form does not show (the identity provider, subdomains) is carried over from the
//! previous version unchanged, so saving the form never loses it.

use std::collections::{BTreeMap, BTreeSet};

use fediversity_model::names::OperatorId;
use fediversity_model::operator::{Maintenance, MaintenanceWindow, Weekday};
use fediversity_model::{Infra, OperatorConfig, Problems, ServiceKind, parse_operator_config};
use serde_json::{Value, json};

/// The days of the week as the form names them.
pub const DAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

/// The form's fields, by name, as sent or as filled in from a configuration.
pub type Fields = BTreeMap<String, String>;

/// Problems by field name; `""` holds those that belong to no field.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// The fields of a new operator's first configuration: nothing turned on yet, and one window
/// on Sunday night.
pub fn blank(name: &str) -> Fields {
    let mut fields = Fields::new();
    fields.insert("name".into(), name.to_owned());
    for kind in ServiceKind::ALL {
        fields.insert(format!("{kind}_size"), "small".into());
        fields.insert(format!("{kind}_retention"), "keep".into());
    }
    fields.insert("time_zone".into(), "Europe/Amsterdam".into());
    fields.insert(window_field(0, "day_sun"), "on".into());
    fields.insert(window_field(0, "start"), "02:00".into());
    fields.insert(window_field(0, "duration"), "120".into());
    fields
}

/// The fields showing `config`.
pub fn fields_of(config: &OperatorConfig) -> Fields {
    let mut fields = blank(&config.operator.name);
    fields.insert("domain".into(), config.domain.to_string());
    for (kind, service) in config.services.iter() {
        if service.enable {
            fields.insert(format!("{kind}_enable"), "on".into());
        }
        fields.insert(format!("{kind}_size"), service.size.clone());
        let retention = serde_json::to_value(service.retention).unwrap_or(json!("keep"));
        fields.insert(
            format!("{kind}_retention"),
            retention.as_str().unwrap_or("keep").to_owned(),
        );
    }
    fields.insert("admin_username".into(), config.admin.username.to_string());
    fields.insert("admin_email".into(), config.admin.email.to_string());
    fill_maintenance(&mut fields, &config.maintenance);
    fields
}

/// Replaces the window rows of `fields` with one row per window of `maintenance`, in order.
fn fill_maintenance(fields: &mut Fields, maintenance: &Maintenance) {
    fields.insert("time_zone".into(), maintenance.time_zone.to_string());
    fields.retain(|name, _| row_of(name).is_none());
    for (row, window) in maintenance.windows.iter().enumerate() {
        for (key, _) in window.days.iter().filter_map(day_entry) {
            fields.insert(window_field(row, &format!("day_{key}")), "on".into());
        }
        fields.insert(window_field(row, "start"), window.start.to_string());
        fields.insert(
            window_field(row, "duration"),
            window.duration_minutes.to_string(),
        );
    }
}

/// The name of field `name` of window row `row`: `window_{row}_{name}`.
fn window_field(row: usize, name: &str) -> String {
    format!("window_{row}_{name}")
}

/// Row numbers a form may use: far more than the windows a configuration may have, few enough
/// that a hand-made post cannot make the page that shows it back huge or overflow a number.
const MAX_ROWS: usize = 100;

/// The window row a field belongs to, if it is one of a row's fields.
fn row_of(name: &str) -> Option<usize> {
    let (row, _) = name.strip_prefix("window_")?.split_once('_')?;
    row.parse().ok().filter(|&row| row < MAX_ROWS)
}

/// The rows that hold a window (anything filled in or ticked), in order. Row numbers are
/// those the form was sent with, so problems are shown on the row they concern.
fn filled_rows(fields: &Fields) -> Vec<usize> {
    let rows: BTreeSet<usize> = fields
        .iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .filter_map(|(name, _)| row_of(name))
        .collect();
    rows.into_iter().collect()
}

/// A day's box in a window row.
pub struct DayField {
    /// The day as the form and the configuration name it (`mon`).
    pub key: &'static str,
    /// The day for people (`Mon`).
    pub title: &'static str,
    /// Whether the box is ticked.
    pub checked: bool,
}

/// One maintenance window as a row of the form.
pub struct WindowRow {
    /// What the row's field names start with: `window_{row}`.
    pub prefix: String,
    /// The row's day boxes, Monday first.
    pub days: Vec<DayField>,
    /// The start time as sent or saved.
    pub start: String,
    /// The duration in minutes as sent or saved.
    pub duration: String,
    /// Whether the row's "remove" box is ticked.
    pub remove: bool,
    /// Whether this is the empty row that adds a window.
    pub new: bool,
}

/// The window rows to show: every row that holds a window, then one empty row to add one
/// (unless a hand-made post used the last row number there is).
pub fn window_rows(fields: &Fields) -> Vec<WindowRow> {
    let filled = filled_rows(fields);
    let next = filled.last().map_or(0, |last| last + 1);
    let row = |row: usize, new: bool| {
        let value = |name: &str| fields.get(&window_field(row, name)).cloned();
        WindowRow {
            prefix: format!("window_{row}"),
            days: DAYS
                .iter()
                .map(|(key, title)| DayField {
                    key,
                    title,
                    checked: value(&format!("day_{key}")).is_some(),
                })
                .collect(),
            start: value("start").unwrap_or_default(),
            duration: value("duration").unwrap_or_default(),
            remove: value("remove").is_some(),
            new,
        }
    };
    filled
        .iter()
        .map(|&filled| row(filled, false))
        .chain((next < MAX_ROWS).then(|| row(next, true)))
        .collect()
}

/// The configuration the form describes, or every problem with it by field.
pub fn parse(
    fields: &Fields,
    operator: &OperatorId,
    previous: Option<&OperatorConfig>,
    infra: &Infra,
) -> Result<OperatorConfig, FieldErrors> {
    let (document, rows) = document(fields, operator, previous);
    let config = parse_operator_config(&document.to_string()).map_err(|p| by_field(&p, &rows))?;
    fediversity_configurator::configure(&config, infra).map_err(|p| by_field(&p, &rows))?;
    Ok(config)
}

/// The configuration document the form describes, unchecked, and the form row each of its
/// maintenance windows came from.
fn document(
    fields: &Fields,
    operator: &OperatorId,
    previous: Option<&OperatorConfig>,
) -> (Value, Vec<usize>) {
    let text = |name: &str| {
        fields
            .get(name)
            .map_or("", String::as_str)
            .trim()
            .to_owned()
    };
    let on = |name: &str| fields.contains_key(name);
    let mut services = serde_json::Map::new();
    for kind in ServiceKind::ALL {
        let before = previous.and_then(|p| p.services.get(kind));
        // A service never turned on stays out of the document; one that was there stays, so
        // turning it off records the keep/delete choice.
        if !on(&format!("{kind}_enable")) && before.is_none() {
            continue;
        }
        let mut service = json!({
            "enable": on(&format!("{kind}_enable")),
            "size": text(&format!("{kind}_size")),
            "retention": text(&format!("{kind}_retention")),
        });
        if let Some(subdomain) = before.and_then(|b| b.subdomain.as_ref()) {
            service["subdomain"] = json!(subdomain);
        }
        services.insert(kind.as_str().to_owned(), service);
    }
    let rows: Vec<usize> = filled_rows(fields)
        .into_iter()
        .filter(|&row| !on(&window_field(row, "remove")))
        .collect();
    let windows: Vec<Value> = rows
        .iter()
        .map(|&row| {
            let before = previous.and_then(|p| p.maintenance.windows.get(row));
            window(fields, row, before)
        })
        .collect();
    let mut document = json!({
        "version": fediversity_model::operator::OPERATOR_CONFIG_VERSION,
        "operator": {"id": operator, "name": text("name")},
        "domain": text("domain"),
        "services": services,
        "admin": {"username": text("admin_username"), "email": text("admin_email")},
        "maintenance": {"time_zone": text("time_zone"), "windows": windows},
    });
    if let Some(identity) = previous.and_then(|p| p.identity.as_ref()) {
        document["identity"] = json!(identity);
    }
    (document, rows)
}

/// The window row `row` describes. `before` is the window the form showed in that row: when
/// the same days are ticked, they keep its order, so saving an unchanged form (of a document
/// that listed `sat` before `fri`, say) saves nothing new.
fn window(fields: &Fields, row: usize, before: Option<&MaintenanceWindow>) -> Value {
    let text = |name: &str| {
        fields
            .get(&window_field(row, name))
            .map_or("", String::as_str)
            .trim()
            .to_owned()
    };
    let mut days: Vec<&str> = DAYS
        .iter()
        .map(|(day, _)| *day)
        .filter(|day| fields.contains_key(&window_field(row, &format!("day_{day}"))))
        .collect();
    if let Some(before) = before {
        let ordered: Vec<&str> = before
            .days
            .iter()
            .filter_map(day_entry)
            .map(|(key, _)| *key)
            .collect();
        if ordered.len() == days.len() && ordered.iter().all(|day| days.contains(day)) {
            days = ordered;
        }
    }
    let duration = text("duration");
    let duration = duration
        .parse::<u64>()
        .map_or_else(|_| json!(duration), |minutes| json!(minutes));
    json!({"days": days, "start": text("start"), "duration_minutes": duration})
}

/// Which form field a problem's path points at; `rows` holds the form row of each window of
/// the document.
fn field_of(path: &str, rows: &[usize]) -> String {
    const FIELDS: &[(&str, &str)] = &[
        ("operator.name", "name"),
        ("domain", "domain"),
        ("services.mastodon", "mastodon"),
        ("services.pixelfed", "pixelfed"),
        ("services.peertube", "peertube"),
        ("admin.username", "admin_username"),
        ("admin.email", "admin_email"),
        ("maintenance.time_zone", "time_zone"),
    ];
    if let Some(rest) = path.strip_prefix("maintenance.windows") {
        return window_field_of(rest, rows);
    }
    FIELDS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or("", |(_, field)| field)
        .to_owned()
}

/// The field of a path below `maintenance.windows` (`[1].start` → `window_{row}_start`, with
/// the row window 1 came from); the list as a whole (too few, too many) is `windows`.
fn window_field_of(rest: &str, rows: &[usize]) -> String {
    let row = rest
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, rest)| Some((*rows.get(index.parse::<usize>().ok()?)?, rest)));
    let Some((row, rest)) = row else {
        return "windows".to_owned();
    };
    const PARTS: &[(&str, &str)] = &[
        (".days", "days"),
        (".start", "start"),
        (".duration_minutes", "duration"),
    ];
    match PARTS.iter().find(|(prefix, _)| rest.starts_with(prefix)) {
        Some((_, part)) => window_field(row, part),
        None => format!("window_{row}"),
    }
}

fn by_field(problems: &Problems, rows: &[usize]) -> FieldErrors {
    let mut errors = FieldErrors::new();
    for problem in problems.as_slice() {
        let field = field_of(&problem.path, rows);
        let message = if field.is_empty() {
            problem.to_string()
        } else {
            problem.message.clone()
        };
        errors.entry(field).or_default().push(message);
    }
    errors
}

/// The form's key and title of a day.
fn day_entry(day: &Weekday) -> Option<&'static (&'static str, &'static str)> {
    let value = serde_json::to_value(day).ok()?;
    let name = value.as_str()?;
    DAYS.iter().find(|(key, _)| *key == name)
}

/// The day names of a window, for people.
pub fn day_names(days: &[Weekday]) -> String {
    days.iter()
        .filter_map(day_entry)
        .map(|(_, title)| *title)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator() -> OperatorId {
        OperatorId::try_from("uni".to_owned()).unwrap()
    }

    fn filled() -> Fields {
        let mut fields = blank("Utrecht University");
        fields.insert("domain".into(), "uni.example.org".into());
        fields.insert("mastodon_enable".into(), "on".into());
        fields.insert("admin_username".into(), "admin".into());
        fields.insert("admin_email".into(), "admin@uni.example.org".into());
        fields
    }

    #[test]
    fn a_filled_form_is_a_valid_configuration_and_round_trips() {
        let config = parse(&filled(), &operator(), None, &Infra::sandbox()).unwrap();
        assert_eq!(config.domain.to_string(), "uni.example.org");
        assert!(config.services.mastodon.as_ref().unwrap().enable);
        assert!(config.services.pixelfed.is_none(), "never turned on");
        assert_eq!(fields_of(&config), filled());
    }

    #[test]
    fn problems_land_on_their_fields() {
        let mut fields = filled();
        fields.insert("domain".into(), "Not A Domain".into());
        fields.insert("window_0_duration".into(), "soon".into());
        fields.insert("mastodon_size".into(), "gigantic".into());
        let errors = parse(&fields, &operator(), None, &Infra::sandbox()).unwrap_err();
        assert!(errors.contains_key("domain"), "{errors:?}");
        assert!(errors.contains_key("window_0_duration"), "{errors:?}");
        // The size is checked by the configurator, once the document itself is valid.
        fields = filled();
        fields.insert("mastodon_size".into(), "gigantic".into());
        let errors = parse(&fields, &operator(), None, &Infra::sandbox()).unwrap_err();
        assert!(errors.contains_key("mastodon"), "{errors:?}");
    }

    #[test]
    fn turning_a_service_off_keeps_it_with_its_retention() {
        let before = parse(&filled(), &operator(), None, &Infra::sandbox()).unwrap();
        let mut fields = filled();
        fields.remove("mastodon_enable");
        fields.insert("mastodon_retention".into(), "delete".into());
        let after = parse(&fields, &operator(), Some(&before), &Infra::sandbox()).unwrap();
        let mastodon = after.services.mastodon.unwrap();
        assert!(!mastodon.enable);
        assert_eq!(mastodon.retention, fediversity_model::Retention::Delete);
    }
    /// A configuration with three windows, the second listing its days out of weekday order
    /// (as a document saved through the API may).
    fn three_windows() -> OperatorConfig {
        let mut config = parse(&filled(), &operator(), None, &Infra::sandbox()).unwrap();
        config.maintenance.windows = serde_json::from_value(json!([
            {"days": ["sun"], "start": "02:00", "duration_minutes": 120},
            {"days": ["sat", "wed"], "start": "23:30", "duration_minutes": 60},
            {"days": ["mon", "tue", "thu"], "start": "05:15", "duration_minutes": 45},
        ]))
        .unwrap();
        config
    }

    fn saved(fields: &Fields, previous: &OperatorConfig) -> Result<OperatorConfig, FieldErrors> {
        parse(fields, &operator(), Some(previous), &Infra::sandbox())
    }

    #[test]
    fn every_window_is_a_row_and_saving_them_unchanged_keeps_them_identical() {
        let before = three_windows();
        let fields = fields_of(&before);
        assert_eq!(fields["window_1_start"], "23:30");
        assert_eq!(fields["window_2_duration"], "45");
        assert!(fields.contains_key("window_1_day_sat") && fields.contains_key("window_1_day_wed"));
        let rows = window_rows(&fields);
        let shown: Vec<(&str, &str, bool)> = rows
            .iter()
            .map(|r| (r.prefix.as_str(), r.start.as_str(), r.new))
            .collect();
        assert_eq!(
            shown,
            [
                ("window_0", "02:00", false),
                ("window_1", "23:30", false),
                ("window_2", "05:15", false),
                ("window_3", "", true),
            ]
        );
        let ticked: Vec<&str> = rows[1]
            .days
            .iter()
            .filter(|d| d.checked)
            .map(|d| d.key)
            .collect();
        assert_eq!(ticked, ["wed", "sat"]);
        assert_eq!(
            saved(&fields, &before).unwrap(),
            before,
            "days keep their order too"
        );
    }

    #[test]
    fn editing_one_row_changes_only_its_window() {
        let before = three_windows();
        let mut fields = fields_of(&before);
        fields.insert("window_1_start".into(), "22:00".into());
        fields.insert("window_1_day_fri".into(), "on".into());
        let after = saved(&fields, &before).unwrap();
        let second = &after.maintenance.windows[1];
        assert_eq!(second.start.to_string(), "22:00");
        assert_eq!(day_names(&second.days), "Wed, Fri, Sat");
        assert_eq!(after.maintenance.windows[0], before.maintenance.windows[0]);
        assert_eq!(after.maintenance.windows[2], before.maintenance.windows[2]);
    }

    #[test]
    fn a_ticked_remove_box_drops_its_window_and_the_empty_row_adds_one() {
        let before = three_windows();
        let mut fields = fields_of(&before);
        fields.insert("window_0_remove".into(), "on".into());
        fields.insert("window_3_day_fri".into(), "on".into());
        fields.insert("window_3_start".into(), "12:00".into());
        fields.insert("window_3_duration".into(), "30".into());
        // The empty row a browser sends along with the rest is no window.
        fields.insert("window_4_start".into(), " ".into());
        fields.insert("window_4_duration".into(), String::new());
        let after = saved(&fields, &before).unwrap();
        let windows = &after.maintenance.windows;
        assert_eq!(windows.len(), 3, "{windows:?}");
        assert_eq!(windows[..2], before.maintenance.windows[1..]);
        assert_eq!(windows[2].start.to_string(), "12:00");
        assert_eq!(windows[2].duration_minutes, 30);
        assert_eq!(day_names(&windows[2].days), "Fri");
    }

    #[test]
    fn removing_every_window_is_refused() {
        let before = three_windows();
        let mut fields = fields_of(&before);
        for row in 0..3 {
            fields.insert(format!("window_{row}_remove"), "on".into());
        }
        let errors = saved(&fields, &before).unwrap_err();
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["windows"], "{errors:?}");
        assert!(errors["windows"][0].contains("at least 1"), "{errors:?}");
        let rows = window_rows(&fields);
        assert_eq!(
            rows.len(),
            4,
            "the removed rows are shown again, still ticked"
        );
        assert!(rows[..3].iter().all(|row| row.remove));
    }

    #[test]
    fn a_window_problem_lands_on_the_row_it_came_from() {
        let before = three_windows();
        let mut fields = fields_of(&before);
        // Row 0 is removed, so row 2 is the document's second window.
        fields.insert("window_0_remove".into(), "on".into());
        fields.insert("window_2_start".into(), "25:00".into());
        fields.insert("window_2_duration".into(), "5".into());
        fields.retain(|name, _| !name.starts_with("window_1_day_"));
        let errors = saved(&fields, &before).unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["window_1_days", "window_2_duration", "window_2_start"],
            "{errors:?}"
        );
    }

    #[test]
    fn a_path_inside_a_window_maps_to_its_row_field() {
        let rows = [0, 2, 5];
        for (path, field) in [
            ("maintenance.windows[2].days[0]", "window_5_days"),
            ("maintenance.windows[1].start", "window_2_start"),
            (
                "maintenance.windows[0].duration_minutes",
                "window_0_duration",
            ),
            ("maintenance.windows[1]", "window_2"),
            ("maintenance.windows", "windows"),
            ("maintenance.windows[9].start", "windows"),
            ("maintenance.time_zone", "time_zone"),
            ("identity.ldap", ""),
        ] {
            assert_eq!(field_of(path, &rows), field, "{path}");
        }
    }

    #[test]
    fn rows_numbered_beyond_any_form_are_ignored() {
        let mut fields = filled();
        fields.insert(format!("window_{}_start", usize::MAX), "03:00".into());
        fields.insert("window_100_start".into(), "03:00".into());
        fields.insert("window_99_start".into(), "03:00".into());
        let rows: Vec<String> = window_rows(&fields).into_iter().map(|r| r.prefix).collect();
        assert_eq!(
            rows,
            ["window_0", "window_99"],
            "no empty row past the last number"
        );
    }
}
