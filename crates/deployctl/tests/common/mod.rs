//! Helpers shared by the CLI integration tests: each test runs the real `deployctl` binary
//! in its own temp dir.

#![allow(dead_code, clippy::unwrap_used)] // not every test binary uses every helper

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(rel: &str) -> PathBuf {
    workspace().join("fixtures").join(rel)
}

pub fn deployctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run deployctl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == "target" {
                continue;
            }
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A copy of the hello fixture app in a temp dir, named `<prefix>-<unique>`, with the
/// deploy.yaml `yaml(name)` writes: (temp dir guard, app dir, app name).
pub fn hello_app_named(
    prefix: &str,
    yaml: impl Fn(&str) -> String,
) -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let name = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000_000
    );
    std::fs::write(app.join("deploy.yaml"), yaml(&name)).unwrap();
    (tmp, app, name)
}

/// `deployctl` in `app` on the engine at `docker_host` and nothing else: no registry
/// credentials, no AWS configuration, no cluster.
pub fn on_docker_only(app: &Path, docker_host: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployctl"));
    c.current_dir(app)
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", docker_host)
        .env("DOCKER_CONFIG", app.join("no-docker-config"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("KUBECONFIG", app.join("no-kubeconfig"));
    c
}
