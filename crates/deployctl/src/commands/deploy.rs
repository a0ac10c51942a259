//! `deployctl deploy <target>`: build once, push once, deploy the digest to the targets.

use deployctl_aws::LambdaScope;
use deployctl_config::TargetKind;
use deployctl_core::{
    Action, Digest, ImageRef, Pipeline, Plan, PushedImage, RunMode, RunRequest, StageOutcome,
    Verification,
};
use deployctl_registry::DockerPusher;
use serde_json::json;

use super::build::build_spec;
use super::load_config;
use super::push::{EnsuringPusher, delivery, needs_aws};
use super::targets;
use crate::cli::{BuildArgs, Cli, DeployArgs};
use crate::output::{EventPrinter, Failure, Output};

pub fn run(cli: &Cli, args: &DeployArgs, out: &Output) -> i32 {
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
}

pub fn given_image(reference: &str) -> Result<PushedImage, Failure> {
    let r = ImageRef::parse(reference).map_err(|e| {
        Failure::new(
            2,
            format!("--image `{reference}` is not an image reference"),
        )
        .caused_by(&e)
    })?;
    let digest: Digest = r.digest.clone().ok_or_else(|| {
        Failure::new(2, format!("--image `{reference}` has no digest"))
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
            return Ok(Self {
                build: true,
                push: true,
                deploy: true,
                lambda_scope: LambdaScope::All,
            });
        }
        let needs = |flag: &str, kind: TargetKind, name: &str| {
            if kinds.contains(&kind) {
                Ok(())
            } else {
                Err(Failure::new(
                    2,
                    format!(
                        "{flag} applies to the {name} target, which this deploy does not include"
                    ),
                )
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
        return Err(Failure::new(2, "no target is enabled in deploy.yaml")
            .hint("enable lambda, kubernetes or local"));
    }
    let stages = Stages::from_args(args, &kinds)?;
    let resolve_pushed = stages.deploys_pushed_image() && args.image.is_none();
    let mode = if args.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Apply
    };
    let given = args.image.as_deref().map(given_image).transpose()?;
    let build_args = BuildArgs {
        no_cache: args.no_cache,
        pull: false,
        tag: Vec::new(),
    };
    let spec = build_spec(&config, &build_args)?;
    // The engine is needed when this run builds, and by the local target.
    let docker =
        if (given.is_none() && (!args.dry_run || resolve_pushed)) || targets::need_docker(&kinds) {
            Some(crate::runtime::docker()?)
        } else {
            None
        };
    let printer = EventPrinter::new(*out);
    let config_ref = &config;
    let printer_ref = &printer;
    let kinds_ref = &kinds;
    let result = crate::runtime::block_on(|cancel| async move {
        // The AWS and Kubernetes clients are set up side by side.
        let (aws, kube) = futures::join!(
            async {
                if targets::need_aws(kinds_ref) || needs_aws(config_ref) {
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
        let flags = targets::Flags {
            force_conflicts: args.force_conflicts,
            no_rollback: args.no_rollback,
            server_dry_run: args.server_dry_run,
            lambda_scope: stages.lambda_scope,
        };
        let adapters = targets::build(
            config_ref,
            kinds_ref,
            aws.as_ref(),
            docker.as_ref(),
            kube.as_ref(),
            flags,
        )?;
        let builder = docker.clone().map(super::build::image_builder);
        let docker_pusher = docker.map(DockerPusher::new);
        let pushes = targets::need_push(kinds_ref) || stages.push;
        let delivery = if given.is_none() && pushes {
            Some(delivery(config_ref, aws.as_ref())?)
        } else {
            None
        };
        let pusher = docker_pusher.as_ref().map(|p| EnsuringPusher {
            inner: p,
            ecr: delivery.as_ref().and_then(|d| d.ecr.clone()),
            config: config_ref,
        });
        let mut pipeline = Pipeline::new(printer_ref).with_cancellation(cancel);
        if let Some(b) = &builder {
            pipeline = pipeline.with_builder(b);
        }
        if let Some(p) = &pusher {
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
        let pushed = match (&delivery, &docker_pusher) {
            (Some(d), Some(p)) if resolve_pushed => {
                let creds = pipeline
                    .find_credentials(&d.destination.registry)
                    .await
                    .map_err(|e| Failure::from_stage(&e))?;
                let image = p
                    .resolve(&d.destination, creds.as_ref())
                    .await
                    .map_err(|e| Failure::from_stage(&e))?;
                Some(image)
            }
            _ => None,
        };
        let mut request = match (given.as_ref().or(pushed.as_ref()), &delivery) {
            (Some(image), _) => RunRequest::deploy_image(mode, image.clone()),
            (None, _) if !stages.push && !stages.deploy => RunRequest::build_only(spec),
            (None, Some(d)) if !stages.deploy => {
                RunRequest::build_and_push(spec, d.destination.clone())
            }
            (None, Some(d)) => RunRequest::full(mode, spec, d.destination.clone()),
            (None, None) => RunRequest::build_and_deploy_locally(mode, spec),
        };
        request.verify = !args.no_verify;
        let report = pipeline.run(request).await;
        Ok::<_, Failure>((report, aws.map(|a| a.calls)))
    })??;
    let (report, calls) = result;

    if let StageOutcome::Done(p) = &report.push {
        out.text(format!("image {}@{}", p.reference.name(), p.digest()));
    }
    let mut rows = Vec::new();
    for t in &report.targets {
        if let StageOutcome::Done(plan) = &t.plan
            && args.dry_run
        {
            print_plan(out, plan);
        }
        let (version, endpoint) = match &t.apply {
            StageOutcome::Done(a) => {
                print_plan(out, &a.plan);
                (
                    a.version.clone().unwrap_or_else(|| "-".into()),
                    a.endpoints
                        .first()
                        .map_or_else(|| "-".to_owned(), |e| e.url.clone()),
                )
            }
            _ => ("-".into(), "-".into()),
        };
        let verified = match &t.verify {
            StageOutcome::Done(v) => v
                .iter()
                .map(|v| match v {
                    Verification::Healthy {
                        status, latency_ms, ..
                    } => format!("healthy ({status}, {latency_ms} ms)"),
                    Verification::NotVerifiable { .. } => "not verifiable here".to_owned(),
                    _ => "skipped".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".into(),
        };
        let result = if let Some(e) = [&t.plan.error(), &t.apply.error(), &t.verify.error()]
            .into_iter()
            .flatten()
            .next()
        {
            format!("failed: {}", e.message)
        } else if args.dry_run {
            "planned".into()
        } else if matches!(t.apply, StageOutcome::Done(_)) {
            "deployed".into()
        } else {
            "not reached".into()
        };
        rows.push(json!({
            "target": t.target,
            "endpoint": endpoint,
            "version": version,
            "result": result,
            "verify": verified,
            "duration_ms": t.duration_ms,
        }));
    }
    if !rows.is_empty() {
        let col = |key: &str, min: usize| {
            rows.iter()
                .map(|r| r[key].as_str().unwrap_or("").chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (we, wv, wr) = (col("endpoint", 8), col("version", 7), col("result", 6));
        out.text(format!(
            "{:<8} {:<we$} {:<wv$} {:<wr$} {:<20} DURATION",
            "TARGET", "ENDPOINT", "VERSION", "RESULT", "VERIFY"
        ));
        for r in &rows {
            out.text(format!(
                "{:<8} {:<we$} {:<wv$} {:<wr$} {:<20} {:.1}s",
                r["target"].as_str().unwrap_or(""),
                r["endpoint"].as_str().unwrap_or(""),
                r["version"].as_str().unwrap_or(""),
                r["result"].as_str().unwrap_or(""),
                r["verify"].as_str().unwrap_or(""),
                r["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
            ));
        }
    }
    if let Some(calls) = &calls {
        let n = calls.mutating().len();
        out.text(format!(
            "AWS: {n} mutating call{} ({} in all)",
            if n == 1 { "" } else { "s" },
            calls.calls().len()
        ));
    }
    let code = report.exit_code();
    if code != 0 {
        let first = report.errors().into_iter().next();
        return Err(first.map_or_else(
            || Failure::new(code, "the deploy failed"),
            Failure::from_stage,
        ));
    }
    let targets_json: Vec<serde_json::Value> = report
        .targets
        .iter()
        .zip(&rows)
        .map(|(t, row)| {
            let mut v = row.clone();
            v["plan"] = match (&t.apply, &t.plan) {
                (StageOutcome::Done(a), _) => serde_json::to_value(&a.plan).unwrap_or_default(),
                (_, StageOutcome::Done(p)) => serde_json::to_value(p).unwrap_or_default(),
                _ => serde_json::Value::Null,
            };
            v["endpoints"] = match &t.apply {
                StageOutcome::Done(a) => serde_json::to_value(&a.endpoints).unwrap_or_default(),
                _ => serde_json::json!([]),
            };
            v
        })
        .collect();
    out.result(
        "deploy",
        json!({
            "dry_run": args.dry_run,
            "image": report.push.done().map(|p| json!({
                "reference": p.reference.to_string(),
                "digest": p.digest(),
            })),
            "targets": targets_json,
            "aws_calls": calls.as_ref().map(super::aws::calls_json),
        }),
    );
    Ok(0)
}
