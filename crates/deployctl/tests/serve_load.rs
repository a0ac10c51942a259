//! Concurrency of `deployctl serve` with real deploys: the built binary as the server, each
//! job `deployctl deploy local` of the hello image (pushed once to the services' registry)
//! on the services' Docker engine. 30 deployments of 10 apps are posted at once; each job's
//! own pre_deploy hook waits for a gate the test opens, so the queue is full while the test
//! looks at it: one more is 429 with Retry-After, as many run as there are workers, never two
//! of one app. Then every job runs; the jobs' hooks (run by the deploy processes themselves)
//! log when each started and ended: per app in the order posted, never overlapping; the
//! server's records say the same; the container of each app runs the last version.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use serve::{Db, Server, deployment, http, push_hello, remove_containers, token, until};

const APPS: usize = 10;
const PER_APP: usize = 3;
const WORKERS: usize = 4;

#[test]
fn thirty_deployments_of_ten_apps_keep_order_one_per_app_and_the_cap() {
    let (Some(docker), Some(reg)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pushed = push_hello(&docker, reg, tmp.path());
    let db = Db::Dir(tmp.path().join("data"));
    let secret = token(&db, "load", "deploy");
    let env = pushed.server_env(&docker, tmp.path());
    let cap = (APPS * PER_APP).to_string();
    let workers = WORKERS.to_string();
    let server = Server::start(
        &db,
        &["--workers", &workers, "--queue-cap", &cap],
        &env,
        tmp.path(),
    );
    let port = server.port;

    let gate = tmp.path().join("gate");
    let log = tmp.path().join("hooks.log");
    let hooks = format!(
        "  pre_deploy:\n    - run: 'echo \"start $DEPLOYCTL_APP $DEPLOYCTL_VERSION\" >> {log}; while [ ! -f {gate} ]; do sleep 0.05; done'\n  post_deploy:\n    - run: 'echo \"end $DEPLOYCTL_APP $DEPLOYCTL_VERSION\" >> {log}'\n",
        log = log.display(),
        gate = gate.display()
    );
    let unique = std::process::id();
    let apps: Vec<String> = (0..APPS).map(|i| format!("load-{unique}-{i}")).collect();
    remove_containers(&docker, &apps);

    // 10 clients at once, each posting its app's 3 deployments in order.
    let posted: Vec<(String, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = apps
            .iter()
            .map(|app| {
                let (pushed, hooks, secret) = (&pushed, &hooks, &secret);
                s.spawn(move || {
                    let app_port = deployctl_testsupport::free_port();
                    let ids: Vec<String> = (1..=PER_APP)
                        .map(|v| {
                            let body = json!({
                                "config": pushed.config(app, &v.to_string(), app_port, hooks),
                                "image": pushed.image,
                                "target": "local",
                            });
                            let a = http(
                                port,
                                "POST",
                                &format!("/api/v1/projects/load/apps/{app}/deployments"),
                                Some(secret),
                                Some(&body.to_string()),
                            );
                            assert_eq!(a.status, 202, "{}", a.body);
                            a.json()["id"].as_str().unwrap().to_owned()
                        })
                        .collect();
                    (app.clone(), ids)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Nothing can have ended (every job waits at the gate): the project is at its cap.
    let extra = http(
        port,
        "POST",
        &format!("/api/v1/projects/load/apps/{}/deployments", apps[0]),
        Some(&secret),
        Some(
            &json!({ "config": pushed.config(&apps[0], "9", 1, ""), "image": pushed.image })
                .to_string(),
        ),
    );
    assert_eq!(extra.status, 429, "{}", extra.body);
    let retry: u64 = extra.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");

    // As many run as there are workers, never two of one app; the others wait.
    let running = until("the workers to be busy", Duration::from_secs(120), || {
        let running: Vec<String> = posted
            .iter()
            .flat_map(|(_, ids)| ids)
            .map(|id| deployment(port, &secret, id))
            .filter(|d| d["status"] == "running")
            .map(|d| d["app"].as_str().unwrap().to_owned())
            .collect();
        let started = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count();
        (running.len() == WORKERS && started == WORKERS).then_some(running)
    });
    let mut distinct = running.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        WORKERS,
        "two of one app run at once: {running:?}"
    );

    std::fs::write(&gate, "").unwrap();
    let ids: Vec<&String> = posted.iter().flat_map(|(_, ids)| ids).collect();
    until("all 30 to end", Duration::from_secs(300), || {
        ids.iter()
            .all(|id| {
                let s = deployment(port, &secret, id)["status"].clone();
                s != "queued" && s != "running"
            })
            .then_some(())
    });

    for (app, ids) in &posted {
        let records: Vec<_> = ids.iter().map(|id| deployment(port, &secret, id)).collect();
        for d in &records {
            assert_eq!(d["status"], "succeeded", "{d}\n{}", server.log_text());
        }
        // The server's records: each starts after the one before it ended.
        for w in records.windows(2) {
            assert!(
                w[1]["started_ms"].as_i64().unwrap() >= w[0]["finished_ms"].as_i64().unwrap(),
                "{app}: two ran at once or out of order: {} {}",
                w[0],
                w[1]
            );
        }
        let env = serve::container_env(&docker, app);
        assert!(
            env.iter()
                .any(|e| e == &format!("DEPLOY_VERSION={PER_APP}")),
            "{app} does not run the last version: {env:?}"
        );
    }
    // The jobs' own hooks: per app start 1, end 1, start 2 … — in order, never overlapping.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut per_app: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (what, app, version) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
        per_app
            .entry(app)
            .or_default()
            .push(format!("{what} {version}"));
    }
    let want: Vec<String> = (1..=PER_APP)
        .flat_map(|v| [format!("start {v}"), format!("end {v}")])
        .collect();
    assert_eq!(per_app.len(), APPS, "{text}");
    for (app, seen) in &per_app {
        assert_eq!(seen, &want, "{app}: {text}");
    }
    remove_containers(&docker, &apps);
}
