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
    /// Nothing to roll back to, nothing deployed.
    #[error("{0}")]
    Missing(String),
    /// Ctrl-C.
    #[error("interrupted before {0}")]
    Cancelled(String),
}

impl From<LocalError> for StageError {
    fn from(e: LocalError) -> Self {
        let (kind, hint) = match &e {
            LocalError::Engine { .. } => (
                ErrorKind::Environment,
                "check that the Docker engine runs and DOCKER_HOST points at it",
            ),
            LocalError::NotManaged(_) => (
                ErrorKind::InvalidInput,
                "remove or rename that container (`docker rm -f <name>`), or change app.name",
            ),
            LocalError::Unhealthy { .. } => (
                ErrorKind::Failed,
                "look at `deployctl logs local`; check app.port and app.health_check_path",
            ),
            LocalError::Missing(_) => (ErrorKind::Failed, "run `deployctl status local`"),
            LocalError::Cancelled(what) => return StageError::cancelled(what),
        };
        StageError::new(kind, e.to_string())
            .with_hint(hint)
            .with_source(e)
    }
}
