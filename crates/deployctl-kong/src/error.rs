//! What can go wrong configuring Kong.

use std::path::PathBuf;

use deployctl_core::{ErrorKind, StageError};

/// A gateway failure. Messages never contain the admin token or a consumer key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KongError {
    /// The OpenAPI document cannot be read.
    #[error("cannot read the OpenAPI document {}", file.display())]
    Read {
        /// The spec file.
        file: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The OpenAPI document is not what deployctl can turn into routes.
    #[error("{}{}{pointer}: {message}", file.display(), if pointer.is_empty() { "" } else { " at " })]
    Spec {
        /// The spec file.
        file: PathBuf,
        /// JSON pointer of the offending value (`/paths/~1users~1{id}/get/security`),
        /// or `line:column` when the text does not parse.
        pointer: String,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// An Admin API call failed (transport, or a status Kong answered with).
    #[error("Kong Admin API {method} {path} failed: {message}")]
    Admin {
        /// HTTP method.
        method: &'static str,
        /// Request path (no query secrets: deployctl sends none).
        path: String,
        /// HTTP status, when Kong answered.
        status: Option<u16>,
        /// Kong's message or the transport failure.
        message: String,
    },
    /// An entity with a deployctl ID exists without deployctl's tag: someone else owns it.
    #[error("Kong {kind} {id} exists but is not tagged `{tag}`: deployctl does not own it")]
    NotOwned {
        /// Entity kind.
        kind: &'static str,
        /// Its ID.
        id: String,
        /// The tag deployctl looks for.
        tag: String,
    },
    /// A value cannot be used (a setting, an admin URL).
    #[error("{field}: {message}")]
    Invalid {
        /// Field path or flag.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl KongError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            KongError::Read { .. } => "check `kong.openapi` in deploy.yaml (relative to it)".into(),
            KongError::Spec { hint, .. } => hint.clone(),
            KongError::Admin { status: Some(401 | 403), .. } => {
                "check `kong.admin_token` (sent as Kong-Admin-Token)".into()
            }
            KongError::Admin { .. } => {
                "the Kubernetes deployment is serving; fix the gateway and run `deployctl deploy` again to configure it".into()
            }
            KongError::NotOwned { .. } => {
                "delete or tag that entity in Kong, or rename the app".into()
            }
            KongError::Invalid { .. } => "fix the setting in deploy.yaml".into(),
        }
    }

    /// The exit-code class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KongError::Read { .. } | KongError::Spec { .. } | KongError::Invalid { .. } => {
                ErrorKind::InvalidInput
            }
            KongError::Admin { .. } | KongError::NotOwned { .. } => ErrorKind::Failed,
        }
    }

    pub(crate) fn spec(
        file: &std::path::Path,
        pointer: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        KongError::Spec {
            file: file.to_owned(),
            pointer: pointer.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl From<KongError> for StageError {
    fn from(e: KongError) -> Self {
        StageError::new(e.kind(), e.to_string())
            .with_hint(e.hint())
            .with_source(e)
    }
}
