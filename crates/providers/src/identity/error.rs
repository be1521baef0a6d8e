//! What can go wrong checking or reading an operator's identity provider, each variant saying
//! what to fix. No variant carries a secret: the bind password and the client secret are only
//! ever held as [`SecretString`](crate::SecretString).

use fediversity_engine::ProviderError;

/// Why an identity provider check, read or sync failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The settings themselves are unusable (a plain `ldap://` without StartTLS, an empty
    /// password, a CA file that holds no certificate).
    #[error("{0}")]
    Settings(String),
    /// No connection: refused, reset, a name that does not resolve, a timeout.
    #[error(
        "cannot reach {url}: {cause} (check the address and that the server is up; trying again may help)"
    )]
    Unreachable {
        /// The server or document asked.
        url: String,
        /// What the network said.
        cause: String,
    },
    /// The TLS handshake failed: an untrusted CA, a certificate for another name, no TLS.
    #[error(
        "the TLS handshake with {url} failed: {cause} (the server's certificate must be valid for that host name and signed by a CA the platform trusts)"
    )]
    Tls {
        /// The server.
        url: String,
        /// What rustls said.
        cause: String,
    },
    /// The server refused the bind DN and password.
    #[error(
        "{url} refused the credentials of {bind_dn} (invalid credentials): check the bind DN and the stored bind password"
    )]
    BadCredentials {
        /// The server.
        url: String,
        /// The DN the platform bound as.
        bind_dn: String,
    },
    /// The server answered an operation with an LDAP error.
    #[error("{url} refused to {operation}: {code} {text}")]
    Ldap {
        /// The server.
        url: String,
        /// What the platform asked, e.g. `search ou=people,dc=example,dc=org`.
        operation: String,
        /// The LDAP result code and its name.
        code: String,
        /// The server's diagnostic message.
        text: String,
    },
    /// The user search found nobody.
    #[error(
        "searching {base} with {filter} on {url} found no user: check user_base and user_filter, and that {bind_dn} may read them"
    )]
    EmptySearch {
        /// The server.
        url: String,
        /// The search base.
        base: String,
        /// The filter.
        filter: String,
        /// The DN the platform bound as.
        bind_dn: String,
    },
    /// The search base does not exist.
    #[error("{base} does not exist on {url} (or {bind_dn} may not see it): check user_base")]
    NoSuchBase {
        /// The server.
        url: String,
        /// The missing base.
        base: String,
        /// The DN the platform bound as.
        bind_dn: String,
    },
    /// The admin group named in the configuration does not exist.
    #[error(
        "the admin group {group} does not exist on {url} (or {bind_dn} may not see it): check admin_group"
    )]
    AdminGroupMissing {
        /// The server.
        url: String,
        /// The group's DN.
        group: String,
        /// The DN the platform bound as.
        bind_dn: String,
    },
    /// The server did not finish in time.
    #[error("{url} did not answer within {seconds} s (trying again may help)")]
    Timeout {
        /// The server.
        url: String,
        /// The limit.
        seconds: u64,
    },
    /// The discovery document could not be fetched or is not what OpenID Connect Discovery
    /// requires.
    #[error("the discovery document at {url} {problem}")]
    Discovery {
        /// The document's address.
        url: String,
        /// What is wrong with it.
        problem: String,
        /// Whether trying again may help (a 5xx answer).
        transient: bool,
    },
    /// A service's admin API refused or failed a call (sign-in, de-provisioning, role).
    #[error("{service} at {url} {problem}")]
    Service {
        /// The service.
        service: &'static str,
        /// The endpoint.
        url: String,
        /// What went wrong.
        problem: String,
        /// Whether trying again may help (no answer, a 5xx or 429 answer).
        transient: bool,
    },
}

impl IdentityError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Discovery { transient, .. } | Self::Service { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl From<IdentityError> for ProviderError {
    fn from(error: IdentityError) -> Self {
        if error.is_transient() {
            ProviderError::transient(error.to_string())
        } else {
            ProviderError::permanent(error.to_string())
        }
    }
}
