//! `cargo xtask bench serve`: `deployctl serve` (the release binary, SQLite) under read load
//! while deployments run. The hello image is pushed once to the services' registry; each of
//! 20 apps is deployed once (local target, on the services' engine), so the app status
//! route has targets to read; then 100 more deployments of the 20 apps are queued, so all 20
//! apps have a deployment queued or running through the window. Meanwhile `GET
//! /api/v1/deployments/{id}` and the app status route `GET /api/v1/projects/{p}/apps/{a}` are
//! each sent at a fixed rate (200 requests/s, open loop: a request's latency counts from
//! when it was due, so a slow answer delays nothing it should not) from threads of this
//! process, one connection per request. Printed: p50/p99/max and errors (by HTTP status) per
//! route, busy and — measured first, the same way — idle; and, on the idle server, the time
//! from sending `POST …/deployments` to the first SSE event of that deployment. Targets
//! (issue 17, busy): p99 < 25 ms, 0 errors, first event < 50 ms. `DEPLOYCTL_BENCH_SECONDS`
//! sets each window (10); `DEPLOYCTL_BENCH_BINARY` a deployctl binary to measure instead of
//! building the release one (to compare with a binary from before a change).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::util::{root, run, step};

const RATE: u32 = 200;
const APPS: usize = 20;
const PER_APP: usize = 5;
const FIRST_EVENT_SAMPLES: usize = 5;

struct Answer {
    status: u16,
    body: String,
}

fn request(port: u16, method: &str, path: &str, token: &str, body: Option<&str>) -> Result<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
    );
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("\r\n"),
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok(Answer {
        status,
        body: body.to_owned(),
    })
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Failed requests by what went wrong: the HTTP status, or `io` (no answer).
type Errors = BTreeMap<String, usize>;

/// Sends `paths` round-robin at [`RATE`] per second for `window`: (latencies of the 200
/// answers, the others by status).
fn load(port: u16, token: &str, paths: &[String], window: Duration) -> (Vec<Duration>, Errors) {
    let total = (window.as_secs_f64() * f64::from(RATE)).round();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = total as usize;
    let threads = 32;
    let start = Instant::now() + Duration::from_millis(50);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut errors = Errors::new();
                    let mut slot = t;
                    while slot < total {
                        let due = start + Duration::from_secs_f64(slot as f64 / f64::from(RATE));
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let path = &paths[slot % paths.len()];
                        match request(port, "GET", path, token, None) {
                            Ok(a) if a.status == 200 => lat.push(due.elapsed()),
                            Ok(a) => {
                                let n = errors.entry(a.status.to_string()).or_default();
                                *n += 1;
                                if *n <= 2 {
                                    eprintln!(
                                        "    {path}: {} {}",
                                        a.status,
                                        a.body.chars().take(200).collect::<String>()
                                    );
                                }
                            }
                            Err(e) => {
                                let n = errors.entry("io".to_owned()).or_default();
                                *n += 1;
                                if *n <= 2 {
                                    eprintln!("    {path}: {e}");
                                }
                            }
                        }
                        slot += threads;
                    }
                    (lat, errors)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = Errors::new();
        for h in handles {
            let (l, e) = h.join().unwrap_or_default();
            all.extend(l);
            for (k, n) in e {
                *errors.entry(k).or_default() += n;
            }
        }
        all.sort();
        (all, errors)
    })
}

/// From sending the POST to the first `data:` line of the deployment's event stream.
fn first_event(port: u16, token: &str, body: &str, app: &str) -> Result<(Duration, String)> {
    let t0 = Instant::now();
    let id = post(port, token, app, body)?;
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(
        format!(
            "GET /api/v1/deployments/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the event stream of {id} ended without an event");
        }
        if line.starts_with("data:") {
            return Ok((t0.elapsed(), id));
        }
    }
}

fn wait_ended(port: u16, token: &str, id: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let a = request(
            port,
            "GET",
            &format!("/api/v1/deployments/{id}"),
            token,
            None,
        )?;
        let d: Value = serde_json::from_str(&a.body)?;
        let st = d["status"].as_str().unwrap_or_default().to_owned();
        if st != "queued" && st != "running" {
            return Ok(st);
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("{id} did not end in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Queues a deployment of `app`: its id.
fn post(port: u16, token: &str, app: &str, body: &str) -> Result<String> {
    let a = request(
        port,
        "POST",
        &format!("/api/v1/projects/bench/apps/{app}/deployments"),
        token,
        Some(body),
    )?;
    if a.status != 202 {
        bail!("POST answered {}: {}", a.status, a.body);
    }
    Ok(serde_json::from_str::<Value>(&a.body)?["id"]
        .as_str()
        .context("no id")?
        .to_owned())
}

fn paths_of(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| format!("/api/v1/deployments/{id}"))
        .collect()
}

/// Both routes under load at once: [deployments, app status].
fn both(
    port: u16,
    token: &str,
    dep_paths: &[String],
    app_paths: &[String],
    window: Duration,
) -> [(Vec<Duration>, Errors); 2] {
    std::thread::scope(|s| {
        let d = s.spawn(|| load(port, token, dep_paths, window));
        let a = s.spawn(|| load(port, token, app_paths, window));
        [d.join().unwrap_or_default(), a.join().unwrap_or_default()]
    })
}

/// Prints one table of both routes; what missed the targets.
fn print_routes(results: &[(Vec<Duration>, Errors); 2]) -> Vec<String> {
    println!(
        "{:<38} {:>8} {:>7} {:>10} {:>10} {:>10}  errors by status",
        "route", "answered", "errors", "p50", "p99", "max"
    );
    let mut missed = Vec::new();
    let names = [
        "GET /api/v1/deployments/{id}",
        "GET /api/v1/projects/{p}/apps/{a}",
    ];
    for (name, (lat, errors)) in names.iter().zip(results) {
        let err: usize = errors.values().sum();
        let by: Vec<String> = errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let p99 = percentile(lat, 0.99);
        println!(
            "{name:<38} {:>8} {err:>7} {:>10} {:>10} {:>10}  {}",
            lat.len(),
            ms(percentile(lat, 0.5)),
            ms(p99),
            ms(lat.last().copied().unwrap_or_default()),
            if by.is_empty() {
                "-".to_owned()
            } else {
                by.join(", ")
            }
        );
        if p99 >= Duration::from_millis(25) {
            missed.push(format!("{name}: p99 {} (target < 25 ms)", ms(p99)));
        }
        if err > 0 {
            missed.push(format!("{name}: {err} errors (target 0)"));
        }
    }
    missed
}

fn remove_containers(docker_host: &str, apps: &[String]) {
    let names: Vec<String> = apps.iter().map(|a| format!("deployctl-{a}")).collect();
    let _ = Command::new("docker")
        .args(["rm", "-f"])
        .args(&names)
        .env("DOCKER_HOST", docker_host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn serve() -> Result<i32> {
    let env = crate::services::up()?;
    crate::fixtures::build()?;
    let bin = match std::env::var_os("DEPLOYCTL_BENCH_BINARY") {
        Some(b) => std::path::PathBuf::from(b),
        None => crate::util::release_binary()?,
    };
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .with_context(|| format!("services.env has no {k}"))
    };
    let (docker_host, reg, user, password) = (
        get("DEPLOYCTL_TEST_DOCKER_HOST")?,
        get("DEPLOYCTL_TEST_REGISTRY")?,
        get("DEPLOYCTL_TEST_REGISTRY_USER")?,
        get("DEPLOYCTL_TEST_REGISTRY_PASSWORD")?,
    );
    let window = Duration::from_secs(
        std::env::var("DEPLOYCTL_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let dir = crate::util::target_dir().join(format!("bench-serve/{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&bin, &dir, &docker_host, &reg, &user, &password, window);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_lines)]
fn measure(
    bin: &Path,
    dir: &Path,
    docker_host: &str,
    reg: &str,
    user: &str,
    password: &str,
    window: Duration,
) -> Result<i32> {
    let server_env = [
        ("DOCKER_HOST", docker_host.to_owned()),
        (
            "DOCKER_CONFIG",
            dir.join("no-docker-config").display().to_string(),
        ),
        ("REGISTRY_PASSWORD", password.to_owned()),
        ("XDG_STATE_HOME", dir.join("state").display().to_string()),
        (
            "KUBECONFIG",
            dir.join("no-kubeconfig").display().to_string(),
        ),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ];
    step("pushing the hello image");
    let app_dir = dir.join("hello");
    std::fs::create_dir_all(&app_dir)?;
    for f in ["Dockerfile", "hello"] {
        std::fs::copy(root().join("fixtures/apps/hello").join(f), app_dir.join(f))?;
    }
    let registry_yaml = format!(
        "registry:\n  url: {reg}\n  username: {user}\n  password: ${{REGISTRY_PASSWORD}}\n"
    );
    std::fs::write(
        app_dir.join("deploy.yaml"),
        format!(
            "version: \"1.0\"\napp:\n  name: bench-hello\n{registry_yaml}local:\n  enabled: true\n"
        ),
    )?;
    let out = run(Command::new(bin)
        .args(["--output", "json", "push"])
        .current_dir(&app_dir)
        .envs(server_env.iter().map(|(k, v)| (k, v))))?;
    let pushed: Value = serde_json::from_str(out.lines().last().unwrap_or_default())?;
    let digest = pushed["image"]["digest"]
        .as_str()
        .context("push gave no digest")?;
    let image = format!("{reg}/bench-hello@{digest}");

    let data = dir.join("data");
    let made = run(Command::new(bin)
        .args([
            "-o",
            "json",
            "serve",
            "token",
            "create",
            "--project",
            "bench",
        ])
        .args(["--role", "deploy", "--ttl", "1h", "--data-dir"])
        .arg(&data))?;
    let token = serde_json::from_str::<Value>(made.lines().last().unwrap_or_default())?["secret"]
        .as_str()
        .context("no secret")?
        .to_owned();
    let port = free_port()?;
    step(&format!(
        "deployctl serve on 127.0.0.1:{port} (SQLite, 4 workers)"
    ));
    let _server = Server(
        Command::new(bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "4",
            ])
            .args(["--queue-cap", "500", "--data-dir"])
            .arg(&data)
            .envs(server_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log"))?)
            .spawn()?,
    );
    if !crate::util::wait_for(Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }) {
        bail!("the server did not listen");
    }
    let config = |app: &str, version: usize, app_port: u16| {
        json!({
            "config": format!("version: \"1.0\"\napp:\n  name: {app}\n  version: \"{version}\"\n  port: 8080\n  health_check_path: /health\n{registry_yaml}env:\n  V: \"{version}\"\nlocal:\n  enabled: true\n  port: {app_port}\n"),
            "image": image,
            "target": "local",
        })
        .to_string()
    };
    let unique = std::process::id();
    let mut apps_made = Vec::new();

    step("time from POST to the first SSE event (idle server)");
    let mut firsts = Vec::new();
    for i in 0..FIRST_EVENT_SAMPLES {
        let app = format!("bench-first-{unique}-{i}");
        let (took, id) = first_event(port, &token, &config(&app, 1, free_port()?), &app)?;
        apps_made.push(app);
        let st = wait_ended(port, &token, &id)?;
        println!("    {}: first event after {} ({st})", id, ms(took));
        firsts.push(took);
    }
    firsts.sort();

    let apps: Vec<(String, u16)> = (0..APPS)
        .map(|i| Ok((format!("bench-{unique}-{i}"), free_port()?)))
        .collect::<Result<_>>()?;
    apps_made.extend(apps.iter().map(|(a, _)| a.clone()));
    step(&format!(
        "deploying each of the {APPS} apps once (the status route reads its targets)"
    ));
    let mut first_ids = Vec::new();
    for (app, app_port) in &apps {
        first_ids.push(post(port, &token, app, &config(app, 0, *app_port))?);
    }
    for id in &first_ids {
        let st = wait_ended(port, &token, id)?;
        if st != "succeeded" {
            bail!("the first deploy {id} ended {st}");
        }
    }
    let app_paths: Vec<String> = apps
        .iter()
        .map(|(a, _)| format!("/api/v1/projects/bench/apps/{a}"))
        .collect();
    step(&format!(
        "idle: GET /deployments/{{id}} and GET /projects/bench/apps/{{app}}, each at {RATE}/s for {} s, at once",
        window.as_secs()
    ));
    let idle = both(port, &token, &paths_of(&first_ids), &app_paths, window);

    step(&format!(
        "{} deployments of {APPS} apps queued",
        APPS * PER_APP
    ));
    let mut ids = Vec::new();
    for v in 1..=PER_APP {
        for (app, app_port) in &apps {
            ids.push(post(port, &token, app, &config(app, v, *app_port))?);
        }
    }
    step(&format!(
        "busy: GET /deployments/{{id}} and GET /projects/bench/apps/{{app}}, each at {RATE}/s for {} s, at once",
        window.as_secs()
    ));
    let busy = both(port, &token, &paths_of(&ids), &app_paths, window);
    let mut running_after = 0;
    for id in &ids {
        let a = request(
            port,
            "GET",
            &format!("/api/v1/deployments/{id}"),
            &token,
            None,
        )?;
        let d: Value = serde_json::from_str(&a.body)?;
        if d["status"] == "queued" || d["status"] == "running" {
            running_after += 1;
        }
    }
    step("waiting for the deployments to end");
    let mut failed = 0;
    for id in &ids {
        if wait_ended(port, &token, id)? != "succeeded" {
            failed += 1;
        }
    }
    remove_containers(docker_host, &apps_made);

    println!();
    println!("deployctl serve, idle ({APPS} apps deployed, nothing queued)");
    print_routes(&idle);
    println!();
    println!(
        "deployctl serve under read load ({} deployments, {failed} not succeeded; {running_after} still queued or running when the window closed)",
        ids.len()
    );
    let mut missed = print_routes(&busy);
    let first_max = firsts.last().copied().unwrap_or_default();
    println!(
        "POST to first SSE event (idle server, {FIRST_EVENT_SAMPLES} runs): median {}, max {}",
        ms(percentile(&firsts, 0.5)),
        ms(first_max)
    );
    if first_max >= Duration::from_millis(50) {
        missed.push(format!(
            "first event: max {} (target < 50 ms)",
            ms(first_max)
        ));
    }
    if missed.is_empty() {
        println!("targets met: p99 < 25 ms, 0 errors, first event < 50 ms");
    } else {
        println!("targets missed:");
        for m in &missed {
            println!("  {m}");
        }
    }
    Ok(0)
}
