//! Sandbox DNS: one zone file per zone, `dns/<zone>.zone`, in the usual zone-file syntax
//! (`owner TTL IN type data`, one line per record), shared by every record set of the zone and
//! rewritten whole under a lock. `read` parses the file, so a record edited by hand is drift.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use fediversity_engine::provider::{Deletion, Observed, Outputs};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Kind, NAME, Place, observed_inputs, outputs, parse_inputs};
use crate::files::{PUBLIC_FILE, check_component, read_text, remove_file, with_lock, write_atomic};

/// The record types the sandbox accepts.
const TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "NS", "CAA"];

/// The inputs of a DNS record set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsInputs {
    zone: String,
    /// The operator's own domain: the only names it may touch (older graphs lack it).
    #[serde(default)]
    delegation: Option<String>,
    name: String,
    #[serde(rename = "type")]
    record_type: String,
    ttl: u32,
    values: Vec<String>,
}

/// One record set: every record of one owner name and type.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordSet {
    /// The owner, fully qualified, without the trailing dot.
    pub name: String,
    /// `A`, `AAAA`, …
    pub record_type: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The records' data, in file order (TXT data unquoted).
    pub values: Vec<String>,
}

/// Parses a zone file into record sets, in the order their first record appears. Comments
/// (`;`), blank lines and directives (`$ORIGIN`, `$TTL`) are skipped; a relative owner name or
/// `@` is taken relative to `zone`.
pub fn parse_zone(zone: &str, text: &str) -> Result<Vec<RecordSet>, String> {
    let mut sets: Vec<RecordSet> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('$') {
            continue;
        }
        let bad = || {
            format!(
                "line {} is not a record `owner TTL IN type data`",
                number + 1
            )
        };
        let (owner, rest) = next_token(line).ok_or_else(bad)?;
        let (ttl, rest) = next_token(rest).ok_or_else(bad)?;
        let (class, rest) = next_token(rest).ok_or_else(bad)?;
        let (record_type, data) = next_token(rest).ok_or_else(bad)?;
        if data.trim().is_empty() {
            return Err(bad());
        }
        let ttl: u32 = ttl.parse().map_err(|_| bad())?;
        if !class.eq_ignore_ascii_case("IN") {
            return Err(bad());
        }
        let name = absolute(zone, owner);
        let record_type = record_type.to_ascii_uppercase();
        let data = data.trim();
        let value = if record_type == "TXT" {
            unquote(data)
        } else {
            data.to_owned()
        };
        match sets
            .iter_mut()
            .find(|s| s.name == name && s.record_type == record_type)
        {
            Some(set) => {
                set.ttl = set.ttl.min(ttl);
                set.values.push(value);
            }
            None => sets.push(RecordSet {
                name,
                record_type,
                ttl,
                values: vec![value],
            }),
        }
    }
    Ok(sets)
}

/// The zone file for `sets`.
pub fn write_zone(zone: &str, sets: &[RecordSet]) -> String {
    let mut text = format!(
        "; zone {zone}: written by the fediversity sandbox (provider `local`)\n\
         ; one record per line: owner TTL class type data\n\
         $ORIGIN {zone}.\n"
    );
    for set in sets {
        for value in &set.values {
            let data = if set.record_type == "TXT" {
                quote(value)
            } else {
                value.clone()
            };
            text.push_str(&format!(
                "{}. {} IN {} {data}\n",
                set.name, set.ttl, set.record_type
            ));
        }
    }
    text
}

/// The first whitespace-separated token of `text` and what follows it.
fn next_token(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], &text[end..]))
}

fn absolute(zone: &str, owner: &str) -> String {
    if owner == "@" {
        zone.to_owned()
    } else if let Some(name) = owner.strip_suffix('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.{zone}", owner.to_ascii_lowercase())
    }
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn unquote(data: &str) -> String {
    let Some(inner) = data.strip_prefix('"').and_then(|d| d.strip_suffix('"')) else {
        return data.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl DnsInputs {
    /// Checks what a DNS server would refuse, before anything is written.
    fn check(&self, at: &Place) -> ProviderResult<()> {
        let refuse = |why: String| ProviderError::permanent(format!("{}: {why}", at.address));
        check_component("DNS zone", &self.zone)?;
        if self.name != self.zone && !self.name.ends_with(&format!(".{}", self.zone)) {
            return Err(refuse(format!(
                "`{}` is not in the zone `{}`",
                self.name, self.zone
            )));
        }
        if let Some(delegation) = &self.delegation
            && self.name != *delegation
            && !self.name.ends_with(&format!(".{delegation}"))
        {
            return Err(refuse(format!(
                "`{}` is outside the operator's delegation `{delegation}`",
                self.name
            )));
        }
        if self
            .name
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            return Err(refuse(format!(
                "`{}` is not a lower-case domain name",
                self.name
            )));
        }
        if !TYPES.contains(&self.record_type.as_str()) {
            return Err(refuse(format!(
                "record type `{}` is not one of {}",
                self.record_type,
                TYPES.join(", ")
            )));
        }
        if self.ttl == 0 || self.ttl > i32::MAX as u32 {
            return Err(refuse(format!("TTL {} is out of range", self.ttl)));
        }
        if self.values.is_empty() {
            return Err(refuse("a record set needs at least one value".to_owned()));
        }
        for value in &self.values {
            let ok = match self.record_type.as_str() {
                "A" => value.parse::<Ipv4Addr>().is_ok(),
                "AAAA" => value.parse::<Ipv6Addr>().is_ok(),
                _ => !value.is_empty() && !value.contains('\n'),
            };
            if !ok {
                return Err(refuse(format!(
                    "`{value}` is not valid data for a {} record",
                    self.record_type
                )));
            }
        }
        if self.record_type == "CNAME" && self.values.len() != 1 {
            return Err(refuse(
                "a CNAME record set has exactly one value".to_owned(),
            ));
        }
        Ok(())
    }
}

fn zone_file(at: &Place, zone: &str) -> PathBuf {
    at.operator_dir().join("dns").join(format!("{zone}.zone"))
}

fn zone_lock(at: &Place, zone: &str) -> PathBuf {
    at.operator_dir()
        .join("dns")
        .join(format!(".{zone}.zone.lock"))
}

fn load_zone(at: &Place, zone: &str) -> ProviderResult<Vec<RecordSet>> {
    let path = zone_file(at, zone);
    let Some(text) = read_text(&path)? else {
        return Ok(Vec::new());
    };
    parse_zone(zone, &text).map_err(|why| {
        ProviderError::permanent(format!(
            "{}: {why}: fix the line or remove it",
            path.display()
        ))
    })
}

fn store_zone(at: &Place, zone: &str, sets: &[RecordSet]) -> ProviderResult<()> {
    let path = zone_file(at, zone);
    if sets.is_empty() {
        remove_file(&path)
    } else {
        write_atomic(&path, write_zone(zone, sets).as_bytes(), PUBLIC_FILE)
    }
}

pub struct Dns;

impl Kind for Dns {
    fn replace_on(&self) -> &'static [&'static str] {
        &["zone", "name", "type"]
    }

    fn create(&self, at: &Place, inputs: &Value) -> ProviderResult<Outputs> {
        let inputs: DnsInputs = parse_inputs(&at.address, NAME, inputs)?;
        inputs.check(at)?;
        with_lock(&zone_lock(at, &inputs.zone), || {
            let mut sets = load_zone(at, &inputs.zone)?;
            let set = RecordSet {
                name: inputs.name.clone(),
                record_type: inputs.record_type.clone(),
                ttl: inputs.ttl,
                values: inputs.values.clone(),
            };
            match sets
                .iter_mut()
                .find(|s| s.name == set.name && s.record_type == set.record_type)
            {
                Some(existing) => *existing = set,
                None => sets.push(set),
            }
            store_zone(at, &inputs.zone, &sets)
        })?;
        Ok(outputs([("fqdn", json!(inputs.name))]))
    }

    fn read(&self, at: &Place, inputs: &Value) -> ProviderResult<Option<Observed>> {
        let parsed: DnsInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_component("DNS zone", &parsed.zone)?;
        let sets = load_zone(at, &parsed.zone)?;
        let Some(set) = sets
            .into_iter()
            .find(|s| s.name == parsed.name && s.record_type == parsed.record_type)
        else {
            return Ok(None);
        };
        let observed = Map::from_iter([
            ("zone".to_owned(), json!(parsed.zone)),
            ("name".to_owned(), json!(set.name)),
            ("type".to_owned(), json!(set.record_type)),
            ("ttl".to_owned(), json!(set.ttl)),
            ("values".to_owned(), json!(set.values)),
        ]);
        Ok(Some(Observed {
            inputs: observed_inputs(inputs, observed),
            outputs: outputs([("fqdn", json!(set.name))]),
        }))
    }

    fn delete(
        &self,
        at: &Place,
        inputs: &Value,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let inputs: DnsInputs = parse_inputs(&at.address, NAME, inputs)?;
        check_component("DNS zone", &inputs.zone)?;
        with_lock(&zone_lock(at, &inputs.zone), || {
            let mut sets = load_zone(at, &inputs.zone)?;
            let before = sets.len();
            sets.retain(|s| !(s.name == inputs.name && s.record_type == inputs.record_type));
            if sets.len() != before {
                store_zone(at, &inputs.zone, &sets)?;
            }
            Ok(Deletion::Removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_files_round_trip() {
        let sets = vec![
            RecordSet {
                name: "social.example.org".into(),
                record_type: "A".into(),
                ttl: 300,
                values: vec!["127.1.2.3".into(), "127.1.2.4".into()],
            },
            RecordSet {
                name: "example.org".into(),
                record_type: "TXT".into(),
                ttl: 60,
                values: vec!["v=spf1 -all".into(), "say \"hi\"".into()],
            },
        ];
        let text = write_zone("example.org", &sets);
        assert!(
            text.contains("social.example.org. 300 IN A 127.1.2.3\n"),
            "{text}"
        );
        assert_eq!(parse_zone("example.org", &text).unwrap(), sets);
    }

    #[test]
    fn hand_written_lines_are_understood() {
        let text = "$TTL 3600\n; a comment\n\nsocial   600  in  a   127.9.9.9\n@ 60 IN MX 10 mail.example.org.\n";
        let sets = parse_zone("example.org", text).unwrap();
        assert_eq!(sets[0].name, "social.example.org");
        assert_eq!(sets[0].ttl, 600);
        assert_eq!(sets[0].values, ["127.9.9.9"]);
        assert_eq!(sets[1].name, "example.org");
        assert_eq!(sets[1].values, ["10 mail.example.org."]);
    }

    #[test]
    fn broken_lines_are_reported_by_number() {
        assert_eq!(
            parse_zone("example.org", "ok 60 IN A 127.0.0.2\nnonsense\n").unwrap_err(),
            "line 2 is not a record `owner TTL IN type data`"
        );
        assert!(parse_zone("example.org", "x sixty IN A 127.0.0.2\n").is_err());
    }
}
