//! Proxmox VE's own API description (`../shared/proxmox/pve-api-schema.json`, the pve-docs
//! `apidata.js`), used two ways: the simulator checks each request's parameters against it and
//! answers `400` with an `errors` map the way Proxmox's parameter verification does, and the
//! providers' conformance test checks every recorded request and every answer against it.
//!
//! What is checked: the path (literal segments before `{param}` templates), the method, every
//! parameter's name (including `net[n]`-style families), type, range, length, enum, pattern,
//! the `urlencoded`, `pve-tag-list` and `dns-name` formats, and required parameters; for
//! answers, the `returns` shape (types, required properties, no undescribed properties where
//! the schema lists them). Proxmox's Perl serialiser is loosely typed, so an answer's integer
//! may arrive as a string of digits (`/cluster/nextid` does) and a boolean as `0`/`1`: both
//! are accepted. Other `format`s (`pve-node`, `pve-qm-ipconfig`, …) are not checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// Where the schema lives, relative to the workspace (CI has `shared/` beside the clone).
pub fn schema_path() -> PathBuf {
    crate::workspace_root().join("../shared/proxmox/pve-api-schema.json")
}

/// The API description, one tree flattened into endpoints.
#[derive(Debug)]
pub struct ApiSchema {
    endpoints: Vec<Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    template: String,
    segments: Vec<String>,
    info: BTreeMap<String, Value>,
}

/// One method of one endpoint, matched against a concrete path.
#[derive(Debug)]
pub struct Operation<'a> {
    /// The path template, e.g. `/nodes/{node}/qemu/{vmid}/config`.
    pub template: &'a str,
    /// The values of the template's `{param}`s in the concrete path.
    pub path_params: BTreeMap<String, String>,
    info: &'a Value,
}

impl ApiSchema {
    /// The schema, read once per process. Panics with the file to provide when it is missing:
    /// the simulator and the conformance test are meaningless without it.
    pub fn get() -> &'static ApiSchema {
        static SCHEMA: OnceLock<ApiSchema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let path = schema_path();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot read Proxmox VE's API schema {}: {e} (it lives in shared/proxmox/ \
                     beside the repository; see shared/proxmox/README.md)",
                    path.display()
                )
            });
            let tree: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            ApiSchema::from_tree(&tree)
        })
    }

    fn from_tree(tree: &Value) -> Self {
        let mut endpoints = Vec::new();
        flatten(tree, &mut endpoints);
        Self { endpoints }
    }

    /// The operation `method path` (path below `/api2/json`, without the query), or why the
    /// API has none.
    pub fn operation(&self, method: &str, path: &str) -> Result<Operation<'_>, String> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, &Endpoint, BTreeMap<String, String>)> = None;
        for endpoint in &self.endpoints {
            let Some(params) = endpoint.matches(&segments) else {
                continue;
            };
            let literals = endpoint.segments.iter().filter(|s| !is_param(s)).count();
            if best.as_ref().is_none_or(|(l, _, _)| literals > *l) {
                best = Some((literals, endpoint, params));
            }
        }
        let (_, endpoint, path_params) = best.ok_or_else(|| format!("no such path {path}"))?;
        let info = endpoint
            .info
            .get(method)
            .ok_or_else(|| format!("Method '{method} {}' not implemented", endpoint.template))?;
        Ok(Operation {
            template: &endpoint.template,
            path_params,
            info,
        })
    }
}

fn flatten(nodes: &Value, out: &mut Vec<Endpoint>) {
    for node in nodes.as_array().into_iter().flatten() {
        if let (Some(path), Some(info)) = (node["path"].as_str(), node["info"].as_object()) {
            out.push(Endpoint {
                template: path.to_owned(),
                segments: path
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect(),
                info: info.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
        }
        flatten(&node["children"], out);
    }
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

impl Endpoint {
    fn matches(&self, segments: &[&str]) -> Option<BTreeMap<String, String>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (pattern, actual) in self.segments.iter().zip(segments) {
            if is_param(pattern) {
                params.insert(
                    pattern[1..pattern.len() - 1].to_owned(),
                    (*actual).to_owned(),
                );
            } else if pattern != actual {
                return None;
            }
        }
        Some(params)
    }
}

impl Operation<'_> {
    /// The privileges the API documents for this operation, as its `permissions` object.
    pub fn permissions(&self) -> &Value {
        &self.info["permissions"]
    }

    /// The problems with `params` (the query or form parameters, without the path's), by
    /// parameter name, as Proxmox reports them in a `400`'s `errors`; empty when it is valid.
    pub fn check_parameters(&self, params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let schema = &self.info["parameters"];
        let properties = schema["properties"].as_object();
        let mut all = self.path_params.clone();
        all.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut errors = BTreeMap::new();
        for (name, value) in &all {
            match properties.and_then(|p| property(p, name)) {
                Some(property) => {
                    if let Err(e) = check_text(property, value) {
                        errors.insert(name.clone(), e);
                    }
                }
                None => {
                    errors.insert(
                        name.clone(),
                        "property is not defined in schema and the schema does not allow \
                         additional properties"
                            .to_owned(),
                    );
                }
            }
        }
        for (name, property) in properties.into_iter().flatten() {
            if !is_optional(property) && !name.contains("[n]") && !all.contains_key(name) {
                errors.insert(
                    name.clone(),
                    "property is missing and it is not optional".to_owned(),
                );
            }
        }
        errors
    }

    /// The ways `data` (an answer's `data`) differs from the operation's `returns`; empty when
    /// it fits.
    pub fn check_returns(&self, data: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        check_value(&self.info["returns"], data, "data", &mut problems);
        problems
    }
}

/// The schema of parameter or property `name`, including `net[n]`-style families.
fn property<'s>(properties: &'s serde_json::Map<String, Value>, name: &str) -> Option<&'s Value> {
    properties.get(name).or_else(|| {
        properties.iter().find_map(|(pattern, schema)| {
            let prefix = pattern.strip_suffix("[n]")?;
            let index = name.strip_prefix(prefix)?;
            (!index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())).then_some(schema)
        })
    })
}

fn is_optional(schema: &Value) -> bool {
    matches!(&schema["optional"], Value::Number(n) if n.as_u64() == Some(1))
        || schema["optional"] == Value::Bool(true)
}

/// A bound that the schema may write as a number or a string.
fn bound(schema: &Value, key: &str) -> Option<f64> {
    match &schema[key] {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Checks a parameter's text against its schema, the way Proxmox parses form values.
fn check_text(schema: &Value, text: &str) -> Result<(), String> {
    match schema["type"].as_str().unwrap_or("string") {
        "integer" => {
            let n: i64 = text
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{text}'"))?;
            check_range(schema, n as f64)
        }
        "number" => {
            let n: f64 = text
                .parse()
                .map_err(|_| format!("type check ('number') failed - got '{text}'"))?;
            check_range(schema, n)
        }
        "boolean" => match text {
            "0" | "1" | "true" | "false" | "yes" | "no" | "on" | "off" => Ok(()),
            _ => Err(format!("type check ('boolean') failed - got '{text}'")),
        },
        _ => check_string(schema, text),
    }
}

fn check_range(schema: &Value, n: f64) -> Result<(), String> {
    if let Some(min) = bound(schema, "minimum").filter(|min| n < *min) {
        return Err(format!("value must have a minimum value of {min}"));
    }
    if let Some(max) = bound(schema, "maximum").filter(|max| n > *max) {
        return Err(format!("value may only be {max}"));
    }
    Ok(())
}

fn check_string(schema: &Value, text: &str) -> Result<(), String> {
    if let Some(max) = bound(schema, "maxLength").filter(|max| text.len() as f64 > *max) {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.iter().any(|c| c.as_str() == Some(text))
    {
        return Err(format!(
            "value '{text}' does not have a value in the enumeration"
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        let anchored = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("the schema's pattern does not compile: {e}"))?;
        if !anchored.is_match(text) {
            return Err(format!("value does not match the regex pattern {pattern}"));
        }
    }
    match schema["format"].as_str() {
        Some("urlencoded") => check_urlencoded(text),
        Some("pve-tag-list") => check_tags(text),
        Some("dns-name") => check_dns_name(text),
        _ => Ok(()),
    }
}

/// Proxmox accepts only already-encoded text for `urlencoded` parameters (`sshkeys`): the
/// client encodes once itself, and the form encoding comes on top.
fn check_urlencoded(text: &str) -> Result<(), String> {
    let ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-%_.!~*'()".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid urlencoded string: {text}"))
    }
}

fn check_tags(text: &str) -> Result<(), String> {
    for tag in text.split([';', ',', ' ']).filter(|t| !t.is_empty()) {
        let mut bytes = tag.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_-+.".contains(&b));
        if !(first_ok && rest_ok) {
            return Err(format!("invalid characters in tag '{tag}'"));
        }
    }
    Ok(())
}

fn check_dns_name(text: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if text.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("value does not look like a valid DNS name: {text}"))
    }
}

/// Checks an answer's value against a `returns` schema, collecting problems under `at`.
fn check_value(schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(kind) = schema["type"].as_str() else {
        return;
    };
    let fits = match kind {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_str()
                    .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean() || value.as_u64().is_some_and(|n| n <= 1),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !fits {
        // An optional answer may be absent (`null`), as `POST …/config` may answer.
        if !(value.is_null() && is_optional(schema)) {
            problems.push(format!("{at}: expected {kind}, got {value}"));
        }
        return;
    }
    if let (Some(choices), Some(text)) = (schema["enum"].as_array(), value.as_str())
        && !choices.iter().any(|c| c.as_str() == Some(text))
    {
        problems.push(format!("{at}: '{text}' is not one of {}", schema["enum"]));
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            check_value(items, item, &format!("{at}[{i}]"), problems);
        }
    }
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object())
    {
        for (name, property_schema) in properties {
            if !is_optional(property_schema) && !name.contains("[n]") && !object.contains_key(name)
            {
                problems.push(format!("{at}.{name}: required but missing"));
            }
        }
        for (name, property_value) in object {
            match property(properties, name) {
                Some(property_schema) => {
                    check_value(
                        property_schema,
                        property_value,
                        &format!("{at}.{name}"),
                        problems,
                    );
                }
                None => problems.push(format!("{at}.{name}: not described by the schema")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn paths_match_literals_before_templates() {
        let schema = ApiSchema::get();
        let op = schema
            .operation("GET", "/nodes/pve1/qemu/100/status/current")
            .unwrap();
        assert_eq!(op.template, "/nodes/{node}/qemu/{vmid}/status/current");
        assert_eq!(op.path_params["vmid"], "100");
        assert!(schema.operation("PATCH", "/cluster/nextid").is_err());
        assert!(schema.operation("GET", "/no/such/thing").is_err());
    }

    #[test]
    fn parameters_are_checked_like_proxmox_does() {
        let schema = ApiSchema::get();
        let config = schema
            .operation("PUT", "/nodes/pve1/qemu/100/config")
            .unwrap();
        assert!(
            config
                .check_parameters(&params(&[("cores", "2"), ("net0", "virtio,bridge=vmbr0")]))
                .is_empty()
        );
        let errors = config.check_parameters(&params(&[
            ("cores", "two"),
            ("sshkeys", "ssh-ed25519 AAAA x"),
            ("colour", "blue"),
        ]));
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["colour", "cores", "sshkeys"]
        );
        let clone = schema
            .operation("POST", "/nodes/pve1/qemu/9000/clone")
            .unwrap();
        assert!(clone.check_parameters(&params(&[]))["newid"].contains("missing"));
    }

    #[test]
    fn answers_are_checked_with_proxmox_loose_typing() {
        let schema = ApiSchema::get();
        let nextid = schema.operation("GET", "/cluster/nextid").unwrap();
        assert!(nextid.check_returns(&Value::from("100")).is_empty());
        assert!(!nextid.check_returns(&Value::from("x")).is_empty());
        let status = schema
            .operation("GET", "/nodes/pve1/tasks/UPID:x/status")
            .unwrap();
        let problems = status.check_returns(&serde_json::json!({"status": "done", "extra": 1}));
        assert_eq!(problems.len(), 10, "{problems:?}");
    }
}
