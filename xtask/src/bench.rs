//! `cargo xtask bench build`: `deployctl build` against `docker build` (the docker CLI, same
//! daemon, same classic builder) on a generated ~100 MB / 20 000-file context whose
//! `.dockerignore` excludes half of it. Alternating runs, `--no-cache` for both; prints
//! medians and the ratio. Wall-clock figures belong here, never in tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

const FILES: usize = 20_000;
const FILE_SIZE: usize = 5_000;
const RUNS: usize = 5;

pub fn run_bench(what: &str) -> Result<i32> {
    match what {
        "build" => build(),
        "lambda" => crate::bench_lambda::lambda(),
        "render" => crate::bench_render::render(),
        "k8s" => crate::bench_k8s::k8s(),
        "all" => crate::bench_all::all(),
        other => bail!("unknown benchmark `{other}`; available: build, lambda, render, k8s, all"),
    }
}

fn build() -> Result<i32> {
    let env = crate::services::up()?;
    let host = env
        .get("DEPLOYCTL_TEST_DOCKER_HOST")
        .cloned()
        .context("services.env has no DEPLOYCTL_TEST_DOCKER_HOST")?;
    let bin = crate::util::release_binary()?;
    let ctx = root().join("target/bench/build-context");
    step(&format!(
        "generating {FILES} files of {FILE_SIZE} bytes in {}",
        ctx.display()
    ));
    generate(&ctx)?;

    // The same labels deployctl adds (version, and created/revision from git: the context is
    // inside this work tree), so both tools build the same image. The peer is the docker CLI's
    // classic builder: without the buildx plugin (not packaged with Debian's docker.io) it has
    // no other. deployctl uses BuildKit on this engine, which sets labels without a step.
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&ctx)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let mut labels = vec!["org.opencontainers.image.version=1".to_owned()];
    if let Some(rev) = git(&["rev-parse", "HEAD"]) {
        labels.push(format!("org.opencontainers.image.revision={rev}"));
    }
    if let Some(at) = git(&["log", "-1", "--format=%cI"]) {
        labels.push(format!("org.opencontainers.image.created={at}"));
    }
    let label_args: Vec<String> = labels
        .iter()
        .flat_map(|l| ["--label".to_owned(), l.clone()])
        .collect();

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..RUNS {
        step(&format!("run {}/{RUNS}", i + 1));
        ours.push(time(
            Command::new(&bin)
                .args(["build", "--no-cache"])
                .current_dir(&ctx)
                .env("DOCKER_HOST", &host),
        )?);
        theirs.push(time(
            Command::new("docker")
                .args([
                    "-H",
                    &host,
                    "build",
                    "--no-cache",
                    "-q",
                    "-t",
                    "bench/docker-cli:latest",
                ])
                .args(&label_args)
                .arg(".")
                .current_dir(&ctx)
                .env("DOCKER_BUILDKIT", "0"),
        )?);
        println!(
            "    deployctl {:.2}s   docker {:.2}s",
            secs(ours[i]),
            secs(theirs[i])
        );
    }
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "\nbench build: {FILES} files, {} MB, half excluded by .dockerignore, --no-cache, {RUNS} alternating runs each\n  deployctl build  median {:.2}s\n  docker build     median {:.2}s (docker CLI, classic builder: the only one it has without buildx; same daemon, same labels)\n  ratio deployctl/docker = {:.2} (target <= 1.0)",
        FILES * FILE_SIZE / 1_000_000,
        secs(a),
        secs(b),
        secs(a) / secs(b)
    );
    Ok(0)
}

fn generate(ctx: &Path) -> Result<()> {
    let marker = ctx.join(".complete");
    if marker.is_file() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(ctx);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..FILES {
        // Half in keep/, half in drop/; 100 files per directory.
        let half = if i % 2 == 0 { "keep" } else { "drop" };
        let dir: PathBuf = ctx.join(half).join(format!("d{:03}", (i / 2) / 100));
        fs::create_dir_all(&dir)?;
        let mut data = vec![0u8; FILE_SIZE];
        for b in &mut data {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = (state & 0xff) as u8;
        }
        fs::write(dir.join(format!("f{i:05}.bin")), data)?;
    }
    fs::write(ctx.join(".dockerignore"), "drop\n")?;
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY keep /keep\n")?;
    fs::write(
        ctx.join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: bench-build\n  version: \"1\"\n",
    )?;
    fs::write(marker, "")?;
    Ok(())
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

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
