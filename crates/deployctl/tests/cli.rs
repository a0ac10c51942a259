//! CLI integration tests: each test runs the real `deployctl` binary in its own temp dir.

#![allow(clippy::unwrap_used)] // helpers of integration tests: a failure here is a test failure

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{
    copy_dir, deployctl, fixture, hello_app_named, json_lines, stderr, stdout, workspace,
};

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
        err.contains("error: build failed at ") && err.contains("COPY nowhere.txt /x"),
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
            "version: \"1.0\"\napp:\n  name: cli-push\n  version: \"2.0\"\nregistry:\n  url: {}\n  username: {}\n  password: ${{REGISTRY_PASSWORD}}\nbuild:\n  cache:\n    to: {}/cli-push-cache:buildcache\n",
            reg.addr, reg.user, reg.addr
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
    // build.cache.to: the registry holds the cache tag, the same image.
    let head = Command::new("curl")
        .args(["-sS", "-I", "-u", &format!("{}:{}", reg.user, reg.password)])
        .args(["-H", "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"])
        .arg(format!("http://{}/v2/cli-push-cache/manifests/buildcache", reg.addr))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "the cache tag is not in the registry: {head}"
    );
    assert!(
        head.contains(digest),
        "the cache tag is another image: {head}"
    );
    assert!(
        stdout(&o).contains("build cache tag pushed"),
        "no event says the cache tag was pushed"
    );
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

/// A `deployctl` command wired to the local services the way a user points it at an AWS
/// emulator: AWS_ENDPOINT_URL, static credentials and the ECR push endpoint.
fn lambda_cmd(
    dir: &Path,
    docker: &deployctl_testsupport::Docker,
    reg: &deployctl_testsupport::Registry,
    aws: &deployctl_testsupport::Aws,
    args: &[&str],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployctl"));
    c.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", &docker.host)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("DEPLOYCTL_ECR_PUSH_ENDPOINT", &reg.addr)
        .env("APP_TOKEN", "tok-very-secret-4242");
    c
}

#[test]
fn lambda_deploy_redeploy_status_rollback_destroy_through_the_cli() {
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    let (_tmp, app, name) = hello_app_named("cli-lambda", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nsecrets:\n  TOKEN: ${{APP_TOKEN}}\nlambda:\n  enabled: true\n  region: us-east-1\n  function:\n    memory: ${{MEMORY:-256}}\n"
        )
    });
    let run = |args: &[&str], memory: &str| {
        let o = lambda_cmd(&app, &docker, &reg, &aws, args)
            .env("MEMORY", memory)
            .output()
            .unwrap();
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            !all.contains("tok-very-secret-4242"),
            "a secret value leaked: {all}"
        );
        o
    };

    // A dry run reads only: afterwards nothing is deployed.
    let o = run(&["deploy", "lambda", "--dry-run"], "256");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("+ lambda function"), "{}", stdout(&o));
    let o = run(&["status", "lambda"], "256");
    assert!(stdout(&o).contains("not deployed"), "{}", stdout(&o));

    // First deploy, JSON events.
    let o = run(&["--output", "json", "deploy", "lambda"], "256");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    assert!(lines.iter().all(|l| l["schema_version"] == 1));
    for stage in ["build", "push", "plan", "apply", "verify"] {
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "event" && l["stage"] == stage),
            "no {stage} event"
        );
    }
    let result = lines.last().unwrap();
    assert_eq!(result["command"], "deploy");
    assert_eq!(result["ok"], true);
    let target = &result["targets"][0];
    assert_eq!(target["target"], "lambda");
    assert_eq!(target["result"], "deployed");
    assert_eq!(target["version"], "1");
    assert_eq!(target["verify"], "not verifiable here");
    // The check was made: moto's API endpoint is a made-up host, so the live alias was
    // invoked, and moto, which cannot run images, answered; that answer is what is reported.
    let checks = target["verifications"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["result"], "not_verifiable");
    let reason = checks[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("lambda:Invoke {name}:live")),
        "{reason}"
    );
    assert!(reason.contains("does not run them"), "{reason}");
    assert!(
        reason.contains("HTTP 500"),
        "moto's own answer is quoted: {reason}"
    );
    // Every AWS call is counted, ECR's too (the first push created the repository).
    let mutating = result["aws_calls"]["mutating_operations"]
        .as_array()
        .unwrap();
    assert!(
        mutating
            .iter()
            .any(|op| op.as_str().unwrap().ends_with(":CreateRepository")),
        "{mutating:?}"
    );
    let digest = result["image"]["digest"].as_str().unwrap().to_owned();

    // Unchanged redeploy: every resource unchanged, same version.
    let o = run(&["--output", "json", "deploy", "lambda"], "256");
    assert!(o.status.success(), "{}", stderr(&o));
    let result = json_lines(&o).pop().unwrap();
    assert_eq!(
        result["image"]["digest"],
        digest.as_str(),
        "same sources, same image"
    );
    let changes = result["targets"][0]["plan"]["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["action"] == "unchanged"),
        "{changes:#?}"
    );
    assert_eq!(result["targets"][0]["version"], "1");

    // Memory change: a configuration update and version 2.
    let o = run(&["deploy", "lambda"], "512");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("memory: 256 → 512"), "{}", stdout(&o));
    let o = run(&["--output", "json", "status", "lambda"], "512");
    let status = json_lines(&o).pop().unwrap();
    assert_eq!(status["targets"][0]["version"], "2");
    assert!(
        status["targets"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(&digest)
    );

    let o = run(&["history", "lambda"], "512");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("* 2"), "{}", stdout(&o));

    let o = run(&["rollback", "lambda"], "512");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("from 2 to 1"), "{}", stdout(&o));

    let o = run(&["destroy", "lambda", "--purge-images"], "512");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("- lambda function"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("- ecr repository {name}")),
        "{}",
        stdout(&o)
    );
    let o = run(&["destroy", "lambda"], "512");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing to delete"), "{}", stdout(&o));
    let o = run(&["status", "lambda"], "512");
    assert!(stdout(&o).contains("not deployed"), "{}", stdout(&o));
}

#[test]
fn lambda_stage_flags_push_then_update_then_create_api() {
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    let (_tmp, app, _name) = hello_app_named("cli-stages", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\nlambda:\n  enabled: true\n  region: us-east-1\n"
        )
    });
    let run = |args: &[&str]| {
        lambda_cmd(&app, &docker, &reg, &aws, args)
            .output()
            .unwrap()
    };
    let kinds = |o: &Output| -> Vec<(String, String)> {
        let result = json_lines(o).pop().unwrap();
        result["targets"][0]["plan"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap().to_owned(),
                    c["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };

    // Nothing pushed yet: --update has no image to deploy and says how to get one.
    let o = run(&["deploy", "lambda", "--update"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("push it first"), "{}", stderr(&o));

    // --push builds and pushes, and deploys nothing.
    let o = run(&["--output", "json", "deploy", "lambda", "--push"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let pushed = json_lines(&o).pop().unwrap();
    let digest = pushed["image"]["digest"].as_str().unwrap().to_owned();
    let o = run(&["status", "lambda"]);
    assert!(stdout(&o).contains("not deployed"), "{}", stdout(&o));

    // --update deploys the pushed image: the function, no API.
    let o = run(&["--output", "json", "deploy", "lambda", "--update"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let changes = kinds(&o);
    assert!(
        changes.contains(&("lambda function".into(), "create".into())),
        "{changes:?}"
    );
    assert!(
        !changes.iter().any(|(k, _)| k.starts_with("http api")),
        "{changes:?}"
    );
    let o = run(&["--output", "json", "status", "lambda"]);
    let status = json_lines(&o).pop().unwrap();
    assert!(
        status["targets"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(&digest),
        "{status}"
    );

    // --create-api puts the HTTP API in front of the alias and leaves the function alone.
    let o = run(&["--output", "json", "deploy", "lambda", "--create-api"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let changes = kinds(&o);
    assert!(
        changes.contains(&("http api".into(), "create".into())),
        "{changes:?}"
    );
    assert!(
        !changes.iter().any(|(k, _)| k == "lambda function"),
        "{changes:?}"
    );
    let result = json_lines(&o).pop().unwrap();
    assert!(
        result["targets"][0]["endpoint"]
            .as_str()
            .unwrap()
            .contains("execute-api"),
        "{result}"
    );

    // Everything is now in place: a full deploy changes nothing.
    let o = run(&["deploy", "lambda", "--all"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("AWS: 0 mutating calls"),
        "{}",
        stdout(&o)
    );

    // A stage flag for a target this deploy does not include is refused up front.
    let o = run(&["deploy", "lambda", "--apply"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--apply applies to the k8s target"),
        "{}",
        stderr(&o)
    );

    let o = run(&["destroy", "lambda", "--purge-images"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn lambda_without_aws_credentials_is_exit_3_before_any_change() {
    let Some(aws) = deployctl_testsupport::aws() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: no-creds\nlambda:\n  enabled: true\n  region: us-east-1\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(["deploy", "lambda", "--dry-run"])
        .current_dir(tmp.path())
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", tmp.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", tmp.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("AWS credentials"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn lambda_limits_are_checked_before_anything_remote() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: limits\nlambda:\n  enabled: true\n  region: us-east-7\n  function:\n    memory: 64\n    timeout: 901\n",
    )
    .unwrap();
    // No AWS endpoint or credentials at all: validation must fail first.
    let o = deployctl(tmp.path(), &["deploy", "lambda"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for field in [
        "lambda.function.memory",
        "lambda.function.timeout",
        "lambda.region",
    ] {
        assert!(err.contains(field), "{field} not named: {err}");
    }
}

#[test]
fn render_k8s_prints_manifests_pinned_by_digest_and_writes_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture("k8s/minimal/deploy.yaml");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let image = format!("127.0.0.1:5000/hello@{digest}");
    let o = deployctl(
        tmp.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "render",
            "k8s",
            "--image",
            &image,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let yaml = stdout(&o);
    assert!(yaml.contains("kind: Deployment"), "{yaml}");
    assert!(yaml.contains(&digest), "{yaml}");
    let out = tmp.path().join("manifests");
    let o = deployctl(
        tmp.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "render",
            "k8s",
            "--image",
            &image,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_dir(&out).unwrap().count() >= 2);
    let o = deployctl(
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "render", "k8s"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--image"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_all_reaches_local_lambda_and_k8s_in_parallel_and_destroy_cleans_up() {
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    let standin = deployctl_kube_standin::StandIn::start().await.unwrap();
    // A rollout that takes a while, as on a real cluster: the Lambda apply runs meanwhile.
    // Long enough that moto, shared with the other Lambda tests running at the same time,
    // answers the Lambda plan's reads before the rollout ends (3 s was not, once).
    standin.set_ready_after(std::time::Duration::from_secs(10));
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000;
    let port = deployctl_testsupport::free_port();
    // The stand-in runs no pods: its service proxy forwards to the same image on the local
    // engine, so the Kubernetes verification receives a real HTTP answer.
    standin.set_default_proxy_target(Some(&format!("http://127.0.0.1:{port}")));
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "version: \"1.0\"\napp:\n  name: all-{stamp}\n  port: 8080\n  health_check_path: /health\nsecrets:\n  TOKEN: ${{APP_TOKEN}}\nlocal:\n  enabled: true\n  port: {port}\nlambda:\n  enabled: true\n  region: us-east-1\nkubernetes:\n  enabled: true\n  namespace: all-{stamp}\n"
        ),
    )
    .unwrap();
    let run = move |args: Vec<&'static str>| {
        let (app, docker, reg, aws, kubeconfig) = (
            app.clone(),
            docker.clone(),
            reg.clone(),
            aws.clone(),
            kubeconfig.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let o = lambda_cmd(&app, &docker, &reg, &aws, &args)
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .unwrap();
            let all = format!("{}{}", stdout(&o), stderr(&o));
            assert!(
                !all.contains("tok-very-secret-4242"),
                "a secret leaked: {all}"
            );
            o
        })
    };

    let o = run(vec!["--output", "json", "deploy"]).await.unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    let result = lines.last().unwrap();
    let targets: Vec<(&str, &str)> = result["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap(), t["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        targets,
        [
            ("local", "deployed"),
            ("lambda", "deployed"),
            ("k8s", "deployed")
        ]
    );
    assert!(
        result["targets"][0]["verify"]
            .as_str()
            .unwrap()
            .starts_with("healthy (200"),
        "{result}"
    );
    assert_eq!(
        result["targets"][2]["verifications"][0]["method"], "service proxy",
        "{result}"
    );
    assert_eq!(
        result["targets"][2]["verifications"][0]["status"], 200,
        "{result}"
    );
    // Lambda and Kubernetes applies overlap in time.
    let span = |target: &str| {
        let at = |event: &str| {
            lines
                .iter()
                .find(|l| l["stage"] == "apply" && l["target"] == target && l["event"] == event)
                .and_then(|l| l["at_ms"].as_u64())
                .unwrap_or_else(|| panic!("no apply {event} event for {target}"))
        };
        (at("started"), at("finished"))
    };
    let (ls, le) = span("lambda");
    let (ks, ke) = span("k8s");
    assert!(
        ls <= ke && ks <= le,
        "applies did not overlap: lambda {ls}-{le}, k8s {ks}-{ke}"
    );

    let o = run(vec!["--output", "json", "status"]).await.unwrap();
    let status = json_lines(&o).pop().unwrap();
    let deployed: Vec<bool> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["deployed"].as_bool().unwrap())
        .collect();
    assert_eq!(deployed, [true, true, true], "{status}");

    let o = run(vec!["destroy"]).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(vec!["status"]).await.unwrap();
    assert_eq!(
        stdout(&o).matches("not deployed").count(),
        3,
        "{}",
        stdout(&o)
    );
}

#[test]
fn completions_cover_every_command_in_each_shell() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "nushell"] {
        let o = deployctl(tmp.path(), &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        for cmd in [
            "deploy", "status", "logs", "destroy", "rollback", "render", "history", "scale",
        ] {
            assert!(script.contains(cmd), "{shell} completions lack `{cmd}`");
        }
    }
    let o = deployctl(tmp.path(), &["completions", "powershell"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ctrl_c_or_sigterm_during_the_push_exits_130_and_a_rerun_converges() {
    use std::io::{BufRead, BufReader};
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    // Ctrl-C, and SIGTERM (what CI systems send to cancel a job), alike.
    for signal in ["-INT", "-TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("hello");
        copy_dir(&workspace().join("fixtures/apps/hello"), &app);
        let name = format!(
            "cli-interrupt-{}-{}",
            signal.trim_start_matches('-').to_lowercase(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                % 1_000_000_000
        );
        std::fs::write(
            app.join("deploy.yaml"),
            format!("version: \"1.0\"\napp:\n  name: {name}\nlambda:\n  enabled: true\n  region: us-east-1\n"),
        )
        .unwrap();
        let mut child = lambda_cmd(
            &app,
            &docker,
            &reg,
            &aws,
            &["--output", "json", "deploy", "lambda"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut signalled = false;
        // Keep reading to the end: the interrupted run still reports what it did.
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let push_started =
                line.contains("\"stage\":\"push\"") && line.contains("\"event\":\"started\"");
            seen.push(line);
            if push_started && !signalled {
                let killed = Command::new("kill")
                    .args([signal, &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(killed.success());
                signalled = true;
            }
        }
        assert!(signalled, "the push never started: {seen:#?}");
        let status = child.wait().unwrap();
        let last: serde_json::Value = serde_json::from_str(seen.last().unwrap()).unwrap();
        assert_eq!(last["type"], "result", "{last}");
        assert_eq!(last["exit_code"], 130, "{last}");
        assert_eq!(status.code(), Some(130), "interrupted run: {seen:#?}");

        // The same command again finishes the job.
        let o = lambda_cmd(
            &app,
            &docker,
            &reg,
            &aws,
            &["--output", "json", "deploy", "lambda"],
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{}{}", stdout_text(&o), stderr(&o));
        let result = json_lines(&o).pop().unwrap();
        assert_eq!(result["targets"][0]["result"], "deployed");
        let o = lambda_cmd(&app, &docker, &reg, &aws, &["destroy", "lambda"])
            .output()
            .unwrap();
        assert!(o.status.success());
    }
}

fn stdout_text(o: &Output) -> String {
    stdout(o)
}

/// Regression: `-vv` (and `RUST_LOG=trace`) printed the ECR authorization token from the
/// GetAuthorizationToken response body. Every log line is scrubbed of known secret values
/// and credential fields.
#[test]
fn trace_logs_carry_no_secret() {
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    let (_tmp, app, _name) = hello_app_named("cli-trace", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\nsecrets:\n  TOKEN: ${{APP_TOKEN}}\nlambda:\n  enabled: true\n  region: us-east-1\n"
        )
    });
    for (flags, rust_log) in [(vec!["-vv"], None), (vec![], Some("trace"))] {
        let mut args = flags.clone();
        args.extend(["deploy", "lambda", "--no-verify"]);
        let mut cmd = lambda_cmd(&app, &docker, &reg, &aws, &args);
        if let Some(l) = rust_log {
            cmd.env("RUST_LOG", l);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(all.len() > 10_000, "no trace output: {all}");
        // moto's ECR token is base64("AWS:123456789012-auth-token").
        for secret in [
            "tok-very-secret-4242",
            "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
            "123456789012-auth-token",
        ] {
            assert!(
                !all.contains(secret),
                "{secret} in the logs of {args:?} / RUST_LOG={rust_log:?}"
            );
        }
    }
    let o = lambda_cmd(
        &app,
        &docker,
        &reg,
        &aws,
        &["destroy", "lambda", "--purge-images"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Regression: `deploy lambda --image REPO@sha256:D` ignored REPO and never checked that the
/// registry holds D. The image is looked up first: an unknown digest or a repository Lambda
/// cannot pull from changes nothing (exit 2); the pushed one deploys by its ECR name.
#[test]
fn deploy_lambda_image_is_confirmed_before_anything_changes() {
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    let (_tmp, app, name) = hello_app_named("cli-image", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\nlambda:\n  enabled: true\n  region: us-east-1\n"
        )
    });
    let run = |args: &[&str]| {
        lambda_cmd(&app, &docker, &reg, &aws, args)
            .output()
            .unwrap()
    };
    let o = run(&["--output", "json", "push"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = json_lines(&o).pop().unwrap()["image"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let ecr = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}");

    let unknown = format!("{ecr}@sha256:{}", "0".repeat(64));
    let o = run(&["deploy", "lambda", "--image", &unknown]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("has no image"), "{}", stderr(&o));
    let o = run(&[
        "deploy",
        "lambda",
        "--image",
        &format!("ghcr.io/o/{name}@{digest}"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("only from Amazon ECR"),
        "{}",
        stderr(&o)
    );
    let o = run(&["status", "lambda"]);
    assert!(stdout(&o).contains("not deployed"), "{}", stdout(&o));

    let o = run(&[
        "--output",
        "json",
        "deploy",
        "lambda",
        "--image",
        &format!("{ecr}@{digest}"),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = run(&["--output", "json", "status", "lambda"]);
    let status = json_lines(&o).pop().unwrap();
    assert_eq!(
        status["targets"][0]["image"].as_str().unwrap(),
        format!("{ecr}@{digest}"),
        "{status}"
    );
    let o = run(&["destroy", "lambda", "--purge-images"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
