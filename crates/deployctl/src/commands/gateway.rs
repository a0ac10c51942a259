//! The Kong gateway step (`kong:` in `admin-api` mode): wiring only — the HTTP client, the
//! admin token read when it is a Secrets Manager / Parameter Store reference, and printing.
//! What the gateway should hold and how it changes lives in `deployctl-kong`. In
//! `mode: ingress-controller` there is no step: [`ingress_resources`] hands the rendered
//! resources to the Kubernetes target, which applies them with the app's.
//!
//! `deploy` runs it after the targets, and only when the Kubernetes target deployed: a
//! gateway failure leaves that deployment serving and fails the run (exit 1) with the
//! reason and a retry hint. `status` lists the routes; `destroy` removes the tagged
//! entities.

use deployctl_config::{Config, KongMode};
use deployctl_core::{ErrorKind, SecretResolver};
use deployctl_kong::{AdminApi, GatewayOptions, GatewayReport, KongError};
use serde_json::{Value, json};

use super::aws::AwsContext;
use crate::output::{Failure, Output};

/// Whether the run configures Kong through its Admin API.
pub fn wanted(config: &Config) -> bool {
    config
        .kong
        .as_ref()
        .is_some_and(|k| k.mode == KongMode::AdminApi)
}

/// The Admin API of the config, the token read first when it is a reference.
async fn admin(config: &Config, aws: Option<&AwsContext>) -> Result<Option<AdminApi>, Failure> {
    if !wanted(config) {
        return Ok(None);
    }
    let mut config = config.clone();
    let source = config
        .kong
        .as_ref()
        .and_then(|k| k.admin_token_source.clone());
    if let Some(source) = source {
        let sdk = match aws {
            Some(a) => a.sdk.clone(),
            None => super::aws::sdk_config(&config).await?,
        };
        let resolver = deployctl_aws::AwsSecretResolver::new(&sdk);
        let token = resolver.resolve(&source).await.map_err(|e| {
            Failure::from_stage(&e).hint(format!("kong.admin_token names {source}"))
        })?;
        if let Some(kong) = config.kong.as_mut() {
            kong.admin_token = Some(token);
        }
    }
    deployctl_kong::gateway::admin_api(crate::runtime::https_client()?, &config)
        .map_err(|e| kong_failure(&e))
}

fn kong_failure(e: &KongError) -> Failure {
    Failure::new(e.kind(), e.to_string())
        .hint(e.hint())
        .caused_by(e)
}

/// `kong.mode: ingress-controller`: the Kong Ingress Controller's resources, for the
/// Kubernetes target to render and apply with the app's (`None` in any other mode).
pub fn ingress_resources(config: &Config) -> Result<Option<deployctl_k8s::Extra>, Failure> {
    let rendered = deployctl_kong::render::for_config(config).map_err(|e| kong_failure(&e))?;
    Ok(rendered.map(|r| {
        deployctl_k8s::Extra::new("deployctl-kong", r.manifests, r.service_annotations)
            .with_generated(r.generated)
    }))
}

/// Reads the spec and makes the desired state (no network): a bad spec is invalid input,
/// refused before anything is built or changed.
pub fn check(config: &Config) -> Result<(), Failure> {
    let Some(kong) = config.kong.as_ref() else {
        return Ok(());
    };
    deployctl_kong::load_spec(&kong.openapi)
        .and_then(|spec| deployctl_kong::desired(config, &spec))
        .map(|_| ())
        .map_err(|e| kong_failure(&e))
}

/// The gateway step of `deploy`; `None` when the config has no Admin API gateway.
pub async fn deploy(
    config: &Config,
    aws: Option<&AwsContext>,
    dry_run: bool,
    rotate_key: bool,
) -> Option<Result<GatewayReport, Failure>> {
    let api = match admin(config, aws).await {
        Ok(Some(api)) => api,
        Ok(None) => return None,
        Err(f) => return Some(Err(f)),
    };
    Some(
        deployctl_kong::gateway::deploy(&api, config, GatewayOptions::new(dry_run, rotate_key))
            .await
            .map_err(|e| kong_failure(&e)),
    )
}

/// Prints the gateway step's outcome; returns its JSON and, when it failed, the failure
/// the run ends with (exit 1: the Kubernetes deployment stays up).
pub fn print_deploy(
    out: &Output,
    outcome: Option<Result<GatewayReport, Failure>>,
) -> (Value, Option<Failure>) {
    match outcome {
        None => (Value::Null, None),
        Some(Ok(r)) => {
            super::deploy::print_plan(out, &r.plan);
            out.text(format!(
                "gateway {}: {} route{}, {} mutating call{}",
                r.admin_url,
                r.routes.len(),
                if r.routes.len() == 1 { "" } else { "s" },
                r.mutations,
                if r.mutations == 1 { "" } else { "s" }
            ));
            let key = r.new_key.as_ref().map(|k| {
                out.text(format!(
                    "consumer {} key (shown once; `deploy --rotate-key` replaces it): {}",
                    r.consumer.as_deref().unwrap_or("-"),
                    k.expose()
                ));
                json!({ "secret": true, "value": k.expose() })
            });
            (
                json!({
                    "result": "configured",
                    "admin_url": r.admin_url,
                    "plan": r.plan,
                    "mutations": r.mutations,
                    "routes": r.routes,
                    "consumer": r.consumer,
                    "consumer_key": key,
                }),
                None,
            )
        }
        Some(Err(f)) => {
            let failure = Failure::new(
                ErrorKind::Failed,
                format!(
                    "gateway: failed: {} (the Kubernetes deployment is serving)",
                    f.message
                ),
            )
            .hint(
                f.hint
                    .clone()
                    .unwrap_or_else(|| "fix the gateway and run `deployctl deploy` again".into()),
            );
            out.text(format!("gateway  failed: {}", f.message));
            (
                json!({ "result": "failed", "error": f.message, "hint": failure.hint }),
                Some(failure),
            )
        }
    }
}

/// `status`: the gateway's routes, when the config has an Admin API gateway.
pub async fn status(config: &Config, aws: Option<&AwsContext>) -> Result<Value, Failure> {
    let Some(api) = admin(config, aws).await? else {
        return Ok(Value::Null);
    };
    let routes = deployctl_kong::gateway::status(&api, &config.app.name)
        .await
        .map_err(|e| kong_failure(&e))?;
    Ok(json!({ "admin_url": api.url(), "routes": routes }))
}

/// Prints what [`status`] returned.
pub fn print_status(out: &Output, status: &Value) {
    if let Some(e) = status["error"].as_str() {
        out.text(format!("gateway: cannot be read: {e}"));
        return;
    }
    let Some(url) = status["admin_url"].as_str() else {
        return;
    };
    let routes = status["routes"].as_array().cloned().unwrap_or_default();
    if routes.is_empty() {
        out.text(format!("gateway ({url}): no routes"));
    } else {
        out.text(format!("gateway ({url}): {} routes", routes.len()));
        for r in routes {
            out.text(format!("  route {}", r.as_str().unwrap_or_default()));
        }
    }
}

/// `destroy`: deletes the entities tagged for the app (never untagged ones).
pub async fn destroy(
    config: &Config,
    aws: Option<&AwsContext>,
    dry_run: bool,
) -> Result<Option<deployctl_core::Plan>, Failure> {
    let Some(api) = admin(config, aws).await? else {
        return Ok(None);
    };
    deployctl_kong::destroy(&api, &config.app.name, dry_run)
        .await
        .map(Some)
        .map_err(|e| kong_failure(&e))
}
