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
            Err(
                Failure::invalid(format!("the {kind} target is not enabled in deploy.yaml"))
                    .hint(format!("set `{key}: {{ enabled: true }}` in deploy.yaml")),
            )
        }
    };
    match name.unwrap_or("all") {
        "all" => Ok(enabled),
        "lambda" => pick(TargetKind::Lambda, "lambda"),
        "k8s" | "kubernetes" => pick(TargetKind::Kubernetes, "kubernetes"),
        "local" => pick(TargetKind::Local, "local"),
        other => Err(Failure::invalid(format!("unknown target `{other}`"))
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

/// Flags that shape targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// `--force-conflicts` (Kubernetes).
    pub force_conflicts: bool,
    /// `--no-rollback` (Kubernetes).
    pub no_rollback: bool,
    /// `--server-dry-run` (Kubernetes).
    pub server_dry_run: bool,
    /// `--update` / `--create-api` (Lambda).
    pub lambda_scope: deployctl_aws::LambdaScope,
    /// `--verify` (Lambda).
    pub lambda_verify: deployctl_aws::VerifyMethod,
    /// `--verify-timeout`: how long each target's health check may keep trying.
    pub verify_timeout: Option<std::time::Duration>,
    /// `destroy --tenant` (Kubernetes).
    pub destroy_tenant: bool,
}

/// Whether any of `kinds` is Kubernetes.
pub fn need_kube(kinds: &[TargetKind]) -> bool {
    kinds.contains(&TargetKind::Kubernetes)
}

/// A `kube::Client` from KUBECONFIG (or `~/.kube/config`, or in-cluster) and
/// `kubernetes.context`.
pub async fn kube_client(config: &Config) -> Result<kube::Client, Failure> {
    let options = kube::config::KubeConfigOptions {
        context: config.kubernetes.context.clone(),
        ..kube::config::KubeConfigOptions::default()
    };
    let kc = match kube::Config::from_kubeconfig(&options).await {
        Ok(c) => c,
        Err(kubeconfig_err) => match kube::Config::incluster() {
            Ok(c) if config.kubernetes.context.is_none() => c,
            _ => {
                return Err(Failure::environment("cannot load a Kubernetes configuration")
                    .caused_by(&kubeconfig_err)
                    .hint("set KUBECONFIG (or create ~/.kube/config); kubernetes.context picks a context"));
            }
        },
    };
    // Every request's answer must start within the call timeout: a stalled API server fails
    // the attempt instead of hanging. Not a read timeout: watches and followed logs may stay
    // quiet for longer, and have deadlines of their own. Reads and server-side applies that
    // failed in transit are tried again (`kube_retry`); the rest fail, naming the call.
    let answer_within = super::call_timeout::per_attempt()?;
    kube::client::ClientBuilder::try_from(kc)
        .map(|b| {
            b.with_layer(&tower::timeout::TimeoutLayer::new(answer_within))
                .with_layer(&tower::buffer::BufferLayer::new(1024))
                .with_layer(&tower::retry::RetryLayer::new(
                    super::kube_retry::RetryIdempotent::default(),
                ))
                .build()
        })
        .map_err(|e| {
            Failure::environment("cannot create a Kubernetes client")
                .caused_by(&e)
                .hint("check the kubeconfig's server URL and credentials")
        })
}

/// Adapters for `kinds`.
pub fn build(
    config: &Config,
    kinds: &[TargetKind],
    aws: Option<&AwsContext>,
    docker: Option<&bollard::Docker>,
    kube: Option<&kube::Client>,
    flags: Flags,
) -> Result<Vec<Box<dyn Target>>, Failure> {
    let mut out: Vec<Box<dyn Target>> = Vec::new();
    for kind in kinds {
        match kind {
            TargetKind::Lambda => {
                let aws = aws.ok_or_else(|| Failure::environment("AWS is not configured"))?;
                let mut t = lambda_target(config, aws)?
                    .with_scope(flags.lambda_scope)
                    .with_verify_method(flags.lambda_verify);
                if let Some(d) = flags.verify_timeout {
                    t = t.with_verify_deadline(d);
                }
                out.push(Box::new(t));
            }
            TargetKind::Local => {
                let docker =
                    docker.ok_or_else(|| Failure::environment("no Docker engine client"))?;
                let mut spec = deployctl_local::LocalSpec::from_config(config);
                if let Some(d) = flags.verify_timeout {
                    spec.health_timeout = d;
                }
                out.push(Box::new(deployctl_local::LocalTarget::new(
                    docker.clone(),
                    spec,
                )));
            }
            TargetKind::Kubernetes => {
                let client = kube.ok_or_else(|| Failure::environment("no Kubernetes client"))?;
                let options = deployctl_k8s::K8sOptions::from_config(config)
                    .force_conflicts(flags.force_conflicts)
                    .auto_rollback(config.kubernetes.rollout.auto_rollback && !flags.no_rollback)
                    .server_dry_run(flags.server_dry_run)
                    .destroy_tenant(flags.destroy_tenant);
                let options = match flags.verify_timeout {
                    Some(d) => options.verify_timeout(d),
                    None => options,
                };
                let mut target =
                    deployctl_k8s::K8sTarget::new(client.clone(), config.clone(), options);
                // `kong.mode: ingress-controller`: the controller's resources go with the app's.
                if let Some(extra) = super::gateway::ingress_resources(config)? {
                    target = target.with_extra(extra);
                }
                out.push(Box::new(target));
            }
            other => {
                return Err(Failure::invalid(format!(
                    "the {other} target is not available in this build yet"
                ))
                .hint(
                    "deploy to lambda (`deployctl deploy lambda`) or use `deployctl render k8s`",
                ));
            }
        }
    }
    Ok(out)
}
