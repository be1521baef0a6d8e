//! Reading documents: every problem at once, each with the field it concerns.
//!
//! `serde` stops at the first error, which makes a user fix a file one mistake per round. So a
//! document is read in three passes:
//! 1. syntax (JSON or TOML) and the format version;
//! 2. the structure, against the very JSON Schema `fediversity schema` publishes, with the name
//!    checks of [`crate::names`] as custom formats: this pass reports *all* unknown fields,
//!    wrong types, missing fields, out-of-range numbers and malformed names together;
//! 3. once the structure is sound, the typed value is built and checked as a whole (a
//!    subdomain used twice, an address outside its network, …).
//!
//! Messages never echo a value that could be a secret: wrong-type errors name the types only.

use std::fmt;
use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::infra::Infra;
use crate::names::FORMATS;
use crate::operator::{OperatorConfig, ServiceKind};
use crate::schema::schema_for;
use crate::{infra, operator};

/// One thing wrong with a document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Where, as a path of fields and list indices such as `services.mastodon.size` or
    /// `maintenance.windows[0].start`; empty for the document as a whole.
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a document, sorted by path. Never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Wraps a non-empty list of problems, sorted by path; `Ok` when the list is empty.
    pub fn check(mut problems: Vec<Problem>) -> Result<(), Problems> {
        if problems.is_empty() {
            return Ok(());
        }
        problems.sort();
        problems.dedup();
        Err(Problems(problems))
    }

    /// The problems, sorted by path.
    pub fn as_slice(&self) -> &[Problem] {
        &self.0
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Self {
        Problems(vec![problem])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} problem{} found:",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Reads an operator configuration from JSON, returning every problem found.
pub fn parse_operator_config(text: &str) -> Result<OperatorConfig, Problems> {
    if text.trim().is_empty() {
        return Err(Problem::new(
            "",
            "the file is empty: expected an operator configuration in JSON",
        )
        .into());
    }
    let value =
        strict_json(text).map_err(|e| Problem::new("", format!("this is not valid JSON: {e}")))?;
    let config: OperatorConfig = read_document(
        value,
        operator::OPERATOR_CONFIG_VERSION,
        "operator configuration",
        &OPERATOR_VALIDATOR,
    )?;
    Problems::check(operator_problems(&config))?;
    Ok(config)
}

/// Reads the hosting provider's `infra.toml`, returning every problem found.
pub fn parse_infra(text: &str) -> Result<Infra, Problems> {
    let value: Value = toml::from_str(text).map_err(|e| {
        Problem::new(
            "",
            format!("this is not valid TOML: {}", e.to_string().trim_end()),
        )
    })?;
    let infra: Infra = read_document(value, infra::INFRA_VERSION, "infra.toml", &INFRA_VALIDATOR)?;
    Problems::check(infra.problems())?;
    Ok(infra)
}

/// Parses JSON like `serde_json`, but refuses an object that names a field twice: JSON parsers
/// disagree on which of the two wins, so a configuration must not depend on it.
fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    struct Strict(Value);

    impl<'de> serde::Deserialize<'de> for Strict {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> serde::de::Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Strict(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut fields = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if fields.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "the field `{key}` is given twice in one object"
                    )));
                }
                let Strict(value) = map.next_value()?;
                fields.insert(key, value);
            }
            Ok(Value::Object(fields))
        }
    }

    serde_json::from_str::<Strict>(text).map(|strict| strict.0)
}

static OPERATOR_VALIDATOR: LazyLock<Result<Validator, String>> =
    LazyLock::new(compile::<OperatorConfig>);
static INFRA_VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(compile::<Infra>);

fn compile<T: JsonSchema>() -> Result<Validator, String> {
    FORMATS
        .iter()
        .fold(
            jsonschema::options().should_validate_formats(true),
            |options, &(name, check)| options.with_format(name, move |s: &str| check(s).is_ok()),
        )
        .build(&schema_for::<T>())
        .map_err(|e| e.to_string())
}

/// Passes 1 to 3 for any document: version, structure, then the typed value.
fn read_document<T: DeserializeOwned>(
    value: Value,
    version: u32,
    what: &str,
    validator: &Result<Validator, String>,
) -> Result<T, Problems> {
    check_version(&value, version, what)?;
    let validator = validator.as_ref().map_err(|e| {
        Problem::new(
            "",
            format!("internal error: the {what} schema does not compile: {e}"),
        )
    })?;
    Problems::check(
        validator
            .iter_errors(&value)
            .flat_map(|e| describe(&e))
            .collect(),
    )?;
    // The schema cannot express every type (a socket address, a map key's format): what serde
    // refuses after the schema passed is still reported with its field.
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        Problem::new(path, e.into_inner().to_string()).into()
    })
}

/// The version decides how the rest is read, so it is checked alone and first: under an
/// unknown version every other message would be noise.
fn check_version(value: &Value, expected: u32, what: &str) -> Result<(), Problem> {
    let Some(object) = value.as_object() else {
        return Err(Problem::new(
            "",
            format!(
                "the {what} must be an object of fields, found {}",
                json_type(value)
            ),
        ));
    };
    match object.get("version") {
        None => Err(Problem::new(
            "version",
            format!(
                "missing: state the format version of the {what} (this build reads version {expected})"
            ),
        )),
        Some(v) if v.as_u64() == Some(u64::from(expected)) => Ok(()),
        Some(v) if !v.is_u64() => Err(Problem::new(
            "version",
            format!("expected the integer {expected}, found {}", json_type(v)),
        )),
        Some(v) => Err(Problem::new(
            "version",
            format!(
                "unsupported version {v}: this build reads {what} version {expected}; upgrade fediversity to read newer files"
            ),
        )),
    }
}

/// Turns one schema violation into problems with the user's field path and plain words.
fn describe(error: &ValidationError<'_>) -> Vec<Problem> {
    let path = field_path(error);
    let message = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            return unexpected
                .iter()
                .map(|field| unknown_field(&path, field))
                .collect();
        }
        ValidationErrorKind::Required { property } => {
            let field = property.as_str().unwrap_or_default();
            return vec![Problem::new(
                join(&path, field),
                "missing: this field is required",
            )];
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            return describe_alternatives(&path, context);
        }
        ValidationErrorKind::Type { .. }
            if error.schema_path().as_str().contains("/SecretRef/") =>
        {
            format!(
                "expected a reference {{\"secret\": \"<name>\"}} to a secret stored in the panel, found {}: secrets are never written in the configuration",
                json_type(error.instance())
            )
        }
        ValidationErrorKind::Type { kind } => format!(
            "expected {}, found {}",
            type_names(kind),
            json_type(error.instance())
        ),
        ValidationErrorKind::Format { format } => FORMATS
            .iter()
            .find(|(name, _)| name == format)
            .and_then(|(_, check)| error.instance().as_str().map(check))
            .and_then(Result::err)
            .unwrap_or_else(|| format!("not a valid {format}")),
        ValidationErrorKind::Enum { options } => {
            format!(
                "expected one of {}",
                list(options.as_array().into_iter().flatten(), "or")
            )
        }
        ValidationErrorKind::Constant { expected_value } => format!("must be {expected_value}"),
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("{} is below the minimum of {limit}", error.instance())
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("{} is above the maximum of {limit}", error.instance())
        }
        ValidationErrorKind::MinLength { limit } => {
            format!("must have at least {limit} character{}", plural(*limit))
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must have at most {limit} character{}", plural(*limit))
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("must list at least {limit} item{}", plural(*limit))
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("must list at most {limit} item{}", plural(*limit))
        }
        ValidationErrorKind::MinProperties { limit } => {
            format!(
                "must have at least {limit} entr{}",
                if *limit == 1 { "y" } else { "ies" }
            )
        }
        ValidationErrorKind::UniqueItems => match first_repeated(error.instance()) {
            Some(Value::String(item)) => format!("lists `{item}` twice"),
            _ => "lists the same item twice".to_owned(),
        },
        _ => "is not valid here".to_owned(),
    };
    vec![Problem::new(path, message)]
}

/// A choice between alternatives: an externally tagged enum (`{"ldap": {…}}` or `{"oidc": {…}}`)
/// or a set of constants (`keep` or `delete`). When exactly one alternative's tag is present,
/// its own problems are the useful ones; otherwise say what the alternatives are.
fn describe_alternatives(
    path: &str,
    alternatives: &[Vec<ValidationError<'static>>],
) -> Vec<Problem> {
    let here: Vec<&ValidationError<'static>> = alternatives
        .iter()
        .flatten()
        .filter(|e| field_path(e) == path)
        .collect();
    let chosen: Vec<&Vec<ValidationError<'static>>> = alternatives
        .iter()
        .filter(|errors| errors.iter().all(|e| field_path(e) != path))
        .collect();
    if let [errors] = chosen.as_slice() {
        return errors.iter().flat_map(|e| describe(e)).collect();
    }
    // An unknown tag fails every alternative's `required`; two tags at once fail each
    // alternative's `additionalProperties` with the other one.
    let mut required = std::collections::BTreeSet::new();
    let mut unexpected_tags = std::collections::BTreeSet::new();
    let mut constants = Vec::new();
    for error in &here {
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                required.extend(property.as_str().map(str::to_owned));
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                unexpected_tags.extend(unexpected.iter().cloned());
            }
            ValidationErrorKind::Constant { expected_value } => {
                constants.push(expected_value.to_string())
            }
            _ => {}
        }
    }
    let tags = if required.is_empty() {
        unexpected_tags
    } else {
        required
    };
    let message = if !constants.is_empty() {
        format!("expected one of {}", list(constants.iter(), "or"))
    } else if let Some(type_error) = here
        .iter()
        .find(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
    {
        return describe(type_error);
    } else if !tags.is_empty() {
        format!("expected exactly one of {}", list(tags.iter(), "or"))
    } else {
        "does not match any of the allowed forms".to_owned()
    };
    vec![Problem::new(path, message)]
}

/// The first item of an array that appears again later.
fn first_repeated(value: &Value) -> Option<&Value> {
    let items = value.as_array()?;
    items
        .iter()
        .enumerate()
        .find(|(i, item)| items[i + 1..].contains(item))
        .map(|(_, item)| item)
}

fn unknown_field(path: &str, field: &str) -> Problem {
    let message = if path == "services" {
        format!(
            "unknown service `{field}`: the services are {}",
            list(ServiceKind::ALL.iter().map(|s| s.as_str()), "and")
        )
    } else {
        format!("unknown field `{field}`: check its spelling, or remove it")
    };
    Problem::new(join(path, field), message)
}

/// `services.mastodon.size`, `maintenance.windows[0].start`: how users name a field.
fn field_path(error: &ValidationError<'_>) -> String {
    error
        .instance_path()
        .iter()
        .fold(String::new(), |path, segment| match segment {
            LocationSegment::Property(name) => join(&path, &name),
            LocationSegment::Index(index) => format!("{path}[{index}]"),
        })
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn type_names(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
    };
    names
        .iter()
        .map(|name| article(name))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn article(type_name: &str) -> String {
    match type_name {
        "object" | "array" | "integer" => format!("an {type_name}"),
        "null" => "null".to_owned(),
        _ => format!("a {type_name}"),
    }
}

fn json_type(value: &Value) -> String {
    article(match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

fn list<T: fmt::Display>(items: impl Iterator<Item = T>, conjunction: &str) -> String {
    let items: Vec<String> = items
        .map(|item| {
            let text = item.to_string();
            format!("`{}`", text.trim_matches('"'))
        })
        .collect();
    match items.as_slice() {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Whole-document checks of an operator configuration that the schema cannot express.
fn operator_problems(config: &OperatorConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: std::collections::BTreeMap<String, ServiceKind> = Default::default();
    for (kind, service) in config.services.enabled() {
        let path = format!("services.{kind}.subdomain");
        let fqdn = config.service_fqdn(kind, service);
        if fqdn.len() > 253 {
            problems.push(Problem::new(
                &path,
                format!("`{fqdn}` is longer than the 253 characters a domain may have"),
            ));
        }
        if let Some(other) = seen.insert(fqdn.clone(), kind) {
            problems.push(Problem::new(
                &path,
                format!("`{fqdn}` is already used by {other}: give each service its own subdomain"),
            ));
        }
    }
    if let Some(operator::IdentityProvider::Ldap(ldap)) = &config.identity
        && ldap.url.as_str().starts_with("ldap://")
        && !ldap.start_tls
    {
        problems.push(Problem::new(
            "identity.ldap.start_tls",
            "must be true with an ldap:// address, or the bind password crosses the network in clear; or use ldaps://",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems `parse_infra` finds in `text`, as the user reads them.
    fn infra_problems(text: &str) -> Vec<String> {
        parse_infra(text)
            .unwrap_err()
            .as_slice()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn problems(text: &str) -> Vec<String> {
        match parse_operator_config(text) {
            Ok(_) => vec![],
            Err(p) => p.as_slice().iter().map(ToString::to_string).collect(),
        }
    }

    const VALID: &str = r#"{
        "version": 1,
        "operator": {"id": "uni-example", "name": "Example University"},
        "domain": "example.org",
        "services": {"mastodon": {"enable": true, "size": "small"}},
        "admin": {"username": "admin", "email": "admin@example.org"},
        "maintenance": {"time_zone": "Europe/Amsterdam",
                        "windows": [{"days": ["sat"], "start": "02:00", "duration_minutes": 120}]}
    }"#;

    #[test]
    fn a_valid_configuration_reads() {
        assert_eq!(problems(VALID), Vec::<String>::new());
    }

    #[test]
    fn every_structural_problem_is_reported_at_once() {
        let text = VALID
            .replace("\"example.org\"", "\"Example..org\"")
            .replace(
                "\"mastodon\": {",
                "\"friendica\": {}, \"mastodon\": {\"colour\": 1, ",
            )
            .replace("\"02:00\"", "\"25:00\"")
            .replace("120", "20160")
            .replace("\"admin\", \"email\"", "7, \"email\"");
        let found = problems(&text);
        let paths: Vec<&str> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "admin.username",
                "domain",
                "maintenance.windows[0].duration_minutes",
                "maintenance.windows[0].start",
                "services.friendica",
                "services.mastodon.colour",
            ],
            "{found:#?}"
        );
        assert!(
            found[0].contains("expected a string, found an integer"),
            "{found:#?}"
        );
        assert!(
            found[2].contains("20160 is above the maximum of 10080"),
            "{found:#?}"
        );
        assert!(
            found[4].contains("unknown service `friendica`"),
            "{found:#?}"
        );
    }

    #[test]
    fn version_is_checked_first() {
        assert_eq!(
            problems(&VALID.replace("\"version\": 1", "\"version\": 2, \"bogus\": 1")),
            [
                "version: unsupported version 2: this build reads operator configuration version 1; upgrade fediversity to read newer files"
            ]
        );
        assert_eq!(
            problems("[]"),
            ["the operator configuration must be an object of fields, found an array"]
        );
    }

    #[test]
    fn inline_secrets_are_refused_without_echoing_them() {
        let text = VALID.replace(
            "\"maintenance\"",
            r#""identity": {"ldap": {"url": "ldaps://ldap.example.org", "bind_dn": "cn=x",
               "bind_password": "hunter2", "user_base": "ou=people"}}, "maintenance""#,
        );
        let found = problems(&text);
        assert_eq!(
            found,
            [
                "identity.ldap.bind_password: expected a reference {\"secret\": \"<name>\"} to a secret stored in the panel, found a string: secrets are never written in the configuration"
            ]
        );
        assert!(!found[0].contains("hunter2"));
    }

    #[test]
    fn identity_needs_exactly_one_kind() {
        let text = VALID.replace(
            "\"maintenance\"",
            r#""identity": {"kerberos": {}}, "maintenance""#,
        );
        assert_eq!(
            problems(&text),
            ["identity: expected exactly one of `ldap` or `oidc`"]
        );
    }

    #[test]
    fn subdomain_clashes_and_clear_ldap_are_refused() {
        let text = VALID
            .replace(
                "\"services\": {",
                "\"services\": {\"pixelfed\": {\"enable\": true, \"size\": \"small\", \"subdomain\": \"mastodon\"}, ",
            )
            .replace(
                "\"maintenance\"",
                r#""identity": {"ldap": {"url": "ldap://ldap.example.org", "bind_dn": "cn=x",
                   "bind_password": {"secret": "ldap"}, "user_base": "ou=people"}}, "maintenance""#,
            );
        assert_eq!(
            problems(&text),
            [
                "identity.ldap.start_tls: must be true with an ldap:// address, or the bind password crosses the network in clear; or use ldaps://",
                "services.pixelfed.subdomain: `mastodon.example.org` is already used by mastodon: give each service its own subdomain",
            ]
        );
    }

    #[test]
    fn choices_name_their_alternatives() {
        let both = VALID.replace(
            "\"maintenance\"",
            r#""identity": {"ldap": {}, "oidc": {}}, "maintenance""#,
        );
        assert_eq!(
            problems(&both),
            ["identity: expected exactly one of `ldap` or `oidc`"]
        );
        let null = VALID.replace("\"maintenance\"", r#""identity": null, "maintenance""#);
        assert_eq!(
            problems(&null),
            ["identity: expected an object, found null"]
        );
        let retention = VALID.replace(
            "\"size\": \"small\"",
            "\"size\": \"small\", \"retention\": \"archive\"",
        );
        assert_eq!(
            problems(&retention),
            ["services.mastodon.retention: expected one of `keep` or `delete`"]
        );
        let days = VALID.replace("[\"sat\"]", "[\"sat\", \"sun\", \"sat\"]");
        assert_eq!(
            problems(&days),
            ["maintenance.windows[0].days: lists `sat` twice"]
        );
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let twice = VALID.replace(
            "\"services\": {",
            "\"services\": {\"mastodon\": {\"enable\": false, \"size\": \"small\"}, ",
        );
        let found = problems(&twice);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with(
                "this is not valid JSON: the field `mastodon` is given twice in one object at line"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn versions_of_the_wrong_type_and_empty_files() {
        assert_eq!(
            problems(&VALID.replace("\"version\": 1", "\"version\": \"1\"")),
            ["version: expected the integer 1, found a string"]
        );
        assert_eq!(
            problems("  \n"),
            ["the file is empty: expected an operator configuration in JSON"]
        );
    }

    #[test]
    fn what_only_serde_refuses_still_names_its_field() {
        let mut infra = toml::to_string(&Infra::example().unwrap()).unwrap();
        infra = infra.replace(
            "server = \"192.0.2.53:53\"",
            "server = \"ns1.example.net:53\"",
        );
        assert_eq!(
            infra_problems(&infra),
            ["dns.server: invalid socket address syntax"]
        );
    }

    #[test]
    fn an_smtp_login_needs_both_its_halves() {
        let infra = toml::to_string(&Infra::example().unwrap()).unwrap();
        assert!(parse_infra(&infra).is_ok());
        let without_password =
            infra.replace("password_file = \"/etc/fediversity/smtp-password\"\n", "");
        assert_ne!(without_password, infra);
        assert_eq!(
            infra_problems(&without_password),
            [
                "smtp: give `username` and `password_file` together, or neither for a relay that needs no login"
            ]
        );
        let open_relay = without_password.replace("username = \"fediversity\"\n", "");
        assert!(parse_infra(&open_relay).is_ok());
    }

    #[test]
    fn the_platform_sends_from_its_own_address_or_the_from_domain() {
        let infra = toml::to_string(&Infra::example().unwrap()).unwrap();
        let smtp = |text: &str| parse_infra(text).unwrap().smtp.unwrap().platform_from();
        assert_eq!(smtp(&infra).unwrap(), "fediversity@mail.example.net");
        let own = infra.replace(
            "platform_from = \"fediversity@mail.example.net\"",
            "platform_from = \"ops@example.net\"",
        );
        assert_eq!(smtp(&own).unwrap(), "ops@example.net");
        let defaulted = infra.replace("platform_from = \"fediversity@mail.example.net\"\n", "");
        assert_ne!(defaulted, infra);
        assert_eq!(smtp(&defaulted).unwrap(), "fediversity@mail.example.net");
        let neither = defaulted.replace("from_domain = \"mail.example.net\"\n", "");
        assert_ne!(neither, defaulted);
        assert_eq!(
            infra_problems(&neither),
            [
                "smtp: give `platform_from` (or `from_domain`): the address the platform's own maintenance e-mails come from"
            ]
        );
    }

    #[test]
    fn malformed_json_says_where() {
        let found = problems("{\"version\": 1,");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("this is not valid JSON: EOF while parsing"),
            "{found:?}"
        );
    }
}
