//! `status`, `logs`, `destroy` and `rollback`: day-two commands over the targets' adapters.

use std::sync::Mutex;

use deployctl_core::{
    Cancellation, EventSink, LockPolicy, LogLine, LogQuery, LogSink, Stage, StageError, Target,
};
use serde_json::json;

use super::deploy::print_plan;
use deployctl_config::Config;

use super::aws::AwsContext;
use super::{load_config_without_secrets, targets};
use crate::cli::{
    Cli, DestroyArgs, HistoryArgs, LogsArgs, RollbackArgs, ScaleArgs, StatusArgs, UnlockArgs,
};
use crate::output::{EventPrinter, Failure, Output};

/// Loads the config (without secrets) and builds the adapters for `target` with one set of
/// clients, then runs `work` with them (and the AWS context and config, for what a command
/// adds beside the targets).
pub(super) fn with_targets<T>(
    cli: &Cli,
    target: Option<&str>,
    work: impl AsyncFnOnce(
        Vec<Box<dyn Target>>,
        Option<&AwsContext>,
        &Config,
        deployctl_core::Cancellation,
    ) -> Result<T, Failure>,
) -> Result<T, Failure> {
    with_targets_flagged(cli, target, targets::Flags::default(), work)
}

/// [`with_targets`] with flags that shape the adapters (`destroy --tenant`).
fn with_targets_flagged<T>(
    cli: &Cli,
    target: Option<&str>,
    flags: targets::Flags,
    work: impl AsyncFnOnce(
        Vec<Box<dyn Target>>,
        Option<&AwsContext>,
        &Config,
        deployctl_core::Cancellation,
    ) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let config = load_config_without_secrets(cli)?;
    let kinds = targets::chosen(&config, target)?;
    let config_ref = &config;
    crate::runtime::block_on(|cancel| async move {
        let aws = if targets::need_aws(&kinds) {
            Some(super::aws::context(config_ref).await?)
        } else {
            None
        };
        let docker = if targets::need_docker(&kinds) {
            Some(crate::runtime::docker()?)
        } else {
            None
        };
        let kube = if targets::need_kube(&kinds) {
            Some(targets::kube_client(config_ref).await?)
        } else {
            None
        };
        let adapters = targets::build(
            config_ref,
            &kinds,
            aws.as_ref(),
            docker.as_ref(),
            kube.as_ref(),
            flags,
        )?;
        work(adapters, aws.as_ref(), config_ref, cancel).await
    })?
}

fn stage(e: &StageError) -> Failure {
    Failure::from_stage(e)
}

/// How this run takes deploy locks (`--lock-timeout`).
fn lock_policy(cli: &Cli) -> LockPolicy {
    crate::runtime::lock_policy(std::time::Duration::from_secs(cli.lock_timeout.0))
}

/// Runs `work` holding `target`'s deploy lock, as a deploy does.
async fn holding<T, F>(
    target: &dyn Target,
    policy: &LockPolicy,
    events: &dyn EventSink,
    stage: &Stage,
    cancel: &Cancellation,
    work: impl FnOnce(Cancellation) -> F,
) -> Result<T, StageError>
where
    F: std::future::Future<Output = Result<T, StageError>>,
{
    let timer = crate::runtime::TokioTimer;
    deployctl_core::holding(
        target.lock(),
        Some((policy, &timer)),
        events,
        stage,
        cancel,
        work,
    )
    .await
}

/// `deployctl unlock [target]`: breaks each chosen target's deploy lock and says whose it was.
pub fn unlock(cli: &Cli, args: &UnlockArgs, out: &Output) -> i32 {
    let result = with_targets(
        cli,
        args.target.as_deref(),
        async |adapters, _aws, _config, _cancel| {
            let mut done = Vec::new();
            for t in &adapters {
                let said = match t.lock() {
                    Some(lock) => deployctl_core::break_lock(lock)
                        .await
                        .map_err(|e| stage(&e))?,
                    None => "has no deploy lock".to_owned(),
                };
                done.push((t.name().to_owned(), said));
            }
            Ok(done)
        },
    );
    match result {
        Ok(done) => {
            for (target, said) in &done {
                out.text(format!("{target}: {said}"));
            }
            out.result(
                "unlock",
                json!({ "targets": done.iter().map(|(t, s)| json!({"target": t, "result": s})).collect::<Vec<_>>() }),
            );
            0
        }
        Err(f) => out.fail("unlock", &f),
    }
}

pub fn status(cli: &Cli, args: &StatusArgs, out: &Output) -> i32 {
    if args.workspace {
        return super::workspace::status(cli, args, out);
    }
    if let Some(code) = super::workspace::only_needs_workspace("status", args.only.as_ref(), out) {
        return code;
    }
    let result = with_targets(
        cli,
        args.target.as_deref(),
        async |adapters, aws, config, _cancel| {
            let mut all = Vec::new();
            for t in &adapters {
                all.push(t.status().await.map_err(|e| stage(&e))?);
            }
            // The gateway in front of the Kubernetes deployment: its routes, or why not.
            let gateway = if adapters.iter().any(|t| t.name() == "k8s") {
                super::gateway::status(config, aws)
                    .await
                    .unwrap_or_else(|f| json!({ "error": f.message }))
            } else {
                serde_json::Value::Null
            };
            Ok((all, gateway))
        },
    );
    let (statuses, gateway) = match result {
        Ok(s) => s,
        Err(f) => return out.fail("status", &f),
    };
    print_status(out, &statuses, &gateway);
    out.result("status", json!({ "targets": statuses, "gateway": gateway }));
    0
}

/// `status` as text: each target's version, image, resources and endpoints, then the
/// gateway (JSON mode prints the result object instead).
pub(super) fn print_status(
    out: &Output,
    statuses: &[deployctl_core::TargetStatus],
    gateway: &serde_json::Value,
) {
    for s in statuses {
        if !s.deployed {
            out.text(format!("{}: not deployed", s.target));
            continue;
        }
        out.text(format!(
            "{}: version {} image {}",
            s.target,
            s.version.as_deref().unwrap_or("-"),
            s.image.as_deref().unwrap_or("-")
        ));
        for r in &s.resources {
            out.text(format!("  {} {}: {}", r.kind, r.name, r.state));
            for (k, v) in &r.details {
                out.text(format!("      {k}: {v}"));
            }
        }
        for e in &s.endpoints {
            out.text(format!("  endpoint ({}): {}", e.kind, e.url));
        }
    }
    super::gateway::print_status(out, gateway);
}

struct Printer {
    out: Output,
    count: Mutex<u64>,
}

impl LogSink for Printer {
    fn line(&self, line: LogLine) {
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
        }
        print_log_line(&self.out, &line);
    }
}

/// One log line as `logs` prints it: `[source] text`, or a `log` JSON object.
pub(super) fn print_log_line(out: &Output, line: &LogLine) {
    if out.is_json() {
        crate::output::out_line(json!({
            "schema_version": deployctl_core::EVENT_SCHEMA_VERSION,
            "type": "log",
            "source": line.source,
            "at_ms": line.at_ms,
            "text": line.text,
        }));
    } else {
        crate::output::out_line(format_args!("[{}] {}", line.source, line.text));
    }
}

pub fn logs(cli: &Cli, args: &LogsArgs, out: &Output) -> i32 {
    let mut query = LogQuery::default();
    query.follow = args.follow;
    query.filter.clone_from(&args.filter);
    query.tail = args.tail;
    query.since_seconds = args.since.map(|s| s.0);
    let printer = Printer {
        out: *out,
        count: Mutex::new(0),
    };
    let printer_ref = &printer;
    let query_ref = &query;
    let result = with_targets(
        cli,
        args.target.as_deref(),
        async |adapters, _aws, _config, cancel| {
            for t in &adapters {
                t.logs(query_ref, printer_ref, &cancel)
                    .await
                    .map_err(|e| stage(&e))?;
            }
            Ok(())
        },
    );
    match result {
        Ok(()) => {
            let lines = printer.count.lock().map(|n| *n).unwrap_or(0);
            if lines == 0 && !out.is_json() {
                eprintln!(
                    "no log lines{}",
                    if query.since_seconds.is_some() {
                        " in that window"
                    } else {
                        ""
                    }
                );
            }
            0
        }
        Err(f) => out.fail("logs", &f),
    }
}

pub fn destroy(cli: &Cli, args: &DestroyArgs, out: &Output) -> i32 {
    if args.workspace {
        return super::workspace::destroy(cli, args, out);
    }
    if let Some(code) = super::workspace::only_needs_workspace("destroy", args.only.as_ref(), out) {
        return code;
    }
    let locking = lock_policy(cli);
    let printer = EventPrinter::new(*out);
    let printer_ref = &printer;
    let dry = args.dry_run;
    let skip_hooks = args.skip_hooks;
    let env = cli.env.as_deref();
    let purge = args.purge_images;
    let flags = targets::Flags {
        destroy_tenant: args.tenant,
        ..targets::Flags::default()
    };
    let result = with_targets_flagged(
        cli,
        args.target.as_deref(),
        flags,
        async |adapters, aws, config_ref, cancel| {
            let mut plans = Vec::new();
            // The gateway's tagged entities go first: no route points at a gone Service.
            if adapters.iter().any(|t| t.name() == "k8s")
                && let Some(p) = super::gateway::destroy(config_ref, aws, dry).await?
            {
                plans.push(p);
            }
            for t in &adapters {
                let plan = if dry {
                    t.destroy_plan().await.map(|mut p| {
                        if !skip_hooks {
                            p.hooks = config_ref
                                .hooks
                                .to_core()
                                .planned(&[deployctl_core::HookPhase::PreDestroy], t.task_runner());
                        }
                        p
                    })
                } else {
                    if !skip_hooks {
                        // pre_destroy: a failure deletes nothing.
                        let hooks = config_ref.hooks.to_core();
                        let runner = super::hooks::ProcessHookRunner::for_config(config_ref);
                        let context = deployctl_core::HookContext::new(
                            &config_ref.app.name,
                            &config_ref.app.version,
                            env.unwrap_or_default(),
                        );
                        let hooked = deployctl_core::Pipeline::new(printer_ref)
                            .with_hooks(&hooks, &runner, context);
                        if let deployctl_core::StageOutcome::Failed(e) = hooked
                            .run_hooks(
                                deployctl_core::HookPhase::PreDestroy,
                                t.as_ref(),
                                None,
                                &cancel,
                            )
                            .await
                        {
                            return Err(stage(&e));
                        }
                    }
                    let stage = Stage::Destroy(t.name().to_owned());
                    holding(
                        t.as_ref(),
                        &locking,
                        printer_ref,
                        &stage,
                        &cancel,
                        |c| async move { t.destroy(printer_ref, &c).await },
                    )
                    .await
                };
                let mut plan = plan.map_err(|e| stage(&e))?;
                if t.name() == "lambda" {
                    // The app's ECR repositories: kept unless --purge-images, and said so.
                    let aws = aws.ok_or_else(|| Failure::environment("AWS is not configured"))?;
                    let changes = deployctl_registry::destroy_app_repositories(
                        &aws.ecr_client(),
                        &config_ref.app.name,
                        purge,
                        dry,
                    )
                    .await
                    .map_err(|e| stage(&e.into()))?;
                    for c in changes {
                        plan.push(c);
                    }
                }
                plans.push(plan);
            }
            Ok(plans)
        },
    );
    match result {
        Ok(plans) => {
            for p in &plans {
                print_plan(out, p);
                if p.changes.iter().all(|c| !c.action.is_change()) {
                    out.text(format!("{}: nothing to delete", p.target));
                }
            }
            out.result("destroy", json!({ "dry_run": dry, "plans": plans }));
            0
        }
        Err(f) => out.fail("destroy", &f),
    }
}

pub fn rollback(cli: &Cli, args: &RollbackArgs, out: &Output) -> i32 {
    let locking = lock_policy(cli);
    let printer = EventPrinter::new(*out);
    let printer_ref = &printer;
    let to = args.to.map(|n| n.to_string());
    let to = to.as_deref();
    let result = with_targets(
        cli,
        Some(&args.target),
        async |adapters, _aws, _config, cancel| {
            let mut done = Vec::new();
            for t in &adapters {
                let st = Stage::Rollback(t.name().to_owned());
                let r = holding(
                    t.as_ref(),
                    &locking,
                    printer_ref,
                    &st,
                    &cancel,
                    |c| async move { t.rollback(to, printer_ref, &c).await },
                )
                .await
                .map_err(|e| stage(&e))?;
                done.push((t.name().to_owned(), r));
            }
            Ok(done)
        },
    );
    match result {
        Ok(done) => {
            for (target, r) in &done {
                out.text(format!(
                    "{target}: rolled back from {} to {}",
                    r.from.as_deref().unwrap_or("-"),
                    r.to
                ));
            }
            out.result(
                "rollback",
                json!({ "targets": done.iter().map(|(t, r)| json!({"target": t, "from": r.from, "to": r.to})).collect::<Vec<_>>() }),
            );
            0
        }
        Err(f) => out.fail("rollback", &f),
    }
}

pub fn history(cli: &Cli, args: &HistoryArgs, out: &Output) -> i32 {
    if args.stats {
        return super::stats::run(cli, args, out);
    }
    if args.workspace || args.only.is_some() {
        return out.fail(
            "history",
            &Failure::invalid("--workspace and --only work with --stats only")
                .hint("`deployctl history --stats --workspace`, or `history` in a service's directory for its versions"),
        );
    }
    let result = with_targets(
        cli,
        args.target.as_deref(),
        async |adapters, _aws, _config, _cancel| {
            let mut all = Vec::new();
            for t in &adapters {
                let revisions = t.history().await.map_err(|e| stage(&e))?;
                all.push((t.name().to_owned(), revisions));
            }
            Ok(all)
        },
    );
    match result {
        Ok(all) => {
            for (target, revisions) in &all {
                if revisions.is_empty() {
                    out.text(format!("{target}: no recorded versions"));
                    continue;
                }
                out.text(format!("{target}:"));
                for r in revisions {
                    let state = match r.state.as_deref() {
                        Some(s) if s != "good" => format!("  ({s})"),
                        _ => String::new(),
                    };
                    out.text(format!(
                        "  {} {:<10} {}{state}",
                        if r.live { "*" } else { " " },
                        r.version,
                        r.image.as_deref().unwrap_or("-")
                    ));
                }
            }
            out.result(
                "history",
                json!({ "targets": all.iter().map(|(t, r)| json!({"target": t, "revisions": r})).collect::<Vec<_>>() }),
            );
            0
        }
        Err(f) => out.fail("history", &f),
    }
}

pub fn scale(cli: &Cli, args: &ScaleArgs, out: &Output) -> i32 {
    if !matches!(args.target.as_str(), "k8s" | "kubernetes") {
        return out.fail(
            "scale",
            &Failure::invalid(format!("cannot scale `{}`", args.target))
                .hint("`deployctl scale k8s <replicas>`; Lambda scales by itself (see lambda.function.reserved_concurrency)"),
        );
    }
    if args.replicas < 0 {
        return out.fail("scale", &Failure::invalid("replicas cannot be negative"));
    }
    let printer = EventPrinter::new(*out);
    let printer_ref = &printer;
    let replicas = args.replicas;
    let config = match load_config_without_secrets(cli) {
        Ok(c) => c,
        Err(f) => return out.fail("scale", &f),
    };
    if !config.kubernetes.enabled {
        return out.fail(
            "scale",
            &Failure::invalid("the kubernetes target is not enabled in deploy.yaml"),
        );
    }
    let config_ref = &config;
    let result = crate::runtime::block_on(|cancel| async move {
        let client = targets::kube_client(config_ref).await?;
        let target = deployctl_k8s::K8sTarget::new(
            client,
            config_ref.clone(),
            deployctl_k8s::K8sOptions::from_config(config_ref),
        );
        let st = Stage::Apply("k8s".to_owned());
        let locking = lock_policy(cli);
        let target = &target;
        holding(
            target,
            &locking,
            printer_ref,
            &st,
            &cancel,
            |c| async move { target.scale(replicas, printer_ref, &c).await },
        )
        .await
        .map_err(|e| stage(&e))
    });
    match result.and_then(|r| r) {
        Ok(()) => {
            out.text(format!("k8s: {} scaled to {replicas}", config.app.name));
            out.result("scale", json!({"target": "k8s", "replicas": replicas}));
            0
        }
        Err(f) => out.fail("scale", &f),
    }
}
