//! The HTTP API on a loopback port, over real SQLite (and PostgreSQL where it proves the
//! shared case), with the scripted runner of `common` — these tests prove the server's own
//! logic: auth answers, validation, the queue, event streams, restart. The deploy through
//! the binary's runner is tested in crates/deployctl/tests/serve.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ScriptedRunner, deploy_body, frames, request, start, token};
use deployctl_server::{Role, ServerConfig, Status, Store, tokens};
use serde_json::{Value, json};

const JSON: &str = "application/json";

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn auth_answers_401_and_403_with_reasons_and_no_existence_leak() {
    let common::Setup {
        store,
        runner,
        srv,
        _dir,
    } = common::setup(0, ServerConfig::default()).await;
    let a = srv.addr;
    let path = "/api/v1/projects/shop/apps/web/deployments";

    let health = request(a, "GET", "/healthz", &[], None).await;
    assert_eq!(health.status, 200, "{health:?}");

    let missing = request(a, "POST", path, &[], Some((JSON, &deploy_body("web")))).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"]["message"], "missing bearer token");
    assert!(
        missing.json()["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("token create")
    );
    assert!(
        missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );

    let unknown = request(
        a,
        "GET",
        "/api/v1/deployments/dep_x",
        &[("Authorization", "Bearer dctl_nope")],
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.json()["error"]["message"].as_str()),
        (401, Some("unknown token"))
    );

    let expired = tokens::create(store.as_ref(), "shop", Role::Admin, Duration::from_secs(1))
        .await
        .unwrap();
    let revoked = token(store.as_ref(), "shop", Role::Admin).await;
    let rid = store
        .token_by_hash(&tokens::hash(&revoked))
        .await
        .unwrap()
        .unwrap()
        .id;
    store.revoke_token(&rid, tokens::now_ms()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = request(
        a,
        "POST",
        path,
        &[("Authorization", &bearer(&expired.secret))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["message"],
        format!("token {} has expired", expired.record.id)
    );
    let r = request(
        a,
        "POST",
        path,
        &[("Authorization", &bearer(&revoked))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!(
        r.json()["error"]["message"],
        format!("token {rid} was revoked")
    );

    // Another project's token: the same 403 for a project that exists and one that does not.
    let other = token(store.as_ref(), "other", Role::Admin).await;
    let shop_deploy = token(store.as_ref(), "shop", Role::Deploy).await;
    let made = request(
        a,
        "POST",
        path,
        &[("Authorization", &bearer(&shop_deploy))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!(made.status, 202, "{}", made.body);
    let r1 = request(
        a,
        "POST",
        path,
        &[("Authorization", &bearer(&other))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    let r2 = request(
        a,
        "POST",
        "/api/v1/projects/nosuch/apps/web/deployments",
        &[("Authorization", &bearer(&other))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!((r1.status, r2.status), (403, 403));
    assert_eq!(r1.json()["error"]["message"], r2.json()["error"]["message"]);
    assert!(
        r1.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scoped to another project")
    );
    // … and a deployment of another project is "no such deployment", as an unknown id is.
    let id = made.json()["id"].as_str().unwrap().to_owned();
    let seen = request(
        a,
        "GET",
        &format!("/api/v1/deployments/{id}"),
        &[("Authorization", &bearer(&other))],
        None,
    )
    .await;
    let unknown = request(
        a,
        "GET",
        "/api/v1/deployments/dep_nope",
        &[("Authorization", &bearer(&other))],
        None,
    )
    .await;
    assert_eq!((seen.status, unknown.status), (404, 404));
    assert_eq!(seen.body, unknown.body);

    // The wrong role.
    let reader = token(store.as_ref(), "shop", Role::Read).await;
    let r = request(
        a,
        "POST",
        path,
        &[("Authorization", &bearer(&reader))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has the role read; this needs deploy"),
        "{}",
        r.body
    );
    let ok = request(
        a,
        "GET",
        &format!("/api/v1/deployments/{id}"),
        &[("Authorization", &bearer(&reader))],
        None,
    )
    .await;
    assert_eq!(ok.status, 200);
    let cancel = request(
        a,
        "DELETE",
        &format!("/api/v1/deployments/{id}"),
        &[("Authorization", &bearer(&reader))],
        None,
    )
    .await;
    assert_eq!(cancel.status, 403);

    // Every mutating request left an audit row, with its request id and answer.
    let rows: Vec<_> = store
        .audit_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.request_id != "cli")
        .collect();
    let statuses: Vec<(String, i64)> = rows.iter().map(|r| (r.action.clone(), r.status)).collect();
    assert_eq!(
        statuses,
        [401, 401, 401, 202, 403, 403, 403]
            .iter()
            .map(|s| ("deployment.create".to_owned(), *s))
            .chain([("deployment.cancel".to_owned(), 403)])
            .collect::<Vec<_>>()
    );
    assert_eq!(rows[3].deployment_id.as_deref(), Some(id.as_str()));
    assert_eq!(rows[3].request_id, made.header("x-request-id").unwrap());
    assert!(rows[3].token_id.as_deref().unwrap().starts_with("tok_"));
    runner.release(10);
}

#[tokio::test]
async fn invalid_config_is_422_with_the_diagnostics_validate_prints() {
    let common::Setup {
        store, srv, _dir, ..
    } = common::setup(0, ServerConfig::default()).await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;
    let config = "version: \"1.0\"\napp:\n  name: web\n  version: \"1\"\nlocal:\n  enabled: true\nlambda:\n  enabled: true\n  region: eu-wset-1\n";
    let r = request(
        srv.addr,
        "POST",
        "/api/v1/projects/shop/apps/web/deployments",
        &[("Authorization", &bearer(&t))],
        Some((JSON, &json!({ "config": config }).to_string())),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let e = &r.json()["error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("deploy.yaml is invalid"),
        "{e}"
    );
    let item = &e["diagnostics"]["items"][0];
    assert_eq!(
        (item["line"].as_u64(), item["column"].as_u64()),
        (Some(9), Some(11)),
        "{e}"
    );
    assert_eq!(item["path"], "lambda.region");
    assert!(
        item["hint"].as_str().unwrap().contains("eu-west-1"),
        "{item}"
    );
    assert!(
        e["diagnostics"]["text"][0]
            .as_str()
            .unwrap()
            .starts_with("deploy.yaml:9:11: lambda.region:"),
        "{e}"
    );
    // Nothing was queued.
    assert_eq!(store.active_count("shop").await.unwrap(), 0);

    let wrong_type = request(
        srv.addr,
        "POST",
        "/api/v1/projects/shop/apps/web/deployments",
        &[("Authorization", &bearer(&t))],
        Some(("application/gzip", "x")),
    )
    .await;
    assert_eq!(wrong_type.status, 415);
    let not_json = request(
        srv.addr,
        "POST",
        "/api/v1/projects/shop/apps/web/deployments",
        &[("Authorization", &bearer(&t))],
        Some((JSON, "{\"conf\": 1}")),
    )
    .await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    let other_app = request(
        srv.addr,
        "POST",
        "/api/v1/projects/shop/apps/api/deployments",
        &[("Authorization", &bearer(&t))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!(other_app.status, 422);
    let escaping = format!("{}build:\n  context: /etc\n", common::config("web"));
    let r = request(
        srv.addr,
        "POST",
        "/api/v1/projects/shop/apps/web/deployments",
        &[("Authorization", &bearer(&t))],
        Some((JSON, &json!({ "config": escaping }).to_string())),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inside the job's directory"),
        "{}",
        r.body
    );
    let bad_name = request(
        srv.addr,
        "POST",
        "/api/v1/projects/shop/apps/We_b/deployments",
        &[("Authorization", &bearer(&t))],
        Some((JSON, &deploy_body("web"))),
    )
    .await;
    assert_eq!(bad_name.status, 400);
    assert_eq!(store.active_count("shop").await.unwrap(), 0);
}

async fn post(a: std::net::SocketAddr, t: &str, app: &str) -> common::Answer {
    request(
        a,
        "POST",
        &format!("/api/v1/projects/shop/apps/{app}/deployments"),
        &[("Authorization", &bearer(t))],
        Some((JSON, &deploy_body(app))),
    )
    .await
}

#[tokio::test]
async fn events_replay_then_live_and_resume_after_last_event_id() {
    let common::Setup {
        store,
        runner,
        srv,
        _dir,
    } = common::setup(3, ServerConfig::default()).await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;
    let made = post(srv.addr, &t, "web").await;
    assert_eq!(made.status, 202);
    let id = made.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        made.header("location").unwrap(),
        format!("/api/v1/deployments/{id}")
    );
    // Started, and its first four events stored, then it waits for the gate.
    common::until("four events", async || {
        store.events(&id, 0).await.unwrap().len() == 4
    })
    .await;
    let events_path = format!("/api/v1/deployments/{id}/events");
    let a = srv.addr;
    let auth = bearer(&t);
    // A client connected while it runs: the stream replays, goes live, and ends with the result.
    let auth2 = auth.clone();
    let path2 = events_path.clone();
    let live =
        tokio::spawn(
            async move { request(a, "GET", &path2, &[("Authorization", &auth2)], None).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner.release(1);
    let live = live.await.unwrap();
    assert_eq!(live.status, 200);
    assert!(
        live.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let f = frames(&live.body);
    let ids: Vec<Option<String>> = f.iter().map(|x| x.0.clone()).collect();
    assert_eq!(
        ids,
        vec![
            Some("1".into()),
            Some("2".into()),
            Some("3".into()),
            Some("4".into()),
            Some("5".into()),
            None
        ],
        "{}",
        live.body
    );
    let first: Value = serde_json::from_str(&f[0].2).unwrap();
    assert_eq!(
        (
            first["schema_version"].as_u64(),
            first["type"].as_str(),
            first["stage"].as_str(),
            first["event"].as_str()
        ),
        (Some(1), Some("event"), Some("build"), Some("started"))
    );
    let last: Value = serde_json::from_str(&f[4].2).unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(f[5].1.as_deref(), Some("result"));
    let result: Value = serde_json::from_str(&f[5].2).unwrap();
    assert_eq!(
        (
            result["type"].as_str(),
            result["ok"].as_bool(),
            result["status"].as_str()
        ),
        (Some("result"), Some(true), Some("succeeded"))
    );

    // Resume after event 3: only 4 and 5, then the result.
    let resumed = request(
        a,
        "GET",
        &events_path,
        &[("Authorization", &auth), ("Last-Event-ID", "3")],
        None,
    )
    .await;
    let ids: Vec<Option<String>> = frames(&resumed.body).iter().map(|x| x.0.clone()).collect();
    assert_eq!(ids, vec![Some("4".into()), Some("5".into()), None]);

    // The record: stages' last states, result, timestamps.
    let d = request(
        a,
        "GET",
        &format!("/api/v1/deployments/{id}"),
        &[("Authorization", &auth)],
        None,
    )
    .await
    .json();
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["stages"]["build"]["state"], "finished");
    assert!(d["duration_ms"].as_i64().unwrap() >= 300, "{d}");
    assert_eq!(d["result"], json!({ "targets": [] }));
}

#[tokio::test]
async fn queue_keeps_per_app_order_and_caps_the_project() {
    let (store, _dir) = common::sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let runner = ScriptedRunner::new(0);
    let config = ServerConfig::new(3, false).with_queue_cap(6);
    let srv = start(store.clone(), Arc::new(runner.clone()), config).await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;
    let mut ids = Vec::new();
    for app in ["a", "a", "b", "a", "b", "c"] {
        let r = post(srv.addr, &t, app).await;
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push((app, r.json()["id"].as_str().unwrap().to_owned()));
    }
    // Seventh: the cap counts what was queued at once, running or not.
    let full = post(srv.addr, &t, "d").await;
    assert_eq!(full.status, 429, "{}", full.body);
    assert!(full.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(
        full.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("6 deployments queued or running")
    );
    // Let them all finish, one permit at a time.
    for _ in 0..6 {
        runner.release(1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    common::until("all finished", async || {
        let mut done = true;
        for (_, id) in &ids {
            done &= store.deployment(id).await.unwrap().unwrap().status == Status::Succeeded;
        }
        done
    })
    .await;
    let started = runner.started();
    for app in ["a", "b", "c"] {
        let want: Vec<&String> = ids
            .iter()
            .filter(|(x, _)| *x == app)
            .map(|(_, id)| id)
            .collect();
        let got: Vec<&String> = started
            .iter()
            .filter(|(x, _)| x == app)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(got, want, "app {app} ran out of order");
    }
    assert_eq!(
        *runner.script.max_active_per_app.lock().unwrap(),
        1,
        "two of one app ran at once"
    );
    // Room again.
    assert_eq!(post(srv.addr, &t, "d").await.status, 202);
    runner.release(1);
}

#[tokio::test]
async fn cancel_stops_a_running_deployment_and_drops_a_queued_one() {
    let common::Setup {
        store,
        runner,
        srv,
        _dir,
    } = common::setup(0, ServerConfig::default()).await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;
    let first = post(srv.addr, &t, "web").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = post(srv.addr, &t, "web").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::until("first running", async || {
        store.deployment(&first).await.unwrap().unwrap().status == Status::Running
    })
    .await;
    let auth = bearer(&t);
    let r = request(
        srv.addr,
        "DELETE",
        &format!("/api/v1/deployments/{second}"),
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["deployment"]["status"], "cancelled");
    let r = request(
        srv.addr,
        "DELETE",
        &format!("/api/v1/deployments/{first}"),
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    common::until("first cancelled", async || {
        store.deployment(&first).await.unwrap().unwrap().status == Status::Cancelled
    })
    .await;
    assert_eq!(runner.started().len(), 1, "the queued one never ran");
    let again = request(
        srv.addr,
        "DELETE",
        &format!("/api/v1/deployments/{first}"),
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(again.status, 409);
}

#[tokio::test]
async fn a_restart_marks_running_deployments_interrupted() {
    let (store, dir) = common::sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let runner = ScriptedRunner::new(1);
    let srv = start(
        store.clone(),
        Arc::new(runner.clone()),
        ServerConfig::default(),
    )
    .await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;
    let id = post(srv.addr, &t, "web").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::until("running", async || {
        store.events(&id, 0).await.unwrap().len() == 2
    })
    .await;
    // The process "dies": its tasks stop; the database keeps `running`.
    srv.task.abort();
    drop(srv);
    let reopened: Arc<dyn Store> = Arc::new(
        deployctl_server::SqlStore::sqlite(dir.path())
            .await
            .unwrap(),
    );
    assert_eq!(
        reopened.deployment(&id).await.unwrap().unwrap().status,
        Status::Running
    );
    let srv2 = start(
        reopened.clone(),
        Arc::new(ScriptedRunner::new(0)),
        ServerConfig::default(),
    )
    .await;
    let d = request(
        srv2.addr,
        "GET",
        &format!("/api/v1/deployments/{id}"),
        &[("Authorization", &bearer(&t))],
        None,
    )
    .await
    .json();
    assert_eq!(d["status"], "interrupted", "{d}");
    assert!(d["error"].as_str().unwrap().contains("deploy again"));
    // Its events are kept and the stream ends.
    let ev = request(
        srv2.addr,
        "GET",
        &format!("/api/v1/deployments/{id}/events"),
        &[("Authorization", &bearer(&t))],
        None,
    )
    .await;
    let f = frames(&ev.body);
    assert_eq!(f.len(), 3, "{}", ev.body);
    assert!(f[2].2.contains("\"interrupted\""));
}

#[tokio::test]
async fn openapi_document_is_served_and_names_every_route() {
    let common::Setup {
        store, srv, _dir, ..
    } = common::setup(0, ServerConfig::default()).await;
    assert_eq!(
        request(srv.addr, "GET", "/api/v1/openapi.json", &[], None)
            .await
            .status,
        401
    );
    let t = token(store.as_ref(), "any", Role::Read).await;
    let r = request(
        srv.addr,
        "GET",
        "/api/v1/openapi.json",
        &[("Authorization", &bearer(&t))],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    for p in [
        "/healthz",
        "/api/v1/projects/{project}/apps/{app}/deployments",
        "/api/v1/deployments/{id}",
        "/api/v1/deployments/{id}/events",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    let nf = request(srv.addr, "GET", "/api/v2/x", &[], None).await;
    assert_eq!(nf.status, 404);
}

/// Two server processes' worth of state on one PostgreSQL database, each with its own
/// workers: deployments posted to either run exactly once, one per app at a time, in order.
#[tokio::test]
async fn two_servers_share_one_postgres_queue() {
    let Some((store, url)) = common::postgres().await else {
        return;
    };
    let other = deployctl_server::SqlStore::postgres(&url).await.unwrap();
    let runner = ScriptedRunner::new(1);
    let config = ServerConfig::new(2, true).with_queue_cap(50);
    let store: Arc<dyn Store> = Arc::new(store);
    let a = start(store.clone(), Arc::new(runner.clone()), config.clone()).await;
    let b = start(Arc::new(other), Arc::new(runner.clone()), config).await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let app = format!("app{}", i % 4);
        let srv = if i % 2 == 0 { a.addr } else { b.addr };
        let r = post(srv, &t, &app).await;
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push((app, r.json()["id"].as_str().unwrap().to_owned()));
    }
    common::until("all finished", async || {
        runner.release(1);
        let mut done = true;
        for (_, id) in &ids {
            done &= store.deployment(id).await.unwrap().unwrap().status == Status::Succeeded;
        }
        done
    })
    .await;
    let started = runner.started();
    assert_eq!(started.len(), 12, "each ran exactly once: {started:?}");
    for i in 0..4 {
        let app = format!("app{i}");
        let want: Vec<&String> = ids
            .iter()
            .filter(|(x, _)| *x == app)
            .map(|(_, id)| id)
            .collect();
        let got: Vec<&String> = started
            .iter()
            .filter(|(x, _)| *x == app)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(got, want, "{app} ran out of order");
    }
    assert_eq!(*runner.script.max_active_per_app.lock().unwrap(), 1);
    let mut servers = Vec::new();
    for (_, id) in &ids {
        servers.push(
            store
                .deployment(id)
                .await
                .unwrap()
                .unwrap()
                .claimed_by
                .unwrap(),
        );
    }
    servers.sort();
    servers.dedup();
    assert!(
        servers
            .iter()
            .all(|s| s == a.state.server_id() || s == b.state.server_id()),
        "{servers:?}"
    );
    eprintln!("claimed by {} server(s): {servers:?}", servers.len());
}
