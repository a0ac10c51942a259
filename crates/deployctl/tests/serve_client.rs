//! The thin client: `deployctl --server URL --project P deploy|status|logs|destroy` against
//! a `deployctl serve` of the built binary, which builds the uploaded app directory on the
//! services' Docker engine. The client prints what a local run prints and exits as it
//! would; bad input is refused before anything is sent.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::process::{Command, Output};
use std::time::Duration;

use common::{hello_app_named, json_lines, on_docker_only, stderr, stdout};
use serde_json::Value;
use serve::{Db, Server, http};

/// `deployctl --server … --project demo <args>` in `app` with the token in the environment.
fn client(app: &std::path::Path, docker: &str, port: u16, token: &str) -> Command {
    let mut c = on_docker_only(app, docker);
    c.args([
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "--project",
        "demo",
    ])
    .env("DEPLOYCTL_TOKEN", token);
    c
}

fn run(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().unwrap()
}

fn said(o: &Output) -> String {
    format!("exit {:?}\n{}{}", o.status.code(), stdout(o), stderr(o))
}

/// How many deployments the server holds for `app`.
fn deployments(port: u16, token: &str, app: &str) -> usize {
    let a = http(
        port,
        "GET",
        &format!("/api/v1/projects/demo/apps/{app}/history"),
        Some(token),
        None,
    );
    if a.status == 404 {
        return 0;
    }
    a.json()["deployments"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_cli_deploys_reads_and_destroys_through_a_server() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let app_port = deployctl_testsupport::free_port();
    let (tmp, app, name) = hello_app_named("client", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  enabled: true\n  port: {app_port}\n"
        )
    });
    // Left home by .dockerignore: never uploaded (it would pass the 1 MiB limit).
    std::fs::create_dir(app.join("target")).unwrap();
    // Bytes gzip cannot shrink: a xorshift stream.
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(app.join("target/big.bin"), noise).unwrap();
    std::fs::write(app.join(".dockerignore"), "target\n").unwrap();
    let db = Db::Dir(tmp.path().join("server-data"));
    let token = serve::token(&db, "demo", "deploy");
    let env = [
        ("DOCKER_HOST", docker.host.clone()),
        (
            "DOCKER_CONFIG",
            app.join("no-docker-config").display().to_string(),
        ),
    ];
    let server = Server::start(&db, &["--upload-max-mib", "1"], &env, tmp.path());
    let port = server.port;

    // Bad input: exit 2, and the server never hears of it.
    let yaml = std::fs::read_to_string(app.join("deploy.yaml")).unwrap();
    std::fs::write(app.join("bad.yaml"), format!("{yaml}  memory: lots\n")).unwrap();
    let o = run(
        client(&app, &docker.host, port, &token),
        &["--config", "bad.yaml", "deploy"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert!(
        stderr(&o).contains("bad.yaml:"),
        "names the file: {}",
        said(&o)
    );
    let o = run(
        client(&app, &docker.host, port, &token),
        &["deploy", "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert!(stderr(&o).contains("--dry-run"), "{}", said(&o));
    let o = run(client(&app, &docker.host, port, ""), &["deploy"]);
    assert_eq!(o.status.code(), Some(2), "no token: {}", said(&o));
    assert!(stderr(&o).contains("DEPLOYCTL_TOKEN"), "{}", said(&o));
    let o = run(client(&app, &docker.host, port, &token), &["plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    // With only the variable exported, commands other than the four run here.
    let o = on_docker_only(&app, &docker.host)
        .env("DEPLOYCTL_SERVER", format!("http://127.0.0.1:{port}"))
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert_eq!(
        deployments(port, &token, &name),
        0,
        "nothing reached the server"
    );
    // A token the server does not know: the environment's fault (3), said by the server.
    let o = run(
        client(
            &app,
            &docker.host,
            port,
            "dct_not-a-real-token-000000000000",
        ),
        &["deploy"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", said(&o));
    assert!(stderr(&o).contains("401"), "{}", said(&o));
    // No server there: 3, naming where it looked.
    let nowhere = deployctl_testsupport::free_port();
    let o = run(client(&app, &docker.host, nowhere, &token), &["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", said(&o));
    assert!(stderr(&o).contains(&nowhere.to_string()), "{}", said(&o));

    // Deploy: packed after .dockerignore, built and run by the server, progress and the
    // summary printed here as a local deploy prints them.
    let o = run(client(&app, &docker.host, port, &token), &["deploy"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        said(&o),
        server.log_text()
    );
    let text = said(&o);
    assert!(text.contains("uploading"), "{text}");
    assert!(
        text.contains("TARGET") && text.contains("deployed"),
        "{text}"
    );
    assert_eq!(
        http(app_port, "GET", "/health", None, None).status,
        200,
        "the app answers where the server deployed it"
    );

    // The same as JSON: every event line, then a result naming the deployment.
    let o = run(
        client(&app, &docker.host, port, &token),
        &["--output", "json", "deploy", "local"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let lines = json_lines(&o);
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "event" && l["stage"] == "build" && l["event"] == "finished"),
        "{}",
        said(&o)
    );
    let result = lines.last().unwrap();
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["targets"][0]["result"], "deployed", "{result}");
    assert!(result["deployment"].is_string(), "{result}");
    assert_eq!(deployments(port, &token, &name), 2);

    // status and logs read through the server.
    let o = run(client(&app, &docker.host, port, &token), &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert!(stdout(&o).contains("local: version"), "{}", said(&o));
    let o = run(
        client(&app, &docker.host, port, &token),
        &["-o", "json", "status", "local"],
    );
    let status: Value = json_lines(&o).pop().unwrap();
    assert_eq!(status["targets"][0]["deployed"], true, "{status}");
    let o = run(
        client(&app, &docker.host, port, &token),
        &["logs", "local", "--since", "10m"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));

    // A deploy that fails on the server exits as the same deploy here would (1), with the
    // failing stage's message.
    std::fs::write(
        app.join("deploy.yaml"),
        yaml.replace(
            "health_check_path: /health",
            "health_check_path: /no-such-path",
        ),
    )
    .unwrap();
    let o = run(
        client(&app, &docker.host, port, &token),
        &["deploy", "--verify-timeout", "5s"],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "--verify-timeout is refused: {}",
        said(&o)
    );
    let remote = run(client(&app, &docker.host, port, &token), &["deploy"]);
    let here = on_docker_only(&app, &docker.host)
        .args(["deploy"])
        .output()
        .unwrap();
    assert_eq!(
        remote.status.code(),
        here.status.code(),
        "remote:\n{}\nhere:\n{}",
        said(&remote),
        said(&here)
    );
    assert_ne!(remote.status.code(), Some(0), "{}", said(&remote));
    assert!(
        stderr(&remote).contains("error: deployment"),
        "{}",
        said(&remote)
    );
    std::fs::write(app.join("deploy.yaml"), &yaml).unwrap();

    // Too big for the server: 413, invalid input (2), the server's hint shown.
    std::fs::write(app.join(".dockerignore"), "").unwrap();
    let o = run(client(&app, &docker.host, port, &token), &["deploy"]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert!(stderr(&o).contains("413"), "{}", said(&o));
    std::fs::write(app.join(".dockerignore"), "target\n").unwrap();

    // Ctrl-C while the server runs the deployment (held in its pre_deploy hook): the client
    // cancels it there, waits for it to stop and exits 130; the record says cancelled.
    let started = tmp.path().join("hook-started");
    let held = format!(
        "{yaml}hooks:\n  pre_deploy:\n    - run: 'touch {}; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done'\n",
        started.display()
    );
    std::fs::write(app.join("deploy.yaml"), held).unwrap();
    let mut c = client(&app, &docker.host, port, &token);
    let child = c
        .arg("deploy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        started.exists()
    });
    assert!(reached, "the hook never ran: {}", server.log_text());
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", said(&o));
    let history = http(
        port,
        "GET",
        &format!("/api/v1/projects/demo/apps/{name}/history"),
        Some(&token),
        None,
    )
    .json();
    assert_eq!(
        history["deployments"][0]["status"], "cancelled",
        "{history}"
    );
    std::fs::write(app.join("deploy.yaml"), &yaml).unwrap();

    // Destroy: the app is gone from the engine.
    let o = run(client(&app, &docker.host, port, &token), &["destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert!(stdout(&o).contains("destroyed"), "{}", said(&o));
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", app_port)).is_err()
    });
    assert!(gone, "the app still answers after destroy");
}
