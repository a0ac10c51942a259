//! `cargo xtask bench workspace [--services N] [--jobs J] [--runs R]`: a workspace of N
//! services (copies of the hello app, each deployed to Lambda on moto and to Kubernetes on
//! the stand-in), `deployctl deploy --workspace --jobs J` against the same per-service
//! `deployctl deploy` run one after another in a shell loop — the way deploy scripts do it.
//! Both sides build (one engine, the same context, so the builds after the first are cache
//! hits) and push; every run deploys new names, so each is a first deploy. Alternating runs;
//! medians and the ratio (target <= 0.35).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

/// What the run is asked for.
struct Options {
    services: usize,
    jobs: usize,
    runs: usize,
}

fn options(args: &[&str]) -> Result<Options> {
    let mut o = Options {
        services: 20,
        jobs: 4,
        runs: 3,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a number"))?
            .parse::<usize>()
            .with_context(|| format!("{flag} needs a number"))?;
        match *flag {
            "--services" => o.services = value.max(1),
            "--jobs" => o.jobs = value.max(1),
            "--runs" => o.runs = value.max(1),
            other => bail!("unknown flag {other}; use --services N, --jobs J, --runs R"),
        }
    }
    Ok(o)
}

/// The binary and the services both sides run against.
struct Bench {
    bin: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
    env: std::collections::BTreeMap<String, String>,
}

impl Bench {
    fn get(&self, k: &str) -> &str {
        self.env.get(k).map_or("", String::as_str)
    }

    /// The environment every deploy runs in (moto, the test registry, the stand-in).
    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DOCKER_HOST", self.get("DEPLOYCTL_TEST_DOCKER_HOST").into()),
            (
                "DOCKER_CONFIG",
                self.dir.join("no-docker-config").display().to_string(),
            ),
            (
                "AWS_ENDPOINT_URL",
                self.get("DEPLOYCTL_TEST_AWS_ENDPOINT").into(),
            ),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            (
                "DEPLOYCTL_ECR_PUSH_ENDPOINT",
                self.get("DEPLOYCTL_TEST_REGISTRY").into(),
            ),
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
        ]
    }

    /// A workspace of `n` services named `<prefix>-<i>` under `dir`, in namespace `prefix`.
    fn write_workspace(&self, dir: &Path, prefix: &str, n: usize) -> Result<Vec<PathBuf>> {
        let _ = fs::remove_dir_all(dir);
        let mut ws = String::from("services:\n");
        let mut paths = Vec::new();
        for i in 0..n {
            let name = format!("{prefix}-{i:02}");
            let sdir = dir.join("services").join(&name);
            fs::create_dir_all(&sdir)?;
            crate::bench_lambda::copy_app(&root().join("fixtures/apps/hello"), &sdir)?;
            fs::write(
                sdir.join("deploy.yaml"),
                format!(
                    "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlambda:\n  enabled: true\n  region: us-east-1\nkubernetes:\n  enabled: true\n  namespace: {prefix}\n"
                ),
            )?;
            writeln!(ws, "  {name}:\n    path: services/{name}")?;
            paths.push(sdir);
        }
        fs::write(dir.join("deployctl-workspace.yaml"), ws)?;
        Ok(paths)
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir(dir).envs(self.envs());
        c
    }
}

/// The whole machine's CPU use (`/proc/stat`: every core, every process — the deploys and
/// the services they call), to tell a CPU-bound run from one that waits.
struct CpuBusy {
    busy: u64,
    total: u64,
}

impl CpuBusy {
    fn now() -> Self {
        let text = fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().sum();
        // idle and iowait
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// The share of all cores' time that was busy since `self`.
    fn share_since(&self) -> f64 {
        let now = Self::now();
        let total = now.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        now.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

fn timed(mut c: Command) -> Result<Duration> {
    let start = Instant::now();
    let out = c.output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{c:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

pub fn run(args: &[&str]) -> Result<i32> {
    let o = options(args)?;
    let env = crate::services::up()?;
    crate::fixtures::build()?;
    let bin = crate::util::release_binary()?;
    let dir = root().join("target/bench/workspace");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    // The stand-in runs no pods: its service proxy forwards the Kubernetes verification to
    // the hello binary run here, so every service really answers its health check.
    step("starting the hello app and the stand-in API server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _app = crate::demo::StandIn(
        Command::new(root().join("fixtures/apps/hello/hello"))
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting fixtures/apps/hello/hello")?,
    );
    let kubeconfig = dir.join("kubeconfig");
    let _standin = crate::demo::start_standin(
        &kubeconfig,
        &[(
            "DEPLOYCTL_STANDIN_PROXY_TARGET",
            format!("http://127.0.0.1:{port}"),
        )],
        std::process::Stdio::null(),
    )?;
    let b = Bench {
        bin,
        dir: dir.clone(),
        kubeconfig,
        env,
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        % 100_000;

    step("warming the build cache (one build of the hello app)");
    let warm = b.write_workspace(&dir.join("warm"), &format!("bw{stamp}w"), 1)?;
    timed(b.command(&warm[0], &["build"]))?;

    let jobs = o.jobs.to_string();
    let (mut ours, mut loops) = (Vec::new(), Vec::new());
    for r in 0..o.runs {
        step(&format!("run {}/{}", r + 1, o.runs));
        let ws_dir = dir.join(format!("ws-{r}"));
        b.write_workspace(&ws_dir, &format!("bw{stamp}a{r}"), o.services)?;
        // Its events are kept (`ws-<run>.jsonl`) for a look at each service's timeline.
        let mut c = b.command(
            &ws_dir,
            &["--output", "json", "deploy", "--workspace", "--jobs", &jobs],
        );
        c.stdout(fs::File::create(dir.join(format!("ws-{r}.jsonl")))?);
        let busy = CpuBusy::now();
        let t = timed(c)?;
        let ws_busy = busy.share_since();
        ours.push(t);

        let loop_dir = dir.join(format!("loop-{r}"));
        let paths = b.write_workspace(&loop_dir, &format!("bw{stamp}b{r}"), o.services)?;
        let mut script = String::from("set -euo pipefail\n");
        for p in &paths {
            writeln!(
                script,
                "(cd '{}' && \"$DEPLOYCTL\" --output json deploy >/dev/null)",
                p.display()
            )?;
        }
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(&script)
            .env("DEPLOYCTL", &b.bin)
            .envs(b.envs());
        let busy = CpuBusy::now();
        let l = timed(c)?;
        let loop_busy = busy.share_since();
        loops.push(l);
        println!(
            "    deploy --workspace --jobs {} {:.1}s (machine CPU {:.0}% busy)   shell loop {:.1}s ({:.0}% busy)",
            o.jobs,
            t.as_secs_f64(),
            ws_busy * 100.0,
            l.as_secs_f64(),
            loop_busy * 100.0
        );
    }
    let (w, l) = (
        crate::bench_lambda::median(&ours),
        crate::bench_lambda::median(&loops),
    );
    println!(
        "\nbench workspace: {} services, each Lambda (moto) + Kubernetes (stand-in), built and pushed, {} alternating runs
  deploy --workspace --jobs {}   median {w:.1}s
  shell loop, one after another  median {l:.1}s
  ratio workspace / loop = {:.2} (target <= 0.35)",
        o.services,
        o.runs,
        o.jobs,
        w / l
    );
    Ok(0)
}
