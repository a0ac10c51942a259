//! The app endpoints over HTTP (real SQLite, the scripted runner of `common`): what the
//! server itself decides — the current config (404 before a deploy), the jobs it queues for
//! scale/redeploy/rollback/destroy and what they carry, roles, audit rows, `GET /audit`,
//! `/metrics`, the log and event streams over SSE and WebSocket. The same operations
//! through the binary's runner against the Kubernetes stand-in and moto are in
//! crates/deployctl/tests/serve_apps.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{ScriptedRunner, frames, request, start, token};
use deployctl_server::{Operation, Role, ServerConfig, Status, Store};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const JSON: &str = "application/json";
const IMAGE: &str = "registry.example:5000/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Lambda and Kubernetes, one plain variable.
fn config() -> String {
    "version: \"1.0\"\napp:\n  name: web\n  version: \"1\"\nenv:\n  GREETING: hello\nlambda:\n  enabled: true\n  region: us-east-1\nkubernetes:\n  enabled: true\n  namespace: web\n".to_owned()
}

async fn call(
    a: std::net::SocketAddr,
    t: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> common::Answer {
    request(
        a,
        method,
        path,
        &[("Authorization", &bearer(t))],
        body.map(|b| (JSON, b)),
    )
    .await
}

/// Waits for the deployment `id` to reach `status`, letting one job finish.
async fn finish(store: &Arc<dyn Store>, runner: &ScriptedRunner, id: &str) {
    runner.release(1);
    common::until("the job ended", async || {
        store
            .deployment(id)
            .await
            .unwrap()
            .is_some_and(|d| d.status.is_final())
    })
    .await;
    assert_eq!(
        store.deployment(id).await.unwrap().unwrap().status,
        Status::Succeeded
    );
}

/// Deploys `config()` with `IMAGE` and waits for it: the deployment id.
async fn deployed(
    srv: &common::TestServer,
    store: &Arc<dyn Store>,
    runner: &ScriptedRunner,
    t: &str,
) -> String {
    let r = call(
        srv.addr,
        t,
        "POST",
        "/api/v1/projects/shop/apps/web/deployments",
        Some(&json!({ "config": config(), "image": IMAGE }).to_string()),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    finish(store, runner, &id).await;
    id
}

fn last_job(runner: &ScriptedRunner) -> deployctl_server::Job {
    runner.script.jobs.lock().unwrap().last().unwrap().clone()
}

#[tokio::test]
async fn app_operations_queue_on_the_current_config_with_roles_and_audit() {
    let (store, _dir) = common::sqlite().await;
    app_operations(Arc::new(store)).await;
}

/// The same on the services' PostgreSQL (migration 0002 and the app queries there).
#[tokio::test]
async fn app_operations_on_postgres() {
    let Some((store, _url)) = common::postgres().await else {
        return;
    };
    app_operations(Arc::new(store)).await;
}

async fn app_operations(store: Arc<dyn Store>) {
    let runner = ScriptedRunner::new(0);
    let srv = start(
        store.clone(),
        Arc::new(runner.clone()),
        ServerConfig::new(2, false),
    )
    .await;
    let read = token(store.as_ref(), "shop", Role::Read).await;
    let deploy = token(store.as_ref(), "shop", Role::Deploy).await;
    let admin = token(store.as_ref(), "shop", Role::Admin).await;
    let other = token(store.as_ref(), "other", Role::Admin).await;
    let a = srv.addr;
    let app = "/api/v1/projects/shop/apps/web";

    // Never deployed: 404 with a hint, for reads and operations alike.
    let r = call(a, &read, "GET", app, None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.json()["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("/deployments"),
        "{}",
        r.body
    );
    let r = call(
        a,
        &deploy,
        "PUT",
        &format!("{app}/scale"),
        Some(r#"{"replicas": 2}"#),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        call(a, &read, "GET", &format!("{app}/history"), None)
            .await
            .status,
        404
    );

    let first = deployed(&srv, &store, &runner, &deploy).await;

    // Status: the runner's status with the current config.
    let r = call(a, &read, "GET", app, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["command"], "status");
    assert_eq!(
        runner.script.status_configs.lock().unwrap().last().unwrap(),
        &config()
    );
    let r = call(a, &read, "GET", &format!("{app}/history"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.json();
    assert_eq!(h["current_deployment"], first.as_str());
    assert_eq!(h["deployments"][0]["kind"], "deploy");

    // Roles: read may not scale; another project's token learns nothing.
    let body = r#"{"replicas": 3}"#;
    let scale = format!("{app}/scale");
    let r = call(a, &read, "PUT", &scale, Some(body)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("this needs deploy"), "{}", r.body);
    let r = call(a, &other, "PUT", &scale, Some(body)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(call(a, &other, "GET", app, None).await.status, 403);
    // Every mutating route: no token 401, read 403, another project's 403 — nothing queued.
    let before = store
        .deployments_of("shop", "web", 100)
        .await
        .unwrap()
        .len();
    for (method, path, body) in [
        ("PUT", scale.clone(), Some(r#"{"replicas": 1}"#)),
        ("POST", format!("{app}/redeploy"), Some(r#"{"env": {}}"#)),
        ("POST", format!("{app}/rollback"), None),
        ("DELETE", app.to_owned(), None),
    ] {
        let r = request(a, method, &path, &[], body.map(|b| (JSON, b))).await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        for t in [&read, &other] {
            let r = call(a, t, method, &path, body).await;
            assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        }
    }
    for path in [
        app.to_owned(),
        format!("{app}/history"),
        format!("{app}/logs"),
    ] {
        assert_eq!(
            request(a, "GET", &path, &[], None).await.status,
            401,
            "{path}"
        );
        assert_eq!(
            call(a, &other, "GET", &path, None).await.status,
            403,
            "{path}"
        );
    }
    assert_eq!(
        store
            .deployments_of("shop", "web", 100)
            .await
            .unwrap()
            .len(),
        before
    );
    // Bad bodies.
    let r = request(
        a,
        "PUT",
        &scale,
        &[("Authorization", &bearer(&deploy))],
        Some(("text/plain", body)),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let r = call(a, &deploy, "PUT", &scale, Some(r#"{"replicas": -1}"#)).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Scale: queued like a deployment, on the current config and image.
    let r = call(a, &deploy, "PUT", &scale, Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = r.json();
    assert_eq!(v["kind"], "scale");
    let scale_id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["urls"]["events"],
        format!("/api/v1/deployments/{scale_id}/events")
    );
    finish(&store, &runner, &scale_id).await;
    let job = last_job(&runner);
    assert_eq!(job.operation, Operation::Scale { replicas: 3 });
    assert_eq!(job.request.image.as_deref(), Some(IMAGE));
    let d = call(
        a,
        &read,
        "GET",
        &format!("/api/v1/deployments/{scale_id}"),
        None,
    )
    .await;
    assert_eq!(d.json()["kind"], "scale");
    assert_eq!(d.json()["params"], json!({ "replicas": 3 }));

    // Redeploy: plain env changed in the current config, the same image.
    let r = call(
        a,
        &deploy,
        "POST",
        &format!("{app}/redeploy"),
        Some(r#"{"env": {"NEW_VAR": "on", "GREETING": null}}"#),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let redeploy_id = r.json()["id"].as_str().unwrap().to_owned();
    finish(&store, &runner, &redeploy_id).await;
    let job = last_job(&runner);
    assert_eq!(job.operation, Operation::Redeploy);
    assert_eq!(job.request.image.as_deref(), Some(IMAGE));
    let sent: Value = serde_yaml::from_str(&job.request.config).unwrap();
    assert_eq!(
        sent["env"],
        json!({ "NEW_VAR": "on" }),
        "{}",
        job.request.config
    );
    // The redeploy's config is now the current one.
    call(a, &read, "GET", app, None).await;
    assert!(
        runner
            .script
            .status_configs
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .contains("NEW_VAR")
    );
    let r = call(
        a,
        &deploy,
        "POST",
        &format!("{app}/redeploy"),
        Some(r#"{"env": {"1BAD": "x"}}"#),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // Rollback: one target, or each that keeps versions.
    let rollback = format!("{app}/rollback");
    let r = call(
        a,
        &deploy,
        "POST",
        &rollback,
        Some(r#"{"to": 1, "target": "k8s"}"#),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    finish(&store, &runner, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(
        last_job(&runner).operation,
        Operation::Rollback {
            targets: vec!["k8s".into()],
            to: Some(1)
        }
    );
    let r = call(a, &deploy, "POST", &rollback, None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    finish(&store, &runner, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(
        last_job(&runner).operation,
        Operation::Rollback {
            targets: vec!["lambda".into(), "k8s".into()],
            to: None
        }
    );
    let r = call(
        a,
        &deploy,
        "POST",
        &rollback,
        Some(r#"{"target": "local"}"#),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // Destroy: 202 with the id and URLs; its events stream ends with its result.
    let r = call(a, &deploy, "DELETE", app, None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v = r.json();
    let destroy_id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["kind"], "destroy");
    assert_eq!(
        v["urls"]["self"],
        format!("/api/v1/deployments/{destroy_id}")
    );
    finish(&store, &runner, &destroy_id).await;
    assert_eq!(last_job(&runner).operation, Operation::Destroy);
    let ev = call(a, &read, "GET", v["urls"]["events"].as_str().unwrap(), None).await;
    let last = frames(&ev.body).pop().unwrap();
    assert_eq!(last.1.as_deref(), Some("result"));
    let result: Value = serde_json::from_str(&last.2).unwrap();
    assert_eq!(
        (result["command"].as_str(), result["ok"].as_bool()),
        (Some("destroy"), Some(true))
    );

    // Audit: a row per mutating request, with the token, app and deployment.
    let rows = store.audit_rows().await.unwrap();
    for (action, id) in [
        ("app.scale", &scale_id),
        ("app.redeploy", &redeploy_id),
        ("app.destroy", &destroy_id),
    ] {
        let row = rows
            .iter()
            .find(|r| r.action == action && r.deployment_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no audit row for {action}: {rows:#?}"));
        assert_eq!((row.status, row.app.as_deref()), (202, Some("web")));
        assert!(row.token_id.is_some());
    }
    let rollbacks = |status: i64| {
        rows.iter()
            .filter(|r| r.action == "app.rollback" && r.status == status)
            .count()
    };
    // Queued twice, refused once as invalid, once without a token, twice for the role.
    assert_eq!(
        (
            rollbacks(202),
            rollbacks(422),
            rollbacks(401),
            rollbacks(403)
        ),
        (2, 1, 1, 2)
    );
    assert!(
        rows.iter()
            .any(|r| r.action == "app.scale" && r.status == 403),
        "the refused scale has its row"
    );
    assert!(
        rows.iter()
            .any(|r| r.action == "app.scale" && r.status == 404),
        "the scale before any deploy has its row"
    );

    // GET /audit: the project's admin only.
    let r = call(a, &deploy, "GET", "/api/v1/audit", None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(a, &other, "GET", "/api/v1/audit?project=shop", None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(a, &admin, "GET", "/api/v1/audit?project=shop", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.json()["rows"].as_array().unwrap().len();
    let of_shop = rows
        .iter()
        .filter(|r| r.project.as_deref() == Some("shop"))
        .count();
    assert_eq!(
        listed, of_shop,
        "the other project's token.create row is not listed"
    );
    assert!(of_shop < rows.len());
    let r = call(a, &admin, "GET", "/api/v1/audit?since=99999999999999", None).await;
    assert_eq!(r.json()["rows"], json!([]));
    let r = call(a, &admin, "GET", "/api/v1/audit?since=yesterday", None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]["message"].is_string());
}

#[tokio::test]
async fn logs_and_events_stream_over_sse_and_websocket_and_metrics_count_jobs() {
    let common::Setup {
        store,
        runner,
        srv,
        _dir,
    } = common::setup(2, ServerConfig::new(2, false)).await;
    let read = token(store.as_ref(), "shop", Role::Read).await;
    let deploy = token(store.as_ref(), "shop", Role::Deploy).await;
    let a = srv.addr;
    let id = deployed(&srv, &store, &runner, &deploy).await;
    let logs = "/api/v1/projects/shop/apps/web/logs";

    // SSE: one target's lines, each {target, line}.
    let r = call(a, &read, "GET", &format!("{logs}?target=k8s"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<Value> = frames(&r.body)
        .iter()
        .map(|f| serde_json::from_str(&f.2).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", r.body);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            (l["target"].as_str(), l["line"].as_str()),
            (Some("k8s"), Some(format!("line {i}").as_str()))
        );
    }
    // Every target: a failed read is an `error` event, the others' lines still come.
    let r = call(a, &read, "GET", logs, None).await;
    let fs = frames(&r.body);
    assert!(
        fs.iter()
            .any(|f| f.1.as_deref() == Some("error") && f.2.contains("lambda")),
        "{}",
        r.body
    );
    assert_eq!(fs.iter().filter(|f| f.1.is_none()).count(), 3, "{}", r.body);
    // Bad parameters are JSON errors.
    let r = call(a, &read, "GET", &format!("{logs}?since=soon"), None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("since")
    );
    let r = call(a, &read, "GET", &format!("{logs}?follow=maybe"), None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]["message"].is_string());
    let r = call(a, &read, "GET", &format!("{logs}?target=local"), None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(request(a, "GET", logs, &[], None).await.status, 401);
    // A plain GET of a WebSocket path is a JSON error too.
    let r = call(a, &read, "GET", &format!("{logs}/ws"), None).await;
    assert!(
        r.status == 400 || r.status == 426,
        "{} {}",
        r.status,
        r.body
    );
    assert!(r.json()["error"]["message"].is_string());

    // WebSocket, following: the lines, then the client leaves and the read stops.
    let ws_url = |path: &str| {
        let mut req = format!("ws://{a}{path}").into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", bearer(&read).parse().unwrap());
        req
    };
    let (mut sock, _) = tokio_tungstenite::connect_async(ws_url(&format!(
        "{logs}/ws?target=k8s&follow=true&since=10m"
    )))
    .await
    .unwrap();
    for i in 0..3 {
        let m = sock.next().await.unwrap().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(v["line"], format!("line {i}"));
        assert_eq!(v["target"], "k8s");
    }
    sock.close(None).await.unwrap();
    drop(sock);
    common::until("the runner's follow read stopped", async || {
        runner.script.logs_closed.load(Ordering::SeqCst) == 1
    })
    .await;

    // Events over WebSocket: the same JSON as SSE, replayed, the result last, then a close.
    let sse = call(
        a,
        &read,
        "GET",
        &format!("/api/v1/deployments/{id}/events"),
        None,
    )
    .await;
    let want: Vec<Value> = frames(&sse.body)
        .iter()
        .map(|f| serde_json::from_str(&f.2).unwrap())
        .collect();
    let (mut sock, _) =
        tokio_tungstenite::connect_async(ws_url(&format!("/api/v1/deployments/{id}/events/ws")))
            .await
            .unwrap();
    let mut got = Vec::new();
    while let Some(m) = sock.next().await {
        match m.unwrap() {
            Message::Text(t) => got.push(serde_json::from_str::<Value>(&t).unwrap()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got[..got.len() - 1], want[..want.len() - 1]);
    assert_eq!(got.last().unwrap()["type"], "result");
    assert_eq!(got[0]["stage"], "build");
    // Resumed after event 2.
    let (mut sock, _) = tokio_tungstenite::connect_async(ws_url(&format!(
        "/api/v1/deployments/{id}/events/ws?after=2"
    )))
    .await
    .unwrap();
    let m = sock.next().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap(),
        want[2]
    );
    // A browser cannot set Authorization: the token rides in a subprotocol, and the server
    // selects the API's own, never echoing the token.
    let mut req = format!("ws://{a}/api/v1/deployments/{id}/events/ws?after=2")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("deployctl.v1, deployctl.bearer.{read}")
            .parse()
            .unwrap(),
    );
    let (mut sock, answer) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        answer.headers().get("sec-websocket-protocol").unwrap(),
        "deployctl.v1"
    );
    let m = sock.next().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap(),
        want[2]
    );
    let mut req = format!("ws://{a}/api/v1/deployments/{id}/events/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "deployctl.v1, deployctl.bearer.dctl_nope".parse().unwrap(),
    );
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Without a token, no upgrade.
    let err =
        tokio_tungstenite::connect_async(format!("ws://{a}/api/v1/deployments/{id}/events/ws"))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // Metrics: any valid token; the deploy counted, the build stage observed.
    assert_eq!(request(a, "GET", "/metrics", &[], None).await.status, 401);
    let m = call(a, &read, "GET", "/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    for want in [
        "deployctl_jobs_total{kind=\"deploy\",target=\"none\",result=\"succeeded\"} 1",
        "deployctl_stage_duration_seconds_count{stage=\"build\",target=\"none\"} 1",
        "deployctl_queue_depth 0",
        "deployctl_jobs_active 0",
    ] {
        assert!(m.body.contains(want), "missing {want}:\n{}", m.body);
    }
    assert!(
        !m.body.contains("shop") && !m.body.contains("web"),
        "{}",
        m.body
    );
}

/// Every path and method of the OpenAPI document is a route (not the fallback's 404, not
/// 405): the document names nothing the router does not serve.
#[tokio::test]
async fn every_documented_path_and_method_is_routed() {
    let common::Setup {
        store, srv, _dir, ..
    } = common::setup(0, ServerConfig::default()).await;
    let t = token(store.as_ref(), "shop", Role::Read).await;
    let doc: Value = serde_json::from_str(deployctl_server::OPENAPI).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{project}", "shop")
            .replace("{app}", "web")
            .replace("{id}", "dep_unknown");
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let r = call(srv.addr, &t, &method.to_uppercase(), &concrete, None).await;
            assert_ne!(r.status, 405, "{method} {path}: {}", r.body);
            assert!(
                !r.body.contains("no such API path"),
                "{method} {path} is not routed: {}",
                r.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 17, "{checked}");
}
