//! `deployctl serve` through the built binary: tokens from `serve token`, the server as a
//! process, and a deployment of the hello fixture app to the services' Docker engine run by
//! the binary's runner (`deployctl deploy` as a child: the same pipeline as the CLI).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{hello_app_named, json_lines, on_docker_only, stderr, stdout};
use serde_json::{Value, json};

/// One HTTP/1.1 request with `Connection: close`: (status, body de-chunked).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("\r\n"),
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, mut rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, rest.to_owned());
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        body.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    (status, body)
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_deploys_the_hello_app_to_the_local_engine_through_the_cli_pipeline() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let app_port = deployctl_testsupport::free_port();
    let (tmp, app, name) = hello_app_named("serve", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  enabled: true\n  port: {app_port}\n"
        )
    });
    let data = tmp.path().join("server-data");
    let data_s = data.to_str().unwrap();

    // A token: its secret printed once; the list never shows it.
    let o = on_docker_only(&app, &docker.host)
        .args([
            "-o",
            "json",
            "serve",
            "token",
            "create",
            "--project",
            "demo",
            "--role",
            "deploy",
            "--ttl",
            "1h",
            "--data-dir",
            data_s,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let made = json_lines(&o).pop().unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    let o = on_docker_only(&app, &docker.host)
        .args(["serve", "token", "list", "--data-dir", data_s])
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains(made["token"]["id"].as_str().unwrap()),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains(&secret), "the list shows a secret");
    let o = on_docker_only(&app, &docker.host)
        .args([
            "serve",
            "token",
            "create",
            "--project",
            "demo",
            "--role",
            "owner",
            "--data-dir",
            data_s,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--role `owner`"), "{}", stderr(&o));

    let port = deployctl_testsupport::free_port();
    let _server = Server(
        on_docker_only(&app, &docker.host)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                data_s,
                "--workers",
                "2",
                "--trust-config-paths",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http(port, "GET", "/healthz", None, None).0, 200);

    // A JSON request whose deploy.yaml builds from the app's directory: an absolute build
    // context, which the server takes only with --trust-config-paths (uploads: serve_client.rs).
    let yaml = std::fs::read_to_string(app.join("deploy.yaml")).unwrap();
    let config = format!("{yaml}build:\n  context: {}\n", app.display());
    let path = format!("/api/v1/projects/demo/apps/{name}/deployments");
    let (status, body) = http(
        port,
        "POST",
        &path,
        Some(&secret),
        Some(&json!({ "config": config }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The event stream replays and follows the deploy to its end.
    let (status, sse) = http(
        port,
        "GET",
        &format!("/api/v1/deployments/{id}/events"),
        Some(&secret),
        None,
    );
    assert_eq!(status, 200);
    let datas: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let has = |stage: &str, event: &str| {
        datas
            .iter()
            .any(|e| e["stage"] == stage && e["event"] == event)
    };
    assert!(has("build", "started") && has("build", "finished"), "{sse}");
    assert!(
        has("apply", "finished") && has("verify", "finished"),
        "{sse}"
    );
    let last = datas.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["status"].as_str()),
        (Some("result"), Some("succeeded")),
        "{sse}"
    );

    let (_, body) = http(
        port,
        "GET",
        &format!("/api/v1/deployments/{id}"),
        Some(&secret),
        None,
    );
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    assert_eq!(d["result"]["targets"][0]["result"], "deployed", "{d}");
    assert_eq!(d["stages"]["verify local"]["state"], "finished", "{d}");
    let health = http(app_port, "GET", "/health", None, None);
    assert_eq!(health.0, 200, "the app answers where the deploy put it");

    // Invalid config: 422 with the diagnostics, nothing queued.
    let bad = format!("{yaml}local:\n  enabled: yes-please\n");
    let (status, body) = http(
        port,
        "POST",
        &path,
        Some(&secret),
        Some(&json!({ "config": bad }).to_string()),
    );
    assert_eq!(status, 422, "{body}");

    let o = on_docker_only(&app, &docker.host)
        .args(["destroy", "local"])
        .output()
        .unwrap();
    assert!(o.status.success(), "destroy: {}{}", stdout(&o), stderr(&o));
}
