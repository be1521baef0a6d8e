//! The configuration form: an [`OperatorConfig`] as form fields and back.
//!
//! The form is flat (`domain`, `mastodon_enable`, `mastodon_size`, `window_start`, …). What it
//! sends is turned into the configuration document and checked by the same code that checks a
//! file given to the CLI (`parse_operator_config`, then the configurator against the
//! infrastructure), so the panel can never accept what `fediversity apply` would refuse; each
//! problem is shown next to the field its path points at.
//!
//! What the form does not show (the identity provider, subdomains, further maintenance windows)
//! is carried over from the previous version unchanged, so saving the form never loses it.

use std::collections::BTreeMap;

use fediversity_model::names::OperatorId;
use fediversity_model::operator::{Maintenance, Weekday};
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

/// The fields of a new operator's first configuration: nothing turned on yet.
pub fn blank(name: &str) -> Fields {
    let mut fields = Fields::new();
    fields.insert("name".into(), name.to_owned());
    for kind in ServiceKind::ALL {
        fields.insert(format!("{kind}_size"), "small".into());
        fields.insert(format!("{kind}_retention"), "keep".into());
    }
    fields.insert("time_zone".into(), "Europe/Amsterdam".into());
    fields.insert("day_sun".into(), "on".into());
    fields.insert("window_start".into(), "02:00".into());
    fields.insert("window_duration".into(), "120".into());
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

fn fill_maintenance(fields: &mut Fields, maintenance: &Maintenance) {
    fields.insert("time_zone".into(), maintenance.time_zone.to_string());
    if let Some(window) = maintenance.windows.first() {
        fields.remove("day_sun");
        for day in &window.days {
            let name = serde_json::to_value(day).ok();
            if let Some(name) = name.as_ref().and_then(Value::as_str) {
                fields.insert(format!("day_{name}"), "on".into());
            }
        }
        fields.insert("window_start".into(), window.start.to_string());
        fields.insert(
            "window_duration".into(),
            window.duration_minutes.to_string(),
        );
    }
}

/// The configuration the form describes, or every problem with it by field.
pub fn parse(
    fields: &Fields,
    operator: &OperatorId,
    previous: Option<&OperatorConfig>,
    infra: &Infra,
) -> Result<OperatorConfig, FieldErrors> {
    let document = document(fields, operator, previous);
    let config = parse_operator_config(&document.to_string()).map_err(|p| by_field(&p))?;
    fediversity_configurator::configure(&config, infra).map_err(|p| by_field(&p))?;
    Ok(config)
}

/// The configuration document the form describes, unchecked.
fn document(fields: &Fields, operator: &OperatorId, previous: Option<&OperatorConfig>) -> Value {
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
    let duration = text("window_duration");
    let duration = duration
        .parse::<u64>()
        .map_or_else(|_| json!(duration), |minutes| json!(minutes));
    let days: Vec<&str> = DAYS
        .iter()
        .map(|(day, _)| *day)
        .filter(|day| on(&format!("day_{day}")))
        .collect();
    let mut windows = vec![json!({
        "days": days,
        "start": text("window_start"),
        "duration_minutes": duration,
    })];
    if let Some(previous) = previous {
        windows.extend(
            previous
                .maintenance
                .windows
                .iter()
                .skip(1)
                .map(|w| json!(w)),
        );
    }
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
    document
}

/// Which form field a problem's path points at.
fn field_of(path: &str) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("operator.name", "name"),
        ("domain", "domain"),
        ("services.mastodon", "mastodon"),
        ("services.pixelfed", "pixelfed"),
        ("services.peertube", "peertube"),
        ("admin.username", "admin_username"),
        ("admin.email", "admin_email"),
        ("maintenance.time_zone", "time_zone"),
        ("maintenance.windows[0].days", "days"),
        ("maintenance.windows[0].start", "window_start"),
        ("maintenance.windows[0].duration_minutes", "window_duration"),
    ];
    FIELDS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or("", |(_, field)| field)
}

fn by_field(problems: &Problems) -> FieldErrors {
    let mut errors = FieldErrors::new();
    for problem in problems.as_slice() {
        let field = field_of(&problem.path);
        let message = if field.is_empty() {
            problem.to_string()
        } else {
            problem.message.clone()
        };
        errors.entry(field.to_owned()).or_default().push(message);
    }
    errors
}

/// The day names of a window, for people.
pub fn day_names(days: &[Weekday]) -> String {
    days.iter()
        .filter_map(|day| serde_json::to_value(day).ok())
        .filter_map(|value| {
            let name = value.as_str()?.to_owned();
            DAYS.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, title)| *title)
        })
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
        fields.insert("window_duration".into(), "soon".into());
        fields.insert("mastodon_size".into(), "gigantic".into());
        let errors = parse(&fields, &operator(), None, &Infra::sandbox()).unwrap_err();
        assert!(errors.contains_key("domain"), "{errors:?}");
        assert!(errors.contains_key("window_duration"), "{errors:?}");
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
}
