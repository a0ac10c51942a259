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
}
