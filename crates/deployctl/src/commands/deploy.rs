//! `deployctl deploy <target>`: build once, push once, deploy the digest to the targets.

use deployctl_aws::LambdaScope;
use deployctl_config::TargetKind;
use deployctl_core::{
    Action, Digest, ImagePusher, ImageRef, Pipeline, Plan, PushedImage, RunMode, RunRequest,
    StageOutcome, Verification,
};
use deployctl_registry::{DockerPusher, EnsuringPusher, uses_ecr};
use serde_json::json;

use super::build::build_spec;
use super::load_config;
use super::push::delivery;
use super::targets;
use crate::cli::{BuildArgs, Cli, DeployArgs, VerifyChoice};
use crate::output::{EventPrinter, Failure, Output};

pub fn run(cli: &Cli, args: &DeployArgs, out: &Output) -> i32 {
    if args.workspace {
        return super::workspace::deploy(cli, args, out);
    }
    if let Some(code) = super::workspace::only_needs_workspace("deploy", args.only.as_ref(), out) {
        return code;
    }
    match deploy(cli, args, out) {
        Ok(code) => code,
        Err(f) => out.fail("deploy", &f),
    }
}

/// Prints a plan, one line per resource: `+` create, `~` update, `=` unchanged, `-` delete.
pub fn print_plan(out: &Output, plan: &Plan) {
    let (create, update, unchanged, delete) = plan.counts();
    out.text(format!(
        "{}: {create} to create, {update} to update, {delete} to delete, {unchanged} unchanged",
        plan.target
    ));
    for c in &plan.changes {
        let mark = match &c.action {
            Action::Create => "+",
            Action::Update { .. } => "~",
            Action::Delete => "-",
            _ => "=",
        };
        out.text(format!("  {mark} {} {} ({})", c.kind, c.name, c.reason));
        if let Action::Update { fields } = &c.action {
            for f in fields {
                out.text(format!(
                    "      {}: {} → {}",
                    f.field,
                    f.from.as_deref().unwrap_or("(none)"),
                    f.to.as_deref().unwrap_or("(none)")
                ));
            }
        }
    }
    for h in &plan.hooks {
        out.text(format!("  > hook {h}"));
    }
}

pub fn given_image(reference: &str) -> Result<PushedImage, Failure> {
    let r = ImageRef::parse(reference).map_err(|e| {
        Failure::invalid(format!("--image `{reference}` is not an image reference")).caused_by(&e)
    })?;
    let digest: Digest = r.digest.clone().ok_or_else(|| {
        Failure::invalid(format!("--image `{reference}` has no digest"))
            .hint("deploys are by digest: pass repository@sha256:…, as printed by `deployctl push`")
    })?;
    Ok(PushedImage::new(r, digest, None))
}

/// The stages a deploy runs, from `--all`, `--build`, `--push`, `--update`, `--create-api`
/// and `--apply`: no stage flag (or `--all`) runs everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stages {
    build: bool,
    push: bool,
    deploy: bool,
    lambda_scope: LambdaScope,
}

impl Stages {
    fn from_args(args: &DeployArgs, kinds: &[TargetKind]) -> Result<Self, Failure> {
        let deploys = args.update || args.create_api || args.apply;
        if args.all || !(args.build || args.push || deploys) {
            // Only targets that pull from a registry need a push: a local-only deploy runs
            // the image the engine built, by its ID.
            return Ok(Self {
                build: true,
                push: targets::need_push(kinds),
                deploy: true,
                lambda_scope: LambdaScope::All,
            });
        }
        let needs = |flag: &str, kind: TargetKind, name: &str| {
            if kinds.contains(&kind) {
                Ok(())
            } else {
                Err(Failure::invalid(format!(
                    "{flag} applies to the {name} target, which this deploy does not include"
                ))
                .hint(format!(
                    "run `deployctl deploy {name} {flag}`, with {name} enabled in deploy.yaml"
                )))
            }
        };
        if args.update {
            needs("--update", TargetKind::Lambda, "lambda")?;
        }
        if args.create_api {
            needs("--create-api", TargetKind::Lambda, "lambda")?;
        }
        if args.apply {
            needs("--apply", TargetKind::Kubernetes, "k8s")?;
        }
        Ok(Self {
            build: args.build || args.push,
            push: args.push,
            deploy: deploys,
            lambda_scope: LambdaScope::from_flags(args.update, args.create_api),
        })
    }

    /// Deploys the image already in the registry: a deploy stage without a build.
    fn deploys_pushed_image(self) -> bool {
        self.deploy && !self.build
    }
}

fn deploy(cli: &Cli, args: &DeployArgs, out: &Output) -> Result<i32, Failure> {
    let config = load_config(cli)?;
    let kinds = targets::chosen(&config, args.target.as_deref())?;
    if kinds.is_empty() {
        return Err(Failure::invalid("no target is enabled in deploy.yaml")
            .hint("enable lambda, kubernetes or local"));
    }
    let stages = Stages::from_args(args, &kinds)?;
    if kinds.contains(&TargetKind::Kubernetes) {
        // The gateway's OpenAPI spec is input too: a bad one is refused before anything runs.
        super::gateway::check(&config)?;
    }
    let resolve_pushed = stages.deploys_pushed_image() && args.image.is_none();
    let mode = if args.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Apply
    };
    let given = args
        .image
        .as_deref()
        .map(given_image)
        .transpose()?
        .map(|p| p.reference);
    if let Some(r) = &given
        && kinds.contains(&TargetKind::Lambda)
        && !r.is_ecr()
        && super::aws::push_endpoint(&config).as_deref() != Some(r.registry.as_str())
    {
        return Err(Failure::invalid(format!(
            "--image {}: Lambda runs images only from Amazon ECR",
            r.name()
        ))
        .hint("pass the image's ECR reference (<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:…), as `deployctl push` prints it"));
    }
    let build_args = BuildArgs {
        no_cache: args.no_cache,
        pull: false,
        tag: Vec::new(),
    };
    let spec = build_spec(&config, &build_args)?;
    // The engine is needed when this run builds, looks an image up in the registry (through
    // the engine's distribution endpoint), and by the local target.
    let docker =
        if !args.dry_run || resolve_pushed || given.is_some() || targets::need_docker(&kinds) {
            Some(crate::runtime::docker()?)
        } else {
            None
        };
    let printer = EventPrinter::new(*out);
    let hooks = config.hooks.to_core();
    let hooks_ref = &hooks;
    let hook_runner = super::hooks::ProcessHookRunner::for_config(&config);
    let hook_context = deployctl_core::HookContext::new(
        &config.app.name,
        &config.app.version,
        cli.env.as_deref().unwrap_or_default(),
    );
    let config_ref = &config;
    let printer_ref = &printer;
    let kinds_ref = &kinds;
    let result = crate::runtime::block_on(|cancel| async move {
        // The AWS and Kubernetes clients are set up side by side.
        let (aws, kube) = futures::join!(
            async {
                if targets::need_aws(kinds_ref) || uses_ecr(config_ref) {
                    super::aws::context(config_ref).await.map(Some)
                } else {
                    Ok(None)
                }
            },
            async {
                if targets::need_kube(kinds_ref) {
                    targets::kube_client(config_ref).await.map(Some)
                } else {
                    Ok(None)
                }
            }
        );
        let (aws, kube) = (aws?, kube?);
        // Secret values kept in Secrets Manager / Parameter Store: read (and Lambda's
        // environment checked with them) before anything is built or changed.
        let resolved;
        let config_ref = if stages.deploy && config_ref.uses_secret_values(kinds_ref) {
            resolved = super::secrets::resolved(config_ref, aws.as_ref()).await?;
            &resolved
        } else {
            config_ref
        };
        let flags = targets::Flags {
            force_conflicts: args.force_conflicts,
            no_rollback: args.no_rollback,
            server_dry_run: args.server_dry_run,
            lambda_scope: stages.lambda_scope,
            lambda_verify: match args.verify {
                VerifyChoice::Auto => deployctl_aws::VerifyMethod::Auto,
                VerifyChoice::Invoke => deployctl_aws::VerifyMethod::Invoke,
            },
            verify_timeout: args
                .verify_timeout
                .map(|s| std::time::Duration::from_secs(s.0)),
            destroy_tenant: false,
        };
        let adapters = targets::build(
            config_ref,
            kinds_ref,
            aws.as_ref(),
            docker.as_ref(),
            kube.as_ref(),
            flags,
        )?;
        let builder = docker
            .clone()
            .map(|d| super::build_slots::Slotted::new(super::build::image_builder(d, config_ref)));
        let docker_pusher = docker.map(DockerPusher::new);
        let delivery = if given.is_none() && (stages.push || resolve_pushed) {
            Some(delivery(config_ref, aws.as_ref())?)
        } else if given.is_some() {
            // Credentials to look the given image up with, when the config names a registry.
            delivery(config_ref, aws.as_ref()).ok()
        } else {
            None
        };
        let ensuring = match (&docker_pusher, &delivery) {
            (Some(p), Some(d)) => Some(EnsuringPusher::new(p, d, config_ref)),
            _ => None,
        };
        let pusher: Option<&dyn ImagePusher> = match (&ensuring, &docker_pusher) {
            (Some(e), _) => Some(e),
            (None, Some(p)) => Some(p),
            _ => None,
        };
        let mut pipeline = Pipeline::new(printer_ref)
            .with_service(config_ref.app.name.clone())
            .with_cancellation(cancel)
            .with_locks(
                crate::runtime::lock_policy(std::time::Duration::from_secs(cli.lock_timeout.0)),
                &crate::runtime::TokioTimer,
            );
        if let Some(b) = &builder {
            pipeline = pipeline.with_builder(b);
        }
        if let Some(p) = pusher {
            pipeline = pipeline.with_pusher(p);
        }
        if let Some(d) = &delivery {
            for s in &d.sources {
                pipeline = pipeline.with_credentials(s.as_ref());
            }
        }
        for t in &adapters {
            pipeline = pipeline.with_target(t.as_ref());
        }
        if !args.skip_hooks {
            pipeline = pipeline.with_hooks(hooks_ref, &hook_runner, hook_context.clone());
        }
        let mut request = match (&given, &delivery) {
            // An image pushed earlier: looked up (and so confirmed) before any target changes.
            (Some(r), _) => RunRequest::deploy_registry_image(mode, r.clone()),
            (None, Some(d)) if resolve_pushed => {
                RunRequest::deploy_registry_image(mode, d.destination.clone())
            }
            (None, _) if !stages.push && !stages.deploy => RunRequest::build_only(spec),
            (None, Some(d)) if !stages.deploy => {
                RunRequest::build_and_push(spec, d.destination.clone())
            }
            (None, Some(d)) => RunRequest::full(mode, spec, d.destination.clone()),
            (None, None) => RunRequest::build_and_deploy_locally(mode, spec),
        };
        request.verify = !args.no_verify;
        let report = pipeline.run(request).await;
        // The gateway after the rollout, only once Kubernetes deployed (or, dry, planned).
        let gateway = if report.targets.iter().any(|t| {
            t.target == "k8s"
                && t.errors().next().is_none()
                && (t.apply.done().is_some() || (args.dry_run && t.plan.done().is_some()))
        }) {
            super::gateway::deploy(config_ref, aws.as_ref(), args.dry_run, args.rotate_key).await
        } else {
            None
        };
        Ok::<_, Failure>((report, aws.map(|a| a.calls), gateway))
    })??;
    let (report, calls, gateway) = result;

    if let StageOutcome::Done(p) = &report.push {
        out.text(format!("image {}@{}", p.reference.name(), p.digest()));
    }
    for t in &report.targets {
        match (&t.plan, &t.apply) {
            (_, StageOutcome::Done(a)) => print_plan(out, &a.plan),
            (StageOutcome::Done(plan), _) if args.dry_run => print_plan(out, plan),
            _ => {}
        }
    }
    let rows: Vec<SummaryRow> = report
        .targets
        .iter()
        .map(|t| SummaryRow::of(t, args.dry_run))
        .collect();
    print_summary(out, &rows);
    let (gateway, gateway_failure) = super::gateway::print_deploy(out, gateway);
    if let Some(calls) = &calls {
        let n = calls.mutating().len();
        out.text(format!(
            "AWS: {n} mutating call{} ({} in all)",
            if n == 1 { "" } else { "s" },
            calls.calls().len()
        ));
    }
    if let Some(worst) = report.worst_error() {
        return Err(Failure::from_stage(worst));
    }
    if let Some(f) = gateway_failure {
        return Err(f);
    }
    out.result(
        "deploy",
        json!({
            "dry_run": args.dry_run,
            "image": report.push.done().map(|p| json!({
                "reference": p.reference.to_string(),
                "digest": p.digest(),
            })),
            "targets": rows,
            "aws_calls": calls.as_ref().map(super::aws::calls_json),
            "gateway": gateway,
        }),
    );
    Ok(0)
}

/// One target's line of the deploy summary (and its object in the JSON result).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct SummaryRow {
    target: String,
    /// The first endpoint, or `-`.
    endpoint: String,
    version: String,
    /// `deployed`, `planned`, `not reached` or `failed: <message>`.
    result: String,
    /// One word-ish summary per check, as the table shows it.
    verify: String,
    duration_ms: u64,
    /// The plan as carried out (or, for a dry run, as made); not read back by a client.
    #[serde(skip_deserializing)]
    plan: Option<Plan>,
    endpoints: Vec<deployctl_core::Endpoint>,
    /// Every check in full, with reasons.
    verifications: Vec<Verification>,
}

impl SummaryRow {
    fn of(t: &deployctl_core::TargetReport, dry_run: bool) -> Self {
        let applied = t.apply.done();
        let verifications = t.verify.done().cloned().unwrap_or_default();
        let verify = match t.verify.done() {
            None => "-".to_owned(),
            Some(checks) => checks
                .iter()
                .map(|v| match v {
                    Verification::Healthy {
                        status,
                        latency_ms,
                        method,
                        ..
                    } => format!("healthy ({status}, {latency_ms} ms, {method})"),
                    Verification::NotVerifiable { .. } => "not verifiable here".to_owned(),
                    _ => "skipped".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        let result = if let Some(e) = t.errors().next() {
            format!("failed: {}", e.message)
        } else if dry_run {
            "planned".into()
        } else if applied.is_some() {
            "deployed".into()
        } else {
            "not reached".into()
        };
        Self {
            target: t.target.clone(),
            endpoint: applied
                .and_then(|a| a.endpoints.first())
                .map_or_else(|| "-".to_owned(), |e| e.url.clone()),
            version: applied
                .and_then(|a| a.version.clone())
                .unwrap_or_else(|| "-".into()),
            result,
            verify,
            duration_ms: t.duration_ms,
            plan: applied
                .map(|a| a.plan.clone())
                .or_else(|| t.plan.done().cloned()),
            endpoints: applied.map(|a| a.endpoints.clone()).unwrap_or_default(),
            verifications,
        }
    }
}

/// The summary table, columns as wide as their widest cell.
pub(super) fn print_summary(out: &Output, rows: &[SummaryRow]) {
    if rows.is_empty() {
        return;
    }
    let width = |cell: fn(&SummaryRow) -> &str, min: usize| {
        rows.iter()
            .map(|r| cell(r).chars().count())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let we = width(|r| &r.endpoint, 8);
    let wv = width(|r| &r.version, 7);
    let wr = width(|r| &r.result, 6);
    let wf = width(|r| &r.verify, 6);
    out.text(format!(
        "{:<8} {:<we$} {:<wv$} {:<wr$} {:<wf$} DURATION",
        "TARGET", "ENDPOINT", "VERSION", "RESULT", "VERIFY"
    ));
    for r in rows {
        #[allow(clippy::cast_precision_loss)] // a duration in seconds, for people
        let secs = r.duration_ms as f64 / 1000.0;
        out.text(format!(
            "{:<8} {:<we$} {:<wv$} {:<wr$} {:<wf$} {secs:.1}s",
            r.target, r.endpoint, r.version, r.result, r.verify
        ));
    }
    for r in rows {
        for v in &r.verifications {
            if let Verification::NotVerifiable { reason } = v {
                out.text(format!("  {}: not verifiable here: {reason}", r.target));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use argh::FromArgs;
    use deployctl_aws::LambdaScope;
    use deployctl_config::TargetKind;

    use super::Stages;
    use crate::cli::DeployArgs;

    fn stages(args: &[&str], kinds: &[TargetKind]) -> Result<Stages, String> {
        let parsed = DeployArgs::from_args(&["deploy"], args).map_err(|e| e.output)?;
        Stages::from_args(&parsed, kinds).map_err(|f| f.message)
    }

    #[test]
    fn a_plain_deploy_pushes_only_for_targets_that_pull_from_a_registry() {
        let local = stages(&[], &[TargetKind::Local]).unwrap();
        assert!(local.build && local.deploy && !local.push, "{local:?}");
        let all = stages(&[], &[TargetKind::Local, TargetKind::Lambda]).unwrap();
        assert!(all.build && all.push && all.deploy, "{all:?}");
        let k8s = stages(&["--all"], &[TargetKind::Kubernetes]).unwrap();
        assert!(k8s.build && k8s.push && k8s.deploy, "{k8s:?}");
    }

    #[test]
    fn stage_flags_pick_stages() {
        let s = stages(&["--build"], &[TargetKind::Lambda]).unwrap();
        assert!(s.build && !s.push && !s.deploy);
        let s = stages(&["--push"], &[TargetKind::Lambda]).unwrap();
        assert!(s.build && s.push && !s.deploy);
        let s = stages(&["--update"], &[TargetKind::Lambda]).unwrap();
        assert!(!s.build && !s.push && s.deploy && s.deploys_pushed_image());
        assert_eq!(s.lambda_scope, LambdaScope::from_flags(true, false));
        let s = stages(&["--apply"], &[TargetKind::Kubernetes]).unwrap();
        assert!(s.deploys_pushed_image());
    }

    #[test]
    fn a_flag_for_a_target_not_deployed_is_refused() {
        let e = stages(&["--update"], &[TargetKind::Kubernetes]).unwrap_err();
        assert!(e.contains("--update applies to the lambda target"), "{e}");
        let e = stages(&["--apply"], &[TargetKind::Lambda]).unwrap_err();
        assert!(e.contains("--apply applies to the k8s target"), "{e}");
    }
}
