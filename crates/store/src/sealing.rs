//! Secrets at rest: every secret wrapper (`{"$secret": value}`) the store writes is sealed with
//! XChaCha20-Poly1305 under the platform key, and opened again when read.
//!
//! A sealed secret is stored as `{"$secret": {"sealed": "<base64 of nonce ‖ ciphertext>"}}`:
//! still a wrapper, so the rest of the JSON (and a person reading the database) can see where
//! secrets are without seeing them. Each value has its own random 24-byte nonce. The operator
//! id is the associated data, so a sealed value copied into another operator's rows does not
//! open.
//!
//! The key never leaves [`SealingKey`]: it has no accessor and its `Debug` prints nothing of it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead as _, Generate as _, Payload};
use chacha20poly1305::{Key, KeyInit as _, XChaCha20Poly1305, XNonce};
use fediversity_engine::value::transform_secrets;
use serde_json::{Map, Value};

use crate::error::{Error, Result, corrupt};

/// The field of a sealed secret's wrapper content that holds the sealed bytes.
const SEALED: &str = "sealed";

/// Bytes in a key.
const KEY_LEN: usize = 32;

/// Bytes in an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// The platform's 32-byte key for secrets at rest.
#[derive(Clone)]
pub struct SealingKey(Key);

impl SealingKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<SealingKey> {
        Key::try_generate()
            .map(SealingKey)
            .map_err(|e| Error::Random(e.to_string()))
    }

    /// A key from its base64 form (as in a key file).
    pub fn from_base64(text: &str) -> std::result::Result<SealingKey, String> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| format!("not base64 ({e})"))?;
        let key = Key::try_from(bytes.as_slice())
            .map_err(|_| format!("{} bytes instead of {KEY_LEN}", bytes.len()))?;
        Ok(SealingKey(key))
    }

    /// Reads the key from `path`, which only its owner may read or write (mode 0600).
    pub fn from_file(path: impl AsRef<Path>) -> Result<SealingKey> {
        let path = path.as_ref();
        let key_file = |source| Error::KeyFile {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(key_file)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::KeyFilePermissions {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(key_file)?;
        SealingKey::from_base64(&text).map_err(|problem| Error::KeyFormat {
            path: path.to_owned(),
            problem,
        })
    }

    /// Generates a key and writes it to `path` (mode 0600), refusing to overwrite a file that
    /// exists: losing the key loses every secret sealed with it.
    pub fn write_new(path: impl AsRef<Path>) -> Result<SealingKey> {
        let path = path.as_ref();
        let key = SealingKey::generate()?;
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(format!("{}\n", BASE64.encode(key.0)).as_bytes())?;
            file.sync_all()
        };
        write().map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(key)
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(…)")
    }
}

/// Seals and opens secret wrappers under one key.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub(crate) fn new(key: &SealingKey) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.0),
        }
    }

    /// `value` with the content of every secret wrapper sealed; `context` (the operator id)
    /// must be given again to open it.
    pub(crate) fn seal(&self, context: &str, mut value: Value) -> Result<Value> {
        transform_secrets(&mut value, &mut |inner| self.seal_one(context, inner))?;
        Ok(value)
    }

    /// `value` with every sealed secret wrapper opened.
    pub(crate) fn open(&self, context: &str, mut value: Value) -> Result<Value> {
        transform_secrets(&mut value, &mut |inner| self.open_one(context, inner))?;
        Ok(value)
    }

    /// Seals `bytes` alone, as base64 of nonce ‖ ciphertext.
    pub(crate) fn seal_bytes(&self, context: &str, bytes: &[u8]) -> Result<String> {
        let nonce = XNonce::try_generate().map_err(|e| Error::Random(e.to_string()))?;
        let payload = Payload {
            msg: bytes,
            aad: context.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| Error::Random("sealing failed".to_owned()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(BASE64.encode(sealed))
    }

    /// Opens what [`Sealer::seal_bytes`] sealed under the same key and context.
    pub(crate) fn open_bytes(&self, context: &str, sealed: &str) -> Result<Vec<u8>> {
        let bytes = BASE64
            .decode(sealed)
            .map_err(|e| corrupt("sealed secret", format!("not base64 ({e})")))?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt("sealed secret", "too short to hold a nonce"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| corrupt("sealed secret", "bad nonce"))?;
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        self.cipher
            .decrypt(&nonce, payload)
            .map_err(|_| Error::KeyMismatch)
    }

    fn seal_one(&self, context: &str, inner: &Value) -> Result<Value> {
        let plaintext = serde_json::to_vec(inner).map_err(|source| Error::Serialise {
            what: "a secret",
            source,
        })?;
        let sealed = self.seal_bytes(context, &plaintext)?;
        Ok(Value::Object(Map::from_iter([(
            SEALED.to_owned(),
            Value::String(sealed),
        )])))
    }

    fn open_one(&self, context: &str, inner: &Value) -> Result<Value> {
        let Some(Value::String(sealed)) = inner.get(SEALED) else {
            return Err(corrupt(
                "secret",
                "a secret was stored without being sealed",
            ));
        };
        let plaintext = self.open_bytes(context, sealed)?;
        serde_json::from_slice(&plaintext).map_err(|e| corrupt("sealed secret", e))
    }
}

#[cfg(test)]
mod tests {
    use fediversity_engine::value::secret;
    use serde_json::json;

    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&SealingKey::generate().unwrap())
    }

    #[test]
    fn sealed_values_hide_the_secret_and_open_again() {
        let sealer = sealer();
        let value = json!({"user": "admin", "password": secret("hunter2"), "list": [secret(42)]});
        let sealed = sealer.seal("uni", value.clone()).unwrap();
        let text = sealed.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(sealed["user"], "admin");
        assert!(sealed["password"]["$secret"]["sealed"].is_string());
        assert_eq!(sealer.open("uni", sealed.clone()).unwrap(), value);
    }

    #[test]
    fn each_value_gets_its_own_nonce() {
        let sealer = sealer();
        let a = sealer.seal("uni", secret("same")).unwrap();
        let b = sealer.seal("uni", secret("same")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_wrong_key_or_operator_fails_clearly() {
        let sealed = sealer().seal("uni", secret("hunter2")).unwrap();
        let error = sealer().open("uni", sealed.clone()).unwrap_err();
        assert!(matches!(error, Error::KeyMismatch));
        assert!(
            error
                .to_string()
                .contains("the platform key does not match the one this state was written with"),
            "{error}"
        );
        let same_key = sealer();
        let sealed = same_key.seal("uni", secret("hunter2")).unwrap();
        assert!(matches!(
            same_key.open("newsroom", sealed.clone()),
            Err(Error::KeyMismatch)
        ));
    }

    #[test]
    fn unsealed_secrets_are_refused_when_read() {
        let error = sealer().open("uni", secret("plain")).unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    }

    #[test]
    fn key_files_round_trip_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        let written = SealingKey::write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = SealingKey::from_file(&path).unwrap();
        let sealed = Sealer::new(&written).seal("uni", secret("s")).unwrap();
        assert_eq!(
            Sealer::new(&read).open("uni", sealed.clone()).unwrap(),
            secret("s")
        );
        assert!(matches!(
            SealingKey::write_new(&path),
            Err(Error::KeyFile { .. })
        ));
    }

    #[test]
    fn key_files_readable_by_others_or_malformed_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        SealingKey::write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = SealingKey::from_file(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = SealingKey::from_file(&path).unwrap_err();
        assert!(
            error.to_string().contains("5 bytes instead of 32"),
            "{error}"
        );
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = SealingKey::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        assert_eq!(format!("{key:?}"), "SealingKey(…)");
    }
}
