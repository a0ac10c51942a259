//! Secret values kept in AWS Secrets Manager or SSM Parameter Store: read before anything
//! remote changes, by the commands that use values (`deploy`, `render k8s`). Commands that
//! never use values (`validate`, `plan`, `status`, …) never call this.

use deployctl_config::Config;

use super::aws::AwsContext;
use super::config_failure;
use crate::output::Failure;

/// `config` with every `secrets:` reference read, Lambda's environment checked again with
/// the real values. Reads with the run's AWS configuration (`aws`), or loads one when the
/// run has none (a Kubernetes-only deploy). A missing secret or key is bad input (exit 2),
/// refused access an environment problem (exit 3); both name `secrets.NAME` and the
/// reference, never a value.
pub async fn resolved(config: &Config, aws: Option<&AwsContext>) -> Result<Config, Failure> {
    let mut config = config.clone();
    if config.secret_sources().is_empty() {
        return Ok(config);
    }
    let sdk = match aws {
        Some(a) => a.sdk.clone(),
        None => super::aws::sdk_config(&config).await?,
    };
    let resolver = deployctl_aws::AwsSecretResolver::new(&sdk);
    let values = deployctl_core::resolve_all(&resolver, config.secret_sources())
        .await
        .map_err(|e| Failure::from_stage(&e))?;
    config
        .set_resolved_secrets(values)
        .map_err(|e| config_failure(&config.file, &e))?;
    Ok(config)
}
