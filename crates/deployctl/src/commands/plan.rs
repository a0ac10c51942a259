//! `deployctl plan`: what a deploy would build, push and manage on every enabled target.
//!
//! The adapters that read each target's current state (and so can say create / update /
//! unchanged per resource) plug in through `deployctl_core::Target::plan`; until a target's
//! adapter is in this build, its section lists the resources a deploy manages and says that
//! the current state was not read.

use deployctl_config::{Config, TargetKind};
use serde::Serialize;
use serde_json::json;

use super::load_config;
use crate::cli::{Cli, PlanArgs};
use crate::output::Output;

#[derive(Debug, Serialize)]
struct Resource {
    kind: &'static str,
    name: String,
    detail: String,
}

impl Resource {
    fn new(kind: &'static str, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct TargetSection {
    target: TargetKind,
    scope: String,
    state_read: bool,
    resources: Vec<Resource>,
}

pub fn run(cli: &Cli, args: &PlanArgs, out: &Output) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(f) => return out.fail("plan", &f),
    };
    let image = image_section(&config);
    let kinds = config.enabled_targets();
    let config_ref = &config;
    // Each target's current state, read with reads only; a target whose environment is
    // missing (no credentials, no engine, no cluster) falls back to what it manages.
    let live = crate::runtime::block_on(|_cancel| async move {
        let mut out = Vec::new();
        for kind in kinds {
            out.push((kind, live_plan(config_ref, kind).await));
        }
        out
    });
    let live = match live {
        Ok(l) => l,
        Err(f) => return out.fail("plan", &f),
    };

    out.text(format!(
        "plan for {} {} ({})",
        config.app.name,
        config.app.version,
        cli.config.display()
    ));
    out.text("image:");
    for r in &image {
        out.text(format!("  {:<9} {} ({})", r.kind, r.name, r.detail));
    }
    let mut sections = Vec::new();
    for (kind, result) in live {
        match result {
            Ok(plan) => {
                super::deploy::print_plan(out, &plan);
                sections.push(json!({"target": kind, "state_read": true, "plan": plan}));
            }
            Err(reason) => {
                let t = target_section(&config, kind);
                out.text(format!("{} ({}):", t.target, t.scope));
                for r in &t.resources {
                    out.text(format!("  {} {} ({})", r.kind, r.name, r.detail));
                }
                out.text(format!(
                    "  note: current state not read ({reason}); these are the resources a deploy manages"
                ));
                sections.push(json!({
                    "target": kind, "state_read": false, "reason": reason,
                    "scope": t.scope, "resources": t.resources,
                }));
            }
        }
    }
    out.result(
        "plan",
        json!({
            "app": { "name": config.app.name, "version": config.app.version },
            "image": image,
            "targets": sections,
            "dry_run": args.dry_run,
        }),
    );
    0
}

/// The target's plan against its current state, or why it could not be read.
async fn live_plan(config: &Config, kind: TargetKind) -> Result<deployctl_core::Plan, String> {
    let kinds = [kind];
    let aws = if super::targets::need_aws(&kinds) {
        Some(super::aws::context(config).await.map_err(|f| f.message)?)
    } else {
        None
    };
    let docker = if super::targets::need_docker(&kinds) {
        Some(crate::runtime::docker().map_err(|f| f.message)?)
    } else {
        None
    };
    let kube = if super::targets::need_kube(&kinds) {
        Some(
            super::targets::kube_client(config)
                .await
                .map_err(|f| f.message)?,
        )
    } else {
        None
    };
    let adapters = super::targets::build(
        config,
        &kinds,
        aws.as_ref(),
        docker.as_ref(),
        kube.as_ref(),
        super::targets::Flags::default(),
    )
    .map_err(|f| f.message)?;
    let target = adapters.first().ok_or("no adapter")?;
    target.plan(None).await.map_err(|e| e.message)
}

fn image_section(c: &Config) -> Vec<Resource> {
    let b = &c.build;
    let platform = b
        .platform
        .clone()
        .or_else(|| {
            c.lambda
                .enabled
                .then(|| c.lambda.function.architecture.platform().to_owned())
        })
        .unwrap_or_else(|| "engine default".to_owned());
    let mut build_detail = format!(
        "context {}, {}, platform {platform}",
        b.context.display(),
        b.dockerfile.display()
    );
    if let Some(t) = &b.target {
        build_detail.push_str(&format!(", target {t}"));
    }
    if !b.args.is_empty() {
        // Names only: values may be secret.
        build_detail.push_str(&format!(
            ", build args {}",
            b.args.keys().cloned().collect::<Vec<_>>().join(" ")
        ));
    }
    let tag = format!("{}:{}", c.app.name, c.app.version);
    let mut out = vec![Resource::new("build", tag.clone(), build_detail)];
    match &c.registry {
        Some(r) => {
            let repo = super::image_repository(c);
            out.push(Resource::new(
                "push",
                format!("{repo}:{}", c.app.version),
                format!("credentials: {:?}; deploys use the pushed digest", r.credentials).to_lowercase(),
            ));
        }
        None if c.lambda.enabled => out.push(Resource::new(
            "push",
            format!("<account>.dkr.ecr.{}.amazonaws.com/{}:{}", c.lambda.region.as_deref().unwrap_or("<region>"), c.app.name, c.app.version),
            "no registry configured: Amazon ECR of the deploying account, repository created if missing",
        )),
        None if c.kubernetes.enabled => out.push(Resource::new(
            "push",
            "(none)",
            "no registry configured: kubernetes needs one the cluster can pull from (add `registry.url`)",
        )),
        None => out.push(Resource::new(
            "push",
            "(none)",
            "no registry configured: the local target uses the image in the engine",
        )),
    }
    out
}

fn target_section(c: &Config, t: TargetKind) -> TargetSection {
    let name = &c.app.name;
    let mut r = Vec::new();
    let scope = match t {
        TargetKind::Local => {
            let port = c.local.port.unwrap_or(c.app.port);
            r.push(Resource::new(
                "container",
                format!("deployctl-{name}"),
                format!("port {port} -> {}, restart {}", c.app.port, c.local.restart),
            ));
            "local Docker engine".to_owned()
        }
        TargetKind::Lambda => {
            let l = &c.lambda;
            let f = &l.function;
            if l.iam.role.is_none() && l.iam.create {
                r.push(Resource::new(
                    "iam role",
                    deployctl_aws::role_name(c.function_name()),
                    "created and owned by deployctl",
                ));
            } else if let Some(role) = &l.iam.role {
                r.push(Resource::new(
                    "iam role",
                    role.clone(),
                    "existing, used as is",
                ));
            }
            let mut detail = format!(
                "{} MB, {} s, {}, /tmp {} MB",
                f.memory,
                f.timeout,
                f.architecture.platform().trim_start_matches("linux/"),
                f.ephemeral_storage
            );
            if l.vpc.is_some() {
                detail.push_str(", in VPC");
            }
            if l.efs.is_some() {
                detail.push_str(", EFS mounted");
            }
            r.push(Resource::new("lambda function", c.function_name(), detail));
            r.push(Resource::new(
                "lambda alias",
                "live",
                "moved to each published version",
            ));
            if l.api_gateway.enabled {
                r.push(Resource::new(
                    "http api",
                    c.function_name().to_owned(),
                    format!(
                        "stage {}, CORS {}",
                        l.api_gateway.stage,
                        if l.api_gateway.cors.enabled {
                            "on"
                        } else {
                            "off"
                        }
                    ),
                ));
            }
            if l.function_url.enabled {
                r.push(Resource::new(
                    "function url",
                    c.function_name(),
                    format!("auth {}", l.function_url.auth_type),
                ));
            }
            format!(
                "region {}",
                l.region.as_deref().unwrap_or("from the AWS environment")
            )
        }
        TargetKind::Kubernetes => {
            let k = &c.kubernetes;
            r.push(Resource::new(
                "Deployment",
                name.clone(),
                format!("{} replicas", k.deployment.replicas),
            ));
            r.push(Resource::new(
                "Service",
                name.clone(),
                format!("{:?} :{} -> {}", k.service.kind, k.service.port, c.app.port),
            ));
            if !c.env.is_empty() || !k.configmap.is_empty() {
                r.push(Resource::new(
                    "ConfigMap",
                    format!("{name}-env"),
                    format!("{} keys", c.env.len() + k.configmap.len()),
                ));
            }
            if !c.secrets.is_empty() {
                r.push(Resource::new(
                    "Secret",
                    format!("{name}-secrets"),
                    format!(
                        "keys {}",
                        c.secrets.keys().cloned().collect::<Vec<_>>().join(" ")
                    ),
                ));
            }
            if k.ingress.enabled {
                let hosts: Vec<&str> = k.ingress.hosts.iter().map(|h| h.host.as_str()).collect();
                r.push(Resource::new("Ingress", name.clone(), hosts.join(" ")));
            }
            if k.hpa.enabled {
                r.push(Resource::new(
                    "HorizontalPodAutoscaler",
                    name.clone(),
                    format!("{}-{} replicas", k.hpa.min_replicas, k.hpa.max_replicas),
                ));
            }
            if k.persistence.enabled {
                r.push(Resource::new(
                    "PersistentVolumeClaim",
                    format!("{name}-data"),
                    format!("{} at {}", k.persistence.size, k.persistence.mount_path),
                ));
            }
            if k.service_account.create {
                r.push(Resource::new(
                    "ServiceAccount",
                    k.service_account
                        .name
                        .clone()
                        .unwrap_or_else(|| name.clone()),
                    "created",
                ));
            }
            if k.network_policy.enabled {
                r.push(Resource::new(
                    "NetworkPolicy",
                    name.clone(),
                    format!("ingress to port {} only", c.app.port),
                ));
            }
            if k.deployment.replicas > 1 {
                r.push(Resource::new(
                    "PodDisruptionBudget",
                    name.clone(),
                    "maxUnavailable 1",
                ));
            }
            format!(
                "namespace {}{}",
                k.namespace,
                k.context
                    .as_ref()
                    .map(|ctx| format!(", context {ctx}"))
                    .unwrap_or_default()
            )
        }
        _ => "unknown target".to_owned(),
    };
    TargetSection {
        target: t,
        scope,
        state_read: false,
        resources: r,
    }
}
