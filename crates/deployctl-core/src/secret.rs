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

/// Every secret value this process has wrapped (long enough to scrub safely), so output that
/// did not come through [`Secret`]'s `Display` — an SDK's or an HTTP client's trace log — can
/// still be scrubbed with [`redact_known`]. Bounded: a long-running process keeps the newest.
static KNOWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
const KNOWN_MAX: usize = 4096;
const SCRUB_MIN_LEN: usize = 3;

fn remember(value: &str) {
    if value.len() < SCRUB_MIN_LEN {
        return;
    }
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if known.iter().any(|k| k == value) {
        return;
    }
    if known.len() >= KNOWN_MAX {
        known.remove(0);
    }
    known.push(value.to_owned());
}

/// `text` with every secret value this process has seen replaced by `***` (longest first,
/// so a secret that contains another is scrubbed whole).
pub fn redact_known(text: &str) -> String {
    let known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut ordered: Vec<&String> = known.iter().filter(|k| text.contains(k.as_str())).collect();
    if ordered.is_empty() {
        return text.to_owned();
    }
    ordered.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut out = text.to_owned();
    for k in ordered {
        out = out.replace(k.as_str(), REDACTED);
    }
    out
}

impl Secret {
    /// Wraps a value (and remembers it for [`redact_known`]).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        remember(&value);
        Self(value)
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
        if self.0.len() < SCRUB_MIN_LEN {
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

/// Where a secret's value is kept outside `deploy.yaml`: the config names it, the binary asks
/// a [`SecretResolver`] for the value before anything remote changes.
///
/// `Display` names the reference (never a value): `aws_secret `db-creds` key `password``,
/// `ssm `/app/token``.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretSource {
    /// AWS Secrets Manager: a secret's name or ARN; with `key`, one field of its JSON value.
    AwsSecret {
        /// The secret's name or ARN.
        id: String,
        /// A field of the secret's JSON object (its value as text, numbers as written).
        key: Option<String>,
    },
    /// SSM Parameter Store: a parameter's name (a SecureString is decrypted).
    Ssm {
        /// The parameter's name, `/path/name`.
        name: String,
    },
}

impl SecretSource {
    /// The environment variable name the reference itself is passed under when values stay
    /// out of the target's configuration: `<NAME>_SECRET_ARN` or `<NAME>_SSM_PARAMETER`.
    pub fn reference_variable(&self, name: &str) -> String {
        match self {
            SecretSource::AwsSecret { .. } => format!("{name}_SECRET_ARN"),
            SecretSource::Ssm { .. } => format!("{name}_SSM_PARAMETER"),
        }
    }

    /// The secret's name or ARN, or the parameter's name.
    pub fn id(&self) -> &str {
        match self {
            SecretSource::AwsSecret { id, .. } => id,
            SecretSource::Ssm { name } => name,
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::AwsSecret { id, key: None } => write!(f, "aws_secret `{id}`"),
            SecretSource::AwsSecret { id, key: Some(k) } => {
                write!(f, "aws_secret `{id}` key `{k}`")
            }
            SecretSource::Ssm { name } => write!(f, "ssm `{name}`"),
        }
    }
}

/// Reads secret values from where teams keep them (implemented over AWS Secrets Manager and
/// SSM Parameter Store in `deployctl-aws`).
///
/// A missing secret, parameter or JSON key is [`ErrorKind::InvalidInput`](crate::ErrorKind)
/// (the config names something that is not there); refused access is
/// [`ErrorKind::Environment`](crate::ErrorKind). Errors never carry a value.
#[async_trait::async_trait]
pub trait SecretResolver: Send + Sync {
    /// The value `source` names, as a [`Secret`].
    async fn resolve(&self, source: &SecretSource) -> Result<Secret, crate::StageError>;
}

/// Reads every reference of `sources` (by variable name) at once. The first failure is
/// returned naming `secrets.<NAME>` and the reference (never a value), with a hint that says
/// nothing was changed: callers read before anything remote changes.
pub async fn resolve_all(
    resolver: &dyn SecretResolver,
    sources: &std::collections::BTreeMap<String, SecretSource>,
) -> Result<std::collections::BTreeMap<String, Secret>, crate::StageError> {
    let reads = sources.iter().map(|(name, source)| async move {
        match resolver.resolve(source).await {
            Ok(v) => Ok((name.clone(), v)),
            Err(mut e) => {
                e.message = if e.message.contains(source.id()) {
                    format!("secrets.{name}: {}", e.message)
                } else {
                    format!("secrets.{name}: {source}: {}", e.message)
                };
                e.hint = Some(format!(
                    "{}; nothing was changed",
                    e.hint
                        .as_deref()
                        .unwrap_or("fix the reference in deploy.yaml")
                ));
                Err(e)
            }
        }
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knows `ssm /known` only.
    struct OneParameter;

    #[async_trait::async_trait]
    impl SecretResolver for OneParameter {
        async fn resolve(&self, source: &SecretSource) -> Result<Secret, crate::StageError> {
            match source {
                SecretSource::Ssm { name } if name == "/known" => Ok(Secret::new("v")),
                other => Err(crate::StageError::new(
                    crate::ErrorKind::InvalidInput,
                    format!("{} not found", other.id()),
                )),
            }
        }
    }

    fn ssm(name: &str) -> SecretSource {
        SecretSource::Ssm { name: name.into() }
    }

    #[test]
    fn every_reference_is_read_and_a_missing_one_is_named_by_its_field() {
        let ok = [("A".to_owned(), ssm("/known"))].into_iter().collect();
        let got = futures::executor::block_on(resolve_all(&OneParameter, &ok)).unwrap();
        assert_eq!(got["A"].expose(), "v");

        let bad = [
            ("A".to_owned(), ssm("/known")),
            ("B".to_owned(), ssm("/gone")),
        ]
        .into_iter()
        .collect();
        let e = futures::executor::block_on(resolve_all(&OneParameter, &bad)).unwrap_err();
        assert_eq!(e.message, "secrets.B: /gone not found");
        assert_eq!(
            e.hint.as_deref(),
            Some("fix the reference in deploy.yaml; nothing was changed")
        );
    }

    #[test]
    fn references_print_their_names_only() {
        let s = SecretSource::AwsSecret {
            id: "db".into(),
            key: Some("password".into()),
        };
        assert_eq!(s.to_string(), "aws_secret `db` key `password`");
        assert_eq!(
            s.reference_variable("DB_PASSWORD"),
            "DB_PASSWORD_SECRET_ARN"
        );
        let p = SecretSource::Ssm {
            name: "/app/token".into(),
        };
        assert_eq!(p.to_string(), "ssm `/app/token`");
        assert_eq!(p.reference_variable("TOKEN"), "TOKEN_SSM_PARAMETER");
    }

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

    #[test]
    fn every_secret_made_is_scrubbed_from_foreign_text() {
        let _a = Secret::new("tok-abc");
        let _b = Secret::new("tok-abc-longer");
        assert_eq!(
            redact_known("x=tok-abc-longer y=tok-abc z"),
            "x=*** y=*** z",
            "the longer secret is scrubbed whole"
        );
        let _short = Secret::new("ab");
        assert_eq!(redact_known("abc"), "abc", "too short to scrub");
    }
}
