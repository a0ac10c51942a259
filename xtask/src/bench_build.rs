//! `cargo xtask bench build`: `deployctl build` against `DOCKER_BUILDKIT=1 docker build` with
//! Debian's docker CLI 20.10 (same daemon, both through BuildKit's session file sync) on a
//! generated ~100 MB / 20 000-file context whose `.dockerignore` excludes half of it.
//! Alternating runs of each case (cold `--no-cache`, one file changed, nothing changed, and
//! a fresh CI engine with `cache-from`, both for the `COPY`-only Dockerfile and for one with a
//! dependency step before the `COPY`); prints medians, ratios and what each build sent.
//! Wall-clock figures belong here, never in tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

const FILES: usize = 20_000;
const FILE_SIZE: usize = 5_000;
const RUNS: usize = 5;

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
        let child = crate::services::dockerd_command(&dir, &host)
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

pub fn build() -> Result<i32> {
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

    let ours = |config: &str, extra: &[&str]| -> Result<Run> {
        let mut cmd = Command::new(&bin);
        cmd.args(["--config", config, "build"])
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
    let theirs = |dockerfile: &str, extra: &[&str]| -> Result<Run> {
        let mut cmd = Command::new(PEER_CLI);
        cmd.args([
            "-H",
            &host,
            "build",
            "--progress=plain",
            "--network=none",
            "-f",
            dockerfile,
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

    // The dependency step's Dockerfile and deployctl's configs (see `generate`).
    let rounds = calibrate_step(&ctx.join("tools/work"))?;
    fs::write(
        ctx.join("Dockerfile.step"),
        format!(
            "FROM scratch\nCOPY tools/work /work\nRUN [\"/work\", \"{rounds}\", \"/deps\"]\nCOPY keep /keep\n"
        ),
    )?;
    let app = "version: \"1.0\"\napp:\n  name: bench-build\n  version: \"1\"\n";
    fs::write(
        ctx.join("deploy.step.yaml"),
        format!("{app}build:\n  dockerfile: Dockerfile.step\n  network: none\n"),
    )?;

    let mut cases = Vec::new();
    for (name, config, dockerfile) in [
        ("cold --no-cache", "deploy.yaml", "Dockerfile"),
        ("one file changed", "deploy.yaml", "Dockerfile"),
        ("nothing changed", "deploy.yaml", "Dockerfile"),
        ("cold, with step", "deploy.step.yaml", "Dockerfile.step"),
    ] {
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
        ours(config, &[])?;
        theirs(dockerfile, &[])?;
        for i in 0..RUNS {
            step(&format!("{name}: run {}/{RUNS}", i + 1));
            if name == "one file changed" {
                touch()?;
            }
            case.ours.push(ours(config, no_cache)?);
            if name == "one file changed" {
                touch()?;
            }
            case.theirs.push(theirs(dockerfile, no_cache)?);
            case.print_last();
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
    let docker_config = root().join("target/bench/docker-config");
    fs::create_dir_all(&docker_config)?;
    let peer = || {
        let mut c = Command::new(PEER_CLI);
        c.arg("--config").arg(&docker_config).args(["-H", &host]);
        c
    };
    let mut login = peer();
    login.args(["login", "-u", &user, "--password-stdin", &registry]);
    login_with(&mut login, &password)?;
    let cache_repo = format!("{registry}/bench/build-cache");
    let ours_repo = format!("{registry}/bench-build");
    // A new CI runner: the bench engine's images and its whole build cache go (the engine
    // is the bench's own; nothing else uses it).
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
        for id in ids {
            let _ = peer().args(["rmi", "-f", &id]).output();
        }
        time_output(peer().args(["builder", "prune", "-a", "-f"]))?;
        Ok(())
    };
    for (name, dockerfile, tag) in [
        ("CI cache-from", "Dockerfile", "copy"),
        ("CI, with step", "Dockerfile.step", "step"),
    ] {
        let cache_ref = format!("{cache_repo}:{tag}");
        step(&format!(
            "pushing {cache_ref} ({dockerfile}) with inline cache"
        ));
        time_output(
            peer()
                .args(["build", "-q", "--network=none", "-f", dockerfile])
                .args([
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
        let ci_config = format!("deploy.ci-{tag}.yaml");
        fs::write(
            ctx.join(&ci_config),
            format!(
                "{app}registry:\n  url: {registry}\n  username: {user}\n  password: ${{BENCH_REGISTRY_PASSWORD}}\nbuild:\n  dockerfile: {dockerfile}\n  network: none\n  cache:\n    from: [{cache_ref}]\n"
            ),
        )?;
        let mut ci = Case {
            name,
            ours: Vec::new(),
            theirs: Vec::new(),
        };
        for i in 0..RUNS {
            step(&format!("{name}: run {}/{RUNS}", i + 1));
            fresh_engine()?;
            let mut cmd = Command::new(&bin);
            cmd.args(["--config", &ci_config, "build"])
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
                    .args([
                        "build",
                        "--progress=plain",
                        "--network=none",
                        "-f",
                        dockerfile,
                    ])
                    .args(["-t", "bench/docker-cli:latest", "--cache-from", &cache_ref])
                    .args(labels.iter().flat_map(|l| ["--label", l.as_str()]))
                    .arg(".")
                    .current_dir(&ctx)
                    .env("DOCKER_BUILDKIT", "1"),
            )?;
            ci.theirs.push(Run {
                took,
                sent: theirs_sent(&text),
            });
            ci.print_last();
        }
        cases.push(ci);
    }

    println!(
        "\nbench build: {FILES} files, {} MB, half excluded by .dockerignore, `FROM scratch` + COPY, {RUNS} alternating runs each, same daemon\n  peer: DOCKER_BUILDKIT=1 {PEER_CLI} build ({peer_version}), same labels\n  with step: a RUN before the COPY ({STEP_SECONDS} s of work on this machine, {rounds} rounds), as a dependency install or compile\n",
        FILES * FILE_SIZE / 1_000_000
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>7}   sent (deployctl | docker, last run)",
        "case", "deployctl", "docker", "ratio"
    );
    let mut medians = std::collections::BTreeMap::new();
    for case in &mut cases {
        let a = median(&mut case.ours.iter().map(|r| r.took).collect::<Vec<_>>());
        let b = median(&mut case.theirs.iter().map(|r| r.took).collect::<Vec<_>>());
        medians.insert(case.name, (secs(a), secs(b)));
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
    // Each tool's CI build against its own cold build of the same Dockerfile.
    for (ci, cold, target) in [
        ("CI cache-from", "cold --no-cache", ""),
        ("CI, with step", "cold, with step", " (target <= 0.5)"),
    ] {
        if let (Some(ci_t), Some(cold_t)) = (medians.get(ci), medians.get(cold)) {
            println!(
                "  {ci} / {cold}: deployctl {:.2}{target}, docker {:.2}",
                ci_t.0 / cold_t.0,
                ci_t.1 / cold_t.1
            );
        }
    }
    Ok(0)
}

impl Case {
    fn print_last(&self) {
        if let (Some(a), Some(b)) = (self.ours.last(), self.theirs.last()) {
            println!(
                "    deployctl {:.2}s ({})   docker {:.2}s ({})",
                secs(a.took),
                a.sent,
                secs(b.took),
                b.sent
            );
        }
    }
}

/// How long the dependency step works on this machine.
const STEP_SECONDS: u64 = 10;

/// The helper's rounds that take about [`STEP_SECONDS`] here, timed on the host: two runs of
/// different lengths, so that starting the process and writing its output cancel out.
fn calibrate_step(work: &Path) -> Result<u64> {
    let out = root().join("target/bench/work-probe");
    let run =
        |rounds: u64| crate::bench::time(Command::new(work).arg(rounds.to_string()).arg(&out));
    let (short, long) = (20, 220);
    let a = run(short)?;
    let b = run(long)?;
    let _ = fs::remove_file(&out);
    let per_round = b.saturating_sub(a).as_secs_f64() / (long - short) as f64;
    Ok(((STEP_SECONDS as f64 / per_round.max(1e-6)) as u64).max(1))
}

/// The static helper the dependency step runs: `work ROUNDS OUT` makes ROUNDS passes of
/// arithmetic over 4 MiB and writes them to OUT (same rounds, same bytes), compiled with
/// the toolchain's rustc into `dir/work`.
fn build_work_helper(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let src = dir.join("work.rs");
    fs::write(
        &src,
        r#"fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rounds: u64 = a[1].parse().expect("rounds");
    let mut buf = vec![0u64; 1 << 19];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..rounds {
        for v in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = v.wrapping_add(x);
        }
    }
    let bytes: Vec<u8> = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&a[2], bytes).expect("write");
}
"#,
    )?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    crate::bench::time(
        Command::new(rustc)
            .args(["--edition", "2021", "-C", "opt-level=2"])
            .args(["-C", "target-feature=+crt-static", "-o"])
            .arg(dir.join("work"))
            .arg(&src),
    )?;
    fs::remove_file(&src)?;
    Ok(())
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
    let marker = ctx.join(".complete-3");
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
    build_work_helper(&ctx.join("tools"))?;
    fs::write(
        ctx.join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: bench-build\n  version: \"1\"\nbuild:\n  network: none\n",
    )?;
    fs::write(marker, "")?;
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
