//! The real peers integration tests run against, on loopback.
//!
//! State lives in `target/services/`: one directory per service, pid files, logs, and the
//! env file `services.env` that tests read (through `deployctl-testsupport`). `up` is
//! idempotent: a service whose pid is alive and that answers is left alone. `down` stops
//! only what `up` started (by pid file).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{have, root, run, wait_for};

/// Registry user for ordinary pushes.
const REGISTRY_USER: &str = "deployctl";
/// moto's ECR GetAuthorizationToken decodes to `AWS:<this>`: a registry user with this
/// password stands in for ECR's registry.
const ECR_STANDIN_PASSWORD: &str = "123456789012-auth-token";

fn state() -> PathBuf {
    root().join("target/services")
}

pub fn venv() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/deployctl-xtask/venv")
}

/// Installs what is missing, starts what is not running, writes `services.env` and returns
/// its variables.
pub fn up() -> Result<BTreeMap<String, String>> {
    install()?;
    fs::create_dir_all(state())?;
    let mut env = BTreeMap::new();
    env.extend(dockerd()?);
    env.extend(registry()?);
    env.extend(moto()?);
    env.extend(crate::postgres::up(&state())?);
    env.insert(
        "DEPLOYCTL_TEST_VENV".into(),
        venv().to_string_lossy().into_owned(),
    );
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    fs::write(state().join("services.env"), text)?;
    for (k, v) in &env {
        if !k.contains("PASSWORD") {
            println!("    {k}={v}");
        }
    }
    Ok(env)
}

/// Stops every service `up` started.
pub fn down() -> Result<()> {
    for name in ["postgres", "moto", "registry", "docker"] {
        let pid_file = state().join(name).join("pid");
        match read_pid(&pid_file) {
            Some(pid) if alive(pid) => {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                let gone = wait_for(Duration::from_secs(15), || !alive(pid));
                if !gone {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
                println!("    stopped {name} (pid {pid})");
            }
            _ => println!("    {name} was not running"),
        }
        let _ = fs::remove_file(&pid_file);
    }
    let _ = fs::remove_file(state().join("services.env"));
    Ok(())
}

/// Prints each service and whether it answers.
pub fn status() -> Result<()> {
    let env = read_env();
    let docker = env.get("DEPLOYCTL_TEST_DOCKER_HOST").cloned();
    let docker_ok = docker
        .as_deref()
        .and_then(|h| h.strip_prefix("unix://"))
        .is_some_and(|s| docker_ping(Path::new(s)));
    report("dockerd", docker.as_deref(), docker_ok);
    let reg = env.get("DEPLOYCTL_TEST_REGISTRY").cloned();
    let reg_ok = reg
        .as_deref()
        .is_some_and(|a| http_status(a, "/v2/") == Some(401));
    report("docker-registry", reg.as_deref(), reg_ok);
    let moto = env.get("DEPLOYCTL_TEST_AWS_ENDPOINT").cloned();
    let moto_ok = moto
        .as_deref()
        .and_then(|u| u.strip_prefix("http://"))
        .is_some_and(|a| http_status(a, "/moto-api/").is_some());
    report("moto_server", moto.as_deref(), moto_ok);
    Ok(())
}

fn report(name: &str, addr: Option<&str>, ok: bool) {
    let pid = read_pid(
        &state()
            .join(match name {
                "dockerd" => "docker",
                "docker-registry" => "registry",
                _ => "moto",
            })
            .join("pid"),
    );
    println!(
        "{name:<16} {:<9} pid {:<8} {}",
        if ok { "answers" } else { "down" },
        pid.map_or("-".to_owned(), |p| p.to_string()),
        addr.unwrap_or("-")
    );
}

fn read_env() -> BTreeMap<String, String> {
    fs::read_to_string(state().join("services.env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn install() -> Result<()> {
    let mut apt = Vec::new();
    if !have("dockerd") {
        apt.push("docker.io");
    }
    if !have("docker-registry") {
        apt.push("docker-registry");
    }
    if !have("htpasswd") {
        apt.push("apache2-utils");
    }
    // Kong's deck: a real client of the Kong Admin API stand-in
    // (crates/deployctl-kong-standin/tests/deck.rs)
    if !have("deck") {
        apt.push("deck");
    }
    // npm installs openapi-2-kong, Kong's converter deployctl's routes are compared with
    // (crates/deployctl-kong/tests/openapi2kong.rs)
    if !have("npm") {
        apt.push("npm");
    }
    if !apt.is_empty() {
        println!("    installing {} (Debian packages)", apt.join(" "));
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context(
            "apt-get update failed: installing services needs root and Debian's package index",
        )?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&apt)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let moto = venv().join("bin/moto_server");
    if !moto.is_file() {
        println!(
            "    installing the Python packages moto[server] and awscli in {}",
            venv().display()
        );
        if let Some(parent) = venv().parent() {
            fs::create_dir_all(parent)?;
        }
        if run(Command::new("python3").args(["-m", "venv"]).arg(venv())).is_err() {
            run(Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "python3-venv"])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            let _ = fs::remove_dir_all(venv());
            run(Command::new("python3").args(["-m", "venv"]).arg(venv()))?;
        }
        run(Command::new(venv().join("bin/pip")).args([
            "install",
            "--quiet",
            "moto[server]",
            "awscli",
        ]))?;
    }
    // The real Kubernetes clients the stand-in is tested with (kubectl, helm, the official Python
    // client, kubernetes-validate; crates/deployctl-kube-standin/tests/).
    crate::clients::install_python_clients()?;
    crate::clients::install_openapi2kong()?;
    Ok(())
}

fn read_pid(file: &Path) -> Option<u32> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The port remembered in `dir/port` when the service still runs there or the port is
/// free; otherwise a new free one.
pub(crate) fn port_for(dir: &Path, answers: impl Fn(&str) -> bool) -> Result<u16> {
    let file = dir.join("port");
    if let Some(p) = fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
    {
        let addr = format!("127.0.0.1:{p}");
        if running(dir, || answers(&addr)) || TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    let p = free_port()?;
    fs::write(file, p.to_string())?;
    Ok(p)
}

/// Starts `cmd` in the background with output to `dir/log`, recording its pid.
pub(crate) fn spawn(cmd: &mut Command, dir: &Path) -> Result<u32> {
    let log = fs::File::create(dir.join("log"))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id();
    fs::write(dir.join("pid"), pid.to_string())?;
    // The child outlives us on purpose: `down` stops it by pid.
    std::mem::forget(child);
    Ok(pid)
}

pub(crate) fn log_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub(crate) fn running(dir: &Path, answers: impl Fn() -> bool) -> bool {
    read_pid(&dir.join("pid")).is_some_and(alive) && answers()
}

/// dockerd as every engine here runs it (vfs, no bridge, no iptables), serving `host`, with
/// its data, exec root and pid file in `dir`.
pub(crate) fn dockerd_command(dir: &Path, host: &str) -> Command {
    let mut c = Command::new("dockerd");
    c.args(["--storage-driver=vfs", "--iptables=false", "--bridge=none"])
        .arg("-H")
        .arg(host)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"));
    c
}

fn dockerd() -> Result<BTreeMap<String, String>> {
    let dir = state().join("docker");
    fs::create_dir_all(&dir)?;
    let sock = dir.join("docker.sock");
    let host = format!("unix://{}", sock.display());
    if !running(&dir, || docker_ping(&sock)) {
        let _ = fs::remove_file(&sock);
        let pid = spawn(&mut dockerd_command(&dir, &host), &dir)?;
        if !wait_for(Duration::from_secs(60), || docker_ping(&sock)) {
            bail!(
                "dockerd (pid {pid}) did not answer on {host} within 60 s; its log ends:\n{}",
                log_tail(&dir)
            );
        }
        println!("    dockerd started (pid {pid})");
    } else {
        println!("    dockerd already running");
    }
    Ok(BTreeMap::from([(
        "DEPLOYCTL_TEST_DOCKER_HOST".to_owned(),
        host,
    )]))
}

fn registry() -> Result<BTreeMap<String, String>> {
    let dir = state().join("registry");
    fs::create_dir_all(dir.join("data"))?;
    let pw_file = dir.join("password");
    let password = match fs::read_to_string(&pw_file) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
        _ => {
            let p = random_password();
            fs::write(&pw_file, &p)?;
            p
        }
    };
    let port = port_for(&dir, |a| http_status(a, "/v2/") == Some(401))?;
    let addr = format!("127.0.0.1:{port}");
    if !running(&dir, || http_status(&addr, "/v2/") == Some(401)) {
        let mut htpasswd = String::new();
        for (user, pw) in [
            (REGISTRY_USER, password.as_str()),
            ("AWS", ECR_STANDIN_PASSWORD),
        ] {
            htpasswd.push_str(run(Command::new("htpasswd").args(["-Bbn", user, pw]))?.trim_end());
            htpasswd.push('\n');
        }
        fs::write(dir.join("htpasswd"), htpasswd)?;
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  headers:\n    X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: deployctl-test\n    path: {htpasswd}\n",
            data = dir.join("data").display(),
            htpasswd = dir.join("htpasswd").display(),
        );
        fs::write(dir.join("config.yml"), config)?;
        let pid = spawn(
            Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml")),
            &dir,
        )?;
        if !wait_for(Duration::from_secs(30), || {
            http_status(&addr, "/v2/") == Some(401)
        }) {
            bail!(
                "docker-registry (pid {pid}) did not answer 401 on {addr}/v2/ within 30 s; its log ends:\n{}",
                log_tail(&dir)
            );
        }
        println!("    docker-registry started on {addr} (pid {pid})");
    } else {
        println!("    docker-registry already running on {addr}");
    }
    Ok(BTreeMap::from([
        ("DEPLOYCTL_TEST_REGISTRY".to_owned(), addr),
        (
            "DEPLOYCTL_TEST_REGISTRY_USER".to_owned(),
            REGISTRY_USER.to_owned(),
        ),
        ("DEPLOYCTL_TEST_REGISTRY_PASSWORD".to_owned(), password),
    ]))
}

fn moto() -> Result<BTreeMap<String, String>> {
    let dir = state().join("moto");
    fs::create_dir_all(&dir)?;
    let port = port_for(&dir, |a| http_status(a, "/moto-api/").is_some())?;
    let addr = format!("127.0.0.1:{port}");
    if !running(&dir, || http_status(&addr, "/moto-api/").is_some()) {
        let pid = spawn(
            // AWS's managed policies (AWSLambdaBasicExecutionRole …) exist in every real
            // account; moto loads them only when asked.
            Command::new(venv().join("bin/moto_server"))
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            &dir,
        )?;
        if !wait_for(Duration::from_secs(60), || {
            http_status(&addr, "/moto-api/").is_some()
        }) {
            bail!(
                "moto_server (pid {pid}) did not answer on {addr} within 60 s; its log ends:\n{}",
                log_tail(&dir)
            );
        }
        println!("    moto_server started on {addr} (pid {pid})");
    } else {
        println!("    moto_server already running on {addr}");
    }
    Ok(BTreeMap::from([(
        "DEPLOYCTL_TEST_AWS_ENDPOINT".to_owned(),
        format!("http://{addr}"),
    )]))
}

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn docker_ping(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// The HTTP status of `GET path` on `addr`, if anything answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}
