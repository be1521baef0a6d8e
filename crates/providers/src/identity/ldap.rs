//! The LDAP side: connect (`ldaps://`, or `ldap://` upgraded with StartTLS; the server's
//! certificate always verified), bind as the operator's service DN, read every user under
//! `user_base` with `user_filter` (paged, so a directory larger than the server's size limit is
//! read whole), and read the admin group's members.
//!
//! The password never leaves [`SecretString`] except into the bind request itself; errors name
//! the server, the DN and the LDAP result, never the password.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fediversity_model::names::LdapUrl;
use fediversity_model::operator::LdapProvider;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use serde::{Deserialize, Serialize};

use super::IdentityOptions;
use super::error::IdentityError;
use super::sync::{DirectoryUser, Snapshot};
use super::{causes, tls_cause};
use crate::sensitive::SecretString;

/// How many entries to ask for per page: below every common server's default size limit
/// (OpenLDAP 500, Active Directory 1000).
const PAGE_SIZE: i32 = 400;

/// LDAP result codes the checks tell apart.
const NO_SUCH_OBJECT: u32 = 32;
const INVALID_CREDENTIALS: u32 = 49;

/// The attributes read for each user: `uid` is the user name the services see, `mail` the
/// address, `entryUUID` (RFC 4530) the identity that survives a rename.
const USER_ATTRIBUTES: [&str; 3] = ["uid", "mail", "entryUUID"];

/// An LDAP directory's settings: the operator's [`LdapProvider`] without the password, as the
/// `identity.ldap` resource's `ldap` input carries them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldaps://host[:port]` or `ldap://host[:port]` with `start_tls`.
    pub url: LdapUrl,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// The DN the platform binds as.
    pub bind_dn: String,
    /// Where users are searched.
    pub user_base: String,
    /// Which entries under `user_base` are users.
    pub user_filter: String,
    /// Where groups are searched (informative: the admin group is read by its DN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_base: Option<String>,
    /// The DN of the group whose members administer every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_group: Option<String>,
}

impl From<&LdapProvider> for LdapSettings {
    fn from(provider: &LdapProvider) -> Self {
        Self {
            url: provider.url.clone(),
            start_tls: provider.start_tls,
            bind_dn: provider.bind_dn.clone(),
            user_base: provider.user_base.clone(),
            user_filter: provider.user_filter.clone(),
            group_base: provider.group_base.clone(),
            admin_group: provider.admin_group.clone(),
        }
    }
}

/// Reads the directory: every user, with admin status from the admin group. Fails on an empty
/// search, so a wrong filter is never taken for a directory without users.
pub async fn read_directory(
    settings: &LdapSettings,
    password: &SecretString,
    options: &IdentityOptions,
) -> Result<Snapshot, IdentityError> {
    let url = settings.url.as_str();
    let work = async {
        let mut ldap = connect(settings, password, options).await?;
        let result = read_bound(&mut ldap, settings).await;
        // Best effort: the server drops the connection anyway when the socket closes.
        let _ = ldap.unbind().await;
        result
    };
    tokio::time::timeout(options.timeout, work)
        .await
        .map_err(|_| IdentityError::Timeout {
            url: url.to_owned(),
            seconds: options.timeout.as_secs(),
        })?
}

async fn read_bound(ldap: &mut Ldap, settings: &LdapSettings) -> Result<Snapshot, IdentityError> {
    let admins = match &settings.admin_group {
        Some(group) => admin_members(ldap, settings, group).await?,
        None => BTreeSet::new(),
    };
    let entries = search_users(ldap, settings).await?;
    if entries.is_empty() {
        return Err(IdentityError::EmptySearch {
            url: settings.url.to_string(),
            base: settings.user_base.clone(),
            filter: settings.user_filter.clone(),
            bind_dn: settings.bind_dn.clone(),
        });
    }
    let users = entries
        .into_iter()
        .filter_map(|entry| {
            let admin = admins.contains(&normalise_dn(&entry.dn));
            user_of(entry, admin)
        })
        .collect::<BTreeMap<_, _>>();
    Ok(Snapshot {
        users,
        pending: Vec::new(),
    })
}

/// The user an entry describes, keyed by its stable id; `None` for an entry without `uid`
/// (it cannot log in to any service under a name).
fn user_of(entry: SearchEntry, admin: bool) -> Option<(String, DirectoryUser)> {
    let first = |name: &str| {
        entry
            .attrs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first().cloned())
    };
    let username = first("uid")?;
    let id = first("entryUUID").unwrap_or_else(|| normalise_dn(&entry.dn));
    let email = first("mail");
    Some((
        id,
        DirectoryUser {
            username,
            email,
            admin,
        },
    ))
}

/// Connects and binds, checking the settings first.
async fn connect(
    settings: &LdapSettings,
    password: &SecretString,
    options: &IdentityOptions,
) -> Result<Ldap, IdentityError> {
    let url = settings.url.as_str();
    let plain = url.starts_with("ldap://");
    if plain && !settings.start_tls {
        return Err(IdentityError::Settings(format!(
            "{url} is plain LDAP: set start_tls, or use ldaps://, so the bind password never crosses the network in clear"
        )));
    }
    if password.expose().is_empty() {
        return Err(IdentityError::Settings(format!(
            "the bind password for {} is empty: an LDAP server takes an empty password as an anonymous bind, which proves nothing",
            settings.bind_dn
        )));
    }
    let tls = crate::tls::client_config(&options.trust()).map_err(|e| {
        IdentityError::Settings(format!(
            "cannot use the CA certificates given for {url}: {e}"
        ))
    })?;
    let conn_settings = LdapConnSettings::new()
        .set_conn_timeout(options.timeout)
        .set_config(Arc::new(tls))
        .set_starttls(plain);
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, url)
        .await
        .map_err(|e| connection_error(url, &e))?;
    ldap3::drive!(conn);
    let result = ldap
        .simple_bind(&settings.bind_dn, password.expose())
        .await
        .map_err(|e| connection_error(url, &e))?;
    match result.rc {
        0 => Ok(ldap),
        INVALID_CREDENTIALS => Err(IdentityError::BadCredentials {
            url: url.to_owned(),
            bind_dn: settings.bind_dn.clone(),
        }),
        rc => Err(IdentityError::Ldap {
            url: url.to_owned(),
            operation: format!("bind as {}", settings.bind_dn),
            code: result_code(rc),
            text: result.text,
        }),
    }
}

/// Every entry under `user_base` matching `user_filter`, page by page.
async fn search_users(
    ldap: &mut Ldap,
    settings: &LdapSettings,
) -> Result<Vec<SearchEntry>, IdentityError> {
    let url = settings.url.as_str();
    let operation = || format!("search {} for {}", settings.user_base, settings.user_filter);
    let failed = |e: LdapError| search_error(url, &operation(), settings, &settings.user_base, e);
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE_SIZE)),
    ];
    let mut stream = ldap
        .streaming_search_with(
            adapters,
            &settings.user_base,
            Scope::Subtree,
            &settings.user_filter,
            USER_ATTRIBUTES.to_vec(),
        )
        .await
        .map_err(failed)?;
    let mut entries = Vec::new();
    while let Some(entry) = stream.next().await.map_err(failed)? {
        entries.push(SearchEntry::construct(entry));
    }
    stream.finish().await.success().map_err(failed)?;
    Ok(entries)
}

/// The admin group's members (`member` or `uniqueMember` DNs), normalised.
async fn admin_members(
    ldap: &mut Ldap,
    settings: &LdapSettings,
    group: &str,
) -> Result<BTreeSet<String>, IdentityError> {
    let url = settings.url.as_str();
    let result = ldap
        .search(
            group,
            Scope::Base,
            "(objectClass=*)",
            vec!["member", "uniqueMember"],
        )
        .await
        .map_err(|e| connection_error(url, &e))?;
    if result.1.rc == NO_SUCH_OBJECT {
        return Err(IdentityError::AdminGroupMissing {
            url: url.to_owned(),
            group: group.to_owned(),
            bind_dn: settings.bind_dn.clone(),
        });
    }
    let (entries, _) = result
        .success()
        .map_err(|e| search_error(url, &format!("read {group}"), settings, group, e))?;
    Ok(entries
        .into_iter()
        .map(SearchEntry::construct)
        .flat_map(|entry| entry.attrs.into_values().flatten())
        .map(|dn| normalise_dn(&dn))
        .collect())
}

/// A DN in the form used to compare: lower case, no spaces around `,` and `=`. (DNs compare
/// case-insensitively for the attribute types directories use for people and groups.)
fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

fn search_error(
    url: &str,
    operation: &str,
    settings: &LdapSettings,
    base: &str,
    error: LdapError,
) -> IdentityError {
    match error {
        LdapError::LdapResult { result } if result.rc == NO_SUCH_OBJECT => {
            IdentityError::NoSuchBase {
                url: url.to_owned(),
                base: base.to_owned(),
                bind_dn: settings.bind_dn.clone(),
            }
        }
        LdapError::LdapResult { result } => IdentityError::Ldap {
            url: url.to_owned(),
            operation: operation.to_owned(),
            code: result_code(result.rc),
            text: result.text,
        },
        LdapError::FilterParsing => IdentityError::Settings(format!(
            "the user filter {} is not a valid LDAP filter (RFC 4515), e.g. (objectClass=inetOrgPerson)",
            settings.user_filter
        )),
        other => connection_error(url, &other),
    }
}

/// A failure before or outside any LDAP answer, told apart by its cause: a TLS failure is
/// permanent (a certificate does not fix itself), a network failure transient.
fn connection_error(url: &str, error: &LdapError) -> IdentityError {
    let cause = causes(error);
    if let Some(tls) = tls_cause(error) {
        return IdentityError::Tls {
            url: url.to_owned(),
            cause: tls,
        };
    }
    match error {
        LdapError::Timeout { .. } => IdentityError::Unreachable {
            url: url.to_owned(),
            cause: "the connection timed out".to_owned(),
        },
        LdapError::Rustls { .. } | LdapError::DNSName { .. } => IdentityError::Tls {
            url: url.to_owned(),
            cause,
        },
        _ => IdentityError::Unreachable {
            url: url.to_owned(),
            cause,
        },
    }
}

/// An LDAP result code with its RFC 4511 name, for the messages.
fn result_code(rc: u32) -> String {
    let name = match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "",
    };
    if name.is_empty() {
        format!("result code {rc}")
    } else {
        format!("{name} ({rc})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(
            normalise_dn("UID=Alice, OU=People ,dc=Example,dc=org"),
            "uid=alice,ou=people,dc=example,dc=org"
        );
    }

    #[test]
    fn result_codes_are_named() {
        assert_eq!(result_code(49), "invalidCredentials (49)");
        assert_eq!(result_code(80), "result code 80");
    }

    #[test]
    fn entries_without_uid_are_not_users_and_entry_uuid_is_the_id() {
        let entry = |attrs: &[(&str, &str)]| SearchEntry {
            dn: "uid=alice,ou=people,dc=example,dc=org".to_owned(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect(),
            bin_attrs: Default::default(),
        };
        assert_eq!(user_of(entry(&[("mail", "a@example.org")]), false), None);
        let (id, user) =
            user_of(entry(&[("uid", "alice"), ("entryUUID", "1234-abcd")]), true).unwrap();
        assert_eq!(id, "1234-abcd");
        assert_eq!(
            user,
            DirectoryUser {
                username: "alice".to_owned(),
                email: None,
                admin: true
            }
        );
        let (id, _) = user_of(entry(&[("uid", "alice")]), false).unwrap();
        assert_eq!(id, "uid=alice,ou=people,dc=example,dc=org");
    }
}
