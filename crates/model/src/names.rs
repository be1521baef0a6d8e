//! Checked names: identifiers, domains, e-mail addresses and time zones.
//!
//! Each type is a string that has passed its check, so code that holds one never checks again
//! ("parse, don't validate"). The same check backs a custom JSON Schema `format`, which is how
//! [`crate::validate`] reports every malformed name of a document at once, with the check's own
//! message, instead of stopping at the first one as `serde` would.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A check that a string is well formed; the error says what is wrong in words for the user.
pub(crate) type Check = fn(&str) -> Result<(), String>;

/// Declares a string newtype whose values have passed `$check`, published in JSON Schema as a
/// string of format `$format`.
macro_rules! checked_string {
    ($name:ident, $format:literal, $check:path, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The JSON Schema `format` name under which this check is published.
            pub const FORMAT: &'static str = $format;

            /// The checked string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                $check(&value)?;
                Ok(Self(value))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = String;
            fn try_from(value: &str) -> Result<Self, String> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "format": $format,
                    "description": $doc,
                })
            }
        }
    };
}

checked_string!(
    OperatorId,
    "fediversity-operator-id",
    check_operator_id,
    "An operator's stable identifier, used in every name the platform derives (VM names, bucket aliases, DNS owners), so it is short, lower case and never changes: 3 to 32 characters from `a-z`, `0-9` and `-`, starting with a letter."
);

checked_string!(
    Domain,
    "fediversity-domain",
    check_domain,
    "A fully qualified domain name in lower case without a trailing dot, e.g. `example.org`. Internationalised names are written in their `xn--` form."
);

checked_string!(
    Subdomain,
    "fediversity-subdomain",
    check_subdomain,
    "One or more DNS labels to put in front of the operator's domain, e.g. `social`."
);

checked_string!(
    SecretName,
    "fediversity-secret-name",
    check_secret_name,
    "The name of a secret the operator stored in the panel: 1 to 63 characters from `a-z`, `0-9`, `-` and `_`. The configuration names secrets and never carries their values."
);

checked_string!(
    Username,
    "fediversity-username",
    check_username,
    "A user name every service accepts: 1 to 30 characters from `a-z`, `0-9` and `_`."
);

checked_string!(
    Email,
    "fediversity-email",
    check_email,
    "An e-mail address `local@domain`."
);

checked_string!(
    TimeZone,
    "fediversity-time-zone",
    check_time_zone,
    "An IANA time zone name such as `Europe/Amsterdam` or `UTC`."
);

checked_string!(
    TimeOfDay,
    "fediversity-time-of-day",
    check_time_of_day,
    "A wall-clock time `HH:MM` (24-hour) in the window's time zone."
);

checked_string!(
    LdapUrl,
    "fediversity-ldap-url",
    check_ldap_url,
    "An LDAP server address `ldaps://host[:port]` or `ldap://host[:port]` (then with StartTLS)."
);

checked_string!(
    HttpsUrl,
    "fediversity-https-url",
    check_https_url,
    "An `https://` address, e.g. an OpenID Connect issuer or an API endpoint."
);

checked_string!(
    HttpUrl,
    "fediversity-http-url",
    check_http_url,
    "An `http://` or `https://` address of a server the platform talks to."
);

impl TimeOfDay {
    /// Minutes after midnight, 0 to 1439.
    pub fn minutes_after_midnight(&self) -> u32 {
        parse_time_of_day(&self.0).map_or(0, |(h, m)| h * 60 + m)
    }
}

/// Every check above, by the `format` name the schemas use; the validator registers them all.
pub(crate) const FORMATS: &[(&str, Check)] = &[
    (OperatorId::FORMAT, check_operator_id),
    (Domain::FORMAT, check_domain),
    (Subdomain::FORMAT, check_subdomain),
    (SecretName::FORMAT, check_secret_name),
    (Username::FORMAT, check_username),
    (Email::FORMAT, check_email),
    (TimeZone::FORMAT, check_time_zone),
    (TimeOfDay::FORMAT, check_time_of_day),
    (LdapUrl::FORMAT, check_ldap_url),
    (HttpsUrl::FORMAT, check_https_url),
    (HttpUrl::FORMAT, check_http_url),
];

fn check_operator_id(value: &str) -> Result<(), String> {
    let what = "an operator id has 3 to 32 characters from a-z, 0-9 and '-', starts with a letter and does not end with '-'";
    let ok = (3..=32).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{value}` is not a valid operator id: {what}"))
    }
}

/// Checks one DNS label (LDH rule, RFC 1035 §2.3.1, lower case only).
fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it has an empty label (two dots in a row, or a dot at either end)".into());
    }
    if label.len() > 63 {
        return Err(format!("the label `{label}` is longer than 63 characters"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("the label `{label}` starts or ends with '-'"));
    }
    if label.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("write it in lower case".into());
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "the character {c:?} is not allowed (only a-z, 0-9 and '-'; write internationalised names in their xn-- form)"
        ));
    }
    Ok(())
}

fn check_labels(value: &str) -> Result<(), String> {
    value.split('.').try_for_each(check_label)
}

fn check_domain(value: &str) -> Result<(), String> {
    let problem = if value.len() > 253 {
        Err("it is longer than 253 characters".to_owned())
    } else if !value.contains('.') {
        Err("it needs at least two labels, such as example.org".to_owned())
    } else if value
        .rsplit('.')
        .next()
        .is_some_and(|tld| !tld.is_empty() && tld.chars().all(|c| c.is_ascii_digit()))
    {
        Err("the last label is a number (an IP address is not a domain)".to_owned())
    } else {
        check_labels(value)
    };
    problem.map_err(|why| format!("`{value}` is not a valid domain: {why}"))
}

fn check_subdomain(value: &str) -> Result<(), String> {
    check_labels(value).map_err(|why| format!("`{value}` is not a valid subdomain: {why}"))
}

fn check_secret_name(value: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a valid secret name: use 1 to 63 characters from a-z, 0-9, '-' and '_'"
        ))
    }
}

fn check_username(value: &str) -> Result<(), String> {
    let ok = (1..=30).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a valid user name: Mastodon, Pixelfed and PeerTube all accept 1 to 30 characters from a-z, 0-9 and '_'"
        ))
    }
}

fn check_email(value: &str) -> Result<(), String> {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(format!(
            "`{value}` is not a valid e-mail address: it has no '@'"
        ));
    };
    if local.is_empty() || local.len() > 64 || local.chars().any(|c| c.is_whitespace() || c == '@')
    {
        return Err(format!(
            "`{value}` is not a valid e-mail address: the part before '@' must be 1 to 64 characters without spaces"
        ));
    }
    check_domain(&domain.to_ascii_lowercase())
        .map_err(|why| format!("`{value}` is not a valid e-mail address: {why}"))
}

fn check_time_zone(value: &str) -> Result<(), String> {
    value.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        format!("`{value}` is not an IANA time zone name such as Europe/Amsterdam or UTC")
    })
}

fn parse_time_of_day(value: &str) -> Option<(u32, u32)> {
    let (hour, minute) = value.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_digit());
    if !two_digits(hour) || !two_digits(minute) {
        return None;
    }
    let (hour, minute) = (hour.parse().ok()?, minute.parse().ok()?);
    (hour < 24 && minute < 60).then_some((hour, minute))
}

fn check_time_of_day(value: &str) -> Result<(), String> {
    parse_time_of_day(value)
        .map(|_| ())
        .ok_or_else(|| format!("`{value}` is not a time of day: write HH:MM, from 00:00 to 23:59"))
}

/// Checks `scheme://host[:port][/path]` for one of `schemes`, returning the URL without scheme.
fn check_url<'a>(value: &'a str, schemes: &[&str]) -> Result<&'a str, String> {
    let wanted = schemes.join(" or ");
    let Some(rest) = schemes.iter().find_map(|s| value.strip_prefix(s)) else {
        return Err(format!(
            "`{value}` is not a valid address: it must start with {wanted}"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, Some(port))
        }
        _ => (authority, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        return Err(format!(
            "`{value}` is not a valid address: it has no host name"
        ));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(format!(
            "`{value}` is not a valid address: `{port}` is not a port number"
        ));
    }
    Ok(rest)
}

fn check_ldap_url(value: &str) -> Result<(), String> {
    let rest = check_url(value, &["ldaps://", "ldap://"])?;
    if rest.contains('/') && !rest.ends_with('/') {
        return Err(format!(
            "`{value}` is not a valid LDAP server address: give only scheme, host and port; the search base has its own field"
        ));
    }
    Ok(())
}

fn check_https_url(value: &str) -> Result<(), String> {
    check_url(value, &["https://"]).map(|_| ())
}

fn check_http_url(value: &str) -> Result<(), String> {
    check_url(value, &["https://", "http://"]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for good in [
            "example.org",
            "a.b.example.co.uk",
            "xn--bcher-kva.example",
            "x1.io",
        ] {
            assert!(Domain::try_from(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("example", "two labels"),
            ("Example.org", "lower case"),
            ("exa_mple.org", "'_'"),
            ("-a.org", "starts or ends"),
            ("a..org", "empty label"),
            ("example.org.", "empty label"),
            ("10.0.0.1", "IP address"),
        ] {
            let error = Domain::try_from(bad).err().unwrap_or_default();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(Domain::try_from(format!("{}.org", "a".repeat(64))).is_err());
    }

    #[test]
    fn operator_ids() {
        assert!(OperatorId::try_from("uni-utrecht").is_ok());
        for bad in ["ab", "1abc", "abc-", "ABC", "a_b_c", &"a".repeat(33)] {
            assert!(OperatorId::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_usernames_zones() {
        assert!(Email::try_from("Admin.Person+fedi@Example.org").is_ok());
        assert!(Email::try_from("no-at.example.org").is_err());
        assert!(Email::try_from("a b@example.org").is_err());
        assert!(Username::try_from("site_admin").is_ok());
        assert!(Username::try_from("site.admin").is_err());
        assert!(TimeZone::try_from("Europe/Amsterdam").is_ok());
        assert!(TimeZone::try_from("Mars/Olympus").is_err());
    }

    #[test]
    fn times_and_urls() {
        assert_eq!(
            TimeOfDay::try_from("02:30").map(|t| t.minutes_after_midnight()),
            Ok(150)
        );
        for bad in ["24:00", "2:30", "02:60", "0230", "ab:cd"] {
            assert!(TimeOfDay::try_from(bad).is_err(), "{bad}");
        }
        assert!(LdapUrl::try_from("ldaps://ldap.example.org:636").is_ok());
        assert!(LdapUrl::try_from("ldap://ldap.example.org").is_ok());
        assert!(LdapUrl::try_from("http://ldap.example.org").is_err());
        assert!(LdapUrl::try_from("ldaps://ldap.example.org/dc=example").is_err());
        assert!(HttpsUrl::try_from("https://id.example.org/realms/staff").is_ok());
        assert!(HttpsUrl::try_from("http://id.example.org").is_err());
        assert!(HttpsUrl::try_from("https://:443").is_err());
        assert!(HttpUrl::try_from("http://[2001:db8::1]:3903").is_ok());
        assert!(HttpUrl::try_from("http://garage:99999").is_err());
    }

    #[test]
    fn schema_describes_the_format() {
        let schema = serde_json::to_value(schemars::schema_for!(Domain)).unwrap_or_default();
        assert_eq!(schema["format"], "fediversity-domain");
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("A fully qualified domain name")),
            "{schema}"
        );
    }
}
