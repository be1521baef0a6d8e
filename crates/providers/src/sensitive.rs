//! A string that is a secret: it can be used, never shown.
//!
//! Secret values cross this crate as [`SecretString`] until the moment they become an output
//! the provider names as sensitive: its `Debug` and `Display` print `(secret)`, so neither a
//! log line, an error message nor a test failure can carry the value by accident.

use std::fmt;

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
}
