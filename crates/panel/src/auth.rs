//! Accounts: password hashes, sessions, CSRF tokens and login rate limiting.
//!
//! - Passwords are hashed with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), on
//!   a blocking thread so the runtime keeps serving.
//! - A session is a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
//!   off loopback); the store keeps only its SHA-256, with the session's CSRF token.
//! - Every form carries a CSRF token, checked on every POST: the session's, or before sign-in
//!   a random one in a cookie of its own (double submit).
//! - Failed sign-ins are counted per account and per client address; past the limit, sign-in
//!   is refused for the rest of the window without checking the password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_model::names::OperatorId;
use fediversity_store::{Role, Session};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::PanelError;

/// The session cookie's name.
const SESSION_COOKIE: &str = "fediversity_session";
/// The cookie that carries the CSRF token of a visitor not signed in.
const CSRF_COOKIE: &str = "fediversity_csrf";
/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per account, and per client address, in one window.
const ACCOUNT_FAILURES: u32 = 5;
const ADDRESS_FAILURES: u32 = 20;
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The argon2id hash of `password` in PHC string format.
pub async fn hash_password(password: String) -> Result<String, PanelError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes()).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| PanelError::internal(format!("hashing a password: {e}")))?
    .map_err(|e| PanelError::internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches `hash`. Without a hash (no such user), a dummy one is checked
/// all the same, so that the answer takes as long either way and tells nobody which
/// addresses have accounts.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, PanelError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = match DUMMY.get() {
        Some(dummy) => dummy.clone(),
        None => {
            let made = hash_password("not a password".to_owned()).await?;
            DUMMY.get_or_init(|| made).clone()
        }
    };
    let known = hash.is_some();
    let hash = hash.unwrap_or(dummy);
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| PanelError::internal(format!("checking a password: {e}")))?;
    Ok(known && matches)
}

/// 32 random bytes from the thread's CSPRNG (ChaCha, seeded from the operating system).
fn random_bytes() -> [u8; 32] {
    rand::random()
}

/// A random token for a cookie, a form or the API.
pub(crate) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// What the store keeps of a session id or an API token.
pub(crate) fn id_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two tokens in time that does not depend on where they differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// The token of an `Authorization: Bearer <token>` header in `headers`, without surrounding
/// spaces.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` header value.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let secure = if state.inner.options.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    );
    // Names and values are ours: base64url tokens and fixed names.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Opens a session for the user and returns the cookie that carries it.
pub async fn open_session(
    state: &AppState,
    user: fediversity_store::UserId,
) -> Result<HeaderValue, PanelError> {
    let id = random_token();
    let now = SystemClock.now();
    let expires = now.saturating_add(i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(0));
    state
        .store()
        .create_session(&id_hash(&id), user, &random_token(), now, expires)
        .await?;
    Ok(set_cookie(state, SESSION_COOKIE, &id, SESSION_LIFETIME))
}

/// Ends the session the request carries, and returns the cookie that clears it.
pub async fn close_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<HeaderValue, PanelError> {
    if let Some(id) = cookie(headers, SESSION_COOKIE) {
        state.store().delete_session(&id_hash(id)).await?;
    }
    Ok(set_cookie(state, SESSION_COOKIE, "", Duration::ZERO))
}

/// The session a request carries, if it is live.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, PanelError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(state
        .store()
        .session(&id_hash(id), SystemClock.now())
        .await?)
}

/// When the session's user signed in (sessions last a fixed time from then).
pub(crate) fn signed_in_at(session: &Session) -> fediversity_engine::clock::Millis {
    let lifetime = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(0);
    session.expires_at.saturating_sub(lifetime)
}

/// A signed-in user: pages that need one take it as an argument, and a visitor who is not
/// signed in is sent to the sign-in page.
pub struct SignedIn(pub Session);

impl SignedIn {
    /// The operator `id`, if this user may see it: its own for an operator's member, any for
    /// an administrator. Otherwise 404, the same as for an operator that does not exist, so
    /// nobody learns which operators there are.
    pub fn operator(&self, id: &str) -> Result<OperatorId, PanelError> {
        visible_operator(&self.0.user.role, id)
    }

    /// The CSRF token forms on this user's pages carry.
    pub fn csrf(&self) -> &str {
        &self.0.csrf_token
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PanelError> {
        session_of(state, &parts.headers)
            .await?
            .map(SignedIn)
            .ok_or(PanelError::SignInFirst)
    }
}

/// The operator `id`, if a user with `role` may see it (see [`SignedIn::operator`]).
pub fn visible_operator(role: &Role, id: &str) -> Result<OperatorId, PanelError> {
    let id = OperatorId::try_from(id.to_owned()).map_err(|_| PanelError::NotFound)?;
    match role {
        Role::Operator(own) if *own == id => Ok(id),
        Role::Admin => Ok(id),
        Role::Operator(_) => Err(PanelError::NotFound),
    }
}

/// The session, if any: for pages both visitors and users see.
pub struct MaybeSignedIn(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PanelError> {
        Ok(MaybeSignedIn(session_of(state, &parts.headers).await?))
    }
}

/// The CSRF token of a visitor who is not signed in: the one in their cookie, or a new one
/// with the cookie to set.
pub fn visitor_csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if !token.is_empty() => (token.to_owned(), None),
        _ => {
            let token = random_token();
            let header = set_cookie(state, CSRF_COOKIE, &token, SESSION_LIFETIME);
            (token, Some(header))
        }
    }
}

/// A posted form whose CSRF token was checked: the session's for a signed-in user, the
/// visitor cookie's otherwise. A missing or wrong token is 403; a body too large 413; a body
/// that is not a form 400.
pub struct Posted<T>(pub T);

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = PanelError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PanelError> {
        let expected = match session_of(state, request.headers()).await? {
            Some(session) => Some(session.csrf_token),
            None => cookie(request.headers(), CSRF_COOKIE).map(str::to_owned),
        };
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| match rejection.status().as_u16() {
                413 => PanelError::TooLarge,
                _ => PanelError::BadRequest(rejection.body_text()),
            })?;
        let given = serde_urlencoded::from_bytes::<CsrfField>(&body)
            .ok()
            .and_then(|field| field.csrf);
        match (expected, given) {
            (Some(expected), Some(given))
                if !expected.is_empty() && same_token(&expected, &given) => {}
            _ => return Err(PanelError::CsrfRejected),
        }
        serde_urlencoded::from_bytes(&body)
            .map(Posted)
            .map_err(|e| PanelError::BadRequest(format!("the form could not be read: {e}")))
    }
}

/// Counts failed sign-ins per account and per client address.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    /// Whether sign-in for `email` from `address` is refused for now: how long to wait if so.
    pub fn refused(&self, email: &str, address: IpAddr) -> Option<Duration> {
        let Ok(failures) = self.failures.lock() else {
            return None;
        };
        let now = Instant::now();
        [
            (format!("account {email}"), ACCOUNT_FAILURES),
            (format!("address {address}"), ADDRESS_FAILURES),
        ]
        .iter()
        .filter_map(|(key, limit)| failures.get(key).map(|entry| (entry, *limit)))
        .filter(|((since, count), limit)| {
            count >= limit && now.duration_since(*since) < FAILURE_WINDOW
        })
        .map(|((since, _), _)| FAILURE_WINDOW.saturating_sub(now.duration_since(*since)))
        .max()
    }

    /// Counts one failed sign-in.
    pub fn failed(&self, email: &str, address: IpAddr) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        let now = Instant::now();
        failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        for key in [format!("account {email}"), format!("address {address}")] {
            let entry = failures.entry(key).or_insert((now, 0));
            entry.1 += 1;
        }
    }

    /// Forgets the account's failures after a successful sign-in.
    pub fn succeeded(&self, email: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&format!("account {email}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; fediversity_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), None);
    }

    #[test]
    fn the_limiter_refuses_after_too_many_failures_per_account_or_address() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..ACCOUNT_FAILURES {
            assert_eq!(limiter.refused("a@x", here), None);
            limiter.failed("a@x", here);
        }
        assert!(limiter.refused("a@x", here).is_some());
        assert_eq!(limiter.refused("b@x", here), None, "another account");
        for n in ACCOUNT_FAILURES..ADDRESS_FAILURES {
            limiter.failed(&format!("{n}@x"), here);
        }
        assert!(
            limiter.refused("c@x", here).is_some(),
            "the address is over its limit"
        );
        assert_eq!(limiter.refused("c@x", [10, 0, 0, 1].into()), None);
    }

    #[tokio::test]
    async fn passwords_verify_against_their_own_hash_only() {
        let hash = hash_password("correct horse battery".to_owned())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse battery".to_owned(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong".to_owned(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("not a password".to_owned(), None)
                .await
                .unwrap()
        );
    }
}
