//! `deployctl serve` killed with SIGKILL in the middle of a real deployment (the built binary;
//! each job `deployctl deploy local` of the pushed hello image on the services' engine, held
//! mid-way by its own pre_deploy hook, which waits for a gate the test opens):
//! - SQLite: after a restart the record says `interrupted`, its events are kept (the stream
//!   replays them up to the last one, then the result); a re-run converges.
//! - Two servers on one PostgreSQL database: the one running a job is killed; the other
//!   marks that job `interrupted` once its claim is stale, then runs the app's queue (the
//!   deployments posted to the dead server included) — each exactly once, never two of the
//!   app at once.
//!
//! Both also check what happens to the killed server's job process: it must not outlive
//! its server (it would go on deploying while another server runs the app's next job).

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use serve::{
    Db, Pushed, Server, container_env, deployment, http, push_hello, remove_containers, sse_data,
    token, until,
};

/// The hooks of a held job: `start <app> <version> <pid of its deploy process>` in `log`,
/// wait for `gate`; `end <app> <version>` after the deploy.
fn held_hooks(log: &Path, gate: &Path) -> String {
    format!(
        "  pre_deploy:\n    - run: 'echo \"start $DEPLOYCTL_APP $DEPLOYCTL_VERSION $PPID\" >> {log}; while [ ! -f {gate} ]; do sleep 0.05; done'\n  post_deploy:\n    - run: 'echo \"end $DEPLOYCTL_APP $DEPLOYCTL_VERSION\" >> {log}'\n",
        log = log.display(),
        gate = gate.display()
    )
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The pid of the deploy process that logged `start <app> <version>`.
fn started_pid(log: &Path, app: &str, version: &str) -> u32 {
    until(
        "the job to reach its hook",
        Duration::from_secs(120),
        || {
            lines(log).iter().find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 4 && w[0] == "start" && w[1] == app && w[2] == version)
                    .then(|| w[3].parse().unwrap())
            })
        },
    )
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for this purpose: it runs nothing any more.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn post(
    port: u16,
    secret: &str,
    pushed: &Pushed,
    app: &str,
    version: &str,
    app_port: u16,
    hooks: &str,
) -> String {
    let body = json!({
        "config": pushed.config(app, version, app_port, hooks),
        "image": pushed.image,
        "target": "local",
    });
    let a = http(
        port,
        "POST",
        &format!("/api/v1/projects/crash/apps/{app}/deployments"),
        Some(secret),
        Some(&body.to_string()),
    );
    assert_eq!(a.status, 202, "{}", a.body);
    a.json()["id"].as_str().unwrap().to_owned()
}

fn final_status(port: u16, secret: &str, id: &str, limit: Duration) -> Value {
    until(&format!("{id} to end"), limit, || {
        let d = deployment(port, secret, id);
        (d["status"] != "queued" && d["status"] != "running").then_some(d)
    })
}

fn setup() -> Option<(deployctl_testsupport::Docker, tempfile::TempDir, Pushed)> {
    let (Some(docker), Some(reg)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
    ) else {
        return None;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pushed = push_hello(&docker, reg, tmp.path());
    Some((docker, tmp, pushed))
}

#[test]
fn sqlite_kill9_mid_deployment_is_interrupted_and_a_rerun_converges() {
    let Some((docker, tmp, pushed)) = setup() else {
        return;
    };
    let db = Db::Dir(tmp.path().join("data"));
    let secret = token(&db, "crash", "deploy");
    let env = pushed.server_env(&docker, tmp.path());
    let (log, gate) = (tmp.path().join("hooks.log"), tmp.path().join("gate"));
    let hooks = held_hooks(&log, &gate);
    let app = format!("crash-{}", std::process::id());
    let app_port = deployctl_testsupport::free_port();
    remove_containers(&docker, std::slice::from_ref(&app));

    let mut first = Server::start(&db, &["--workers", "2"], &env, tmp.path());
    let id = post(first.port, &secret, &pushed, &app, "1", app_port, &hooks);
    let job = started_pid(&log, &app, "1");
    let before = deployment(first.port, &secret, &id);
    assert_eq!(before["status"], "running", "{before}");
    first.kill9();
    // The job's deploy process dies with its server.
    until("the job process to stop", Duration::from_secs(30), || {
        (!alive(job)).then_some(())
    });

    let second = Server::start(&db, &["--workers", "2"], &env, tmp.path());
    let d = deployment(second.port, &secret, &id);
    assert_eq!(d["status"], "interrupted", "{d}");
    assert!(d["error"].as_str().unwrap().contains("deploy again"), "{d}");
    // The stages as they were when it died: one of them started and never ended.
    let stages = d["stages"].as_object().unwrap();
    assert!(stages.values().any(|st| st["state"] == "started"), "{d}");
    // Its events are kept: the stream replays them, the last one first seen before the kill,
    // and ends with the result.
    let sse = http(
        second.port,
        "GET",
        &format!("/api/v1/deployments/{id}/events"),
        Some(&secret),
        None,
    );
    let data = sse_data(&sse.body);
    let (result, events) = data.split_last().unwrap();
    assert_eq!(result["status"], "interrupted", "{}", sse.body);
    assert!(
        events.iter().any(|e| e["stage"] == "build"
            || e["stage"] == "push"
            || e["stage"].as_str().is_some_and(|s| s.contains("local"))),
        "{}",
        sse.body
    );

    // Deploying again converges: version 2 runs and answers.
    std::fs::write(&gate, "").unwrap();
    let id2 = post(second.port, &secret, &pushed, &app, "2", app_port, &hooks);
    let d2 = final_status(second.port, &secret, &id2, Duration::from_secs(120));
    assert_eq!(d2["status"], "succeeded", "{d2}\n{}", second.log_text());
    assert!(container_env(&docker, &app).contains(&"DEPLOY_VERSION=2".to_owned()));
    assert_eq!(http(app_port, "GET", "/health", None, None).status, 200);
    assert!(
        !lines(&log).contains(&format!("end {app} 1")),
        "the killed server's job went on to deploy: {:?}",
        lines(&log)
    );
    remove_containers(&docker, &[app]);
}

/// A fresh database on the services' PostgreSQL: its URL.
fn fresh_database() -> Option<String> {
    let pg = deployctl_testsupport::postgres()?;
    let name = format!(
        "crash_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let o = Command::new("psql")
        .arg(&pg.url)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(format!("{}/{name}", pg.url.rsplit_once('/').unwrap().0))
}

#[test]
fn two_servers_on_postgres_one_killed_mid_job_leaves_nothing_stranded() {
    let Some((docker, tmp, pushed)) = setup() else {
        return;
    };
    let Some(url) = fresh_database() else {
        return;
    };
    let db = Db::Url(url);
    let secret = token(&db, "crash", "deploy");
    let env = pushed.server_env(&docker, tmp.path());
    let (log, gate) = (tmp.path().join("hooks.log"), tmp.path().join("gate"));
    let hooks = held_hooks(&log, &gate);
    let unique = std::process::id();
    let (x, y) = (format!("pgx-{unique}"), format!("pgy-{unique}"));
    let (xp, yp) = (
        deployctl_testsupport::free_port(),
        deployctl_testsupport::free_port(),
    );
    remove_containers(&docker, &[x.clone(), y.clone()]);

    let a = Server::start(&db, &["--workers", "2"], &env, tmp.path());
    let b = Server::start(&db, &["--workers", "2"], &env, tmp.path());
    let mut servers: Vec<(String, Server)> = vec![(a.server_id(), a), (b.server_id(), b)];
    // App x: three deployments, posted to either server.
    let ports: Vec<u16> = servers.iter().map(|(_, s)| s.port).collect();
    let x1 = post(ports[0], &secret, &pushed, &x, "1", xp, &hooks);
    let x2 = post(ports[1], &secret, &pushed, &x, "2", xp, &hooks);
    let x3 = post(ports[0], &secret, &pushed, &x, "3", xp, &hooks);
    let job = started_pid(&log, &x, "1");
    let d = deployment(ports[0], &secret, &x1);
    let owner = d["claimed_by"].as_str().unwrap().to_owned();
    let victim = servers.iter().position(|(id, _)| *id == owner).unwrap();
    let (_, mut dead) = servers.remove(victim);
    let (_, survivor) = servers.pop().unwrap();
    dead.kill9();
    until("the job process to stop", Duration::from_secs(30), || {
        (!alive(job)).then_some(())
    });
    std::fs::write(&gate, "").unwrap();
    // The survivor goes on serving meanwhile.
    let y1 = post(survivor.port, &secret, &pushed, &y, "1", yp, &hooks);

    // The survivor takes over once the dead server's claim is stale (30 s lease).
    let port = survivor.port;
    let d1 = final_status(port, &secret, &x1, Duration::from_secs(90));
    assert_eq!(d1["status"], "interrupted", "{d1}");
    let mut ends = Vec::new();
    for id in [&x2, &x3, &y1] {
        let d = final_status(port, &secret, id, Duration::from_secs(120));
        assert_eq!(d["status"], "succeeded", "{d}\n{}", survivor.log_text());
        ends.push(d);
    }
    // x's queue in order, one at a time, after the interrupted one.
    let (s2, f2, s3) = (
        ends[0]["started_ms"].as_i64().unwrap(),
        ends[0]["finished_ms"].as_i64().unwrap(),
        ends[1]["started_ms"].as_i64().unwrap(),
    );
    assert!(
        s2 >= d1["finished_ms"].as_i64().unwrap() && s3 >= f2,
        "{ends:?} {d1}"
    );
    // Each job ran once: one start line per (app, version) that ran, x1 never reaching its end.
    let log_lines = lines(&log);
    for (app, v) in [(&x, "1"), (&x, "2"), (&x, "3"), (&y, "1")] {
        let starts = log_lines
            .iter()
            .filter(|l| l.starts_with(&format!("start {app} {v} ")))
            .count();
        assert_eq!(starts, 1, "{app} {v}: {log_lines:?}");
    }
    assert!(!log_lines.contains(&format!("end {x} 1")), "{log_lines:?}");
    assert!(container_env(&docker, &x).contains(&"DEPLOY_VERSION=3".to_owned()));
    remove_containers(&docker, &[x, y]);
}
