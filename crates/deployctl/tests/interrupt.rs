//! Interrupted deploys converge: deployctl is killed with SIGKILL at each stage boundary of
//! a first deploy, then run again. The moment is chosen with the fault proxy, not with
//! sleeps: the proxy stalls one call (the answer of a call the service carried out, or a
//! request before it reaches the service) and says when it arrived; the test then kills
//! deployctl, lets the call go (or drops it), and re-runs the deploy. The re-run must exit 0
//! and leave exactly one of each resource (no second HTTP API, role, alias or history
//! revision), and `destroy` must then leave nothing of the app in moto or the stand-in.
//!
//! By default a few boundaries per target run; `DEPLOYCTL_RELIABILITY_FULL=1`
//! (`cargo xtask reliability`) runs every boundary, both ways. Each test prints its table.

#![allow(clippy::unwrap_used)] // integration tests: a failure here is a test failure

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::sync::Arc;
use std::time::Duration;

use deployctl_testsupport::faults::{Effect, Match, Request, Rule, When};
use reliability::{Harness, K8sHarness, LambdaHarness, Run, Running, run};

/// The longest one run may take. A killed deploy may leave its deploy lock behind; a
/// re-run may wait for that lease to expire (60 s) before it goes on.
const LIMIT: Duration = Duration::from_secs(150);

/// How long until the stalled call must have arrived.
const REACH: Duration = Duration::from_secs(90);

/// Where the kill falls relative to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// The service carried the call out; deployctl never saw the answer.
    AfterCall,
    /// The request never reached the service.
    BeforeCall,
}

impl Moment {
    fn effect(self) -> Effect {
        match self {
            Moment::AfterCall => Effect::StallResponse,
            Moment::BeforeCall => Effect::StallRequest,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Moment::AfterCall => "killed after the call",
            Moment::BeforeCall => "killed before the call",
        }
    }
}

struct Boundary {
    name: &'static str,
    matcher: fn() -> Match,
    /// Which occurrence of the matching call.
    nth: usize,
    /// In the default run (killed after the call).
    default: bool,
}

fn op(o: &str) -> Match {
    Match::op(o)
}

const LAMBDA: &[Boundary] = &[
    Boundary {
        name: "ecr:CreateRepository",
        matcher: || op("ecr:CreateRepository"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "iam:CreateRole",
        matcher: || op("iam:CreateRole"),
        nth: 1,
        default: true,
    },
    Boundary {
        name: "lambda:CreateFunction",
        matcher: || op("lambda:CreateFunction"),
        nth: 1,
        default: true,
    },
    Boundary {
        name: "lambda:GetFunction (waiter)",
        matcher: || op("lambda:GetFunction").after(op("lambda:CreateFunction")),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "lambda:PublishVersion",
        matcher: || op("lambda:PublishVersion"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "lambda:CreateAlias",
        matcher: || op("lambda:CreateAlias"),
        nth: 1,
        default: true,
    },
    Boundary {
        name: "logs:CreateLogGroup",
        matcher: || op("logs:CreateLogGroup"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "apigateway:CreateApi",
        matcher: || op("apigateway:CreateApi"),
        nth: 1,
        default: true,
    },
    Boundary {
        name: "apigateway:CreateIntegration",
        matcher: || op("apigateway:CreateIntegration"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "apigateway:CreateRoute",
        matcher: || op("apigateway:CreateRoute"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "apigateway:CreateStage",
        matcher: || op("apigateway:CreateStage"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "lambda:AddPermission",
        matcher: || op("lambda:AddPermission"),
        nth: 1,
        default: true,
    },
];

fn history_write() -> Match {
    Match::Fn(Arc::new(|r: &Request| {
        r.service == "k8s" && r.method != "GET" && r.path.contains("-deployctl-history")
    }))
}

const K8S: &[Boundary] = &[
    Boundary {
        name: "create namespaces",
        matcher: || op("k8s:create namespaces"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "history write (pending)",
        matcher: history_write,
        nth: 1,
        default: true,
    },
    Boundary {
        name: "apply configmaps",
        matcher: || op("k8s:apply configmaps"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "apply deployments",
        matcher: || op("k8s:apply deployments"),
        nth: 1,
        default: true,
    },
    Boundary {
        name: "apply services",
        matcher: || op("k8s:apply services"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "watch deployments (rollout wait)",
        matcher: || op("k8s:watch deployments"),
        nth: 1,
        default: true,
    },
    Boundary {
        name: "get services/proxy (verify)",
        matcher: || op("k8s:get services/proxy"),
        nth: 1,
        default: false,
    },
    Boundary {
        name: "history write (good)",
        matcher: history_write,
        nth: 2,
        default: true,
    },
];

/// What one kill showed.
struct Outcome {
    boundary: &'static str,
    moment: Moment,
    shown: String,
    problem: Option<String>,
}

fn kill_at(
    h: &dyn Harness,
    prefix: &str,
    b: &Boundary,
    moment: Moment,
    wait_out_lock: bool,
) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let name = reliability::unique(prefix);
    let app = reliability::app_in(tmp.path(), &h.yaml(&name));
    let proxy = h.proxy();
    proxy.clear_rules();
    proxy.reset();
    proxy.push(Rule::new((b.matcher)(), When::Nth(b.nth), moment.effect()));
    let mut problems: Vec<(&str, String)> = Vec::new();

    let mut first = Running::start(&mut h.cmd(&app, &h.deploy_args()));
    let stalled = proxy.wait_for_stall(REACH);
    first.kill9();
    let killed: Run = first.finish(Duration::from_secs(10));
    proxy.clear_rules();
    match moment {
        Moment::AfterCall => proxy.release(),
        Moment::BeforeCall => proxy.drop_stalled(),
    }
    if !proxy.wait_idle(Duration::from_secs(30)) {
        problems.push(("proxy not idle", "a request is still in progress".into()));
    }
    if stalled.is_none() {
        problems.push((
            "boundary not reached",
            format!(
                "no {} within {} s: {}",
                b.name,
                REACH.as_secs(),
                killed.all()
            ),
        ));
    }
    if killed.code.is_some() {
        problems.push((
            "not killed",
            format!("the run ended by itself: {}", killed.all()),
        ));
    }

    // The killed run's deploy lock stays until its lease expires (60 s); `unlock` breaks
    // it, as a person who knows the run is dead would. `wait_out_lock`: the re-run waits.
    if !wait_out_lock {
        let unlock = run(&mut h.cmd(&app, &["unlock", h.target()]), LIMIT);
        if unlock.code != Some(0) {
            problems.push(("unlock failed", unlock.error_line()));
        }
    }
    let rerun = run(&mut h.cmd(&app, &h.deploy_args()), LIMIT);
    let shown_rerun = format!(
        "{}re-run exit {} ({:.0} s)",
        if wait_out_lock {
            "no unlock, "
        } else {
            "unlock, "
        },
        rerun.code.map_or_else(|| "-".to_owned(), |c| c.to_string()),
        rerun.took.as_secs_f64()
    );
    if rerun.code != Some(0) {
        problems.push(("re-run failed", rerun.error_line()));
        eprintln!("{} / {}: {}", b.name, moment.title(), rerun.all());
    } else {
        let wrong = h.not_one_of_each(&name, false);
        if !wrong.is_empty() {
            problems.push(("not one of each", wrong.join(", ")));
        }
    }
    let destroy = run(&mut h.cmd(&app, &h.destroy_args()), LIMIT);
    if destroy.code != Some(0) {
        problems.push(("destroy failed", destroy.error_line()));
        eprintln!("{} / {} destroy: {}", b.name, moment.title(), destroy.all());
    }
    let left = h.left(&name);
    if !left.is_empty() {
        problems.push(("left after destroy", left.join(", ")));
    }
    let (shown, problem) = if problems.is_empty() {
        (
            format!("{shown_rerun}, one of each, destroy leaves nothing"),
            None,
        )
    } else {
        let tags: Vec<&str> = problems.iter().map(|(t, _)| *t).collect();
        let details: Vec<String> = problems.iter().map(|(t, d)| format!("{t}: {d}")).collect();
        (
            format!("FAIL: {}", tags.join(", ")),
            Some(details.join("; ")),
        )
    };
    Outcome {
        boundary: b.name,
        moment,
        shown,
        problem,
    }
}

fn kill_everywhere(title: &str, h: &dyn Harness, prefix: &str, boundaries: &[Boundary]) {
    let full = reliability::full();
    let started = std::time::Instant::now();
    let moments: &[Moment] = if full {
        &[Moment::AfterCall, Moment::BeforeCall]
    } else {
        &[Moment::AfterCall]
    };
    let mut outcomes = Vec::new();
    // Once (in the full run), the re-run waits the dead run's lease out: at the first
    // default boundary, which comes after the lock is taken.
    let waits = boundaries.iter().position(|b| b.default);
    for (i, b) in boundaries
        .iter()
        .enumerate()
        .filter(|(_, b)| full || b.default)
    {
        for (j, m) in moments.iter().enumerate() {
            let wait_out_lock = full && Some(i) == waits && j == 0;
            outcomes.push(kill_at(h, prefix, b, *m, wait_out_lock));
        }
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.boundary.to_owned(),
                o.moment.title().to_owned(),
                o.shown.clone(),
            ]
        })
        .collect();
    reliability::print_table(
        &format!(
            "{title}: {} kills in {:.0} s{}",
            outcomes.len(),
            started.elapsed().as_secs_f64(),
            if full {
                ""
            } else {
                " (default subset; DEPLOYCTL_RELIABILITY_FULL=1 for all)"
            }
        ),
        &["stage boundary", "SIGKILL", "then"],
        &rows,
    );
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.problem
                .as_ref()
                .map(|p| format!("{} / {}: {p}", o.boundary, o.moment.title()))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} kills did not converge:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn lambda_killed_at_each_stage_boundary_converges() {
    let Some(s) = reliability::services() else {
        return;
    };
    let h = LambdaHarness::start(s);
    kill_everywhere("Lambda, kill -9 then re-run", &h, "kill-l", LAMBDA);
}

#[test]
fn kubernetes_killed_at_each_stage_boundary_converges() {
    let Some(s) = reliability::services() else {
        return;
    };
    let h = K8sHarness::start(s, false);
    kill_everywhere("Kubernetes, kill -9 then re-run", &h, "kill-k", K8S);
}

/// Killed while waiting for a rollout that fails (the pods crash): the re-run must not
/// report success because the manifests are unchanged; it waits for the rollout again and
/// fails (exit 1), naming it, and the history records the revision as failed.
#[test]
fn kubernetes_killed_during_a_failing_rollout_then_the_rerun_fails() {
    let Some(s) = reliability::services() else {
        return;
    };
    let h = K8sHarness::start(s, false);
    let tmp = tempfile::tempdir().unwrap();
    let name = reliability::unique("kill-kf");
    let app = reliability::app_in(tmp.path(), &h.yaml(&name));
    h.standin
        .set_behavior(&name, deployctl_kube_standin::Behavior::CrashLoopBackOff);
    h.proxy.push(Rule::new(
        op("k8s:watch deployments"),
        When::Nth(1),
        Effect::StallResponse,
    ));
    let mut first = Running::start(&mut h.cmd(&app, &h.deploy_args()));
    let stalled = h.proxy.wait_for_stall(REACH);
    first.kill9();
    let killed = first.finish(Duration::from_secs(10));
    h.proxy.clear_rules();
    h.proxy.release();
    assert!(
        stalled.is_some(),
        "the rollout wait never began: {}",
        killed.all()
    );
    let unlock = run(&mut h.cmd(&app, &["unlock", "k8s"]), LIMIT);
    assert_eq!(unlock.code, Some(0), "{}", unlock.all());

    let rerun = run(&mut h.cmd(&app, &["deploy", "k8s", "--no-rollback"]), LIMIT);
    assert_eq!(rerun.code, Some(1), "{}", rerun.all());
    assert!(rerun.stderr.contains("rollout"), "{}", rerun.all());
    let states = reliability::history_states(&h.standin.url(), &name, &name);
    assert_eq!(states, ["failed"], "{}", rerun.all());
    let destroy = run(&mut h.cmd(&app, &h.destroy_args()), LIMIT);
    assert_eq!(destroy.code, Some(0), "{}", destroy.all());
    assert_eq!(h.left(&name), Vec::<String>::new());
}
