//! `cargo xtask bench <what>`: which benchmark to run, and the timing helper they share.
//! Wall-clock figures belong in benchmarks, never in tests.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub fn run_bench(what: &str) -> Result<i32> {
    match what {
        "build" => crate::bench_build::build(),
        "lambda" => crate::bench_lambda::lambda(),
        "render" => crate::bench_render::render(),
        "k8s" => crate::bench_k8s::k8s(),
        "all" => crate::bench_all::all(),
        "serve" => crate::bench_serve::serve(),
        other => {
            bail!("unknown benchmark `{other}`; available: build, lambda, render, k8s, all, serve")
        }
    }
}

/// Runs `cmd`; its wall time, or its output as the error when it fails.
pub(crate) fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}
