//! `deployctl plan`: what a deploy would build, push and manage on every enabled target.
//!
//! Each target's section is its adapter's own plan against the current state
//! (`deployctl_core::Target::plan`: create / update / unchanged per resource). When the state
//! cannot be read (no credentials, engine or cluster), the section is what a first deploy
//! creates, from the same adapter code, and says that the state was not read. Under it, the
//! hook steps a deploy runs on that target (`pre_deploy`, `post_deploy`), as the core's hook
//! model describes them with the target's own task runner.

use deployctl_config::{Config, TargetKind};
use deployctl_core::{HookPhase, Plan, TaskRunner};
use serde::Serialize;
use serde_json::json;

use super::load_config;
use crate::cli::{Cli, PlanArgs};
use crate::output::{Failure, Output};

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

pub fn run(cli: &Cli, args: &PlanArgs, out: &Output) -> i32 {
    if args.workspace {
        return super::workspace::plan(cli, args, out);
    }
    if let Some(code) = super::workspace::only_needs_workspace("plan", args.only.as_ref(), out) {
        return code;
    }
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
                let plan = match offline_plan(&config, kind) {
                    Ok(p) => p,
                    Err(f) => return out.fail("plan", &f),
                };
                super::deploy::print_plan(out, &plan);
                out.text(format!(
                    "  note: current state not read ({reason}); this is what a first deploy creates"
                ));
                sections.push(json!({
                    "target": kind, "state_read": false, "reason": reason, "plan": plan,
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
    let mut plan = target.plan(None).await.map_err(|e| e.message)?;
    plan.hooks = deploy_hooks(config, target.task_runner());
    Ok(plan)
}

/// The hook steps a deploy runs on a target whose tasks run as `tasks`.
fn deploy_hooks(config: &Config, tasks: Option<TaskRunner>) -> Vec<deployctl_core::PlannedHook> {
    config
        .hooks
        .to_core()
        .planned(&[HookPhase::PreDeploy, HookPhase::PostDeploy], tasks)
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
            let repo = c.image_repository();
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

/// What a first deploy to `kind` creates, from the adapter's own code (the Lambda diff
/// against an empty account, the Kubernetes renderer, the local container spec), for when the
/// target's current state cannot be read. Never a second list of names.
fn offline_plan(c: &Config, kind: TargetKind) -> Result<Plan, Failure> {
    let (mut plan, tasks) = match kind {
        TargetKind::Lambda => {
            let region = c.lambda.region.as_deref().unwrap_or("<region>");
            let repo = deployctl_registry::lambda_repository(c, "<account>", region)
                .map_err(|e| Failure::from_stage(&e.into()))?;
            let spec = deployctl_aws::LambdaSpec::from_config(c, "<account>", region, &repo);
            (
                deployctl_aws::first_deploy_plan(&spec)
                    .map_err(|e| Failure::from_stage(&e.into()))?,
                Some(deployctl_aws::TASK_RUNNER),
            )
        }
        TargetKind::Kubernetes => (
            deployctl_k8s::first_deploy_plan(c).map_err(|e| Failure::from_stage(&e.into()))?,
            Some(deployctl_k8s::TASK_RUNNER),
        ),
        _ => (
            deployctl_local::first_deploy_plan(&deployctl_local::LocalSpec::from_config(c)),
            None,
        ),
    };
    plan.hooks = deploy_hooks(c, tasks);
    Ok(plan)
}
