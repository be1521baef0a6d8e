//! The provider's signing keys: RSA 2048, made on first need, sealed at rest by the store,
//! rotated when the current one is older than [`crate::PanelOptions::signing_key_max_age`]
//! (or by [`rotate_signing_key`]). A retired key stays in the JWKS until every ID token it
//! signed has expired, so relying parties holding such a token can still check it.
//!
//! Keys are generated with the `rsa` crate (ring cannot generate RSA keys) and used through
//! `ring`, whose RSA signing is constant-time; the `rsa` crate's private-key operations are
//! not (RUSTSEC-2023-0071), so they are only used offline, to make a key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fediversity_engine::clock::Millis;
use fediversity_store::{SigningKey, Store};
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ID_TOKEN_LIFETIME;
use super::millis;
use crate::AppState;
use crate::error::PanelError;

/// The size of a new key, in bits: what every relying-party library accepts.
const RSA_BITS: usize = 2048;

/// A key ready to sign.
pub(crate) struct Signer {
    kid: String,
    key_pair: RsaKeyPair,
}

impl Signer {
    fn open(key: &SigningKey) -> Result<Signer, PanelError> {
        let key_pair = RsaKeyPair::from_pkcs8(&key.private_key).map_err(|e| {
            PanelError::internal(format!("the signing key {} does not load: {e}", key.kid))
        })?;
        Ok(Signer {
            kid: key.kid.clone(),
            key_pair,
        })
    }

    /// `claims` as a compact JWS (RS256) with this key's `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, PanelError> {
        let header = json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| PanelError::internal("signing an ID token failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The public key as a JWK, with its RFC 7638 thumbprint as `kid`.
fn public_jwk(key_pair: &RsaKeyPair) -> (String, Value) {
    let components = PublicKeyComponents::<Vec<u8>>::from(key_pair.public());
    let n = URL_SAFE_NO_PAD.encode(&components.n);
    let e = URL_SAFE_NO_PAD.encode(&components.e);
    // The thumbprint's input: the required members, in lexicographic order, no spaces.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
    (kid, jwk)
}

/// Makes a new key, as PKCS#8 DER, with its `kid`. Slow (a second or so): runs on a blocking
/// thread.
async fn generate() -> Result<(String, Vec<u8>), PanelError> {
    tokio::task::spawn_blocking(|| {
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
            .map_err(|e| format!("generating an RSA key: {e}"))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| format!("encoding an RSA key: {e}"))?;
        let der = der.as_bytes().to_vec();
        let key_pair =
            RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("loading a new RSA key: {e}"))?;
        Ok((public_jwk(&key_pair).0, der))
    })
    .await
    .map_err(|e| PanelError::internal(format!("generating a signing key: {e}")))?
    .map_err(PanelError::Internal)
}

/// Makes a new signing key current at `now`; the previous one stays published until its ID
/// tokens have expired, and keys retired longer ago are forgotten. Returns the new `kid`.
///
/// For a scheduled or manual rotation; the panel also rotates by itself when the current key
/// is older than its configured maximum age.
pub async fn rotate_signing_key(store: &Store, now: Millis) -> Result<String, PanelError> {
    let (kid, der) = generate().await?;
    let forget_before = now.saturating_sub(millis(ID_TOKEN_LIFETIME));
    store
        .rotate_signing_key(&kid, &der, now, forget_before)
        .await?;
    tracing::info!(%kid, "the OpenID Connect signing key was rotated");
    Ok(kid)
}

/// The key to sign with now: the current one, or a new one when there is none yet or it has
/// reached its maximum age.
pub(crate) async fn current(state: &AppState) -> Result<Signer, PanelError> {
    // One rotation at a time in this process; another process rotating at the same moment
    // only adds a key, which is published like the others.
    let _turn = state.inner.key_lock.lock().await;
    let now = state.now();
    let max_age = millis(state.inner.options.signing_key_max_age);
    let keys = state.store().signing_keys().await?;
    if let Some(key) = keys.iter().find(|key| key.retired_at.is_none())
        && now.saturating_sub(key.created_at) < max_age
    {
        return Signer::open(key);
    }
    rotate_signing_key(state.store(), now).await?;
    let keys = state.store().signing_keys().await?;
    let key = keys
        .iter()
        .find(|key| key.retired_at.is_none())
        .ok_or_else(|| PanelError::internal("no current signing key after a rotation"))?;
    Signer::open(key)
}

/// The JWKS: the current key (made now if there is none, or rotated if it is too old, so
/// that a relying party that reads the JWKS before the first sign-in has the key) and those
/// retired less than an ID token's lifetime ago.
pub(crate) async fn jwks(state: &AppState) -> Result<Value, PanelError> {
    current(state).await?;
    let now = state.now();
    let published_since = now.saturating_sub(millis(ID_TOKEN_LIFETIME));
    let mut keys = Vec::new();
    for key in state.store().signing_keys().await? {
        if key
            .retired_at
            .is_none_or(|retired| retired > published_since)
        {
            keys.push(public_jwk(&Signer::open(&key)?.key_pair).1);
        }
    }
    Ok(json!({ "keys": keys }))
}
