//! What the `serve_*` tests of the built binary share: `deployctl serve` as a child process
//! (started, waited for, killed with SIGKILL), tokens made by `deployctl serve token create`,
//! and a small HTTP/1.1 client that reads raw answers (the SSE framing included).

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_deployctl")
}

/// Where the store is: `--data-dir` (SQLite) or `--database-url` (PostgreSQL).
#[derive(Debug, Clone)]
pub enum Db {
    Dir(PathBuf),
    Url(String),
}

impl Db {
    pub fn args(&self) -> Vec<String> {
        match self {
            Db::Dir(d) => vec!["--data-dir".into(), d.display().to_string()],
            Db::Url(u) => vec!["--database-url".into(), u.clone()],
        }
    }
}

/// `deployctl serve token create` on `db`: the secret.
pub fn token(db: &Db, project: &str, role: &str) -> String {
    let o = Command::new(bin())
        .args([
            "-o",
            "json",
            "serve",
            "token",
            "create",
            "--project",
            project,
        ])
        .args(["--role", role, "--ttl", "2h"])
        .args(db.args())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    last["secret"].as_str().unwrap().to_owned()
}

/// A `deployctl serve` process; killed with SIGKILL when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    out: PathBuf,
}

impl Server {
    /// Starts `deployctl serve` on a free loopback port with `db`, `extra` arguments and the
    /// environment `env` (on top of this process's, less `RUST_LOG`); waits until it listens.
    pub fn start<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        db: &Db,
        extra: &[&str],
        env: &[(K, V)],
        log_dir: &Path,
    ) -> Self {
        let port = deployctl_testsupport::free_port();
        let log = log_dir.join(format!("serve-{port}.log"));
        let out = log_dir.join(format!("serve-{port}.out"));
        let mut cmd = Command::new(bin());
        cmd.args([
            "-o",
            "json",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(db.args())
        .args(extra)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap();
        let mut s = Self {
            child,
            port,
            log,
            out,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("deployctl serve exited ({st}): {}", s.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the server did not listen: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        s
    }

    /// Its id in `claimed_by` (from the JSON line it prints once it listens).
    pub fn server_id(&self) -> String {
        until("the server's id", Duration::from_secs(10), || {
            std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v["server_id"].as_str().map(str::to_owned))
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown of any kind.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP answer: status, headers (lowercase names), body (de-chunked).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request with `Connection: close`, read to the end.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `data:` objects of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// Polls `check` every 50 ms until it gives `Some`, for at most `limit`.
pub fn until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /api/v1/deployments/{id}` as JSON.
pub fn deployment(port: u16, token: &str, id: &str) -> Value {
    let a = http(
        port,
        "GET",
        &format!("/api/v1/deployments/{id}"),
        Some(token),
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

/// The services' venv (`DEPLOYCTL_TEST_VENV`, from the environment or services.env), or
/// `None` after a printed reason (a panic when `CI=true`).
pub fn venv_tool(tool: &str) -> Option<PathBuf> {
    let from_file = || {
        let file = deployctl_testsupport::workspace_root().join("target/services/services.env");
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("DEPLOYCTL_TEST_VENV=").map(str::to_owned))
    };
    let venv = std::env::var("DEPLOYCTL_TEST_VENV").ok().or_else(from_file);
    let path = venv.map(|v| Path::new(&v).join("bin").join(tool));
    match path {
        Some(p) if p.is_file() => Some(p),
        other => {
            let msg = format!(
                "{tool} is not in the services' venv ({}); install it with `cargo xtask services up`",
                other.map_or_else(
                    || "DEPLOYCTL_TEST_VENV is not set".into(),
                    |p| p.display().to_string()
                )
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {msg}"
            );
            eprintln!("skipped: {msg}");
            None
        }
    }
}

/// The hello fixture image pushed once to the services' registry, for jobs that deploy it
/// with `image` (no build): (registry address, user, password, `repository@sha256:…`).
pub struct Pushed {
    pub registry: deployctl_testsupport::Registry,
    pub image: String,
}

/// Builds and pushes the hello fixture app with the binary (`deployctl push`).
pub fn push_hello(
    docker: &deployctl_testsupport::Docker,
    reg: deployctl_testsupport::Registry,
    dir: &Path,
) -> Pushed {
    let app = dir.join("hello-image");
    crate::common::copy_dir(&deployctl_testsupport::hello_app(), &app);
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "version: \"1.0\"\napp:\n  name: serve-hello\n  version: \"1\"\nregistry:\n  url: {}\n  username: {}\n  password: ${{REGISTRY_PASSWORD}}\nlocal:\n  enabled: true\n",
            reg.addr, reg.user
        ),
    )
    .unwrap();
    let o = Command::new(bin())
        .args(["--output", "json", "push"])
        .current_dir(&app)
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", &docker.host)
        .env("DOCKER_CONFIG", app.join("no-docker-config"))
        .env("REGISTRY_PASSWORD", &reg.password)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "push: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let digest = last["image"]["digest"].as_str().unwrap().to_owned();
    Pushed {
        image: format!("{}/serve-hello@{digest}", reg.addr),
        registry: reg,
    }
}

impl Pushed {
    /// A deploy.yaml for the local target: `app` at version `version` on loopback `port`,
    /// the registry the image is in, and `hooks` (YAML under `hooks:`, may be empty).
    pub fn config(&self, app: &str, version: &str, port: u16, hooks: &str) -> String {
        let mut c = format!(
            "version: \"1.0\"\napp:\n  name: {app}\n  version: \"{version}\"\n  port: 8080\n  health_check_path: /health\nregistry:\n  url: {}\n  username: {}\n  password: ${{REGISTRY_PASSWORD}}\nenv:\n  DEPLOY_VERSION: \"{version}\"\nlocal:\n  enabled: true\n  port: {port}\n",
            self.registry.addr, self.registry.user
        );
        if !hooks.is_empty() {
            c.push_str("hooks:\n");
            c.push_str(hooks);
        }
        c
    }

    /// The environment a server needs to run local deploys of this image.
    pub fn server_env(
        &self,
        docker: &deployctl_testsupport::Docker,
        dir: &Path,
    ) -> Vec<(String, String)> {
        vec![
            ("DOCKER_HOST".into(), docker.host.clone()),
            (
                "DOCKER_CONFIG".into(),
                dir.join("no-docker-config").display().to_string(),
            ),
            ("REGISTRY_PASSWORD".into(), self.registry.password.clone()),
            (
                "XDG_STATE_HOME".into(),
                dir.join("state").display().to_string(),
            ),
            (
                "KUBECONFIG".into(),
                dir.join("no-kubeconfig").display().to_string(),
            ),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ]
    }
}

/// `docker rm -f` of the local target's containers for `apps` (best effort).
pub fn remove_containers(docker: &deployctl_testsupport::Docker, apps: &[String]) {
    let names: Vec<String> = apps.iter().map(|a| format!("deployctl-{a}")).collect();
    let _ = Command::new("docker")
        .args(["rm", "-f"])
        .args(&names)
        .env("DOCKER_HOST", &docker.host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `docker inspect` of a container's environment.
pub fn container_env(docker: &deployctl_testsupport::Docker, app: &str) -> Vec<String> {
    let o = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{json .Config.Env}}",
            &format!("deployctl-{app}"),
        ])
        .env("DOCKER_HOST", &docker.host)
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}
