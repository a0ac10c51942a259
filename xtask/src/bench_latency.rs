//! `cargo xtask bench lambda --latency 40ms`: `bench lambda` with a fixed latency added to
//! every AWS call, by the fault proxy of `deployctl-testsupport` put between the tools and
//! moto (the same `AWS_ENDPOINT_URL` for deployctl and the AWS CLI script).
//!
//! deployctl's wall time is compared with its own critical-path bound, computed from the
//! proxy's timed call log: each call is a node; it depends on an earlier call when the
//! [`DEPENDS`] table says its operation needs that one's (and the earlier call had answered
//! before it was sent). The bound is the costliest chain: per call the added latency plus
//! moto's own time for it (the proxy's time to the answer minus the latency it added).
//! Repeated operations (the waiter's `GetFunction` polls) are links of their own, as many as
//! the log shows.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deployctl_testsupport::faults::{Call, Effect, Match, Protocol, Proxy, Rule, When};

use crate::bench_lambda::{SCRIPT_DEPLOY, SCRIPT_REDEPLOY, Setup, median};
use crate::util::{root, step};

const RUNS: usize = 5;

/// Parses `40ms`, `0.04s`, `40` (milliseconds).
fn parse_latency(s: &str) -> Result<Duration> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("--latency {s}: expected e.g. 40ms"))?;
    if !(0.0..=10.0).contains(&(v * scale)) {
        bail!("--latency {s}: expected between 0 and 10 s");
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// A call of the log, as the bound sees it.
#[derive(Debug, Clone)]
struct Link {
    label: String,
    start: Duration,
    end: Duration,
    /// Moto's (and the proxy's) own time: time to the answer minus the added latency.
    service: Duration,
}

fn links(calls: &[Call], latency: Duration) -> Vec<Link> {
    calls
        .iter()
        .filter(|c| {
            matches!(
                c.request.protocol,
                Protocol::AwsJson | Protocol::AwsQuery | Protocol::AwsRest
            )
        })
        .map(|c| {
            let took = c.took.unwrap_or_default();
            Link {
                label: c.request.label(),
                start: c.at,
                end: c.at + took,
                service: took.saturating_sub(latency),
            }
        })
        .collect()
}

fn dump(calls: &[Link], phases: &[&str], path: &std::path::Path) -> Result<()> {
    let mut out = String::new();
    for (c, p) in calls.iter().zip(phases) {
        let _ = writeln!(
            out,
            "{:>8.1} {:>8.1} {:>6.1}  {p:<8} {}",
            c.start.as_secs_f64() * 1e3,
            c.end.as_secs_f64() * 1e3,
            c.service.as_secs_f64() * 1e3,
            c.label
        );
    }
    fs::write(path, out)?;
    Ok(())
}

/// Which step of a deploy a call belongs to, from its place in the log: `plan` (the plan's
/// reads, before the lock), `lock` (SSM, taking the deploy lock), `observe` (the apply's
/// reads under the lock, up to its first write), `apply` (the writes and what they wait
/// for, the verification's invoke), `release` (SSM, giving the lock back). The AWS CLI
/// script's calls are all `apply`.
fn phases(calls: &[Link]) -> Vec<&'static str> {
    let ssm = |c: &Link| c.label.starts_with("ssm:");
    let read = |c: &Link| {
        let op = c.label.split_once(':').map_or("", |(_, o)| o);
        ["Get", "List", "Describe"]
            .iter()
            .any(|p| op.starts_with(p))
    };
    let Some(first_ssm) = calls.iter().position(ssm) else {
        return vec!["apply"; calls.len()];
    };
    let last_other = calls.iter().rposition(|c| !ssm(c)).unwrap_or(0);
    let mut out = Vec::with_capacity(calls.len());
    let mut phase = "plan";
    for (i, c) in calls.iter().enumerate() {
        phase = match phase {
            _ if i > last_other && ssm(c) && phase != "plan" && phase != "lock" => "release",
            "plan" if i >= first_ssm => "lock",
            "lock" if !ssm(c) => {
                if read(c) {
                    "observe"
                } else {
                    "apply"
                }
            }
            "observe" if !read(c) => "apply",
            p => p,
        };
        out.push(phase);
    }
    out
}

/// The dependencies, as data: `(call, [what it needs])`. A call is `"phase service:Operation"`;
/// in a pattern `*` is any phase or operation and `=` the calling call's own phase. A call
/// depends on every earlier call, answered before it was sent, that matches one of its
/// needs; the first row that matches the call applies. Taken from `deployctl-aws`
/// (observe.rs, apply.rs, lock.rs) and the core pipeline:
///
/// - reads: the role's policies after `GetRole`; the alias, versions and concurrency after
///   `GetFunction` (read only when it exists); policy and URL after `GetAlias`; an API's
///   integrations, routes, stages after `GetApis`; the rest of a round independent.
/// - the lock after the plan (the pipeline applies only a plan that succeeded), its steps
///   one after another; the apply's reads after the lock; every write after all of them
///   (the diff needs the whole observation).
/// - role (create, then attach) → function (create or update code → wait → configuration →
///   wait; each waiter poll after the previous one) → version → alias; after the alias: the
///   API (create → integration → route; stage after the API), the log group, concurrency,
///   and the permission (`GetPolicy` for its revision after the alias and the API's id, then
///   `AddPermission`); the verification's invoke after everything; the release last.
const DEPENDS: &[(&str, &[&str])] = &[
    // Reads (the same in plan and observe; `=`: of the same round).
    (
        "* iam:ListAttachedRolePolicies",
        &["= iam:GetRole", "lock *"],
    ),
    ("* iam:ListRolePolicies", &["= iam:GetRole", "lock *"]),
    ("* iam:GetRolePolicy", &["= iam:ListRolePolicies"]),
    (
        "* lambda:GetFunctionConcurrency",
        &["= lambda:GetFunction", "lock *"],
    ),
    (
        "* lambda:ListVersionsByFunction",
        &["= lambda:GetFunction", "lock *"],
    ),
    ("* lambda:GetAlias", &["= lambda:GetFunction", "lock *"]),
    ("plan lambda:GetPolicy", &["= lambda:GetAlias"]),
    ("observe lambda:GetPolicy", &["= lambda:GetAlias"]),
    ("plan lambda:GetFunctionUrlConfig", &["= lambda:GetAlias"]),
    (
        "observe lambda:GetFunctionUrlConfig",
        &["= lambda:GetAlias"],
    ),
    ("plan apigateway:GetIntegrations", &["= apigateway:GetApis"]),
    (
        "observe apigateway:GetIntegrations",
        &["= apigateway:GetApis"],
    ),
    ("plan apigateway:GetRoutes", &["= apigateway:GetApis"]),
    ("observe apigateway:GetRoutes", &["= apigateway:GetApis"]),
    ("plan apigateway:GetStages", &["= apigateway:GetApis"]),
    ("observe apigateway:GetStages", &["= apigateway:GetApis"]),
    ("plan *", &[]),
    ("lock *", &["plan *", "lock *"]),
    ("observe *", &["lock *"]),
    // Writes.
    ("apply iam:CreateRole", &["observe *", "lock *"]),
    (
        "apply iam:AttachRolePolicy",
        &["apply iam:CreateRole", "observe *", "lock *"],
    ),
    (
        "apply lambda:CreateFunction",
        &[
            "apply iam:CreateRole",
            "apply iam:AttachRolePolicy",
            "observe *",
            "lock *",
        ],
    ),
    (
        "apply lambda:UpdateFunctionCode",
        &["apply iam:*", "observe *", "lock *"],
    ),
    (
        "apply lambda:UpdateFunctionConfiguration",
        &[
            "apply lambda:UpdateFunctionCode",
            "apply lambda:GetFunction",
            "apply iam:*",
            "observe *",
            "lock *",
        ],
    ),
    // The waiters' polls: after the write they wait for, and after the previous poll.
    (
        "apply lambda:GetFunction",
        &[
            "apply lambda:CreateFunction",
            "apply lambda:UpdateFunctionCode",
            "apply lambda:UpdateFunctionConfiguration",
            "apply lambda:GetFunction",
        ],
    ),
    (
        "apply lambda:PublishVersion",
        &[
            "apply lambda:GetFunction",
            "apply lambda:CreateFunction",
            "apply lambda:Update*",
            "observe *",
            "lock *",
        ],
    ),
    (
        "apply lambda:CreateAlias",
        &["apply lambda:PublishVersion", "observe *", "lock *"],
    ),
    (
        "apply lambda:UpdateAlias",
        &[
            "apply lambda:PublishVersion",
            "apply lambda:GetAlias",
            "observe *",
            "lock *",
        ],
    ),
    ("apply lambda:GetAlias", &["apply lambda:CreateAlias"]),
    (
        "apply apigateway:CreateApi",
        &["apply lambda:*Alias", "observe *", "lock *"],
    ),
    (
        "apply apigateway:CreateIntegration",
        &[
            "apply apigateway:CreateApi",
            "apply lambda:*Alias",
            "observe *",
        ],
    ),
    (
        "apply apigateway:UpdateIntegration",
        &["apply lambda:*Alias", "observe *"],
    ),
    (
        "apply apigateway:CreateRoute",
        &["apply apigateway:*Integration", "observe *"],
    ),
    (
        "apply apigateway:UpdateRoute",
        &["apply apigateway:*Integration", "observe *"],
    ),
    (
        "apply apigateway:CreateStage",
        &[
            "apply apigateway:CreateApi",
            "apply lambda:*Alias",
            "observe *",
        ],
    ),
    (
        "apply apigateway:UpdateStage",
        &["apply lambda:*Alias", "observe *"],
    ),
    (
        "apply logs:CreateLogGroup",
        &[
            "apply lambda:*Alias",
            "apply lambda:CreateFunction",
            "observe *",
            "lock *",
        ],
    ),
    (
        "apply lambda:PutFunctionConcurrency",
        &["apply lambda:*Alias", "observe *"],
    ),
    (
        "apply lambda:GetPolicy",
        &[
            "apply lambda:*Alias",
            "apply apigateway:CreateApi",
            "apply lambda:*Permission",
            "observe *",
        ],
    ),
    ("apply lambda:RemovePermission", &["apply lambda:GetPolicy"]),
    ("apply lambda:AddPermission", &["apply lambda:GetPolicy"]),
    // The endpoint looked up again when the create did not return it.
    ("apply apigateway:GetApis", &["apply apigateway:*"]),
    // Verification: the alias invoked once the deploy is done; retries one after another.
    ("apply lambda:Invoke", &["apply *", "observe *", "lock *"]),
    ("release *", &["*"]),
    // Anything not named above: after the observation (a write needs the diff).
    ("apply *", &["observe *", "lock *"]),
];

/// `pattern` (`*` anywhere in an operation: any text) matches `text`.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|k| glob(tail, &text[head.len() + k..]))
        }
    }
}

/// Whether call `(phase, label)` matches `pattern` (`own`: the calling call's phase, for `=`).
fn matches(pattern: &str, phase: &str, label: &str, own: &str) -> bool {
    let (pp, op) = pattern.split_once(' ').unwrap_or((pattern, "*"));
    let phase_ok = match pp {
        "*" => true,
        "=" => phase == own,
        p => p == phase,
    };
    phase_ok && glob(op, label)
}

/// The critical path of a call log: (calls on it, its cost = calls × latency + their
/// service times, the chain's labels).
fn critical_path(calls: &[Link], latency: Duration) -> (usize, Duration, Vec<String>) {
    let phase = phases(calls);
    // Per call: (cost of the costliest chain ending with it, its length, predecessor).
    let mut best: Vec<(Duration, usize, Option<usize>)> = Vec::with_capacity(calls.len());
    for (i, c) in calls.iter().enumerate() {
        let needs = DEPENDS
            .iter()
            .find(|(who, _)| matches(who, phase[i], &c.label, phase[i]))
            .map_or(&[][..], |(_, n)| *n);
        let mut pred: Option<usize> = None;
        for j in 0..i {
            let e = &calls[j];
            if e.end > c.start
                || !needs
                    .iter()
                    .any(|n| matches(n, phase[j], &e.label, phase[i]))
            {
                continue;
            }
            if pred.is_none_or(|p| best[j].0 > best[p].0) {
                pred = Some(j);
            }
        }
        let own = latency + c.service;
        best.push(match pred {
            Some(p) => (best[p].0 + own, best[p].1 + 1, Some(p)),
            None => (own, 1, None),
        });
    }
    let Some(last) = (0..calls.len()).max_by_key(|&i| best[i].0) else {
        return (0, Duration::ZERO, Vec::new());
    };
    let mut chain = Vec::new();
    let mut at = Some(last);
    while let Some(i) = at {
        chain.push(format!("{} {}", phase[i], calls[i].label));
        at = best[i].2;
    }
    chain.reverse();
    (best[last].1, best[last].0, chain)
}

/// One measured deploy.
struct Measured {
    wall: Duration,
    bound: Duration,
    chain: usize,
    calls: usize,
    mutating: usize,
}

pub fn run(per_call: &str) -> Result<i32> {
    let latency = parse_latency(per_call)?;
    let (setup, moto) = Setup::new("lambda-latency")?;
    let proxy = Proxy::start(&moto)?;
    proxy.push(Rule::new(Match::Any, When::Every, Effect::Latency(latency)));
    let endpoint = proxy.url();
    let logs = root().join("target/bench/lambda-latency/calls");
    fs::create_dir_all(&logs)?;
    let stamp = setup.stamp;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    let (mut first, mut again) = (Vec::new(), Vec::new());
    let (mut script_first, mut script_again) = (Vec::new(), Vec::new());
    let mut chains = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        step(&format!("run {}/{RUNS}", i + 1));
        setup.write_config(&format!("bench-l{stamp}-{i}"))?;
        let ours = |kind: &str| -> Result<(Measured, Vec<String>)> {
            proxy.reset();
            let (wall, mutating) = setup.deploy(&endpoint)?;
            if !proxy.wait_idle(Duration::from_secs(10)) {
                bail!("the proxy still has calls in progress after the deploy");
            }
            let calls = links(&proxy.calls(), latency);
            let (chain, bound, path) = critical_path(&calls, latency);
            dump(
                &calls,
                &phases(&calls),
                &logs.join(format!("deployctl-{kind}-{i}.log")),
            )?;
            Ok((
                Measured {
                    wall,
                    bound,
                    chain,
                    calls: calls.len(),
                    mutating,
                },
                path,
            ))
        };
        let (f, fp) = ours("first")?;
        let (a, ap) = ours("again")?;
        let fname = format!("bench-ls{stamp}-{i}");
        let theirs = |body: &str, kind: &str| -> Result<(Duration, usize)> {
            proxy.reset();
            let wall = setup.script(body, &fname, &endpoint)?;
            proxy.wait_idle(Duration::from_secs(10));
            let calls = links(&proxy.calls(), latency);
            dump(
                &calls,
                &phases(&calls),
                &logs.join(format!("script-{kind}-{i}.log")),
            )?;
            Ok((wall, calls.len()))
        };
        let sf = theirs(SCRIPT_DEPLOY, "first")?;
        let sa = theirs(SCRIPT_REDEPLOY, "again")?;
        println!(
            "    deployctl first {:.0} ms (bound {:.0}, {} links) again {:.0} ms (bound {:.0}, {} links)   aws cli script first {:.0} ms again {:.0} ms",
            ms(f.wall),
            ms(f.bound),
            f.chain,
            ms(a.wall),
            ms(a.bound),
            a.chain,
            ms(sf.0),
            ms(sa.0)
        );
        first.push(f);
        again.push(a);
        script_first.push(sf);
        script_again.push(sa);
        chains = (fp, ap);
    }

    let row = |name: &str, v: &[Measured], script: &[(Duration, usize)]| {
        let wall = median(&v.iter().map(|m| m.wall).collect::<Vec<_>>());
        let bound = median(&v.iter().map(|m| m.bound).collect::<Vec<_>>());
        let mut ratios: Vec<f64> = v
            .iter()
            .map(|m| m.wall.as_secs_f64() / m.bound.as_secs_f64().max(1e-9))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
        let swall = median(&script.iter().map(|s| s.0).collect::<Vec<_>>());
        let last = v.last();
        println!(
            "  {name:<19} {:>8.0} {:>8.0} {:>6} {:>10.2} {:>6} {:>5} {:>11.0} {:>6} {:>12.3}",
            wall * 1e3,
            bound * 1e3,
            last.map_or(0, |m| m.chain),
            ratio,
            last.map_or(0, |m| m.calls),
            last.map_or(0, |m| m.mutating),
            swall * 1e3,
            script.last().map_or(0, |s| s.1),
            wall / swall.max(1e-9),
        );
    };
    println!(
        "\nbench lambda --latency {per_call}: {} ms added to every AWS call by a proxy in front of moto (both tools), {RUNS} alternating runs, medians
  bound = the longest chain of dependent calls in deployctl's call log x {} ms + moto's own time for those calls; ratio = median of per-run wall/bound (target <= 1.3)
  {:<19} {:>8} {:>8} {:>6} {:>10} {:>6} {:>5} {:>11} {:>6} {:>12}",
        ms(latency),
        ms(latency),
        "",
        "wall ms",
        "bound ms",
        "links",
        "wall/bound",
        "calls",
        "mut",
        "aws cli ms",
        "calls",
        "deployctl/cli"
    );
    row("full first deploy", &first, &script_first);
    row("unchanged redeploy", &again, &script_again);
    println!(
        "  critical path of the last first deploy: {}\n  critical path of the last redeploy: {}\n  call logs (start ms, end ms, moto ms, phase, call): {}",
        chains.0.join(" -> "),
        chains.1.join(" -> "),
        logs.display()
    );
    Ok(0)
}
