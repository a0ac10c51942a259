//! # deployctl-registry — registry credentials
//!
//! [`deployctl_core::CredentialSource`] implementations, asked in order by the pipeline:
//!
//! 1. [`ConfigCredentials`]: `registry.username` / `registry.password` from deploy.yaml;
//! 2. [`EcrCredentials`]: Amazon ECR `GetAuthorizationToken` for `*.dkr.ecr.*` hosts, cached
//!    for the token's lifetime; [`ensure_repository`] creates the repository if missing;
//! 3. [`DockerConfigCredentials`]: Docker's `config.json` (`$DOCKER_CONFIG/config.json` or
//!    `~/.docker/config.json`): `auths` entries, per-registry `credHelpers` and the
//!    `credsStore`, running `docker-credential-<name> get` per Docker's helper protocol;
//! 4. [`Anonymous`].
//!
//! Registry names are compared after [`normalize_registry`] (scheme and path dropped; the
//! Docker Hub aliases `docker.io`, `index.docker.io`, `registry-1.docker.io` and
//! `https://index.docker.io/v1/` are one registry).
//!
//! [`delivery`] decides, from a config, the push destination and which of these sources are
//! asked in which order; [`EnsuringPusher`] creates a missing ECR repository before a push.
//!
//! ## Boundary
//!
//! Reads one config file and runs credential helpers; never writes credentials anywhere and
//! never puts them in errors. [`DockerPusher`] pushes through the Docker engine it is
//! given and confirms the manifest through the engine's distribution endpoint, which asks
//! the registry with the same credentials.

mod delivery;
mod docker_config;
mod ecr;
mod error;
mod push;

use async_trait::async_trait;
use deployctl_core::{CredentialSource, RegistryCredentials, Secret, StageError};

pub use delivery::{
    Delivery, EcrAccount, EcrViaEndpoint, EnsuringPusher, delivery, lambda_repository, uses_ecr,
};
pub use docker_config::DockerConfigCredentials;
pub use ecr::{
    EcrCredentials, EcrRepository, app_repositories, delete_repository, destroy_app_repositories,
    ensure_repository,
};
pub use error::RegistryError;
pub use push::{DockerPusher, ensure_single_platform};

/// The server address Docker uses for Docker Hub in `config.json` and helper calls.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// `https://index.docker.io/v1/` → `docker.io`; `https://r.example:5000/v2/` → `r.example:5000`.
pub fn normalize_registry(name: &str) -> String {
    let no_scheme = name
        .strip_prefix("https://")
        .or_else(|| name.strip_prefix("http://"))
        .unwrap_or(name);
    let host = no_scheme
        .split('/')
        .next()
        .unwrap_or(no_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

/// Credentials given in deploy.yaml for one registry.
#[derive(Debug, Clone)]
pub struct ConfigCredentials {
    registry: String,
    username: String,
    password: Secret,
}

impl ConfigCredentials {
    /// Credentials for `registry`.
    pub fn new(registry: &str, username: impl Into<String>, password: Secret) -> Self {
        Self {
            registry: normalize_registry(registry),
            username: username.into(),
            password,
        }
    }
}

#[async_trait]
impl CredentialSource for ConfigCredentials {
    fn name(&self) -> &str {
        "config"
    }

    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError> {
        Ok((normalize_registry(registry) == self.registry).then(|| {
            RegistryCredentials::new(
                registry,
                self.username.clone(),
                self.password.clone(),
                "deploy.yaml registry.username/password",
            )
        }))
    }
}

/// No credentials: pushes and pulls anonymously.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

#[async_trait]
impl CredentialSource for Anonymous {
    fn name(&self) -> &str {
        "anonymous"
    }

    async fn credentials(
        &self,
        _registry: &str,
    ) -> Result<Option<RegistryCredentials>, StageError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        for (input, want) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("docker.io", "docker.io"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://Registry.Example:5000/v2/", "registry.example:5000"),
            ("ghcr.io/team", "ghcr.io"),
        ] {
            assert_eq!(normalize_registry(input), want, "{input}");
        }
    }

    #[test]
    fn config_credentials_match_only_their_registry() {
        let c = ConfigCredentials::new("https://127.0.0.1:5000", "ci", Secret::new("pw-123"));
        let got = futures::executor::block_on(c.credentials("127.0.0.1:5000"))
            .unwrap()
            .unwrap();
        assert_eq!(got.username, "ci");
        assert_eq!(got.password.expose(), "pw-123");
        assert!(!format!("{got:?}").contains("pw-123"));
        assert!(
            futures::executor::block_on(c.credentials("other:5000"))
                .unwrap()
                .is_none()
        );
        assert!(
            futures::executor::block_on(Anonymous.credentials("x"))
                .unwrap()
                .is_none()
        );
    }
}
