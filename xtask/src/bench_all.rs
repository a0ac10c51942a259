//! `cargo xtask bench all`: `deploy all` (local + Lambda on moto + Kubernetes on the stand-in)
//! against the single-target deploys of the same image, alternating, 5 runs each; the ratio
//! to the slowest single target, the peak RSS of the `deploy all` process, and the wall time
//! of `deployctl --version`.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

const RUNS: usize = 5;

/// Runs `cmd` to completion, sampling its peak resident set (VmHWM) from /proc.
fn run_measured(cmd: &mut Command) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let mut child: Child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    loop {
        if let Ok(text) = fs::read_to_string(&status_path) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak_kb = peak_kb.max(kb);
                }
            }
        }
        if let Some(status) = child.try_wait()? {
            let took = start.elapsed();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                bail!("{cmd:?} failed: {err}");
            }
            return Ok((took, peak_kb));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn all() -> Result<i32> {
    let env = crate::services::up()?;
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .with_context(|| format!("services.env has no {k}"))
    };
    let (docker, registry, endpoint) = (
        get("DEPLOYCTL_TEST_DOCKER_HOST")?,
        get("DEPLOYCTL_TEST_REGISTRY")?,
        get("DEPLOYCTL_TEST_AWS_ENDPOINT")?,
    );
    crate::fixtures::build()?;
    let bin = crate::util::release_binary()?;
    let dir = root().join("target/bench/all");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    for f in ["Dockerfile", "hello"] {
        fs::copy(root().join("fixtures/apps/hello").join(f), dir.join(f))?;
    }
    step("starting the Kubernetes stand-in");
    let kubeconfig = dir.join("kubeconfig");
    let _standin = crate::demo::start_standin(&kubeconfig, &[], Stdio::null())?;
    measure(&bin, &dir, &kubeconfig, &docker, &registry, &endpoint)
}

fn measure(
    bin: &Path,
    dir: &Path,
    kubeconfig: &Path,
    docker: &str,
    registry: &str,
    endpoint: &str,
) -> Result<i32> {
    let write_config = |name: &str, port: u16| {
        fs::write(
            dir.join("deploy.yaml"),
            format!(
                "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  enabled: true\n  port: {port}\n  restart: 'no'\nlambda:\n  enabled: true\n  region: us-east-1\nkubernetes:\n  enabled: true\n  namespace: {name}\n"
            ),
        )
    };
    let cmd = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args)
            .current_dir(dir)
            .env("DOCKER_HOST", docker)
            .env("DOCKER_CONFIG", dir.join("docker-config"))
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("DEPLOYCTL_ECR_PUSH_ENDPOINT", registry)
            .env("KUBECONFIG", kubeconfig);
        c
    };
    let free_port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        % 100_000;

    step("pushing the image once (every deploy below uses this digest)");
    write_config(&format!("bench-all-{stamp}"), free_port()?)?;
    let out = cmd(&["--output", "json", "push"]).output()?;
    if !out.status.success() {
        bail!("push failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let result: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())?;
    let image = result["image"]["reference"]
        .as_str()
        .context("push printed no reference")?
        .to_owned();

    let (mut all, mut singles_max, mut singles_sum) = (Vec::new(), Vec::new(), Vec::new());
    let mut peak_rss = 0;
    for i in 0..RUNS {
        step(&format!("run {}/{RUNS}", i + 1));
        let name = format!("ba{stamp}-{i}");
        write_config(&name, free_port()?)?;
        let (t_all, rss) = run_measured(&mut cmd(&["deploy", "--image", &image]))?;
        peak_rss = peak_rss.max(rss);
        run_measured(&mut cmd(&["destroy"]))?;
        let mut times = Vec::new();
        for target in ["local", "lambda", "k8s"] {
            write_config(&format!("{name}-{target}"), free_port()?)?;
            let (t, _) = run_measured(&mut cmd(&["deploy", target, "--image", &image]))?;
            run_measured(&mut cmd(&["destroy", target]))?;
            times.push(t);
        }
        let max = times.iter().copied().max().unwrap_or_default();
        let sum: Duration = times.iter().sum();
        println!(
            "    deploy all {:.0} ms   single: local {:.0} ms, lambda {:.0} ms, k8s {:.0} ms",
            t_all.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[1].as_secs_f64() * 1e3,
            times[2].as_secs_f64() * 1e3
        );
        all.push(t_all);
        singles_max.push(max);
        singles_sum.push(sum);
    }
    let mut version = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let o = Command::new(bin).arg("--version").output()?;
        version.push(start.elapsed());
        if !o.status.success() {
            bail!("deployctl --version failed");
        }
    }
    let (a, m, s, v) = (
        median(&mut all),
        median(&mut singles_max),
        median(&mut singles_sum),
        median(&mut version),
    );
    println!(
        "\nbench all: local + Lambda (moto) + Kubernetes (stand-in), same pushed image, {RUNS} runs
  deploy all                 median {:.0} ms
  slowest single target      median {:.0} ms   (sum of the three: {:.0} ms)
  ratio all / slowest single = {:.2} (target <= 1.1); all / sum = {:.2}
  peak RSS of deploy all     {:.1} MB (target <= 60 MB)
  deployctl --version        median {:.2} ms over 50 runs (target <= 5 ms)",
        a.as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        a.as_secs_f64() / m.as_secs_f64(),
        a.as_secs_f64() / s.as_secs_f64(),
        peak_rss as f64 / 1024.0,
        v.as_secs_f64() * 1e3
    );
    Ok(0)
}
