//! What can go wrong running the app locally.

use deployctl_core::{ErrorKind, StageError};

/// A local-target failure. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// A Docker Engine API call failed.
    #[error("Docker {operation} failed for {resource}: {message}")]
    Engine {
        /// The operation (`create container`, `start container`).
        operation: &'static str,
        /// Container or image.
        resource: String,
        /// The engine's message.
        message: String,
    },
    /// A container with deployctl's name exists but is not deployctl's.
    #[error("container `{0}` exists but was not created by deployctl (no deployctl.app label)")]
    NotManaged(String),
    /// The container did not answer its health check in time.
    #[error("{url} did not answer with a success status within {seconds} s: {last}")]
    Unhealthy {
        /// URL checked.
        url: String,
        /// Deadline.
        seconds: u64,
        /// Last result.
        last: String,
    },
    /// The host port is held by something else.
    #[error("port {port} on this machine is taken by {holder}")]
    PortTaken {
        /// The host port (`local.port`, default `app.port`).
        port: u16,
        /// Who holds it.
        holder: String,
    },
    /// The new container failed; what was done about it.
    #[error("{cause}; {outcome}")]
    Reverted {
        /// Why it failed.
        cause: Box<LocalError>,
        /// What happened to the new and the previous container.
        outcome: String,
    },
    /// Nothing to roll back to, nothing deployed.
    #[error("{0}")]
    Missing(String),
    /// The deploy records file cannot be read or written, or does not parse.
    #[error("the deploy records file {path} {problem}")]
    Records {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Ctrl-C.
    #[error("interrupted before {0}")]
    Cancelled(String),
}

impl LocalError {
    /// The kind of failure (which decides the exit code) and what to do about it.
    fn kind_and_hint(&self) -> (ErrorKind, &'static str) {
        match self {
            LocalError::Engine { .. } => (
                ErrorKind::Environment,
                "check that the Docker engine runs and DOCKER_HOST points at it",
            ),
            LocalError::NotManaged(_) => (
                ErrorKind::InvalidInput,
                "remove or rename that container (`docker rm -f <name>`), or change app.name",
            ),
            LocalError::Unhealthy { .. } | LocalError::Reverted { .. } => (
                ErrorKind::Failed,
                "look at `deployctl logs local`; check app.port and app.health_check_path",
            ),
            LocalError::Missing(_) => (ErrorKind::Failed, "run `deployctl status local`"),
            LocalError::Records { .. } => (
                ErrorKind::Failed,
                "check the file's directory is writable; delete the file to start the records again",
            ),
            LocalError::PortTaken { .. } => (
                ErrorKind::Environment,
                "stop what holds the port, or choose another with `local.port` in deploy.yaml",
            ),
            LocalError::Cancelled(_) => (ErrorKind::Cancelled, "run the same command again"),
        }
    }
}

impl From<LocalError> for StageError {
    fn from(e: LocalError) -> Self {
        if let LocalError::Cancelled(what) = &e {
            return StageError::cancelled(what);
        }
        // A failure that was undone keeps the kind of its cause (an engine failure stays one).
        let (kind, hint) = match &e {
            LocalError::Reverted { cause, .. } => cause.kind_and_hint(),
            other => other.kind_and_hint(),
        };
        StageError::new(kind, e.to_string())
            .with_hint(hint)
            .with_source(e)
    }
}
