//! Record data between the graph's text form (`values` in the inputs) and DNS wire records.
//!
//! The text form is what the configurator writes and what `read` reports, one string per
//! record: `A` and `AAAA` an address, `CNAME` a host name, `TXT` the text itself (unquoted, split
//! into 255-byte strings on the wire and joined again when read), `MX` `preference exchange`,
//! `SRV` `priority weight port target`. Host names are written without the final dot and in
//! lower case, so a value read back compares equal to the value written.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

/// The record types the provider manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Srv,
}

/// The longest string a TXT record's data holds in one piece.
const TXT_CHUNK: usize = 255;

impl Type {
    pub(crate) const ALL: [Type; 6] = [
        Type::A,
        Type::Aaaa,
        Type::Cname,
        Type::Txt,
        Type::Mx,
        Type::Srv,
    ];

    pub(crate) fn record_type(self) -> RecordType {
        match self {
            Type::A => RecordType::A,
            Type::Aaaa => RecordType::AAAA,
            Type::Cname => RecordType::CNAME,
            Type::Txt => RecordType::TXT,
            Type::Mx => RecordType::MX,
            Type::Srv => RecordType::SRV,
        }
    }

    /// The record data `value` stands for, or why it is not valid data of this type.
    pub(crate) fn parse(self, value: &str) -> Result<RData, String> {
        let bad = |what: &str| format!("`{value}` is not {what}");
        let fields: Vec<&str> = value.split_whitespace().collect();
        Ok(match (self, fields.as_slice()) {
            (Type::A, _) => RData::A(A(value
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("an IPv4 address"))?)),
            (Type::Aaaa, _) => RData::AAAA(AAAA(
                value
                    .parse::<Ipv6Addr>()
                    .map_err(|_| bad("an IPv6 address"))?,
            )),
            (Type::Cname, [target]) => RData::CNAME(CNAME(host(target).map_err(|e| bad(&e))?)),
            (Type::Mx, [preference, exchange]) => RData::MX(MX::new(
                number(preference).map_err(|e| bad(&e))?,
                host(exchange).map_err(|e| bad(&e))?,
            )),
            (Type::Srv, [priority, weight, port, target]) => RData::SRV(SRV::new(
                number(priority).map_err(|e| bad(&e))?,
                number(weight).map_err(|e| bad(&e))?,
                number(port).map_err(|e| bad(&e))?,
                host(target).map_err(|e| bad(&e))?,
            )),
            (Type::Txt, _) if value.is_empty() => return Err("a TXT value is empty".to_owned()),
            (Type::Txt, _) => RData::TXT(TXT::from_bytes(
                value.as_bytes().chunks(TXT_CHUNK).collect(),
            )),
            (Type::Cname, _) => return Err(bad("one host name")),
            (Type::Mx, _) => return Err(bad("`preference exchange`")),
            (Type::Srv, _) => return Err(bad("`priority weight port target`")),
        })
    }

    /// The text form of `data`, or `None` when it is not of this type.
    pub(crate) fn show(self, data: &RData) -> Option<String> {
        Some(match (self, data) {
            (Type::A, RData::A(a)) => a.0.to_string(),
            (Type::Aaaa, RData::AAAA(aaaa)) => aaaa.0.to_string(),
            (Type::Cname, RData::CNAME(cname)) => show_host(&cname.0),
            (Type::Mx, RData::MX(mx)) => format!("{} {}", mx.preference, show_host(&mx.exchange)),
            (Type::Srv, RData::SRV(srv)) => format!(
                "{} {} {} {}",
                srv.priority,
                srv.weight,
                srv.port,
                show_host(&srv.target)
            ),
            (Type::Txt, RData::TXT(txt)) => {
                String::from_utf8_lossy(&txt.txt_data.concat()).into_owned()
            }
            _ => return None,
        })
    }
}

impl FromStr for Type {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Type::ALL
            .into_iter()
            .find(|t| t.to_string() == text)
            .ok_or_else(|| {
                let all: Vec<String> = Type::ALL.iter().map(Type::to_string).collect();
                format!(
                    "record type `{text}` is not one of {} (upper case)",
                    all.join(", ")
                )
            })
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::A => "A",
            Type::Aaaa => "AAAA",
            Type::Cname => "CNAME",
            Type::Txt => "TXT",
            Type::Mx => "MX",
            Type::Srv => "SRV",
        })
    }
}

/// A fully qualified domain name from `text`, with or without its final dot.
pub(crate) fn host(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|_| "a domain name".to_owned())?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// `name` in the graph's text form: lower case, no final dot.
pub(crate) fn show_host(name: &Name) -> String {
    name.to_lowercase()
        .to_ascii()
        .trim_end_matches('.')
        .to_owned()
}

fn number(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| "made of numbers from 0 to 65535 and a host name".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_in_canonical_form() {
        for (t, given, shown) in [
            (Type::A, "192.0.2.1", "192.0.2.1"),
            (Type::Aaaa, "2001:DB8:0::1", "2001:db8::1"),
            (Type::Cname, "Web.Example.org.", "web.example.org"),
            (Type::Mx, "10 mail.example.org", "10 mail.example.org"),
            (
                Type::Srv,
                "0 5 443  social.example.org.",
                "0 5 443 social.example.org",
            ),
            (Type::Txt, "v=spf1 -all", "v=spf1 -all"),
        ] {
            assert_eq!(t.show(&t.parse(given).unwrap()).unwrap(), shown, "{t}");
            assert_eq!(t.record_type().to_string(), t.to_string());
            assert_eq!(t.to_string().parse::<Type>().unwrap(), t);
        }
    }

    #[test]
    fn long_txt_values_are_split_on_the_wire_and_joined_when_read() {
        let long = "k".repeat(600);
        let data = Type::Txt.parse(&long).unwrap();
        let RData::TXT(txt) = &data else {
            panic!("{data:?}")
        };
        assert_eq!(txt.txt_data.len(), 3);
        assert_eq!(Type::Txt.show(&data).unwrap(), long);
    }

    #[test]
    fn bad_data_is_refused_with_what_was_expected() {
        for (t, value, expected) in [
            (Type::A, "2001:db8::1", "an IPv4 address"),
            (Type::Aaaa, "192.0.2.1", "an IPv6 address"),
            (Type::Cname, "a b", "one host name"),
            (Type::Mx, "mail.example.org", "`preference exchange`"),
            (Type::Mx, "-1 mail.example.org", "numbers from 0 to 65535"),
            (
                Type::Srv,
                "1 2 99999 x.example.org",
                "numbers from 0 to 65535",
            ),
            (Type::Txt, "", "empty"),
        ] {
            let error = t.parse(value).unwrap_err();
            assert!(error.contains(expected), "{t} {value}: {error}");
        }
        assert!(
            "NS".parse::<Type>()
                .unwrap_err()
                .contains("not one of A, AAAA")
        );
    }
}
