//! Log output (`-v`, `-vv`, `RUST_LOG`): plain text to stderr, with every secret scrubbed.
//!
//! Our own messages never hold a secret (`deployctl_core::Secret` prints `***`), but the
//! libraries under us log at debug and trace what they send and receive: an ECR
//! `GetAuthorizationToken` response body, a request header. Every formatted log line passes
//! through [`scrub`] before it is written: every secret value this process has wrapped
//! ([`deployctl_core::redact_known`]), the values of fields and headers that carry
//! credentials by name, and the values of a Docker container's environment (`"Env"`) are
//! replaced with `***`.
//!
//! The environment is scrubbed by shape, not by value: the Docker client logs every inspect
//! answer at debug, and a command that never resolves secrets (`status`, `logs`, `destroy`,
//! `rollback`, `history`), or a deploy that replaces an older value, does not know the value
//! the running container holds.

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
    scrub_env_lists(&scrub_fields(&known))
}

/// Replaces the value of every `NAME=value` item of a Docker `"Env"` array with `***`, in
/// JSON as the engine sends it (`"Env":["A=1"]`) and as a `Debug` of those bytes quotes it
/// (`\"Env\":[\"A=1\"]`).
fn scrub_env_lists(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("Env") {
        let after_name = &rest[at + 3..];
        // The key's quotes: `"Env"` in JSON, `\"Env\"` in a Debug of JSON.
        let quote = ["\\\"", "\""]
            .into_iter()
            .find(|q| after_name.starts_with(q) && rest[..at].ends_with(q));
        let key_end = at + 3 + quote.map_or(0, str::len);
        out.push_str(&rest[..key_end]);
        rest = &rest[key_end..];
        let Some(quote) = quote else { continue };
        let Some(items) = rest
            .trim_start()
            .strip_prefix(':')
            .map(str::trim_start)
            .and_then(|a| a.strip_prefix('['))
        else {
            continue;
        };
        out.push_str(&rest[..rest.len() - items.len()]);
        rest = items;
        // Each `"NAME=value"` up to the closing `]`.
        loop {
            let next = rest.trim_start_matches([' ', ',', '\n']);
            out.push_str(&rest[..rest.len() - next.len()]);
            rest = next;
            let Some(item) = rest.strip_prefix(quote) else {
                break;
            };
            let end = string_end(item, quote.len() > 1);
            let value = &item[..end];
            out.push_str(quote);
            match value.find('=') {
                Some(eq) => {
                    out.push_str(&value[..=eq]);
                    out.push_str(REDACTED);
                }
                None => out.push_str(value),
            }
            rest = &item[end..];
            let Some(next) = rest.strip_prefix(quote) else {
                break;
            };
            out.push_str(quote);
            rest = next;
        }
    }
    out.push_str(rest);
    out
}

/// Where a JSON string's content (after its opening quote) ends: at its closing `"`, or at
/// `\"` when the JSON is itself quoted by `Debug` (where `\\` is one backslash of the JSON,
/// which escapes what follows). The end of `s` when it is cut off.
fn string_end(s: &str, debug_quoted: bool) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut escaping = false;
    while i < b.len() {
        // One character of the JSON: its byte, and how many bytes of `s` it takes.
        let (c, width) = match (b[i], b.get(i + 1)) {
            (b'\\', Some(&n)) if debug_quoted && (n == b'\\' || n == b'"') => (n, 2),
            (c, _) => (c, 1),
        };
        if c == b'"' && !escaping {
            return i;
        }
        escaping = c == b'\\' && !escaping;
        i += width;
    }
    b.len()
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
    fn docker_env_values_are_scrubbed_by_shape() {
        assert_eq!(
            scrub(
                r#"Decoded into string: {"Config":{"Tty":false,"Env":["RELEASE=two","API_TOKEN=unknown-value-1","EMPTY=","NOEQ"],"Cmd":null}}"#
            ),
            r#"Decoded into string: {"Config":{"Tty":false,"Env":["RELEASE=***","API_TOKEN=***","EMPTY=***","NOEQ"],"Cmd":null}}"#
        );
        assert_eq!(
            scrub(r#"request: b"{\"Env\":[\"A=x \\\"q\\\" y\", \"B=2\"],\"Image\":\"i\"}""#),
            r#"request: b"{\"Env\":[\"A=***\", \"B=***\"],\"Image\":\"i\"}""#
        );
        assert_eq!(
            scrub(r#"{"Env": [ "A=\"quoted\" v" ], "Env2":["X=1"], "Envy": 1}"#),
            r#"{"Env": [ "A=***" ], "Env2":["X=1"], "Envy": 1}"#
        );
        for line in [
            "the Env is empty",
            r#"{"Env":null}"#,
            r#"{"Env":[]}"#,
            r#"{"MyEnv":["A=1"]}"#,
            "Env\"",
        ] {
            assert_eq!(scrub(line), line);
        }
    }

    #[test]
    fn known_secret_values_are_scrubbed_anywhere() {
        let _s = deployctl_core::Secret::new("marker-secret-31337");
        assert_eq!(scrub("env X=marker-secret-31337;"), "env X=***;");
    }
}
