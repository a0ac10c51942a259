//! What can go wrong finding registry credentials.

use std::path::PathBuf;

use deployctl_core::{ErrorKind, StageError};

/// A credentials failure. Messages never contain a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// config.json exists but cannot be read or parsed.
    #[error("cannot use Docker's config file {path}: {reason}")]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// Why (never the file's contents).
        reason: String,
    },
    /// An Amazon ECR call failed.
    #[error("Amazon ECR {operation} failed for {target}: {reason}")]
    Ecr {
        /// The API operation.
        operation: &'static str,
        /// Registry or repository.
        target: String,
        /// Why (the service's message).
        reason: String,
    },
    /// The config or a flag asks for something that cannot be done (no registry, Lambda with
    /// a registry that is not ECR, a credential choice without its credentials).
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A credential helper failed.
    #[error("credential helper `docker-credential-{helper}` failed for {registry}: {reason}")]
    Helper {
        /// Helper name.
        helper: String,
        /// Registry asked for.
        registry: String,
        /// Why.
        reason: String,
    },
}

impl From<RegistryError> for StageError {
    fn from(e: RegistryError) -> Self {
        if let RegistryError::Invalid { message, hint } = &e {
            return StageError::new(ErrorKind::InvalidInput, message.clone())
                .with_hint(hint.clone());
        }
        let hint = match &e {
            RegistryError::DockerConfig { .. } => {
                "fix or remove the file, set DOCKER_CONFIG to another directory, or give registry.username/password in deploy.yaml"
            }
            RegistryError::Ecr { .. } => {
                "check the AWS credentials and region (AWS_PROFILE, AWS_REGION) and that they allow ecr:GetAuthorizationToken, ecr:DescribeRepositories, ecr:CreateRepository and ecr:PutLifecyclePolicy"
            }
            RegistryError::Helper { .. } => {
                "check that the helper is on PATH and logged in (`docker login`), or give registry.username/password in deploy.yaml"
            }
            RegistryError::Invalid { .. } => "",
        };
        StageError::new(ErrorKind::Environment, e.to_string())
            .with_hint(hint)
            .with_source(e)
    }
}
