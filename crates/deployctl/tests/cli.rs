//! CLI integration tests: each test runs the real `deployctl` binary in its own temp dir.

#![allow(clippy::unwrap_used)] // helpers of integration tests: a failure here is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> PathBuf {
    workspace().join("fixtures").join(rel)
}

fn deployctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run deployctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
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

#[test]
fn version_prints_the_crate_version() {
    let tmp = tempfile::tempdir().unwrap();
    let o = deployctl(tmp.path(), &["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("deployctl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn no_command_is_exit_2_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let o = deployctl(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("deployctl init"), "{}", stderr(&o));
}

#[test]
fn validate_accepts_the_seed_example() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture("config/valid/seed-000.yaml");
    let o = deployctl(tmp.path(), &["--config", cfg.to_str().unwrap(), "validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("is valid: app my-jvagent-app 1.0.0"), "{out}");
    assert!(
        out.contains("lambda") && out.contains("kubernetes"),
        "{out}"
    );
}

#[test]
fn validate_json_result_has_schema_version() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture("config/valid/seed-000.yaml");
    let o = deployctl(
        tmp.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            "json",
            "validate",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["type"], "result");
    assert_eq!(v["ok"], true);
    assert_eq!(v["app"]["name"], "my-jvagent-app");
}

#[test]
fn missing_config_is_exit_2_and_suggests_init() {
    let tmp = tempfile::tempdir().unwrap();
    let o = deployctl(tmp.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("deploy.yaml"), "{err}");
    assert!(err.contains("deployctl init"), "{err}");
}

#[test]
fn every_invalid_fixture_exits_2_with_a_positioned_diagnostic() {
    let dir = fixture("config/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        n += 1;
        let tmp = tempfile::tempdir().unwrap();
        let o = deployctl(
            tmp.path(),
            &[
                "--config",
                path.to_str().unwrap(),
                "--output",
                "json",
                "validate",
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            stdout(&o)
        );
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim())
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", path.display(), stdout(&o)));
        assert_eq!(v["ok"], false);
        assert_eq!(v["exit_code"], 2);
        assert!(
            stderr(&o).is_empty() || !stderr(&o).contains("panicked"),
            "{}",
            stderr(&o)
        );
    }
    assert!(n >= 30, "expected at least 30 invalid fixtures, found {n}");
}

#[test]
fn secrets_never_reach_output() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("deploy.yaml");
    std::fs::write(
        &cfg,
        "version: \"1.0\"\napp:\n  name: leaky\n  version: \"1\"\nsecrets:\n  DB_PASSWORD: ${DB_PASSWORD}\nlocal:\n  enabled: true\n",
    )
    .unwrap();
    let secret = "s3cr3t-Value-91827";
    for args in [
        vec!["validate", "--print"],
        vec!["--output", "json", "validate", "--print"],
        vec!["plan"],
        vec!["--output", "json", "plan"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_deployctl"))
            .args(&args)
            .current_dir(tmp.path())
            .env("DB_PASSWORD", secret)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains(secret), "{args:?} leaked the secret: {all}");
    }
}

#[test]
fn init_then_validate_then_plan_on_the_hello_app() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let had_dockerfile = std::fs::read_to_string(app.join("Dockerfile")).ok();

    let o = deployctl(&app, &["init"]);
    assert!(o.status.success(), "init: {}", stderr(&o));
    assert!(app.join("deploy.yaml").exists());
    if let Some(before) = had_dockerfile {
        assert_eq!(
            std::fs::read_to_string(app.join("Dockerfile")).unwrap(),
            before,
            "init must keep an existing Dockerfile"
        );
    }

    // A second init refuses to overwrite and changes nothing.
    let before = std::fs::read_to_string(app.join("deploy.yaml")).unwrap();
    let o = deployctl(&app, &["init"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(app.join("deploy.yaml")).unwrap(),
        before
    );

    let o = deployctl(&app, &["validate"]);
    assert!(o.status.success(), "validate: {}", stderr(&o));
    let o = deployctl(&app, &["plan", "--dry-run"]);
    assert!(o.status.success(), "plan: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("image:"), "{out}");
    assert!(out.contains("build"), "{out}");
}

#[test]
fn init_on_an_unrecognised_directory_lists_what_it_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("README.txt"), "nothing here").unwrap();
    let o = deployctl(tmp.path(), &["init"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for f in ["package.json", "go.mod", "Cargo.toml", "pom.xml"] {
        assert!(err.contains(f), "{f} not listed: {err}");
    }
    assert!(!tmp.path().join("deploy.yaml").exists());
}

#[test]
fn unknown_environment_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture("config/valid/seed-000.yaml");
    let o = deployctl(
        tmp.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--env",
            "nope",
            "validate",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
}

#[test]
fn build_runs_on_the_engine_and_reports_the_image() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    assert!(
        app.join("hello").is_file(),
        "run `cargo xtask fixtures` first"
    );
    assert!(deployctl(&app, &["init"]).status.success());
    let o = Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(["--output", "json", "build", "--tag", "ci"])
        .current_dir(&app)
        .env("DOCKER_HOST", &docker.host)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|v| v["schema_version"] == 1));
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "event" && v["stage"] == "build" && v["event"] == "progress")
    );
    let result = lines.last().unwrap();
    assert_eq!(result["type"], "result");
    assert!(
        result["image"]["id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let tags = result["image"]["tags"].as_array().unwrap();
    assert!(
        tags.iter().any(|t| t == "docker.io/library/hello:0.1.0"),
        "{tags:?}"
    );
    assert!(
        tags.iter().any(|t| t == "docker.io/library/hello:ci"),
        "{tags:?}"
    );
}

#[test]
fn build_without_an_engine_is_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    assert!(deployctl(&app, &["init"]).status.success());
    let o = Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .arg("build")
        .current_dir(&app)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("DOCKER_HOST"), "{}", stderr(&o));
}

#[test]
fn build_with_a_broken_dockerfile_names_the_step_and_exits_2() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: broken\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        "FROM scratch\nCOPY nowhere.txt /x\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .arg("build")
        .current_dir(tmp.path())
        .env("DOCKER_HOST", &docker.host)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: build failed at Step 2/") && err.contains(": COPY nowhere.txt /x"),
        "{err}"
    );
}

#[test]
fn push_sends_the_image_and_prints_its_digest_without_the_password() {
    let (Some(docker), Some(reg)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "version: \"1.0\"\napp:\n  name: cli-push\n  version: \"2.0\"\nregistry:\n  url: {}\n  username: {}\n  password: ${{REGISTRY_PASSWORD}}\n",
            reg.addr, reg.user
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(["--output", "json", "push"])
        .current_dir(&app)
        .env("DOCKER_HOST", &docker.host)
        .env("REGISTRY_PASSWORD", &reg.password)
        .env("DOCKER_CONFIG", tmp.path().join("no-docker-config"))
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{all}");
    assert!(!all.contains(&reg.password), "the registry password leaked");
    let result: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(result["command"], "push");
    let digest = result["image"]["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"), "{result}");
    assert_eq!(
        result["image"]["reference"],
        format!("{}/cli-push:2.0@{digest}", reg.addr)
    );
    let verified = stdout(&o)
        .lines()
        .any(|l| l.contains("\"stage\":\"push\"") && l.contains("verified"));
    assert!(verified, "no event says the pushed manifest was verified");
}

#[test]
fn push_without_a_registry_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: nowhere\n",
    )
    .unwrap();
    let o = deployctl(tmp.path(), &["push"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("registry"), "{}", stderr(&o));
}
