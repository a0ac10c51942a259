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
//! This crate is a dev-dependency only; it is never linked into the shipped binary.

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

fn reachable(addr: &str) -> bool {
    addr.parse()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}
