//! A value that must never be printed.

use std::fmt;

/// A secret string: an env value marked secret, a registry password, a token.
///
/// `Debug` and `Display` print `***`; serializing writes `"***"`. The only way to the value is
/// [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "***";

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call only where the value leaves for its one legitimate use
    /// (an API call, a Kubernetes Secret).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of this secret in `text` with `***`. Used to scrub
    /// messages that came from outside (a build log, a server error) before they are shown.
    pub fn redact_in(&self, text: &str) -> String {
        if self.0.len() < 3 {
            // Too short to scrub without mangling unrelated text.
            return text.to_owned();
        }
        text.replace(&self.0, REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn redacts_in_foreign_text() {
        let s = Secret::new("hunter22");
        assert_eq!(
            s.redact_in("login hunter22 failed (hunter22)"),
            "login *** failed (***)"
        );
        assert_eq!(Secret::new("a").redact_in("banana"), "banana");
    }
}
