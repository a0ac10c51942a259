//! The first thing a new user does, on a machine with only Docker: `init`, then `deploy`,
//! then the endpoint answers, then `destroy`. No registry, no AWS, no cluster.

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use std::io::{Read, Write};

use common::{copy_dir, hello_app_named, json_lines, on_docker_only, stderr, stdout, workspace};

/// `GET path` on 127.0.0.1:port with HTTP/1.0; the status code.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Regression: `init` writes a local-only deploy.yaml without `registry:`, and `deploy` used
/// to exit 2 with "nothing to push to". A local-only deploy runs the built image by its ID.
#[test]
fn init_then_deploy_on_a_machine_with_only_docker() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("first-run");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let run = |args: &[&str]| {
        on_docker_only(&app, &docker.host)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["init", "--name", "first-run"]);
    assert!(o.status.success(), "init: {}", stderr(&o));
    // The project's FROM scratch Dockerfile (nothing can be pulled here) replaces the
    // generated one; the deploy.yaml is init's, with a free host port for the test.
    std::fs::copy(
        workspace().join("fixtures/apps/hello/Dockerfile"),
        app.join("Dockerfile"),
    )
    .unwrap();
    let yaml = std::fs::read_to_string(app.join("deploy.yaml")).unwrap();
    assert!(
        !yaml.contains("\nregistry:"),
        "init wrote a registry: {yaml}"
    );
    let port = deployctl_testsupport::free_port();
    let yaml = yaml.replace(
        "local:\n  enabled: true\n",
        &format!("local:\n  enabled: true\n  port: {port}\n"),
    );
    assert!(yaml.contains(&format!("port: {port}")), "{yaml}");
    std::fs::write(app.join("deploy.yaml"), yaml).unwrap();

    let o = run(&["--output", "json", "deploy"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "deploy: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let lines = json_lines(&o);
    assert!(
        lines
            .iter()
            .any(|l| l["stage"] == "push" && l["event"] == "skipped"),
        "a local-only deploy pushes nothing"
    );
    let result = lines.last().unwrap();
    assert_eq!(result["targets"][0]["result"], "deployed", "{result}");
    assert_eq!(http_status(port, "/health"), Some(200));

    // `deploy local` says the same; a re-run changes nothing and still answers.
    let o = run(&["deploy", "local"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(http_status(port, "/health"), Some(200));

    let o = run(&["destroy", "local"]);
    assert!(o.status.success(), "destroy: {}{}", stdout(&o), stderr(&o));
    assert_eq!(http_status(port, "/health"), None, "the container is gone");
}

/// `deploy local` with other targets enabled but no registry runs the built image too.
#[test]
fn deploy_local_with_kubernetes_enabled_and_no_registry() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let port = deployctl_testsupport::free_port();
    let (_tmp, app, _name) = hello_app_named("local-only", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  enabled: true\n  port: {port}\nkubernetes:\n  enabled: true\n  namespace: default\n"
        )
    });
    let run = |args: &[&str]| {
        on_docker_only(&app, &docker.host)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["deploy", "local"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(http_status(port, "/health"), Some(200));
    let o = run(&["destroy", "local"]);
    assert!(o.status.success(), "destroy: {}{}", stdout(&o), stderr(&o));
}

/// Regression: read-only commands refused to run unless every secret variable was set.
/// They never use a secret's value; the commands that do still refuse, naming the variable.
#[test]
fn read_only_commands_run_without_secret_variables() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let (_tmp, app, _name) = hello_app_named("no-secrets", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\nsecrets:\n  DB_PASSWORD: ${{DEPLOYCTL_TEST_UNSET_SECRET}}\nlocal:\n  enabled: true\n"
        )
    });
    let run = |args: &[&str]| {
        on_docker_only(&app, &docker.host)
            .args(args)
            .env_remove("DEPLOYCTL_TEST_UNSET_SECRET")
            .output()
            .unwrap()
    };
    for args in [
        vec!["status"],
        vec!["history", "local"],
        vec!["destroy", "--dry-run"],
        vec!["logs", "local"],
    ] {
        let o = run(&args);
        let err = stderr(&o);
        assert!(
            !err.contains("DEPLOYCTL_TEST_UNSET_SECRET"),
            "{args:?} asked for the secret: {err}"
        );
        assert_ne!(o.status.code(), Some(2), "{args:?}: {}{err}", stdout(&o));
    }
    for args in [vec!["validate"], vec!["deploy", "--dry-run"]] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("DEPLOYCTL_TEST_UNSET_SECRET"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// `--verify-timeout` bounds how long a health check keeps trying: an app that never answers
/// its health path fails the deploy after that long (not the default 30 s), and the failed
/// container does not stay.
#[test]
fn verify_timeout_bounds_the_health_check() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let port = deployctl_testsupport::free_port();
    let (_tmp, app, _name) = hello_app_named("slow", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /never-answers-200\nlocal:\n  enabled: true\n  port: {port}\n"
        )
    });
    let start = std::time::Instant::now();
    let o = on_docker_only(&app, &docker.host)
        .args(["deploy", "--verify-timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));
    assert!(stderr(&o).contains("was removed"), "{}", stderr(&o));
    assert_eq!(
        http_status(port, "/health"),
        None,
        "nothing is left serving"
    );
}
