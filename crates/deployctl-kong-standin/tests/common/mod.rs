//! Shared by the stand-in's tests: finding the real clients (`deck` from Debian's package,
//! the services' venv for `aio-kong`), running them off the async runtime, and a minimal
//! HTTP/1.1 client for the tests that talk to the Admin API directly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/services/services.env` (or `DEPLOYCTL_SERVICES_ENV`), as a map.
pub fn services_env() -> BTreeMap<String, String> {
    let file = std::env::var_os("DEPLOYCTL_SERVICES_ENV").map_or_else(
        || crate_dir().join("../../target/services/services.env"),
        PathBuf::from,
    );
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Prints why `client` is missing and skips the test, or fails it when `CI=true`.
pub fn absent(client: &str, why: &str) {
    let msg = format!("{client} not available ({why}); install it with `cargo xtask services up`");
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI=true and {msg}"
    );
    eprintln!("skipped: {msg}");
}

/// Debian's `deck` (`DEPLOYCTL_DECK` overrides the path), or `None` after [`absent`].
pub fn deck() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DEPLOYCTL_DECK") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("deck"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        absent("deck", "no `deck` on PATH (Debian package deck)");
    }
    found
}

/// The services' venv python with `aio-kong` importable, or `None` after [`absent`].
pub fn venv_python_with_aio_kong() -> Option<PathBuf> {
    let Some(venv) = services_env().remove("DEPLOYCTL_TEST_VENV") else {
        absent(
            "aio-kong",
            "DEPLOYCTL_TEST_VENV is not set in target/services/services.env",
        );
        return None;
    };
    let python = Path::new(&venv).join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import kong.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        absent(
            "aio-kong",
            &format!("`import kong.client` fails with {}", python.display()),
        );
        return None;
    }
    Some(python)
}

/// What a client printed.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` off the async runtime (the stand-in serves on it meanwhile).
pub async fn output(mut cmd: Command) -> Out {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One HTTP/1.1 request to `base` (`http://127.0.0.1:PORT`): (status, JSON body or Null).
pub async fn call(
    base: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let addr = base.trim_start_matches("http://").to_owned();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let (_, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, serde_json::from_str(payload).unwrap_or_default())
    })
    .await
    .unwrap()
}

/// A fresh stand-in without a token, and its URL.
pub async fn standin() -> (deployctl_kong_standin::KongStandin, String) {
    let k = deployctl_kong_standin::KongStandin::start().await.unwrap();
    let url = k.url();
    (k, url)
}
