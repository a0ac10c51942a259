//! Secret values kept in AWS Secrets Manager or SSM Parameter Store: read before anything
//! remote changes, by the commands that use values (`deploy`, `render k8s`). Commands that
//! never use values (`validate`, `plan`, `status`, …) never call this.

use std::collections::BTreeMap;

use deployctl_config::{Config, LambdaSecrets, TargetKind};
use deployctl_core::{Secret, SecretResolver};

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
    let values = read_all(&config, &resolver).await?;
    config
        .set_resolved_secrets(values)
        .map_err(|e| config_failure(&config.file, &e))?;
    Ok(config)
}

/// Whether a run on `kinds` uses secret values from references: every target does, except
/// Lambda under `lambda.secrets: reference` (it gets the references only).
pub fn needed(config: &Config, kinds: &[TargetKind]) -> bool {
    !config.secret_sources().is_empty()
        && kinds
            .iter()
            .any(|k| *k != TargetKind::Lambda || config.lambda.secrets != LambdaSecrets::Reference)
}

async fn read_all(
    config: &Config,
    resolver: &dyn SecretResolver,
) -> Result<BTreeMap<String, Secret>, Failure> {
    let reads = config
        .secret_sources()
        .iter()
        .map(|(name, source)| async move {
            resolver
                .resolve(source)
                .await
                .map(|v| (name.clone(), v))
                .map_err(|e| {
                    let mut f = Failure::from_stage(&e);
                    f.message = if e.message.contains(source.id()) {
                        format!("secrets.{name}: {}", e.message)
                    } else {
                        format!("secrets.{name}: {source}: {}", e.message)
                    };
                    f.hint = Some(format!(
                        "{}; nothing was changed",
                        e.hint
                            .as_deref()
                            .unwrap_or("fix the reference in deploy.yaml")
                    ));
                    f
                })
        });
    let mut values = BTreeMap::new();
    for r in futures::future::join_all(reads).await {
        let (name, value) = r?;
        values.insert(name, value);
    }
    Ok(values)
}
