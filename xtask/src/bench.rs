//! `cargo xtask bench build`: `deployctl build` against `DOCKER_BUILDKIT=1 docker build` with
//! Debian's docker CLI 20.10 (same daemon, both through BuildKit's session file sync) on a
//! generated ~100 MB / 20 000-file context whose `.dockerignore` excludes half of it.
//! Alternating runs of each case (cold `--no-cache`, one file changed, nothing changed);
//! prints medians, ratios and what each build sent. Wall-clock figures belong here, never in
//! tests.

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
        "serve" => crate::bench_serve::serve(),
        other => {
            bail!("unknown benchmark `{other}`; available: build, lambda, render, k8s, all, serve")
        }
    }
}

/// The peer: Debian's docker CLI 20.10 (package docker.io), which has BuildKit without
/// buildx and serves the context through the session's file sync, as deployctl does. It is
/// not the `docker` first on PATH here (a newer CLI that needs buildx for BuildKit).
const PEER_CLI: &str = "/usr/bin/docker";

/// One measured build: its wall time and what it says it sent.
struct Run {
    took: Duration,
    sent: String,
}

/// One case: deployctl's and the peer's runs, alternating.
struct Case {
    name: &'static str,
    ours: Vec<Run>,
    theirs: Vec<Run>,
}

/// The bench's own dockerd (same binary and flags as the services' one, its own data root):
/// the CI case prunes the whole build cache, which must never happen on the engine other
/// work shares. Stopped (by its pid) and its data removed when dropped.
struct BenchEngine {
    child: std::process::Child,
    dir: PathBuf,
    host: String,
}

impl BenchEngine {
    fn start() -> Result<Self> {
        let dir = root().join("target/bench/dockerd");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let log = fs::File::create(dir.join("log"))?;
        let child = Command::new("dockerd")
            .args(["--storage-driver=vfs", "--iptables=false", "--bridge=none"])
            .arg("-H")
            .arg(&host)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start dockerd for the bench")?;
        let engine = Self { child, dir, host };
        let up = crate::util::wait_for(Duration::from_secs(60), || {
            Command::new(PEER_CLI)
                .args(["-H", &engine.host, "version"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !up {
            bail!(
                "the bench's dockerd (pid {}) did not answer on {} within 60 s; see {}",
                engine.child.id(),
                engine.host,
                engine.dir.join("log").display()
            );
        }
        Ok(engine)
    }
}

impl Drop for BenchEngine {
    fn drop(&mut self) {
        // SIGTERM, so that it stops its containerd too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(self.dir.join("data"));
    }
}

fn build() -> Result<i32> {
    let env = crate::services::up()?;
    step("starting the bench's own dockerd");
    let engine = BenchEngine::start()?;
    let host = engine.host.clone();
    let peer_version = Command::new(PEER_CLI)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {PEER_CLI} (Debian's docker.io package)"))?;
    let peer_version = String::from_utf8_lossy(&peer_version.stdout)
        .trim()
        .to_owned();
    if !peer_version.contains(" 20.10") {
        bail!("{PEER_CLI} is `{peer_version}`, not Debian's docker CLI 20.10");
    }
    // DEPLOYCTL_BENCH_BIN: measure that binary (e.g. one built from another checkout) instead
    // of building this one.
    let bin = match std::env::var_os("DEPLOYCTL_BENCH_BIN") {
        Some(b) => PathBuf::from(b),
        None => crate::util::release_binary()?,
    };
    let ctx = root().join("target/bench/build-context");
    step(&format!(
        "generating {FILES} files of {FILE_SIZE} bytes in {}",
        ctx.display()
    ));
    generate(&ctx)?;

    // The same labels deployctl adds (version, and created/revision from git: the context is
    // inside this work tree), so both tools build the same image.
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

    let ours = |extra: &[&str]| -> Result<Run> {
        let mut cmd = Command::new(&bin);
        cmd.arg("build")
            .args(extra)
            .current_dir(&ctx)
            .env("DOCKER_HOST", &host)
            .env_remove("DOCKER_BUILDKIT");
        let (took, text) = time_output(&mut cmd)?;
        Ok(Run {
            took,
            sent: ours_sent(&text),
        })
    };
    let theirs = |extra: &[&str]| -> Result<Run> {
        let mut cmd = Command::new(PEER_CLI);
        cmd.args([
            "-H",
            &host,
            "build",
            "--progress=plain",
            "-t",
            "bench/docker-cli:latest",
        ])
        .args(extra)
        .args(labels.iter().flat_map(|l| ["--label", l.as_str()]))
        .arg(".")
        .current_dir(&ctx)
        .env("DOCKER_BUILDKIT", "1");
        let (took, text) = time_output(&mut cmd)?;
        Ok(Run {
            took,
            sent: theirs_sent(&text),
        })
    };
    // The one file each tool finds changed since its own last build.
    let changing = ctx.join("keep/d000/f00000.bin");
    let mut generation = 0u64;
    let mut touch = || -> Result<()> {
        generation += 1;
        let mut data = fs::read(&changing)?;
        data[..8].copy_from_slice(&generation.to_le_bytes());
        fs::write(&changing, data)?;
        Ok(())
    };

    let mut cases = Vec::new();
    for name in ["cold --no-cache", "one file changed", "nothing changed"] {
        let mut case = Case {
            name,
            ours: Vec::new(),
            theirs: Vec::new(),
        };
        // Each tool builds once first, so the measured runs start from its own last sync.
        let no_cache: &[&str] = if name.starts_with("cold") {
            &["--no-cache"]
        } else {
            &[]
        };
        ours(&[])?;
        theirs(&[])?;
        for i in 0..RUNS {
            step(&format!("{name}: run {}/{RUNS}", i + 1));
            if name == "one file changed" {
                touch()?;
            }
            case.ours.push(ours(no_cache)?);
            if name == "one file changed" {
                touch()?;
            }
            case.theirs.push(theirs(no_cache)?);
            println!(
                "    deployctl {:.2}s ({})   docker {:.2}s ({})",
                secs(case.ours[i].took),
                case.ours[i].sent,
                secs(case.theirs[i].took),
                case.theirs[i].sent
            );
        }
        cases.push(case);
    }

    // CI: an engine with an empty cache, layers from an image pushed with inline cache.
    let registry = env
        .get("DEPLOYCTL_TEST_REGISTRY")
        .cloned()
        .context("services.env has no DEPLOYCTL_TEST_REGISTRY")?;
    let user = env
        .get("DEPLOYCTL_TEST_REGISTRY_USER")
        .cloned()
        .unwrap_or_default();
    let password = env
        .get("DEPLOYCTL_TEST_REGISTRY_PASSWORD")
        .cloned()
        .unwrap_or_default();
    let cache_ref = format!("{registry}/bench/build-cache:latest");
    let docker_config = root().join("target/bench/docker-config");
    fs::create_dir_all(&docker_config)?;
    let peer = || {
        let mut c = Command::new(PEER_CLI);
        c.arg("--config").arg(&docker_config).args(["-H", &host]);
        c
    };
    step(&format!("pushing {cache_ref} with inline cache"));
    let mut login = peer();
    login.args(["login", "-u", &user, "--password-stdin", &registry]);
    login_with(&mut login, &password)?;
    time_output(
        peer()
            .args([
                "build",
                "-q",
                "--build-arg",
                "BUILDKIT_INLINE_CACHE=1",
                "-t",
                &cache_ref,
                ".",
            ])
            .current_dir(&ctx)
            .env("DOCKER_BUILDKIT", "1"),
    )?;
    time_output(peer().args(["push", &cache_ref]))?;
    // A new CI runner: the bench engine's images and its whole build cache go (the engine
    // is the bench's own; nothing else uses it).
    let ours_repo = format!("{registry}/bench-build");
    let cache_repo = format!("{registry}/bench/build-cache");
    let fresh_engine = || -> Result<()> {
        let mut ids = Vec::new();
        for repo in [ours_repo.as_str(), "bench/docker-cli", cache_repo.as_str()] {
            if let Ok(o) = peer().args(["images", "-q", repo]).output() {
                ids.extend(
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_owned),
                );
            }
        }
        let _ = peer().args(["rmi", "-f", &cache_ref]).output();
        for id in ids {
            let _ = peer().args(["rmi", "-f", &id]).output();
        }
        time_output(peer().args(["builder", "prune", "-a", "-f"]))?;
        Ok(())
    };
    let ci_config = ctx.join("deploy.ci.yaml");
    fs::write(
        &ci_config,
        format!(
            "version: \"1.0\"\napp:\n  name: bench-build\n  version: \"1\"\nregistry:\n  url: {registry}\n  username: {user}\n  password: ${{BENCH_REGISTRY_PASSWORD}}\nbuild:\n  cache:\n    from: [{cache_ref}]\n"
        ),
    )?;
    let mut ci = Case {
        name: "CI cache-from",
        ours: Vec::new(),
        theirs: Vec::new(),
    };
    for i in 0..RUNS {
        step(&format!("CI cache-from: run {}/{RUNS}", i + 1));
        fresh_engine()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&ci_config)
            .arg("build")
            .current_dir(&ctx)
            .env("DOCKER_HOST", &host)
            .env("BENCH_REGISTRY_PASSWORD", &password)
            .env_remove("DOCKER_BUILDKIT");
        let (took, text) = time_output(&mut cmd)?;
        ci.ours.push(Run {
            took,
            sent: ours_sent(&text),
        });
        fresh_engine()?;
        let (took, text) = time_output(
            peer()
                .args(["build", "--progress=plain", "-t", "bench/docker-cli:latest"])
                .args(["--cache-from", &cache_ref])
                .args(labels.iter().flat_map(|l| ["--label", l.as_str()]))
                .arg(".")
                .current_dir(&ctx)
                .env("DOCKER_BUILDKIT", "1"),
        )?;
        ci.theirs.push(Run {
            took,
            sent: theirs_sent(&text),
        });
        println!(
            "    deployctl {:.2}s ({})   docker {:.2}s ({})",
            secs(ci.ours[i].took),
            ci.ours[i].sent,
            secs(ci.theirs[i].took),
            ci.theirs[i].sent
        );
    }
    cases.push(ci);

    println!(
        "\nbench build: {FILES} files, {} MB, half excluded by .dockerignore, `FROM scratch` + COPY, {RUNS} alternating runs each, same daemon\n  peer: DOCKER_BUILDKIT=1 {PEER_CLI} build ({peer_version}), same labels\n",
        FILES * FILE_SIZE / 1_000_000
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>7}   sent (deployctl | docker, last run)",
        "case", "deployctl", "docker", "ratio"
    );
    let mut cold = None;
    let mut ci = None;
    for case in &mut cases {
        let a = median(&mut case.ours.iter().map(|r| r.took).collect::<Vec<_>>());
        let b = median(&mut case.theirs.iter().map(|r| r.took).collect::<Vec<_>>());
        if case.name.starts_with("cold") {
            cold = Some((a, b));
        }
        if case.name.starts_with("CI") {
            ci = Some((a, b));
        }
        let target = match case.name {
            "cold --no-cache" => " (target <= 1.0)",
            "one file changed" => " (target <= 0.9)",
            _ => "",
        };
        println!(
            "  {:<18} {:>9.2}s {:>9.2}s {:>7.2}{target}   {} | {}",
            case.name,
            secs(a),
            secs(b),
            secs(a) / secs(b),
            case.ours.last().map_or("", |r| r.sent.as_str()),
            case.theirs.last().map_or("", |r| r.sent.as_str()),
        );
    }
    if let (Some((ours_cold, theirs_cold)), Some((ours_ci, theirs_ci))) = (cold, ci) {
        // The engine's own limit: the docker CLI's CI build against its own cold build.
        println!(
            "  CI cache-from / cold: deployctl {:.2} (target <= 0.5), docker {:.2}",
            secs(ours_ci) / secs(ours_cold),
            secs(theirs_ci) / secs(theirs_cold)
        );
    }
    Ok(0)
}

/// Runs `cmd` with `input` on its stdin (a login's password), failing with its output.
fn login_with(cmd: &mut Command, input: &str) -> Result<()> {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// What deployctl says it sent through the session (its event line), or `tar` when it did
/// not use one.
fn ours_sent(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            // `[   0.7s] build      sent 1 changed file(s), 5000 bytes, …`
            let (_, rest) = l.split_once(" sent ")?;
            let (files, rest) = rest.split_once(" changed file(s), ")?;
            let (bytes, _) = rest.split_once(" bytes")?;
            Some(format!("{files} files, {bytes} B"))
        })
        .unwrap_or_else(|| "tar".to_owned())
}

/// What BuildKit says it transferred of the context (`transferring context: 1.2MB`).
fn theirs_sent(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| {
            let (_, rest) = l.split_once("transferring context: ")?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// Runs `cmd`; its wall time and its stdout and stderr, or its output as the error when it
/// fails.
fn time_output(cmd: &mut Command) -> Result<(Duration, String)> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let took = start.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{cmd:?} failed: {text}");
    }
    Ok((took, text))
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
