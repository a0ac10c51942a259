//! `--workspace`: a deployctl-workspace.yaml of local-target services (the hello fixture app)
//! planned and deployed in dependency waves through the real binary and Docker engine.

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use std::path::Path;

use common::{copy_dir, deployctl, json_lines, on_docker_only, stderr, stdout, workspace};

/// A diamond: db <- (api, worker) <- web, each service a copy of the hello app on the
/// local target with its own port; `bad` services get a health path the app does not serve.
fn diamond(root: &Path, prefix: &str, bad: &[&str]) {
    let services = [
        ("db", ""),
        ("api", "[db]"),
        ("worker", "[db]"),
        ("web", "[api, worker]"),
    ];
    let mut ws = String::from("defaults:\n  local: { enabled: true }\nservices:\n");
    for (name, deps) in services {
        let dir = root.join("services").join(name);
        copy_dir(&workspace().join("fixtures/apps/hello"), &dir);
        let port = deployctl_testsupport::free_port();
        let health = if bad.contains(&name) {
            "/nope"
        } else {
            "/health"
        };
        std::fs::write(
            dir.join("deploy.yaml"),
            format!(
                "version: \"1.0\"\napp:\n  name: {prefix}-{name}\n  port: 8080\n  health_check_path: {health}\nlocal:\n  port: {port}\n"
            ),
        )
        .unwrap();
        ws.push_str(&format!("  {name}:\n    path: services/{name}\n"));
        if !deps.is_empty() {
            ws.push_str(&format!("    depends_on: {deps}\n"));
        }
    }
    std::fs::write(root.join("deployctl-workspace.yaml"), ws).unwrap();
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000_000
    )
}

#[test]
fn plan_workspace_prints_the_waves_and_only_adds_what_a_service_depends_on() {
    let tmp = tempfile::tempdir().unwrap();
    diamond(tmp.path(), "wsplan", &[]);
    // Found by walking up from a service's subdirectory.
    let inside = tmp.path().join("services/api/src");
    let o = deployctl(&inside, &["plan", "--workspace"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("4 services in 3 waves"), "{text}");
    assert!(
        text.contains("  wave 1: db\n  wave 2: api, worker\n  wave 3: web\n"),
        "{text}"
    );
    assert!(text.contains("web | plan for wsplan-web"), "{text}");

    let o = deployctl(
        tmp.path(),
        &["plan", "--workspace", "--only", "api", "-o", "json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    let services: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "result" && l["command"] == "plan")
        .filter_map(|l| l["service"].as_str())
        .collect();
    assert_eq!(services, vec!["db", "api"], "api brings db along");
    let last = lines.last().unwrap();
    assert_eq!(last["waves"], serde_json::json!([["db"], ["api"]]));
}

#[test]
fn a_cycle_or_an_unknown_only_is_exit_2_with_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    diamond(tmp.path(), "wscycle", &[]);
    let file = tmp.path().join("deployctl-workspace.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "  db:\n    path: services/db\n",
            "  db:\n    path: services/db\n    depends_on: [web]\n",
        ),
    )
    .unwrap();
    let o = deployctl(tmp.path(), &["deploy", "--workspace"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("deployctl-workspace.yaml:9:18: services.api.depends_on[0]: dependency cycle: api -> db -> web -> api"),
        "{err}"
    );

    std::fs::write(&file, text).unwrap();
    let o = deployctl(tmp.path(), &["plan", "--workspace", "--only", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("--only: `nope` is not a service"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn deploy_workspace_runs_waves_and_a_failure_stops_exactly_its_dependants() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = unique("ws");
    diamond(tmp.path(), &prefix, &["api"]);
    let run = |args: &[&str]| {
        on_docker_only(tmp.path(), &docker.host)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "-o",
        "json",
        "deploy",
        "--workspace",
        "--jobs",
        "2",
        "--verify-timeout",
        "2s",
    ]);
    let lines = json_lines(&o);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    // Every event names its service; db's last event comes before api's and worker's first.
    let events: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    assert!(events.iter().all(|e| e["service"].is_string()), "{lines:?}");
    let first = |s: &str| events.iter().position(|e| e["service"] == s);
    let last = |s: &str| events.iter().rposition(|e| e["service"] == s);
    assert!(last("db").unwrap() < first("api").unwrap(), "{lines:?}");
    assert!(last("db").unwrap() < first("worker").unwrap(), "{lines:?}");
    assert_eq!(first("web"), None, "web is not started: api failed");
    let result = lines.last().unwrap();
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["exit_code"], 1, "{result}");
    let causes: Vec<&str> = result["error"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(
        causes,
        vec!["api: failed (exit 1)", "web: not reached: api failed"],
        "{result}"
    );

    // The text summary: one table, one line per service.
    let o = run(&["deploy", "--workspace", "--only", "worker"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("SERVICE WAVE RESULT"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("db ") && l.contains(" deployed ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("worker ") && l.contains(" deployed ")),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("web ")), "{text}");

    // status reads every service; destroy goes dependants first and cleans up everything.
    let o = run(&["status", "--workspace"]);
    let text = stdout(&o);
    for name in ["db", "api", "worker", "web"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{text}"
        );
    }
    let o = run(&["-o", "json", "destroy", "--workspace"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let order: Vec<String> = json_lines(&o)
        .iter()
        .filter(|l| l["type"] == "result" && l["command"] == "destroy")
        .filter_map(|l| l["service"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        order,
        vec!["web", "api", "worker", "db"],
        "dependants first"
    );
    let o = run(&["destroy", "--workspace"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a second destroy: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// With four independent services and `--jobs 2`, no more than two services' event spans
/// (first to last event timestamp) overlap at any moment.
#[test]
fn jobs_bounds_how_many_services_deploy_at_once() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = unique("wsjobs");
    let mut ws = String::from("services:\n");
    for name in ["a", "b", "c", "d"] {
        let dir = tmp.path().join(name);
        copy_dir(&workspace().join("fixtures/apps/hello"), &dir);
        let port = deployctl_testsupport::free_port();
        std::fs::write(
            dir.join("deploy.yaml"),
            format!("version: \"1.0\"\napp:\n  name: {prefix}-{name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  enabled: true\n  port: {port}\n"),
        )
        .unwrap();
        ws.push_str(&format!("  {name}: {{ path: {name} }}\n"));
    }
    std::fs::write(tmp.path().join("deployctl-workspace.yaml"), ws).unwrap();
    let run = |args: &[&str]| {
        on_docker_only(tmp.path(), &docker.host)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["-o", "json", "deploy", "--workspace", "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    let span = |s: &str| {
        let at: Vec<u64> = lines
            .iter()
            .filter(|l| l["type"] == "event" && l["service"] == s)
            .filter_map(|l| l["at_ms"].as_u64())
            .collect();
        (*at.iter().min().unwrap(), *at.iter().max().unwrap())
    };
    let spans: Vec<(u64, u64)> = ["a", "b", "c", "d"].iter().map(|s| span(s)).collect();
    for &(start, _) in &spans {
        let running = spans
            .iter()
            .filter(|(s, e)| *s <= start && start <= *e)
            .count();
        assert!(running <= 2, "{running} services at once: {spans:?}");
    }
    let o = run(&["destroy", "--workspace"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run(&["deploy", "--only", "a"]);
    assert_eq!(o.status.code(), Some(2), "--only needs --workspace");
    for cmd in ["plan", "status", "destroy"] {
        let o = run(&[cmd, "--only", "a"]);
        assert_eq!(o.status.code(), Some(2), "{cmd} --only needs --workspace");
        assert!(
            stderr(&o).contains("--only selects services of a workspace"),
            "{}",
            stderr(&o)
        );
    }
}

/// A service's deploy.yaml inherits the workspace's `defaults:` in every command, with or
/// without --workspace; its own value wins.
#[test]
fn a_service_inherits_the_workspace_defaults_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("deployctl-workspace.yaml"),
        "defaults:\n  env: { FROM_WS: inherited, OVERRIDDEN: workspace }\nservices:\n  s: { path: s }\n",
    )
    .unwrap();
    let dir = tmp.path().join("s");
    copy_dir(&workspace().join("fixtures/apps/hello"), &dir);
    std::fs::write(
        dir.join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: s\n  port: 8080\nenv:\n  OVERRIDDEN: service\n",
    )
    .unwrap();
    let o = deployctl(&dir, &["validate", "--print"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("FROM_WS: inherited"), "{text}");
    assert!(text.contains("OVERRIDDEN: service"), "{text}");
}
