//! The app endpoints of `deployctl serve` through the built binary and its runner (each job
//! and read is `deployctl <command>` as a child): on the Kubernetes stand-in, the hello app
//! deployed over HTTP, then status, logs (SSE and WebSocket), scale, redeploy with new env
//! (no build: the image of the first deploy), history, rollback, destroy — each checked in
//! what the stand-in holds — and the audit rows of each request.

#![allow(clippy::unwrap_used)] // integration tests: a failure here is a test failure

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{json_lines, stderr, stdout};
use serde_json::{Value, json};

/// One HTTP/1.1 request with `Connection: close`: (status, body de-chunked).
fn http(port: u16, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
    );
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
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

/// The `data:` objects of an SSE body, and the name of the last frame's event.
fn sse_data(body: &str) -> Vec<(Option<String>, Value)> {
    body.split("\n\n")
        .filter_map(|f| {
            let data = f.lines().find_map(|l| l.strip_prefix("data:"))?;
            let event = f
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|e| e.trim().to_owned());
            Some((event, serde_json::from_str(data.trim()).unwrap()))
        })
        .collect()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Follows a job's events to its result: (the events, the result object).
fn follow(port: u16, token: &str, accepted: &str) -> (Vec<Value>, Value) {
    let v: Value = serde_json::from_str(accepted).unwrap();
    let events = v["urls"]["events"].as_str().unwrap();
    let (status, body) = http(port, "GET", events, token, None);
    assert_eq!(status, 200, "{body}");
    let mut frames = sse_data(&body);
    let (name, result) = frames.pop().unwrap();
    assert_eq!(name.as_deref(), Some("result"), "{body}");
    (frames.into_iter().map(|(_, d)| d).collect(), result)
}

#[test]
fn serve_runs_status_logs_scale_redeploy_rollback_destroy_on_kubernetes() {
    let Some(s) = reliability::services() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let standin = rt
        .block_on(deployctl_kube_standin::StandIn::start())
        .unwrap();
    let answering = rt.block_on(deployctl_testsupport::http_server(200));
    standin.set_default_proxy_target(Some(&answering.url));
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    reliability::write_kubeconfig(&kubeconfig, &standin.url());
    let name = reliability::unique("srvapps");
    let yaml = reliability::k8s_yaml(&name, &s.registry.addr, &s.registry.user);
    let app = reliability::app_in(tmp.path(), &yaml);
    let data = tmp.path().join("server-data");
    let data_s = data.to_str().unwrap();

    let token = |role: &str| {
        let o = reliability::k8s_cmd(&s, &app, &kubeconfig, &[])
            .args([
                "-o",
                "json",
                "serve",
                "token",
                "create",
                "--project",
                "demo",
            ])
            .args(["--role", role, "--ttl", "1h", "--data-dir", data_s])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        json_lines(&o).pop().unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let deploy = token("deploy");
    let admin = token("admin");
    let read = token("read");

    let port = deployctl_testsupport::free_port();
    let _server = Server(
        reliability::k8s_cmd(&s, &app, &kubeconfig, &[])
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args([
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
        assert!(start.elapsed() < Duration::from_secs(30), "no server");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("/api/v1/projects/demo/apps/{name}");

    // Deploy: built from the app's directory (an absolute context: --trust-config-paths).
    let config = format!("{yaml}build:\n  context: {}\n", app.display());
    let (status, body) = http(
        port,
        "POST",
        &format!("{base}/deployments"),
        &deploy,
        Some(&json!({ "config": config }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    let deployed_image = get_deployment(&standin, &name)["spec"]["template"]["spec"]["containers"]
        [0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(deployed_image.contains("@sha256:"), "{deployed_image}");

    // Status: the `status` command's result object.
    let (status, body) = http(port, "GET", &base, &read, None);
    assert_eq!(status, 200, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (st["type"].as_str(), st["command"].as_str()),
        (Some("result"), Some("status")),
        "{st}"
    );
    let k8s = &st["targets"][0];
    assert_eq!(
        (k8s["target"].as_str(), k8s["deployed"].as_bool()),
        (Some("k8s"), Some(true)),
        "{st}"
    );

    // Logs: a line the pod wrote, over SSE and over WebSocket.
    let pods =
        reliability::get_json(&standin.url(), &format!("/api/v1/namespaces/{name}/pods")).unwrap();
    let pod = pods["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    standin.append_log(&name, &pod, "hello from the pod");
    let (status, body) = http(port, "GET", &format!("{base}/logs?target=k8s"), &read, None);
    assert_eq!(status, 200, "{body}");
    let lines = sse_data(&body);
    assert!(
        lines
            .iter()
            .any(|(_, l)| l["target"] == "k8s" && l["line"] == "hello from the pod"),
        "{body}"
    );
    let ws_lines = rt.block_on(async {
        use futures::StreamExt as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = format!("ws://127.0.0.1:{port}{base}/logs/ws?target=k8s")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {read}").parse().unwrap());
        let (mut sock, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut got = Vec::new();
        while let Some(Ok(m)) = sock.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                got.push(serde_json::from_str::<Value>(&t).unwrap());
            }
        }
        got
    });
    assert!(
        ws_lines
            .iter()
            .any(|l| l["target"] == "k8s" && l["line"] == "hello from the pod"),
        "{ws_lines:?}"
    );
    // Following: a line the pod writes later arrives live; when the client leaves, the
    // `deployctl logs -f` child is stopped and its directory removed.
    rt.block_on(async {
        use futures::StreamExt as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = format!("ws://127.0.0.1:{port}{base}/logs/ws?target=k8s&follow=true")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {read}").parse().unwrap());
        let (mut sock, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        // Reads lines until `want` (the pod's earlier lines come first).
        let until_line = async |sock: &mut tokio_tungstenite::WebSocketStream<_>, want: &str| loop {
            let m = tokio::time::timeout(Duration::from_secs(60), sock.next())
                .await
                .unwrap_or_else(|_| panic!("no line {want:?} within 60 s"))
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["target"], "k8s", "{v}");
                if v["line"] == want {
                    return;
                }
            }
        };
        until_line(&mut sock, "hello from the pod").await;
        standin.append_log(&name, &pod, "written while followed");
        until_line(&mut sock, "written while followed").await;
        sock.close(None).await.unwrap();
    });
    let start = Instant::now();
    while std::fs::read_dir(data.join("jobs")).is_ok_and(|d| d.count() > 0) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the follow read did not stop after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Scale: the Deployment's replicas.
    let (status, body) = http(
        port,
        "PUT",
        &format!("{base}/scale"),
        &deploy,
        Some(r#"{"replicas": 3}"#),
    );
    assert_eq!(status, 202, "{body}");
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(get_deployment(&standin, &name)["spec"]["replicas"], 3);

    // Redeploy with new env: the ConfigMap has it, the image is the first deploy's, no build.
    let (status, body) = http(
        port,
        "POST",
        &format!("{base}/redeploy"),
        &deploy,
        Some(r#"{"env": {"GREETING": "from-the-api"}}"#),
    );
    assert_eq!(status, 202, "{body}");
    let (events, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert!(
        !events
            .iter()
            .any(|e| e["stage"] == "build" && e["event"] == "started"),
        "a redeploy built: {events:?}"
    );
    let cm = reliability::get_json(
        &standin.url(),
        &format!("/api/v1/namespaces/{name}/configmaps/{name}-config"),
    )
    .unwrap();
    assert_eq!(cm["data"]["GREETING"], "from-the-api", "{cm}");
    let template = get_deployment(&standin, &name)["spec"]["template"].to_string();
    assert!(template.contains(&format!("{name}-config")), "{template}");
    assert_eq!(
        get_deployment(&standin, &name)["spec"]["template"]["spec"]["containers"][0]["image"],
        deployed_image.as_str()
    );

    // History: every kind, newest first.
    let (status, body) = http(port, "GET", &format!("{base}/history"), &read, None);
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["redeploy", "scale", "deploy"]);

    // Rollback: back to the revision before the redeploy (no GREETING).
    let (status, body) = http(
        port,
        "POST",
        &format!("{base}/rollback"),
        &deploy,
        Some(r#"{"target": "k8s"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    // The pod template no longer takes the env (or the ConfigMap no longer has it).
    let template = get_deployment(&standin, &name)["spec"]["template"].to_string();
    let cm = reliability::get_json(
        &standin.url(),
        &format!("/api/v1/namespaces/{name}/configmaps/{name}-config"),
    );
    assert!(
        !template.contains(&format!("{name}-config"))
            || cm
                .as_ref()
                .is_none_or(|c| c["data"].get("GREETING").is_none()),
        "not rolled back: {template} {cm:?}"
    );

    // Destroy: 202 with id and URLs; nothing of the app is left.
    let (status, body) = http(port, "DELETE", &base, &deploy, None);
    assert_eq!(status, 202, "{body}");
    let accepted: Value = serde_json::from_str(&body).unwrap();
    assert!(
        accepted["id"].as_str().unwrap().starts_with("dep_"),
        "{accepted}"
    );
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    let left = reliability::leftovers(&reliability::k8s_inventory(&standin.url(), &name, &name));
    assert!(left.is_empty(), "left after destroy: {left:?}");
    // The current config stays: the status now says not deployed.
    let (status, body) = http(port, "GET", &base, &read, None);
    assert_eq!(status, 200, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["targets"][0]["deployed"], false, "{st}");

    // Every job's and read's directory was removed.
    let left: Vec<_> = std::fs::read_dir(data.join("jobs"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "job directories left: {left:?}");

    // Audit: a row for each mutating request, readable by the project's admin.
    let (status, body) = http(port, "GET", "/api/v1/audit?project=demo", &admin, None);
    assert_eq!(status, 200, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    for action in [
        "deployment.create",
        "app.scale",
        "app.redeploy",
        "app.rollback",
        "app.destroy",
    ] {
        assert!(
            rows["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["action"] == action
                    && r["status"] == 202
                    && r["deployment_id"].is_string()),
            "no audit row for {action}: {rows}"
        );
    }
}

fn get_deployment(standin: &deployctl_kube_standin::StandIn, name: &str) -> Value {
    reliability::get_json(
        &standin.url(),
        &format!("/apis/apps/v1/namespaces/{name}/deployments/{name}"),
    )
    .unwrap()
}

#[test]
fn serve_runs_status_redeploy_rollback_destroy_on_lambda() {
    let Some(s) = reliability::services() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let name = reliability::unique("srvapps");
    let yaml = reliability::lambda_yaml(&name);
    let app = reliability::app_in(tmp.path(), &yaml);
    let data = tmp.path().join("server-data");
    let data_s = data.to_str().unwrap();
    let cmd = || reliability::lambda_cmd(&s, &app, &s.aws.endpoint, &s.registry.addr, &[]);
    let token = |role: &str| {
        let o = cmd()
            .args([
                "-o",
                "json",
                "serve",
                "token",
                "create",
                "--project",
                "demo",
            ])
            .args(["--role", role, "--ttl", "1h", "--data-dir", data_s])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        json_lines(&o).pop().unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let deploy = token("deploy");
    let read = token("read");
    let port = deployctl_testsupport::free_port();
    let _server = Server(
        cmd()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args([
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
        assert!(start.elapsed() < Duration::from_secs(30), "no server");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("/api/v1/projects/demo/apps/{name}");
    let lambda = deployctl_aws::AwsClients::new(&reliability::sdk(&rt, &s.aws.endpoint)).lambda;
    let live = |what: &str| {
        rt.block_on(lambda.get_alias().function_name(&name).name("live").send())
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
            .function_version()
            .unwrap()
            .to_owned()
    };

    let config = format!("{yaml}build:\n  context: {}\n", app.display());
    let (status, body) = http(
        port,
        "POST",
        &format!("{base}/deployments"),
        &deploy,
        Some(&json!({ "config": config }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(live("after the deploy"), "1");

    let (status, body) = http(port, "GET", &base, &read, None);
    assert_eq!(status, 200, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    let t = &st["targets"][0];
    assert_eq!(
        (
            t["target"].as_str(),
            t["deployed"].as_bool(),
            t["version"].as_str()
        ),
        (Some("lambda"), Some(true), Some("1")),
        "{st}"
    );

    // Logs: moto runs no image, so there are no lines, but the read succeeds (no error).
    let (status, body) = http(port, "GET", &format!("{base}/logs?since=1h"), &read, None);
    assert_eq!(status, 200, "{body}");
    assert!(
        sse_data(&body).iter().all(|(event, _)| event.is_none()),
        "{body}"
    );

    // Redeploy with new env: version 2 carries it, no build.
    let (status, body) = http(
        port,
        "POST",
        &format!("{base}/redeploy"),
        &deploy,
        Some(r#"{"env": {"GREETING": "from-the-api"}}"#),
    );
    assert_eq!(status, 202, "{body}");
    let (events, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert!(
        !events
            .iter()
            .any(|e| e["stage"] == "build" && e["event"] == "started"),
        "a redeploy built: {events:?}"
    );
    assert_eq!(live("after the redeploy"), "2");
    let env = rt
        .block_on(
            lambda
                .get_function_configuration()
                .function_name(&name)
                .qualifier("2")
                .send(),
        )
        .unwrap();
    let vars = env.environment().and_then(|e| e.variables()).unwrap();
    assert_eq!(
        vars.get("GREETING").map(String::as_str),
        Some("from-the-api")
    );

    // Rollback: the alias back on version 1.
    let (status, body) = http(port, "POST", &format!("{base}/rollback"), &deploy, None);
    assert_eq!(status, 202, "{body}");
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(live("after the rollback"), "1");

    // Destroy: the function and what deployctl made for it are gone (the ECR repository is
    // kept, as `deployctl destroy` keeps it without --purge-images).
    let (status, body) = http(port, "DELETE", &base, &deploy, None);
    assert_eq!(status, 202, "{body}");
    let (_, result) = follow(port, &read, &body);
    assert_eq!(result["status"], "succeeded", "{result}");
    let mut inv = reliability::aws_inventory(&rt, &s.aws.endpoint, &name);
    inv.remove("ecr repository");
    let left = reliability::leftovers(&inv);
    assert!(left.is_empty(), "left after destroy: {left:?}");
}
