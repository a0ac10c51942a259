//! Log output (`-v`, `-vv`, `RUST_LOG`): plain text to stderr, with every secret scrubbed.
//!
//! Our own messages never hold a secret (`deployctl_core::Secret` prints `***`), but the
//! libraries under us log at debug and trace what they send and receive: an ECR
//! `GetAuthorizationToken` response body, a request header. Every formatted log line passes
//! through [`scrub`] before it is written: every secret value this process has wrapped
//! ([`deployctl_core::redact_known`]) and the values of fields and headers that carry
//! credentials by name are replaced with `***`.

use std::io::Write;

use deployctl_core::REDACTED;

/// Field and header names whose values are credentials, wherever they appear in a log line
/// (JSON keys, `key=value` pairs, HTTP headers). Compared case-insensitively.
/// Both spellings: the wire's (`authorizationToken`) and the SDK types' `Debug`
/// (`authorization_token: Some("…")`).
const CREDENTIAL_FIELDS: &[&str] = &[
    "authorizationtoken",
    "authorization_token",
    "secret_access_key",
    "session_token",
    "identity_token",
    "registry_token",
    "authorization",
    "x-registry-auth",
    "x-amz-security-token",
    "secretaccesskey",
    "sessiontoken",
    "password",
    "identitytoken",
    "registrytoken",
];

/// `line` with secret values replaced by `***`.
pub fn scrub(line: &str) -> String {
    let known = deployctl_core::redact_known(line);
    scrub_fields(&known)
}

/// Replaces the value after each credential field name: skips quotes, backslashes, spaces and
/// one `:` or `=`, then redacts up to the next quote, comma, brace, space or line end.
fn scrub_fields(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hit = CREDENTIAL_FIELDS
            .iter()
            .filter_map(|f| lower[i..].find(f).map(|at| (i + at, f.len())))
            .min_by_key(|(at, _)| *at);
        let Some((at, len)) = hit else {
            out.push_str(&text[i..]);
            break;
        };
        let name_end = at + len;
        out.push_str(&text[i..name_end]);
        let bytes = text.as_bytes();
        let mut j = name_end;
        while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b'\\' | b' ') {
            j += 1;
        }
        if j < bytes.len() && matches!(bytes[j], b':' | b'=') {
            j += 1;
            while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b'\\' | b' ') {
                j += 1;
            }
            // `Authorization: Bearer x`, `Basic x`: the scheme stays, the credential goes;
            // a Rust `Debug` `Some("x")` keeps its wrapper.
            if text[j..].starts_with("Some(\"") {
                j += "Some(\"".len();
            }
            for scheme in ["Bearer ", "Basic ", "AWS4-HMAC-SHA256 "] {
                if text[j..].starts_with(scheme) {
                    j += scheme.len();
                }
            }
            let value_end = text[j..]
                .find(['"', '\'', '\\', ',', '}', ' ', '\n'])
                .map_or(text.len(), |k| j + k);
            if value_end > j {
                out.push_str(&text[name_end..j]);
                out.push_str(REDACTED);
                i = value_end;
                continue;
            }
        }
        i = name_end;
    }
    out
}

/// A writer for one log event: buffers the formatted line, scrubs it, writes it to stderr.
#[derive(Debug, Default)]
pub struct ScrubbingStderr {
    buf: Vec<u8>,
}

impl Write for ScrubbingStderr {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        // A closed stderr is not worth a panic: the line is dropped.
        let _ = std::io::stderr().lock().write_all(scrub(&text).as_bytes());
        Ok(())
    }
}

impl Drop for ScrubbingStderr {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Installs the subscriber: `-v` debug, `-vv` trace, `RUST_LOG` overrides; colour only on a
/// terminal and never with `NO_COLOR`; every line scrubbed.
pub fn init(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // Without -v only warnings, and none from the Kubernetes client: it logs each retried
    // request (a 503 while pods start) as an error, though deployctl reports every failure
    // that matters itself.
    let default = match verbose {
        0 => "warn,kube_client=off",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(ScrubbingStderr::default)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::{scrub, scrub_fields};

    #[test]
    fn credential_fields_lose_their_values() {
        assert_eq!(
            scrub_fields(
                r#"{"authorizationData": [{"authorizationToken": "QVdTOnh5eg==", "expiresAt": 1}]}"#
            ),
            r#"{"authorizationData": [{"authorizationToken": "***", "expiresAt": 1}]}"#
        );
        assert_eq!(
            scrub_fields(r#"body=b\"{\\\"authorizationToken\\\": \\\"QVdTOnh5eg==\\\"}\""#),
            r#"body=b\"{\\\"authorizationToken\\\": \\\"***\\\"}\""#
        );
        assert_eq!(
            scrub_fields("authorization: Bearer eyJhbGciOi.x.y next"),
            "authorization: Bearer *** next"
        );
        assert_eq!(
            scrub_fields("X-Registry-Auth=eyJ1c2Vy x"),
            "X-Registry-Auth=*** x"
        );
        assert_eq!(
            scrub_fields(
                r#"AuthorizationData { authorization_token: Some("QVdTOnh5eg=="), expires_at: None }"#
            ),
            r#"AuthorizationData { authorization_token: Some("***"), expires_at: None }"#
        );
        assert_eq!(
            scrub_fields("password=hunter22, user=ci"),
            "password=***, user=ci"
        );
    }

    #[test]
    fn text_without_credentials_is_unchanged() {
        for line in [
            "GET /v1.41/images/json HTTP/1.1",
            "the password field is empty",
            "authorization",
            "",
        ] {
            assert_eq!(scrub_fields(line), line);
        }
    }

    #[test]
    fn known_secret_values_are_scrubbed_anywhere() {
        let _s = deployctl_core::Secret::new("marker-secret-31337");
        assert_eq!(scrub("env X=marker-secret-31337;"), "env X=***;");
    }
}
