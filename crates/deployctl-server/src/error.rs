//! What can go wrong in the server and its store.

use std::path::PathBuf;

/// An error of the server library. HTTP answers are built from it in `http`; the binary maps
/// it to an exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data dir could not be created.
    #[error("cannot create the data dir {}", path.display())]
    DataDir {
        /// The dir.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or reached.
    #[error("cannot open the database {what}")]
    Connect {
        /// The file, or the URL without its password.
        what: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// `--database-url` names a database other than PostgreSQL.
    #[error(
        "--database-url {url}: only postgres:// URLs are supported (leave it out for SQLite in --data-dir)"
    )]
    UnsupportedUrl {
        /// The URL without its password.
        url: String,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database schema")]
    Migrate {
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("database query failed")]
    Database {
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value is not one this version understands.
    #[error("the database holds an unknown {what}")]
    Corrupt {
        /// What.
        what: String,
    },
    /// Bad input to a token command (`--role`, `--ttl`).
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the option.
        message: String,
    },
    /// Reading the system's random source failed.
    #[error("cannot read random bytes from /dev/urandom")]
    Random {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener could not be bound or served.
    #[error("cannot serve HTTP on {addr}")]
    Serve {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS cannot be set up on this machine (client).
    #[error("TLS is not usable here: {message}")]
    Tls {
        /// Why.
        message: String,
    },
    /// The server could not be reached (client).
    #[error("cannot reach {url}")]
    Unreachable {
        /// The URL asked for.
        url: String,
        /// Why.
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    /// The server answered with an error (client).
    #[error("the server answered {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The server's hint.
        hint: Option<String>,
        /// Config problems, when the server refused the config (422).
        diagnostics: Vec<deployctl_config::Diagnostic>,
        /// Seconds to wait before asking again (429).
        retry_after: Option<u64>,
    },
    /// The server's answer or stream could not be read (client).
    #[error("{what}")]
    Protocol {
        /// What went wrong.
        what: String,
    },
}

impl Error {
    /// The kind of failure, for the exit code: a refusal of the request's content is
    /// invalid input (nothing was changed), one of the token or an unreachable server is
    /// the environment, the rest a failure.
    pub fn kind(&self) -> deployctl_core::ErrorKind {
        use deployctl_core::ErrorKind;
        match self {
            Error::Invalid { .. } | Error::UnsupportedUrl { .. } => ErrorKind::InvalidInput,
            Error::Api { status, .. } => match status {
                401 | 403 => ErrorKind::Environment,
                400 | 404 | 409 | 413 | 415 | 422 => ErrorKind::InvalidInput,
                _ => ErrorKind::Failed,
            },
            Error::Unreachable { .. }
            | Error::Tls { .. }
            | Error::DataDir { .. }
            | Error::Connect { .. }
            | Error::Serve { .. }
            | Error::Random { .. } => ErrorKind::Environment,
            _ => ErrorKind::Failed,
        }
    }
}
