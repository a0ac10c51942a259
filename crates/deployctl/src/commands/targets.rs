//! Choosing targets by name and building their adapters.

use deployctl_config::{Config, TargetKind};
use deployctl_core::Target;

use super::aws::{AwsContext, lambda_target};
use crate::output::Failure;

/// The targets a command acts on: one by name, or `all` enabled ones.
pub fn chosen(config: &Config, name: Option<&str>) -> Result<Vec<TargetKind>, Failure> {
    let enabled = config.enabled_targets();
    let pick = |kind: TargetKind, key: &str| {
        if enabled.contains(&kind) {
            Ok(vec![kind])
        } else {
            Err(Failure::new(
                2,
                format!("the {kind} target is not enabled in deploy.yaml"),
            )
            .hint(format!("set `{key}: {{ enabled: true }}` in deploy.yaml")))
        }
    };
    match name.unwrap_or("all") {
        "all" => Ok(enabled),
        "lambda" => pick(TargetKind::Lambda, "lambda"),
        "k8s" | "kubernetes" => pick(TargetKind::Kubernetes, "kubernetes"),
        "local" => pick(TargetKind::Local, "local"),
        other => Err(Failure::new(2, format!("unknown target `{other}`"))
            .hint("use lambda, k8s, local or all")),
    }
}

/// Whether any of `kinds` runs on the local engine.
pub fn need_docker(kinds: &[TargetKind]) -> bool {
    kinds.contains(&TargetKind::Local)
}

/// Whether any of `kinds` deploys from a registry (everything but the local engine).
pub fn need_push(kinds: &[TargetKind]) -> bool {
    kinds.iter().any(|k| *k != TargetKind::Local)
}

/// Whether any of `kinds` needs AWS.
pub fn need_aws(kinds: &[TargetKind]) -> bool {
    kinds.contains(&TargetKind::Lambda)
}

/// Adapters for `kinds`.
pub fn build(
    config: &Config,
    kinds: &[TargetKind],
    aws: Option<&AwsContext>,
    docker: Option<&bollard::Docker>,
) -> Result<Vec<Box<dyn Target>>, Failure> {
    let mut out: Vec<Box<dyn Target>> = Vec::new();
    for kind in kinds {
        match kind {
            TargetKind::Lambda => {
                let aws = aws.ok_or_else(|| Failure::new(3, "AWS is not configured"))?;
                out.push(Box::new(lambda_target(config, aws)?));
            }
            TargetKind::Local => {
                let docker = docker.ok_or_else(|| Failure::new(3, "no Docker engine client"))?;
                out.push(Box::new(deployctl_local::LocalTarget::new(
                    docker.clone(),
                    deployctl_local::LocalSpec::from_config(config),
                )));
            }
            other => {
                return Err(Failure::new(
                    2,
                    format!("the {other} target is not available in this build yet"),
                )
                .hint(
                    "deploy to lambda (`deployctl deploy lambda`) or use `deployctl render k8s`",
                ));
            }
        }
    }
    Ok(out)
}
