//! Faults at every stage of a deploy: a fault proxy (`deployctl_testsupport::faults`) sits
//! between deployctl and moto, the registry or the Kubernetes stand-in and, at one stage,
//! throttles once, answers a server error once, resets the connection mid-answer once, or
//! stalls the answer past the call timeout. Each cell asserts that the deploy either
//! succeeds through the clients' retries or fails with exit 1 and a message naming the call,
//! never hangs, and that a re-run converges to exactly one of each resource, which `destroy`
//! then removes.
//!
//! By default a few cells per target run (a couple of minutes); `DEPLOYCTL_RELIABILITY_FULL=1`
//! (`cargo xtask reliability`) runs every stage against every fault. Each test prints its
//! matrix (`--nocapture`); docs/RELIABILITY.md has the measured one.

#![allow(clippy::unwrap_used)] // integration tests: a failure here is a test failure

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use deployctl_testsupport::faults::{Cut, Effect, Match, Request, Rule, When};
use reliability::{Harness, K8sHarness, LambdaHarness, Run, run};

/// The longest a run may take: well past every bound deployctl sets for itself with
/// `DEPLOYCTL_CALL_TIMEOUT=3s` (an AWS call gives up after 29 s).
const LIMIT: Duration = Duration::from_secs(120);

/// The same for a push through a stalled registry: the engine waits for ever, deployctl
/// gives up after `deployctl_registry::PUSH_STALL_TIMEOUT` (120 s) without progress.
const PUSH_LIMIT: Duration = Duration::from_secs(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Throttle,
    ServerError,
    Reset,
    Stall,
}

const FAULTS: [Fault; 4] = [
    Fault::Throttle,
    Fault::ServerError,
    Fault::Reset,
    Fault::Stall,
];

impl Fault {
    fn effect(self) -> Effect {
        match self {
            Fault::Throttle => Effect::Throttle,
            Fault::ServerError => Effect::ServerError(500),
            Fault::Reset => Effect::Reset(Cut::MidBody),
            Fault::Stall => Effect::StallResponse,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Fault::Throttle => "throttle once",
            Fault::ServerError => "HTTP 500 once",
            Fault::Reset => "reset once",
            Fault::Stall => "stall past the timeout",
        }
    }
}

/// A stage of a deploy, as the requests that make it.
struct Stage {
    name: &'static str,
    matcher: fn() -> Match,
    /// Any of these in stderr names the call.
    names: &'static [&'static str],
    /// The fault hits a redeploy with a changed setting, not a first deploy.
    update: bool,
}

fn op(o: &str) -> Match {
    Match::op(o)
}

const LAMBDA: &[Stage] = &[
    Stage {
        name: "credentials (sts:GetCallerIdentity)",
        matcher: || op("sts:GetCallerIdentity"),
        names: &["GetCallerIdentity"],
        update: false,
    },
    Stage {
        name: "deploy lock (ssm:PutParameter)",
        matcher: || op("ssm:PutParameter"),
        names: &["PutParameter", "lock"],
        update: false,
    },
    Stage {
        name: "ECR token (ecr:GetAuthorizationToken)",
        matcher: || op("ecr:GetAuthorizationToken"),
        names: &["GetAuthorizationToken"],
        update: false,
    },
    Stage {
        name: "repository ensure (ecr:CreateRepository)",
        matcher: || op("ecr:CreateRepository"),
        names: &["CreateRepository"],
        update: false,
    },
    Stage {
        name: "IAM role (iam:CreateRole)",
        matcher: || op("iam:CreateRole"),
        names: &["CreateRole"],
        update: false,
    },
    Stage {
        name: "Lambda create (lambda:CreateFunction)",
        matcher: || op("lambda:CreateFunction"),
        names: &["CreateFunction"],
        update: false,
    },
    Stage {
        name: "waiter (lambda:GetFunction after create)",
        matcher: || op("lambda:GetFunction").after(op("lambda:CreateFunction")),
        names: &["GetFunction", "did not become"],
        update: false,
    },
    Stage {
        name: "version (lambda:PublishVersion)",
        matcher: || op("lambda:PublishVersion"),
        names: &["PublishVersion"],
        update: false,
    },
    Stage {
        name: "alias (lambda:CreateAlias)",
        matcher: || op("lambda:CreateAlias"),
        names: &["CreateAlias"],
        update: false,
    },
    Stage {
        name: "API (apigateway:CreateApi)",
        matcher: || op("apigateway:CreateApi"),
        names: &["CreateApi"],
        update: false,
    },
    Stage {
        name: "API route (apigateway:CreateRoute)",
        matcher: || op("apigateway:CreateRoute"),
        names: &["CreateRoute"],
        update: false,
    },
    Stage {
        name: "permission (lambda:AddPermission)",
        matcher: || op("lambda:AddPermission"),
        names: &["AddPermission"],
        update: false,
    },
    Stage {
        name: "log group (logs:CreateLogGroup)",
        matcher: || op("logs:CreateLogGroup"),
        names: &["CreateLogGroup"],
        update: false,
    },
    Stage {
        name: "Lambda update (lambda:UpdateFunctionConfiguration)",
        matcher: || op("lambda:UpdateFunctionConfiguration"),
        names: &["UpdateFunctionConfiguration"],
        update: true,
    },
    Stage {
        name: "alias update (lambda:UpdateAlias)",
        matcher: || op("lambda:UpdateAlias"),
        names: &["UpdateAlias"],
        update: true,
    },
];

fn history_write() -> Match {
    Match::Fn(std::sync::Arc::new(|r: &Request| {
        r.service == "k8s" && r.method != "GET" && r.path.contains("-deployctl-history")
    }))
}

const K8S: &[Stage] = &[
    Stage {
        name: "namespace (create namespaces)",
        matcher: || op("k8s:create namespaces"),
        names: &["namespace", "Namespace"],
        update: false,
    },
    Stage {
        name: "apply (apply deployments)",
        matcher: || op("k8s:apply deployments"),
        names: &["apply", "Deployment"],
        update: false,
    },
    Stage {
        name: "apply (apply services)",
        matcher: || op("k8s:apply services"),
        names: &["apply", "Service"],
        update: false,
    },
    Stage {
        name: "watch (watch deployments)",
        matcher: || op("k8s:watch deployments"),
        names: &["watch", "rollout"],
        update: false,
    },
    Stage {
        name: "history (write the history ConfigMap)",
        matcher: history_write,
        names: &["history"],
        update: false,
    },
    Stage {
        name: "verify (get services/proxy)",
        matcher: || op("k8s:get services/proxy"),
        names: &["verif", "proxy"],
        update: false,
    },
];

const REGISTRY: &[Stage] = &[
    Stage {
        name: "registry blob (blob-upload)",
        matcher: || op("registry:blob-upload"),
        names: &["push"],
        update: false,
    },
    Stage {
        name: "registry manifest (manifest-put)",
        matcher: || op("registry:manifest-put"),
        names: &["push"],
        update: false,
    },
];

/// The cells the default run covers: every fault on each target, at the stages where it
/// matters most (a create whose answer is lost, the rollout watch, the history write).
fn in_default_run(stage: &str, fault: Fault) -> bool {
    use Fault::{Reset, ServerError, Stall, Throttle};
    matches!(
        (stage, fault),
        ("IAM role (iam:CreateRole)", Throttle)
            | (
                "Lambda create (lambda:CreateFunction)",
                ServerError | Reset | Stall
            )
            | ("API (apigateway:CreateApi)", Reset | Stall)
            | ("version (lambda:PublishVersion)", Stall)
            | ("permission (lambda:AddPermission)", Throttle)
            | ("namespace (create namespaces)", ServerError)
            | (
                "apply (apply deployments)",
                Throttle | ServerError | Reset | Stall
            )
            | ("watch (watch deployments)", Reset)
            | ("history (write the history ConfigMap)", Reset | Stall)
            | ("registry blob (blob-upload)", Throttle | Reset)
            | ("registry manifest (manifest-put)", ServerError)
    )
}

/// One cell's outcome.
struct Cell {
    stage: &'static str,
    fault: Fault,
    /// What the matrix shows.
    shown: String,
    /// What went wrong, if anything.
    problem: Option<String>,
    /// The faulted run's error line, when it failed.
    error: String,
}

/// How a target is deployed, re-deployed and checked.
/// `deployctl <args>` for `app` through `h`, bounded (`update`: with the changed setting).
fn run_in(h: &dyn Harness, app: &Path, args: &[&str], update: bool) -> Run {
    run(
        h.cmd(app, args)
            .env("MEMORY", if update { "512" } else { "256" }),
        limit(h),
    )
}

/// The longest one run through `h` may take.
fn limit(h: &dyn Harness) -> Duration {
    if h.proxies_registry() {
        PUSH_LIMIT
    } else {
        LIMIT
    }
}

fn cell(h: &dyn Harness, prefix: &str, stage: &Stage, fault: Fault) -> Cell {
    let tmp = tempfile::tempdir().unwrap();
    let name = reliability::unique(prefix);
    let app = reliability::app_in(tmp.path(), &h.yaml(&name));
    let proxy = h.proxy();
    proxy.clear_rules();
    let mut out = Cell {
        stage: stage.name,
        fault,
        shown: String::new(),
        problem: None,
        error: String::new(),
    };
    let mut problems: Vec<(&str, String)> = Vec::new();
    if stage.update {
        let first = run_in(h, &app, &h.deploy_args(), false);
        if first.code != Some(0) {
            problems.push(("first deploy failed", first.all()));
        }
    }
    proxy.reset();
    proxy.push(Rule::new((stage.matcher)(), When::Nth(1), fault.effect()));
    let faulted = run_in(h, &app, &h.deploy_args(), stage.update);
    proxy.clear_rules();
    proxy.drop_stalled();
    let hit = proxy.faulted();
    let tries = hit.first().map_or(0, |c| {
        let label = c.request.label();
        proxy
            .calls()
            .iter()
            .filter(|x| x.request.label() == label)
            .count()
    });
    let secs = faulted.took.as_secs_f64();
    match faulted.code {
        _ if faulted.hung => problems.push(("HUNG", format!("past {} s", limit(h).as_secs()))),
        _ if hit.is_empty() => problems.push(("not reached", "the fault never fired".into())),
        Some(0) => {
            out.shown = format!("ok after retry ({tries} calls, {secs:.0} s)");
        }
        Some(1) => {
            out.error = faulted.error_line();
            if stage.names.iter().any(|n| faulted.stderr.contains(n)) {
                out.shown = format!("exit 1 naming the call ({secs:.0} s)");
            } else {
                problems.push(("exit 1, call not named", out.error.clone()));
            }
        }
        other => {
            out.error = faulted.error_line();
            problems.push(("exit code", format!("exit {other:?}: {}", out.error)));
        }
    }
    if faulted.hung || !matches!(faulted.code, Some(0 | 1)) {
        eprintln!("{} × {}: {}", stage.name, fault.title(), faulted.all());
    }
    let rerun = run_in(h, &app, &h.deploy_args(), stage.update);
    if rerun.code != Some(0) {
        problems.push(("re-run failed", rerun.error_line()));
        eprintln!("{} × {} re-run: {}", stage.name, fault.title(), rerun.all());
    } else {
        let wrong = h.not_one_of_each(&name, stage.update);
        if !wrong.is_empty() {
            problems.push(("not one of each", wrong.join(", ")));
        }
    }
    let destroy = run_in(h, &app, &h.destroy_args(), stage.update);
    if destroy.code != Some(0) {
        problems.push(("destroy failed", destroy.error_line()));
    }
    let left = h.left(&name);
    if !left.is_empty() {
        problems.push(("left after destroy", left.join(", ")));
    }
    if !problems.is_empty() {
        let tags: Vec<&str> = problems.iter().map(|(t, _)| *t).collect();
        out.shown = format!("FAIL: {}", tags.join(", "));
        let details: Vec<String> = problems.iter().map(|(t, d)| format!("{t}: {d}")).collect();
        out.problem = Some(details.join("; "));
    }
    out
}

fn matrix(title: &str, h: &dyn Harness, prefix: &str, stages: &[Stage]) {
    let full = reliability::full();
    let started = std::time::Instant::now();
    let mut cells = Vec::new();
    for stage in stages {
        for fault in FAULTS {
            if full || in_default_run(stage.name, fault) {
                cells.push(cell(h, prefix, stage, fault));
            }
        }
    }
    let mut rows = Vec::new();
    for stage in stages {
        let mut row = vec![stage.name.to_owned()];
        let mut any = false;
        for fault in FAULTS {
            let c = cells
                .iter()
                .find(|c| c.stage == stage.name && c.fault == fault);
            any |= c.is_some();
            row.push(c.map_or_else(|| "·".to_owned(), |c| c.shown.clone()));
        }
        if any {
            rows.push(row);
        }
    }
    let mut header = vec!["stage"];
    header.extend(FAULTS.iter().map(|f| f.title()));
    reliability::print_table(
        &format!(
            "{title}: {} cells in {:.0} s{}",
            cells.len(),
            started.elapsed().as_secs_f64(),
            if full {
                ""
            } else {
                " (default subset; DEPLOYCTL_RELIABILITY_FULL=1 for all)"
            }
        ),
        &header,
        &rows,
    );
    let errors: BTreeMap<String, String> = cells
        .iter()
        .filter(|c| !c.error.is_empty())
        .map(|c| {
            (
                format!("{} × {}", c.stage, c.fault.title()),
                c.error.clone(),
            )
        })
        .collect();
    for (k, v) in &errors {
        println!("  {k}: {v}");
    }
    let failed: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            c.problem
                .as_ref()
                .map(|p| format!("{} × {}: {p}", c.stage, c.fault.title()))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} cells failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn lambda_stages_under_faults() {
    let Some(s) = reliability::services() else {
        return;
    };
    let h = LambdaHarness::start(s);
    matrix("Lambda (moto behind the proxy)", &h, "flt-l", LAMBDA);
}

#[test]
fn kubernetes_stages_under_faults() {
    let Some(s) = reliability::services() else {
        return;
    };
    let h = K8sHarness::start(s, false);
    matrix(
        "Kubernetes (the stand-in behind the proxy)",
        &h,
        "flt-k",
        K8S,
    );
}

#[test]
fn registry_push_under_faults() {
    let Some(s) = reliability::services() else {
        return;
    };
    let h = K8sHarness::start(s, true);
    matrix(
        "Registry (the push of a Kubernetes deploy through the proxy)",
        &h,
        "flt-r",
        REGISTRY,
    );
}
