//! `--workspace`: every service of `deployctl-workspace.yaml`, in waves of their dependencies.
//!
//! The order and the failure rule are the core's (`plan_waves`, `select`, `run_waves`); each
//! service runs through the same per-app command as `deployctl -c <service>/deploy.yaml
//! deploy` (on its own thread, with its own runtime, output tagged with the service). This
//! module only finds the workspace, wires, prints one summary table and picks the worst exit
//! code.

use std::path::PathBuf;
use std::time::Instant;

use deployctl_config::Workspace;
use deployctl_core::{ServiceGraph, ServiceOutcome};
use serde_json::json;

use crate::cli::{Cli, DeployArgs, DestroyArgs, PlanArgs, StatusArgs};
use crate::output::{Failure, Output};

/// The workspace found from the current directory up, with the graph narrowed to `--only`
/// (plus what those services depend on) and its waves.
struct Selected {
    workspace: Workspace,
    graph: ServiceGraph,
    waves: Vec<Vec<String>>,
}

fn select(only: Option<&str>, jobs: usize) -> Result<Selected, Failure> {
    if jobs == 0 {
        return Err(Failure::invalid("--jobs must be at least 1"));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::environment("cannot read the current directory").caused_by(&e))?;
    let file = deployctl_config::find_workspace(&cwd).ok_or_else(|| {
        Failure::invalid(format!(
            "no {} in {} or any directory above it",
            deployctl_config::WORKSPACE_FILE,
            cwd.display()
        ))
        .hint("create one at the repository root listing `services:`, or drop --workspace")
    })?;
    let workspace =
        deployctl_config::load_workspace(&file).map_err(|e| super::config_failure(&file, &e))?;
    let only: Vec<String> = only
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let graph = deployctl_core::select(&workspace.graph(), &only).map_err(|p| {
        Failure::invalid(format!("--only: {p}")).hint(format!(
            "the services are: {}",
            workspace
                .services
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let waves = deployctl_core::plan_waves(&graph)
        .map_err(|p| Failure::invalid(format!("{}: {p}", file.display())))?;
    Ok(Selected {
        workspace,
        graph,
        waves,
    })
}

/// The selected services of the workspace (`--only`, with what they depend on), each with
/// its deploy.yaml, in wave order.
pub(super) fn service_configs(only: Option<&str>) -> Result<Vec<(String, PathBuf)>, Failure> {
    let sel = select(only, 1)?;
    Ok(sel
        .waves
        .iter()
        .flatten()
        .map(|name| {
            (
                name.clone(),
                sel.workspace.services[name].config_file.clone(),
            )
        })
        .collect())
}

/// `--only` given without `--workspace`: the failure's exit code (2), else `None`.
pub fn only_needs_workspace(command: &str, only: Option<&String>, out: &Output) -> Option<i32> {
    only.map(|_| {
        let f = Failure::invalid("--only selects services of a workspace").hint(format!(
            "add --workspace, or run {command} in the service's directory"
        ));
        out.fail(command, &f)
    })
}

/// The global options for one service: its deploy.yaml, everything else as given.
pub(super) fn service_cli(cli: &Cli, config: PathBuf) -> Cli {
    Cli {
        config,
        env: cli.env.clone(),
        context: cli.context.clone(),
        output: cli.output,
        lock_timeout: cli.lock_timeout,
        verbose: cli.verbose,
        version: false,
        server: cli.server.clone(),
        project: cli.project.clone(),
        token: cli.token.clone(),
        command: None,
    }
}

fn announce(out: &Output, sel: &Selected, only: Option<&str>) {
    out.text(format!(
        "workspace {}: {} service{} in {} wave{}",
        sel.workspace.file.display(),
        sel.graph.len(),
        if sel.graph.len() == 1 { "" } else { "s" },
        sel.waves.len(),
        if sel.waves.len() == 1 { "" } else { "s" },
    ));
    if let Some(only) = only {
        out.text(format!(
            "  --only {only}: with what they depend on: {}",
            sel.graph.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for (i, wave) in sel.waves.iter().enumerate() {
        out.text(format!("  wave {}: {}", i + 1, wave.join(", ")));
    }
}

/// `plan --workspace`: the waves, then each service's plan (the per-app `plan`).
pub fn plan(cli: &Cli, args: &PlanArgs, out: &Output) -> i32 {
    let sel = match select(args.only.as_deref(), args.jobs) {
        Ok(s) => s,
        Err(f) => return out.fail("plan", &f),
    };
    announce(out, &sel, args.only.as_deref());
    let one = PlanArgs {
        dry_run: args.dry_run,
        workspace: false,
        only: None,
        jobs: args.jobs,
    };
    let mut worst = 0;
    for name in sel.waves.iter().flatten() {
        let service = &sel.workspace.services[name];
        let code = super::plan::run(
            &service_cli(cli, service.config_file.clone()),
            &one,
            &out.for_service(name),
        );
        worst = worse(worst, code);
    }
    if worst == 0 {
        out.result(
            "plan",
            json!({ "workspace": sel.workspace.file, "waves": sel.waves }),
        );
    }
    worst
}

/// What happened to one service of a workspace deploy.
struct Row {
    service: String,
    wave: usize,
    result: String,
    exit_code: Option<i32>,
    duration_ms: u64,
}

/// `deploy --workspace`: services in waves, at most `--jobs` at once in a wave; a service
/// whose dependency failed is not reached.
pub fn deploy(cli: &Cli, args: &DeployArgs, out: &Output) -> i32 {
    let sel = match select(args.only.as_deref(), args.jobs) {
        Ok(s) => s,
        Err(f) => return out.fail("deploy", &f),
    };
    announce(out, &sel, args.only.as_deref());
    super::build_slots::limit(args.build_jobs);
    let start = Instant::now();
    let run_one = |name: String| {
        let config = sel.workspace.services[&name].config_file.clone();
        let svc_cli = service_cli(cli, config);
        let svc_out = out.for_service(&name);
        let (tx, rx) = futures::channel::oneshot::channel();
        let args = clone_args(args);
        async move {
            let began = Instant::now();
            // Each service's deploy is the per-app command, with its own runtime, on its own
            // thread; the core's run_waves bounds how many run at once.
            let handle = std::thread::Builder::new()
                .name(format!("deploy-{name}"))
                .spawn({
                    move || {
                        let code = super::deploy::run(&svc_cli, &args, &svc_out);
                        let _ = tx.send(code);
                    }
                });
            let code = match handle {
                Ok(_) => rx.await.unwrap_or(1),
                Err(_) => 3,
            };
            (
                code,
                u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            )
        }
    };
    let outcomes = futures::executor::block_on(deployctl_core::run_waves(
        &sel.graph,
        &sel.waves,
        args.jobs,
        run_one,
        |(code, _)| *code == 0,
    ));
    let done = if args.dry_run { "planned" } else { "deployed" };
    finish(out, "deploy", &sel, &sel.waves, outcomes, done, start)
}

/// Prints the table and the result (or failure) of a workspace command; the worst exit code.
fn finish(
    out: &Output,
    command: &str,
    sel: &Selected,
    waves: &[Vec<String>],
    outcomes: Vec<(String, ServiceOutcome<(i32, u64)>)>,
    done: &str,
    start: Instant,
) -> i32 {
    let wave_of = |name: &str| {
        waves
            .iter()
            .position(|w| w.iter().any(|n| n == name))
            .map_or(0, |i| i + 1)
    };
    let rows: Vec<Row> = outcomes
        .into_iter()
        .map(|(service, outcome)| {
            let wave = wave_of(&service);
            let (result, exit_code, duration_ms) = match outcome {
                ServiceOutcome::Ran((0, ms)) => (done.to_owned(), Some(0), ms),
                ServiceOutcome::Ran((code, ms)) => {
                    (format!("failed (exit {code})"), Some(code), ms)
                }
                ServiceOutcome::NotReached { dependency } => {
                    (format!("not reached: {dependency} failed"), None, 0)
                }
                _ => ("not reached".to_owned(), None, 0),
            };
            Row {
                service,
                wave,
                result,
                exit_code,
                duration_ms,
            }
        })
        .collect();
    print_summary(out, &rows);
    let worst = rows.iter().filter_map(|r| r.exit_code).fold(0, worse);
    // A service not reached did not run: the command failed even if its cause was reported.
    let worst = if worst == 0 && rows.iter().any(|r| r.exit_code.is_none()) {
        1
    } else {
        worst
    };
    let services: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "service": r.service,
                "wave": r.wave,
                "result": r.result,
                "exit_code": r.exit_code,
                "duration_ms": r.duration_ms,
            })
        })
        .collect();
    if worst == 0 {
        out.result(
            command,
            json!({
                "workspace": sel.workspace.file,
                "waves": waves,
                "services": services,
                "duration_ms": u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
        );
        0
    } else {
        let mut f = Failure::new(
            kind_of(worst),
            format!(
                "workspace {command}: {} of {} service{} did not succeed",
                rows.iter().filter(|r| r.exit_code != Some(0)).count(),
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            ),
        );
        f.causes = rows
            .iter()
            .filter(|r| r.exit_code != Some(0))
            .map(|r| format!("{}: {}", r.service, r.result))
            .collect();
        out.fail(command, &f);
        worst
    }
}

/// Runs `one(name)` for each service, one at a time, over `graph`'s waves.
fn one_at_a_time(
    graph: &ServiceGraph,
    waves: &[Vec<String>],
    one: impl Fn(&str) -> i32,
) -> Vec<(String, ServiceOutcome<(i32, u64)>)> {
    futures::executor::block_on(deployctl_core::run_waves(
        graph,
        waves,
        1,
        |name: String| {
            let began = Instant::now();
            let code = one(&name);
            let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            async move { (code, ms) }
        },
        |(code, _)| *code == 0,
    ))
}

/// `status --workspace`: each service's status (the per-app command), in wave order.
pub fn status(cli: &Cli, args: &StatusArgs, out: &Output) -> i32 {
    let sel = match select(args.only.as_deref(), 1) {
        Ok(s) => s,
        Err(f) => return out.fail("status", &f),
    };
    announce(out, &sel, args.only.as_deref());
    let start = Instant::now();
    let one = StatusArgs {
        target: args.target.clone(),
        workspace: false,
        only: None,
    };
    // Status reads only: every service is shown, whatever another one's state.
    let flat: ServiceGraph = sel.graph.keys().map(|k| (k.clone(), Vec::new())).collect();
    let outcomes = one_at_a_time(&flat, &sel.waves, |name| {
        let config = sel.workspace.services[name].config_file.clone();
        super::ops::status(&service_cli(cli, config), &one, &out.for_service(name))
    });
    finish(out, "status", &sel, &sel.waves, outcomes, "ok", start)
}

/// `destroy --workspace`: dependants first (the reversed graph's waves); a service whose
/// dependant could not be destroyed is kept.
pub fn destroy(cli: &Cli, args: &DestroyArgs, out: &Output) -> i32 {
    let sel = match select(args.only.as_deref(), 1) {
        Ok(s) => s,
        Err(f) => return out.fail("destroy", &f),
    };
    let graph = deployctl_core::reversed(&sel.graph);
    let waves = match deployctl_core::plan_waves(&graph) {
        Ok(w) => w,
        Err(p) => return out.fail("destroy", &Failure::invalid(p.to_string())),
    };
    announce(out, &sel, args.only.as_deref());
    out.text("  destroyed in the reverse order: dependants first");
    let start = Instant::now();
    let one = DestroyArgs {
        target: args.target.clone(),
        dry_run: args.dry_run,
        purge_images: args.purge_images,
        tenant: args.tenant,
        skip_hooks: args.skip_hooks,
        workspace: false,
        only: None,
    };
    let outcomes = one_at_a_time(&graph, &waves, |name| {
        let config = sel.workspace.services[name].config_file.clone();
        super::ops::destroy(&service_cli(cli, config), &one, &out.for_service(name))
    });
    let done = if args.dry_run { "planned" } else { "destroyed" };
    finish(out, "destroy", &sel, &waves, outcomes, done, start)
}

/// The DeployArgs a service's thread owns (argh types are not Clone).
fn clone_args(a: &DeployArgs) -> DeployArgs {
    DeployArgs {
        target: a.target.clone(),
        dry_run: a.dry_run,
        all: a.all,
        build: a.build,
        push: a.push,
        update: a.update,
        create_api: a.create_api,
        apply: a.apply,
        image: a.image.clone(),
        no_cache: a.no_cache,
        no_verify: a.no_verify,
        rotate_key: a.rotate_key,
        skip_hooks: a.skip_hooks,
        verify: a.verify,
        verify_timeout: a.verify_timeout,
        force_conflicts: a.force_conflicts,
        no_rollback: a.no_rollback,
        server_dry_run: a.server_dry_run,
        workspace: false,
        only: None,
        jobs: a.jobs,
        build_jobs: a.build_jobs,
    }
}

/// The worse of two exit codes: interrupted (130) over environment (3) over invalid
/// input (2) over failed (1) over success (0).
fn worse(a: i32, b: i32) -> i32 {
    a.max(b)
}

fn kind_of(code: i32) -> deployctl_core::ErrorKind {
    match code {
        2 => deployctl_core::ErrorKind::InvalidInput,
        3 => deployctl_core::ErrorKind::Environment,
        130 => deployctl_core::ErrorKind::Cancelled,
        _ => deployctl_core::ErrorKind::Failed,
    }
}

fn print_summary(out: &Output, rows: &[Row]) {
    let ws = rows
        .iter()
        .map(|r| r.service.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    let wr = rows
        .iter()
        .map(|r| r.result.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    out.text(format!(
        "{:<ws$} WAVE {:<wr$} DURATION",
        "SERVICE", "RESULT"
    ));
    for r in rows {
        #[allow(clippy::cast_precision_loss)] // a duration in seconds, for people
        let secs = r.duration_ms as f64 / 1000.0;
        out.text(format!(
            "{:<ws$} {:<4} {:<wr$} {secs:.1}s",
            r.service, r.wave, r.result
        ));
    }
}
