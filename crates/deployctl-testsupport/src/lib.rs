//! # deployctl-testsupport — test-only service discovery
//!
//! Integration tests call [`docker`], [`registry`] or [`aws`] to find the real peers that
//! `cargo xtask services up` runs on loopback. Each reads the `DEPLOYCTL_TEST_*` variables
//! from the process environment, else from `target/services/services.env`, and checks that
//! something answers there.
//!
//! When a service is absent, the function prints `skipped: …` and returns `None` — unless
//! `CI=true`, where it panics: CI must never pass by skipping.
//!
//! [`faults`] is a fault and latency proxy to put between deployctl and those peers.
//!
//! This crate is a dev-dependency only; it is never linked into the shipped binary.

pub mod faults;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Docker engine started for tests.
#[derive(Debug, Clone)]
pub struct Docker {
    /// `unix:///…/docker.sock`.
    pub host: String,
}

/// The registry started for tests (htpasswd auth).
#[derive(Debug, Clone)]
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// A user that may push.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// The AWS emulator (moto_server) started for tests.
#[derive(Debug, Clone)]
pub struct Aws {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture app (`fixtures/apps/hello`); `cargo xtask fixtures` builds its binary.
pub fn hello_app() -> PathBuf {
    workspace_root().join("fixtures/apps/hello")
}

fn vars() -> BTreeMap<String, String> {
    let file = std::env::var_os("DEPLOYCTL_SERVICES_ENV").map_or_else(
        || workspace_root().join("target/services/services.env"),
        PathBuf::from,
    );
    let mut out: BTreeMap<String, String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (k, v) in std::env::vars() {
        if k.starts_with("DEPLOYCTL_TEST_") {
            out.insert(k, v);
        }
    }
    out
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn absent(service: &str, why: &str) {
    let msg = format!("{service} not running ({why}); start it with `cargo xtask services up`");
    if in_ci() {
        panic!("CI=true and {msg}");
    }
    eprintln!("skipped: {msg}");
}

/// The Docker engine, or `None` (printed) when it is not running.
pub fn docker() -> Option<Docker> {
    let Some(host) = vars().remove("DEPLOYCTL_TEST_DOCKER_HOST") else {
        absent("dockerd", "DEPLOYCTL_TEST_DOCKER_HOST is not set");
        return None;
    };
    let sock = host.strip_prefix("unix://").unwrap_or(&host);
    if UnixStream::connect(sock).is_err() {
        absent("dockerd", &format!("nothing listens on {host}"));
        return None;
    }
    Some(Docker { host })
}

/// The registry, or `None` (printed) when it is not running.
pub fn registry() -> Option<Registry> {
    let mut v = vars();
    let (Some(addr), Some(user), Some(password)) = (
        v.remove("DEPLOYCTL_TEST_REGISTRY"),
        v.remove("DEPLOYCTL_TEST_REGISTRY_USER"),
        v.remove("DEPLOYCTL_TEST_REGISTRY_PASSWORD"),
    ) else {
        absent("docker-registry", "DEPLOYCTL_TEST_REGISTRY* is not set");
        return None;
    };
    if !reachable(&addr) {
        absent("docker-registry", &format!("nothing listens on {addr}"));
        return None;
    }
    Some(Registry {
        addr,
        user,
        password,
    })
}

/// moto_server, or `None` (printed) when it is not running.
pub fn aws() -> Option<Aws> {
    let Some(endpoint) = vars().remove("DEPLOYCTL_TEST_AWS_ENDPOINT") else {
        absent("moto_server", "DEPLOYCTL_TEST_AWS_ENDPOINT is not set");
        return None;
    };
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if !reachable(addr) {
        absent("moto_server", &format!("nothing listens on {endpoint}"));
        return None;
    }
    Some(Aws { endpoint })
}

/// The PostgreSQL server started for tests (`deployctl serve`'s shared store).
#[derive(Debug, Clone)]
pub struct Postgres {
    /// `postgres://deployctl@127.0.0.1:<port>/postgres` (trust authentication on loopback).
    pub url: String,
}

/// PostgreSQL, or `None` (printed) when it is not running.
pub fn postgres() -> Option<Postgres> {
    let Some(url) = vars().remove("DEPLOYCTL_TEST_DATABASE_URL") else {
        absent("postgres", "DEPLOYCTL_TEST_DATABASE_URL is not set");
        return None;
    };
    let addr = url
        .rsplit_once('@')
        .map_or(url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    if !reachable(addr) {
        absent("postgres", &format!("nothing listens on {addr}"));
        return None;
    }
    Some(Postgres { url })
}

fn reachable(addr: &str) -> bool {
    addr.parse()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// A port on loopback that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// A tiny HTTP server on loopback (started by [`http_server`]) that stands in for an app or
/// an endpoint: every request gets the same status and the body `echo <request line>`.
#[derive(Debug, Clone)]
pub struct HttpStandIn {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The request lines received (`GET /health HTTP/1.1`), in order.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpStandIn {
    /// How many requests asked for `path`.
    pub fn hits(&self, path: &str) -> usize {
        let prefix = format!("GET {path} ");
        self.requests
            .lock()
            .map_or(0, |r| r.iter().filter(|l| l.starts_with(&prefix)).count())
    }
}

/// Starts an [`HttpStandIn`] answering `status` on the current tokio runtime.
pub async fn http_server(status: u16) -> HttpStandIn {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .expect("a bound listener has an address")
    );
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0_u8; 8192];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let line = head.lines().next().unwrap_or_default().to_owned();
                if let Ok(mut r) = record.lock() {
                    r.push(line.clone());
                }
                let body = format!("echo {line}");
                let response = format!(
                    "HTTP/1.1 {status} Status\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    HttpStandIn { url, requests }
}
