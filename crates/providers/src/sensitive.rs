//! A string that is a secret: it can be used, never shown.
//!
//! Secret values cross this crate as [`SecretString`] until the moment they become an output
//! the provider names as sensitive: its `Debug` and `Display` print `(secret)`, so neither a
//! log line, an error message nor a test failure can carry the value by accident.
//!
//! [`SecretString::from_file`] reads the one-line secret files the platform is configured with
//! (a token for the panel's `/metrics`, …) and refuses one that others may read.

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use fediversity_engine::value::MASK;

/// A secret value: `Debug` and `Display` print `(secret)`. It deserialises from a string, so
/// a provider's typed inputs can hold secrets without showing them.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: only for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value itself, consuming the wrapper.
    pub fn into_exposed(self) -> String {
        self.0
    }

    /// The one-line secret in `path` (a final newline is not part of it). The file must be
    /// its owner's alone (no group or other permission bits, as `chmod 600` or systemd's
    /// `LoadCredential=` leave it): a secret others can read is no longer one, and refusing it
    /// at start is kinder than finding out after a leak. An empty file is refused too, since
    /// an empty secret would let anyone in.
    pub fn from_file(path: &Path) -> Result<Self, SecretFileError> {
        let unreadable = |source| SecretFileError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(unreadable)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretFileError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = std::fs::read_to_string(path).map_err(unreadable)?;
        strip_final_newline(&mut text);
        if text.is_empty() {
            return Err(SecretFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self(text))
    }
}

/// Why a secret file cannot be used. It never holds any of the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file does not exist or cannot be read.
    #[error("cannot read the secret file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Others than its owner may use the file.
    #[error(
        "the secret file {} has mode {mode:03o}: others than its owner may read it, so it is refused \
         (`chmod 600` it)",
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds nothing but perhaps a newline.
    #[error("the secret file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Removes one final line ending (`\n` or `\r\n`) from a secret read from a file: editors add
/// one, and it is not part of the secret. Anything else, spaces included, is.
pub(crate) fn strip_final_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = SecretString::new("hunter2");
        assert_eq!(format!("{secret}"), "(secret)");
        assert_eq!(format!("{secret:?}"), "(secret)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some((secret))");
        assert_eq!(secret.expose(), "hunter2");
    }

    /// A file in a fresh directory holding `contents`, with permission bits `mode`.
    fn secret_file(dir: &tempfile::TempDir, contents: &str, mode: u32) -> PathBuf {
        let path = dir.path().join("token");
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_secret_file_loses_its_final_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        for (contents, secret) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            (" s3 cret \n\n", " s3 cret \n"),
        ] {
            let path = secret_file(&dir, contents, 0o600);
            assert_eq!(SecretString::from_file(&path).unwrap().expose(), secret);
        }
        let read_only = secret_file(&dir, "s3cret\n", 0o400);
        assert_eq!(
            SecretString::from_file(&read_only).unwrap().expose(),
            "s3cret"
        );
    }

    #[test]
    fn a_missing_empty_or_shared_secret_file_is_refused_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SecretString::from_file(&dir.path().join("nothing")).unwrap_err();
        assert!(
            matches!(missing, SecretFileError::Unreadable { .. }),
            "{missing}"
        );
        assert!(missing.to_string().contains("nothing"), "{missing}");

        let empty = SecretString::from_file(&secret_file(&dir, "\n", 0o600)).unwrap_err();
        assert!(matches!(empty, SecretFileError::Empty { .. }), "{empty}");
        assert!(empty.to_string().contains("is empty"), "{empty}");

        for mode in [0o640, 0o604, 0o660] {
            let shared =
                SecretString::from_file(&secret_file(&dir, "hunter2\n", mode)).unwrap_err();
            let message = shared.to_string();
            assert!(
                matches!(shared, SecretFileError::Exposed { .. }),
                "{message}"
            );
            assert!(message.contains(&format!("mode {mode:03o}")), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
            assert!(!message.contains("hunter2") && !format!("{shared:?}").contains("hunter2"));
        }
    }
}
