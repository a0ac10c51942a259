//! The app status route answers from the app's reading (one read shared by a burst of
//! requests, a fresh one taken when a job of the app ends, `read_at_ms`), and query and
//! header parameters are checked against the OpenAPI document (400 naming the parameter),
//! over HTTP with the scripted runner of `common`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{ScriptedRunner, request, token};
use deployctl_server::{Role, ServerConfig, Store};
use serde_json::json;

const APP: &str = "/api/v1/projects/shop/apps/web";

fn reads(runner: &ScriptedRunner) -> usize {
    runner.script.status_configs.lock().unwrap().len()
}

async fn get(a: std::net::SocketAddr, t: &str, path: &str) -> common::Answer {
    request(
        a,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {t}"))],
        None,
    )
    .await
}

/// Posts a deploy of `web` and lets it finish.
async fn deploy(srv: &common::TestServer, store: &Arc<dyn Store>, r: &ScriptedRunner, t: &str) {
    let a = request(
        srv.addr,
        "POST",
        &format!("{APP}/deployments"),
        &[("Authorization", &format!("Bearer {t}"))],
        Some(("application/json", &common::deploy_body("web"))),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_owned();
    r.release(1);
    common::until("the deploy ended", async || {
        store
            .deployment(&id)
            .await
            .unwrap()
            .is_some_and(|d| d.status.is_final())
    })
    .await;
}

#[tokio::test]
async fn status_is_read_once_per_job_end_and_shared_by_a_burst() {
    let common::Setup {
        store,
        runner,
        srv,
        _dir,
    } = common::setup(0, ServerConfig::new(2, false)).await;
    let t = token(store.as_ref(), "shop", Role::Deploy).await;

    deploy(&srv, &store, &runner, &t).await;
    // The job's end took a reading before it was recorded.
    assert_eq!(reads(&runner), 1);
    let before = deployctl_server::tokens::now_ms();
    let burst = (0..20).map(|_| get(srv.addr, &t, APP));
    for a in futures::future::join_all(burst).await {
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        assert_eq!(v["command"], "status");
        let at = v["read_at_ms"].as_i64().unwrap();
        assert!(at <= before, "the job end's reading: {at} > {before}");
    }
    assert_eq!(
        reads(&runner),
        1,
        "20 requests within 2 s: no read of their own"
    );

    // Another job of the app ends: one new reading, answered at once.
    deploy(&srv, &store, &runner, &t).await;
    assert_eq!(reads(&runner), 2);
    let a = get(srv.addr, &t, APP).await;
    assert!(a.json()["read_at_ms"].as_i64().unwrap() >= before);
    assert_eq!(reads(&runner), 2);
}

#[tokio::test]
async fn parameters_that_break_the_document_are_400_naming_them() {
    let common::Setup {
        store,
        runner,
        srv,
        _dir,
    } = common::setup(0, ServerConfig::new(2, false)).await;
    let t = token(store.as_ref(), "shop", Role::Admin).await;
    deploy(&srv, &store, &runner, &t).await;
    let auth = format!("Bearer {t}");

    for (path, name) in [
        (format!("{APP}/logs?since=0d"), "since"),
        (format!("{APP}/logs?since=10"), "since"),
        (format!("{APP}/logs?follow=yes"), "follow"),
        (format!("{APP}/logs?target=mars"), "target"),
        (format!("{APP}/history?limit=0"), "limit"),
        (format!("{APP}/history?limit=501"), "limit"),
        ("/api/v1/audit?limit=abc".to_owned(), "limit"),
    ] {
        let a = get(srv.addr, &t, &path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&format!("`{name}`")), "{path}: {message}");
    }
    let a = request(
        srv.addr,
        "POST",
        &format!("{APP}/deployments?target=mars"),
        &[("Authorization", &auth)],
        Some((
            "application/json",
            &json!({ "config": common::config("web") }).to_string(),
        )),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("`target`"), "{}", a.body);

    // A header: Last-Event-ID must be a number.
    let history = get(srv.addr, &t, &format!("{APP}/history")).await.json();
    let id = history["deployments"][0]["id"].as_str().unwrap().to_owned();
    let a = request(
        srv.addr,
        "GET",
        &format!("/api/v1/deployments/{id}/events"),
        &[("Authorization", &auth), ("Last-Event-ID", "x")],
        None,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("header `Last-Event-ID`"), "{}", a.body);

    // What the document allows still works.
    for path in [
        format!("{APP}/logs?since=10m&target=local"),
        format!("{APP}/history?limit=500"),
        "/api/v1/audit?limit=1000&project=shop".to_owned(),
    ] {
        let a = get(srv.addr, &t, &path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
}
