//! Runs the embedding example against the real dockerd from `cargo xtask services up`.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::process::Command;

#[test]
fn the_example_builds_deploys_locally_and_reports_events() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = deployctl_testsupport::hello_app();
    for f in ["Dockerfile", "hello"] {
        std::fs::copy(app.join(f), tmp.path().join(f)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("embed-{port}");
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        format!("app:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  port: {port}\n  restart: 'no'\n"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deployctl-example-embed"))
        .arg(tmp.path())
        .env("DOCKER_HOST", &docker.host)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(&format!("local serves http://127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("[verify local] done"), "{out}");
    assert!(out.contains("events: apply local="), "{out}");
    // Clean up the container the example started.
    let _ = Command::new("docker")
        .args(["-H", &docker.host, "rm", "-f", &format!("deployctl-{name}")])
        .output();
}
