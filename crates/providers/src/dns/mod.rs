//! The `dns` provider: record sets on the hosting provider's authoritative DNS server, changed
//! with RFC 2136 dynamic updates signed with TSIG (RFC 8945), so that BIND, Knot and PowerDNS
//! all work the same way.
//!
//! Inputs (as the configurator writes them): `zone` (the zone the update goes to), `delegation`
//! (the operator's own domain: the only names it may touch), `name`, `type` (`A`, `AAAA`,
//! `CNAME`, `TXT`, `MX`, `SRV`), `ttl` and `values` (see [`records`] for their text form).
//! Output: `fqdn`.
//!
//! - **create / update** replace the whole record set in one signed update: "delete the RRset"
//!   then "add each record", with no prerequisites, so sending it twice leaves the same zone
//!   (the idempotent shape a retry after a lost answer needs).
//! - **delete** removes the record set; a missing one is not an error.
//! - **read** asks the server directly over the wire, without TSIG (any client may ask an
//!   authoritative server); what it answers is the truth, so a record changed by hand shows up
//!   as drift in `refresh`, and `apply` puts it back.
//!
//! Before anything is sent, a name outside the operator's delegation, outside the zone, or a
//! zone that is neither the hosting provider's zone nor the operator's own is refused: the TSIG
//! key may update the whole zone, so the provider is the one that keeps operators apart.

mod records;
mod transport;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fediversity_engine::provider::{CallContext, Deletion, Observed, Outputs, Provider};
use fediversity_engine::{ProviderError, ProviderResult};
use fediversity_model::Retention;
use fediversity_model::graph::ResourceAddress;
use fediversity_model::infra::{DnsInfra, TsigAlgorithm};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage as _};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as WireAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, TSigner};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::inputs::parse_inputs;
use records::{Type, host, show_host};

/// The provider name resources use.
pub const NAME: &str = "dns";

/// How far the TSIG signature's time may be from the server's clock, in seconds (RFC 8945
/// recommends 300).
const FUDGE: u16 = 300;

/// The `dns` provider: one authoritative server, one TSIG key.
#[derive(Clone)]
pub struct DnsProvider {
    server: SocketAddr,
    /// The hosting provider's own zone: operators' names under it are updated in it, and no
    /// operator's delegation may cover it.
    provider_zone: Name,
    key_name: String,
    signer: TSigner,
}

impl fmt::Debug for DnsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsProvider")
            .field("server", &self.server)
            .field("provider_zone", &show_host(&self.provider_zone))
            .field("key_name", &self.key_name)
            .field("key", &fediversity_engine::value::MASK)
            .finish()
    }
}

impl DnsProvider {
    /// The provider for `infra.toml`'s `[dns]` section: reads the TSIG secret (base64) from
    /// `tsig_secret_file`. Fails, naming the file or the key, when the secret cannot be read
    /// or used; it never shows the secret.
    pub fn from_infra(infra: &DnsInfra) -> crate::Result<Self> {
        let key = read_secret(&infra.tsig_secret_file)?;
        let key_error = |reason: String| Error::TsigKey {
            name: infra.tsig_key_name.clone(),
            reason,
        };
        let mut key_name = Name::from_ascii(&infra.tsig_key_name)
            .map_err(|_| key_error("is not a valid domain name".to_owned()))?;
        key_name.set_fqdn(true);
        let algorithm = match infra.tsig_algorithm {
            TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(key, algorithm, key_name, FUDGE)
            .map_err(|e| key_error(format!("cannot sign with it: {e}")))?;
        let provider_zone = host(&infra.zone.to_string()).map_err(|reason| Error::DnsZone {
            zone: infra.zone.to_string(),
            reason,
        })?;
        Ok(Self {
            server: infra.server,
            provider_zone,
            key_name: infra.tsig_key_name.clone(),
            signer,
        })
    }

    /// Sends one signed update replacing the record set with `records` (none: removing it).
    async fn replace(&self, set: &RecordSet, records: &[RData]) -> ProviderResult<()> {
        let what = format!("the update of {set}");
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        let mut zone = Query::query(set.zone.clone(), hickory_proto::rr::RecordType::SOA);
        zone.set_query_class(DNSClass::IN);
        message.add_zone(zone);
        // RFC 2136 2.5.2: delete an RRset — class ANY, TTL 0, no data.
        let mut delete = Record::update0(set.name.clone(), 0, set.kind.record_type());
        delete.dns_class = DNSClass::ANY;
        message.add_update(delete);
        for data in records {
            message.add_update(Record::from_rdata(set.name.clone(), set.ttl, data.clone()));
        }
        // TSIG signs with the wall clock by design: the server checks the signature's time
        // against its own clock (within FUDGE), so no injected clock could do better.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verifier = message.finalize(&self.signer, now).map_err(|e| {
            ProviderError::permanent(format!(
                "cannot sign {what} with TSIG key `{}`: {e}",
                self.key_name
            ))
        })?;
        let request = transport::encode(&message, &what)?;
        let answer = transport::exchange(self.server, &request, message.metadata.id, &what).await?;
        let response = decode(self.server, &answer, &what)?;
        if response.metadata.response_code != ResponseCode::NoError {
            return Err(self.refused(&what, &response));
        }
        if let Some(mut verifier) = verifier {
            verifier.verify(&answer).map_err(|e| {
                ProviderError::permanent(format!(
                    "DNS server {} accepted {what}, but its answer's TSIG signature does not \
                     verify with key `{}`: {e}",
                    self.server, self.key_name
                ))
            })?;
        }
        Ok(())
    }

    /// The record set as the server answers it now, in text form with its TTL.
    async fn query(&self, set: &RecordSet) -> ProviderResult<Option<(u32, Vec<String>)>> {
        let what = format!("the query for {set}");
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(set.name.clone(), set.kind.record_type()));
        let request = transport::encode(&message, &what)?;
        let answer = transport::exchange(self.server, &request, message.metadata.id, &what).await?;
        let response = decode(self.server, &answer, &what)?;
        match response.metadata.response_code {
            ResponseCode::NoError if response.metadata.authoritative => {}
            ResponseCode::NXDomain => return Ok(None),
            ResponseCode::NoError | ResponseCode::Refused | ResponseCode::NotAuth => {
                return Err(ProviderError::permanent(format!(
                    "DNS server {} is not authoritative for {}: the zone `{}` must be served \
                     by it (check [dns] server and zone in infra.toml, or the operator's \
                     delegation)",
                    self.server,
                    show_host(&set.name),
                    show_host(&set.zone)
                )));
            }
            _ => return Err(self.refused(&what, &response)),
        }
        let wanted = show_host(&set.name);
        let records: Vec<&Record> = response
            .answers
            .iter()
            .filter(|r| r.record_type() == set.kind.record_type() && show_host(&r.name) == wanted)
            .collect();
        let Some(ttl) = records.iter().map(|r| r.ttl).min() else {
            return Ok(None);
        };
        let mut values: Vec<String> = records
            .iter()
            .filter_map(|r| set.kind.show(&r.data))
            .collect();
        values.sort();
        Ok(Some((ttl, values)))
    }

    /// The error for an answer other than NOERROR: TSIG and authorisation failures are
    /// permanent and say which key, a server failure is transient.
    fn refused(&self, what: &str, response: &Message) -> ProviderError {
        let rcode = response.metadata.response_code;
        let tsig_error = response.signature.as_ref().and_then(|s| s.data.error);
        let code = match &tsig_error {
            Some(error) => format!("{} (TSIG error {})", mnemonic(rcode), tsig_mnemonic(*error)),
            None => mnemonic(rcode),
        };
        match (rcode, tsig_error) {
            (ResponseCode::ServFail, None) => ProviderError::transient(format!(
                "DNS server {} failed {what}: {code}",
                self.server
            )),
            (ResponseCode::NotAuth | ResponseCode::Refused, _) | (_, Some(_)) => {
                ProviderError::permanent(format!(
                    "DNS server {} refused {what} signed with TSIG key `{}`: {code}: check \
                     [dns] tsig_key_name, tsig_algorithm and tsig_secret_file in infra.toml, \
                     that the server knows this key and lets it update the zone, and that \
                     both clocks are right",
                    self.server, self.key_name
                ))
            }
            _ => ProviderError::permanent(format!(
                "DNS server {} refused {what}: {code}",
                self.server
            )),
        }
    }

    /// The record set the inputs describe, checked before anything is sent.
    fn record_set(&self, address: &ResourceAddress, inputs: &Value) -> ProviderResult<RecordSet> {
        let parsed: RecordInputs = parse_inputs(address, NAME, inputs)?;
        let refuse = |why: String| ProviderError::permanent(format!("{address}: {why}"));
        let name_of = |field: &str, text: &str| {
            host(text).map_err(|_| refuse(format!("`{field}` `{text}` is not a domain name")))
        };
        let zone = name_of("zone", &parsed.zone)?;
        let delegation = name_of("delegation", &parsed.delegation)?;
        let name = name_of("name", &parsed.name)?;
        let kind: Type = parsed.record_type.parse().map_err(refuse)?;
        if !delegation.zone_of(&name) {
            return Err(refuse(format!(
                "`{}` is outside the operator's delegation `{}`: refused before sending",
                show_host(&name),
                show_host(&delegation)
            )));
        }
        if delegation.zone_of(&self.provider_zone) {
            return Err(refuse(format!(
                "the delegation `{}` covers the hosting provider's zone `{}`: an operator \
                 may only have names below it",
                show_host(&delegation),
                show_host(&self.provider_zone)
            )));
        }
        if !zone.zone_of(&name) {
            return Err(refuse(format!(
                "`{}` is not in the zone `{}`",
                show_host(&name),
                show_host(&zone)
            )));
        }
        if zone != self.provider_zone && zone != delegation {
            return Err(refuse(format!(
                "the zone `{}` is neither the hosting provider's zone `{}` nor the operator's \
                 own `{}`",
                show_host(&zone),
                show_host(&self.provider_zone),
                show_host(&delegation)
            )));
        }
        if !(1..=i32::MAX.unsigned_abs()).contains(&parsed.ttl) {
            return Err(refuse(format!("TTL {} is out of range", parsed.ttl)));
        }
        if parsed.values.is_empty() {
            return Err(refuse("a record set needs at least one value".to_owned()));
        }
        if kind == Type::Cname && parsed.values.len() != 1 {
            return Err(refuse(
                "a CNAME record set has exactly one value".to_owned(),
            ));
        }
        let data = parsed
            .values
            .iter()
            .map(|value| {
                kind.parse(value)
                    .map_err(|e| refuse(format!("{kind} data: {e}")))
            })
            .collect::<ProviderResult<Vec<_>>>()?;
        let mut canonical = data.iter().filter_map(|d| kind.show(d)).collect::<Vec<_>>();
        canonical.sort();
        Ok(RecordSet {
            zone,
            name,
            kind,
            ttl: parsed.ttl,
            values: parsed.values,
            canonical,
            data,
        })
    }

    fn outputs(set: &RecordSet) -> Outputs {
        let mut outputs = Outputs::default();
        outputs
            .values
            .insert("fqdn".to_owned(), json!(show_host(&set.name)));
        outputs
    }
}

/// The inputs as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInputs {
    zone: String,
    delegation: String,
    name: String,
    #[serde(rename = "type")]
    record_type: String,
    ttl: u32,
    values: Vec<String>,
}

/// One record set, checked.
#[derive(Debug)]
struct RecordSet {
    zone: Name,
    name: Name,
    kind: Type,
    ttl: u32,
    /// The values as given.
    values: Vec<String>,
    /// The values in the text form a read reports, sorted.
    canonical: Vec<String>,
    data: Vec<RData>,
}

impl fmt::Display for RecordSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in zone {}",
            show_host(&self.name),
            self.kind,
            show_host(&self.zone)
        )
    }
}

#[async_trait]
impl Provider for DnsProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn concurrency(&self) -> usize {
        4
    }

    fn replace_on(&self, _address: &ResourceAddress) -> &[&str] {
        &["zone", "name", "type"]
    }

    async fn create(&self, ctx: &CallContext, inputs: &Value) -> ProviderResult<Outputs> {
        let set = self.record_set(&ctx.address, inputs)?;
        self.replace(&set, &set.data).await?;
        Ok(Self::outputs(&set))
    }

    async fn read(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: Option<&Outputs>,
    ) -> ProviderResult<Option<Observed>> {
        let set = self.record_set(&ctx.address, inputs)?;
        let Some((ttl, observed)) = self.query(&set).await? else {
            return Ok(None);
        };
        // The same data in another order or spelling is no drift: report the values as given.
        let values = if observed == set.canonical {
            set.values.clone()
        } else {
            observed
        };
        Ok(Some(Observed {
            inputs: json!({"ttl": ttl, "values": values}),
            outputs: Self::outputs(&set),
        }))
    }

    async fn update(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
    ) -> ProviderResult<Outputs> {
        self.create(ctx, inputs).await
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        inputs: &Value,
        _recorded: &Outputs,
        _retention: Retention,
    ) -> ProviderResult<Deletion> {
        let set = self.record_set(&ctx.address, inputs)?;
        self.replace(&set, &[]).await?;
        Ok(Deletion::Removed)
    }
}

/// The TSIG secret in `path`: base64, surrounding whitespace ignored.
fn read_secret(path: &Path) -> crate::Result<Vec<u8>> {
    let secret_error = |reason: &str| Error::TsigSecret {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| secret_error(&e.to_string()))?;
    let key = STANDARD
        .decode(text.trim())
        .map_err(|_| secret_error("it does not hold one base64 value"))?;
    if key.is_empty() {
        return Err(secret_error("it is empty"));
    }
    Ok(key)
}

fn decode(server: SocketAddr, answer: &[u8], what: &str) -> ProviderResult<Message> {
    Message::from_vec(answer).map_err(|e| {
        ProviderError::transient(format!(
            "DNS server {server} answered {what} with a message that does not parse: {e}"
        ))
    })
}

/// The RCODE's name as RFCs and `dig` write it.
fn mnemonic(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::YXDomain => "YXDOMAIN".to_owned(),
        ResponseCode::YXRRSet => "YXRRSET".to_owned(),
        ResponseCode::NXRRSet => "NXRRSET".to_owned(),
        ResponseCode::NotAuth => "NOTAUTH".to_owned(),
        ResponseCode::NotZone => "NOTZONE".to_owned(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

fn tsig_mnemonic(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".to_owned(),
        TsigError::BadKey => "BADKEY".to_owned(),
        TsigError::BadTime => "BADTIME".to_owned(),
        TsigError::BadTrunc => "BADTRUNC".to_owned(),
        TsigError::Unknown(code) => format!("{code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(dir: &Path) -> DnsProvider {
        let file = dir.join("key");
        std::fs::write(&file, "c2VjcmV0IGtleSBvZiB0aGlydHktdHdvIGJ5dGVzISE=\n").unwrap();
        DnsProvider::from_infra(&DnsInfra {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "hosting.test".try_into().unwrap(),
            tsig_key_name: "fedi".to_owned(),
            tsig_algorithm: TsigAlgorithm::HmacSha256,
            tsig_secret_file: file,
            ttl: 300,
        })
        .unwrap()
    }

    fn inputs(zone: &str, delegation: &str, name: &str) -> Value {
        json!({"zone": zone, "delegation": delegation, "name": name, "type": "A", "ttl": 300,
               "values": ["192.0.2.1"]})
    }

    #[test]
    fn names_are_checked_against_the_delegation_and_the_zone() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let address: ResourceAddress = "dns.a".parse().unwrap();
        for (zone, delegation, name) in [
            (
                "hosting.test",
                "ngo.hosting.test",
                "social.ngo.hosting.test",
            ),
            ("hosting.test", "ngo.hosting.test", "ngo.hosting.test"),
            ("example.org", "example.org", "social.example.org"),
            (
                "hosting.test",
                "ngo.hosting.test",
                "*.s3-web.ngo.hosting.test",
            ),
        ] {
            assert!(
                p.record_set(&address, &inputs(zone, delegation, name))
                    .is_ok()
            );
        }
        for (zone, delegation, name, expected) in [
            (
                "hosting.test",
                "ngo.hosting.test",
                "www.hosting.test",
                "outside the operator's delegation",
            ),
            (
                "hosting.test",
                "ngo.hosting.test",
                "evil-ngo.hosting.test",
                "outside the operator's delegation",
            ),
            (
                "hosting.test",
                "hosting.test",
                "www.hosting.test",
                "covers the hosting provider's zone",
            ),
            (
                "test",
                "test",
                "www.hosting.test",
                "covers the hosting provider's zone",
            ),
            (
                "example.org",
                "ngo.example.net",
                "ngo.example.net",
                "is not in the zone",
            ),
            (
                "org",
                "example.org",
                "www.example.org",
                "neither the hosting provider's zone",
            ),
        ] {
            let error = p
                .record_set(&address, &inputs(zone, delegation, name))
                .unwrap_err();
            assert!(
                error.message.contains(expected),
                "{name}: {}",
                error.message
            );
            assert_eq!(
                error.kind,
                fediversity_engine::provider::ErrorKind::Permanent
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_failure_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let mut p = provider(dir.path());
        p.server = closed;
        let ctx = crate::secret::tests::ctx("dns.a");
        let inputs = inputs("hosting.test", "ngo.hosting.test", "ngo.hosting.test");
        for error in [
            p.create(&ctx, &inputs).await.unwrap_err(),
            p.read(&ctx, &inputs, None).await.unwrap_err(),
        ] {
            assert_eq!(
                error.kind,
                fediversity_engine::provider::ErrorKind::Transient
            );
            assert!(
                error.message.contains(&closed.to_string()),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn a_missing_or_broken_secret_file_is_named_and_the_key_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let mut infra = DnsInfra {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "hosting.test".try_into().unwrap(),
            tsig_key_name: "fedi".to_owned(),
            tsig_algorithm: TsigAlgorithm::HmacSha256,
            tsig_secret_file: dir.path().join("missing"),
            ttl: 300,
        };
        let error = DnsProvider::from_infra(&infra).unwrap_err().to_string();
        assert!(error.contains("missing"), "{error}");
        infra.tsig_secret_file = dir.path().join("broken");
        std::fs::write(&infra.tsig_secret_file, "not base64 hunter2!").unwrap();
        let error = DnsProvider::from_infra(&infra).unwrap_err().to_string();
        assert!(
            error.contains("broken") && error.contains("base64"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        let shown = format!("{:?}", provider(dir.path()));
        assert!(
            shown.contains("(secret)") && !shown.contains("c2Vj"),
            "{shown}"
        );
    }
}
