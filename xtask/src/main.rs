//! `cargo xtask`: the project's automation.
//!
//! - `services up|down|status`: install (when missing) and run the real peers the
//!   integration tests use, on loopback: dockerd, docker-registry, moto_server.
//! - `fixtures`: build the statically linked fixture app (`fixtures/apps/hello`) and AWS
//!   Lambda Web Adapter (`target/fixtures/adapter/`, kept once built).
//! - `test [--down]`: services up + fixtures + `cargo test --workspace` with the services'
//!   addresses in the environment, then a short fuzz run. This is what CI runs.
//! - `demo`: the README's first command.
//! - `reliability`: the full fault matrix and kill -9 tests of `crates/deployctl/tests/`
//!   (`faults.rs`, `interrupt.rs`; plain `cargo test` runs a subset), tables printed.
//! - `fuzz [--time 60s] [TARGET...]`: the cargo-fuzz targets of `crates/deployctl-fuzz`
//!   (`test` runs each for 10 s after the tests; `DEPLOYCTL_FUZZ_SECONDS` changes that).

mod bench;
mod bench_all;
mod bench_build;
mod bench_k8s;
mod bench_lambda;
mod bench_latency;
mod bench_render;
mod bench_serve;
mod bench_workspace;
mod clients;
mod demo;
mod fixtures;
mod fuzz;
mod postgres;
mod reliability;
mod services;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<i32> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["services", "up"] => services::up().map(|_| 0),
        ["services", "down"] => services::down().map(|()| 0),
        ["services", "status"] => services::status().map(|()| 0),
        ["fixtures"] => fixtures::all(),
        ["test", rest @ ..] => test(rest),
        ["demo"] => demo::run(),
        ["bench", "lambda", "--latency", per_call] => bench_latency::run(per_call),
        ["bench", "workspace", rest @ ..] => bench_workspace::run(rest),
        ["bench", what] => bench::run_bench(what),
        ["fuzz", rest @ ..] => fuzz::cli(rest),
        ["reliability", rest @ ..] => reliability::run(rest),
        [] | ["help"] | ["--help"] | ["-h"] => {
            println!(
                "cargo xtask <command>\n\n  services up|down|status   run the test services on loopback\n  fixtures                  build the static fixture app\n  test [--down]             services up + fixtures + cargo test --workspace + a short fuzz run\n  demo                      init -> validate -> plan -> build on a copy of fixtures/apps/hello\n  bench build               deployctl build vs docker build, medians and ratio\n  bench lambda              deployctl deploy lambda vs an AWS CLI script against moto\n  bench render              deployctl render k8s vs helm template\n  bench k8s                 deployctl deploy k8s --apply vs helm upgrade --install --wait on the stand-in\n  bench all                 deploy all vs single targets, peak RSS, --version time\n  bench serve               deployctl serve: read latency while deployments run, POST to first event\n  bench workspace [--services N --jobs J --runs R]  deploy --workspace vs a shell loop of deploys\n  fuzz [--time 60s] [T...]  cargo-fuzz targets (config, dockerignore, image_ref, k8s_filters)\n  reliability               services up + the full fault matrix and every kill -9 boundary (tables printed)"
            );
            Ok(0)
        }
        other => bail!(
            "unknown command `{}`; run `cargo xtask help`",
            other.join(" ")
        ),
    }
}

fn test(rest: &[&str]) -> Result<i32> {
    let down = rest.contains(&"--down");
    let extra: Vec<&str> = rest.iter().copied().filter(|a| *a != "--down").collect();
    util::step("services up");
    let env = services::up()?;
    util::step("fixtures");
    fixtures::all()?;
    util::step("cargo test --workspace");
    let mut cmd = std::process::Command::new(util::cargo());
    cmd.current_dir(util::root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(&extra)
        .envs(env);
    let status = cmd.status()?;
    if down {
        util::step("services down");
        services::down()?;
    }
    if !status.success() {
        return Ok(status.code().unwrap_or(1));
    }
    util::step("fuzz (short run)");
    let outcomes = fuzz::short_run()?;
    if outcomes.is_some_and(|o| o.iter().any(|o| !o.failures.is_empty())) {
        eprintln!("xtask: the short fuzz run found failing inputs (listed above)");
        return Ok(1);
    }
    Ok(0)
}
