//! The error a stage reports, and what kind of failure it is.

use std::fmt;

/// What kind of failure an error is. The binary maps it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input (config, flags, Dockerfile) is wrong; nothing remote was touched. Exit 2.
    InvalidInput,
    /// The environment is not usable: missing credentials, unreachable daemon. Exit 3.
    Environment,
    /// A remote operation failed. Exit 1.
    Failed,
    /// The run was interrupted. Exit 130.
    Cancelled,
}

impl ErrorKind {
    /// The process exit code documented for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::InvalidInput => 2,
            ErrorKind::Environment => 3,
            ErrorKind::Cancelled => 130,
        }
    }

    /// The kind whose [`ErrorKind::exit_code`] is `code` (an unknown non-zero code is a
    /// failed run), as a client reads a remote run's exit code back.
    pub fn from_exit_code(code: i64) -> Self {
        [Self::InvalidInput, Self::Environment, Self::Cancelled]
            .into_iter()
            .find(|k| i64::from(k.exit_code()) == code)
            .unwrap_or(Self::Failed)
    }
}

/// An error from an adapter, as the pipeline carries it.
///
/// Adapters keep their own `thiserror` enums; they hand them to the pipeline as the
/// `source` of a `StageError`, with a [`ErrorKind`] and a hint saying what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub struct StageError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What failed, on which resource (one line).
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
    /// The cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StageError {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// The run was cancelled before `what`.
    pub fn cancelled(what: &str) -> Self {
        Self::new(ErrorKind::Cancelled, format!("interrupted before {what}"))
            .with_hint("re-run the same command: it continues from what is already in place")
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds the cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The message followed by every cause, one per entry, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.message.clone()];
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            let text = cause.to_string();
            // An adapter error often is both the message and the first source.
            if out.last() != Some(&text) {
                out.push(text);
            }
            next = cause.source();
        }
        out
    }
}

/// Whether a transport failure happened before the request reached the server — nothing
/// listens, the name does not resolve, the connection was refused or not made in time — so
/// the call changed nothing and the service is `unreachable` rather than failing. Walks the
/// error's sources; the one rule for every adapter's client (the AWS SDK's and kube's hyper
/// stacks word these differently).
pub fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as Io;
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if text.contains("client error (Connect)")
            || text.contains("connect timeout")
            || text.contains("tcp connect error")
            || text.contains("dns error")
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                Io::ConnectionRefused
                    | Io::NotFound
                    | Io::AddrNotAvailable
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod connect_tests {
    use super::never_connected;

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("dispatch failure")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_refused_connection_anywhere_in_the_chain_never_connected() {
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(never_connected(&refused));
        let reset = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(
            !never_connected(&reset),
            "a reset may follow a request that arrived"
        );
        let text = std::io::Error::other("tcp connect error: timed out");
        assert!(never_connected(&text));
    }
}
