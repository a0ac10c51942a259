//! `history --stats [--workspace]` through the real binary and Docker engine: every deploy
//! (unchanged ones included, a failed one too) is recorded by the local target, the stats
//! say how many and how fast, and destroy removes the records.

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use std::path::Path;

use common::{copy_dir, deployctl, json_lines, on_docker_only, stderr, stdout, workspace};

/// Two independent local-target services, `a` and `b`, copies of the hello app.
fn two_services(root: &Path, prefix: &str) {
    let mut ws = String::from("defaults:\n  local: { enabled: true }\nservices:\n");
    for name in ["a", "b"] {
        let dir = root.join("services").join(name);
        copy_dir(&workspace().join("fixtures/apps/hello"), &dir);
        let port = deployctl_testsupport::free_port();
        std::fs::write(
            dir.join("deploy.yaml"),
            format!(
                "version: \"1.0\"\napp:\n  name: {prefix}-{name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  port: {port}\n"
            ),
        )
        .unwrap();
        ws.push_str(&format!("  {name}:\n    path: services/{name}\n"));
    }
    std::fs::write(root.join("deployctl-workspace.yaml"), ws).unwrap();
}

#[test]
fn history_stats_counts_every_deploy_per_service_and_destroy_clears_them() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = format!(
        "st{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000_000
    );
    two_services(tmp.path(), &prefix);
    let state = tmp.path().join("state");
    let run = |dir: &Path, args: &[&str]| {
        on_docker_only(dir, &docker.host)
            .env("XDG_STATE_HOME", &state)
            .args(args)
            .output()
            .unwrap()
    };
    let a = tmp.path().join("services/a");

    // Two deploys of both (the second unchanged), then a failing one of `a`.
    for _ in 0..2 {
        let o = run(tmp.path(), &["deploy", "--workspace"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    }
    let yaml = std::fs::read_to_string(a.join("deploy.yaml")).unwrap();
    std::fs::write(
        a.join("deploy.yaml"),
        yaml.replace("health_check_path: /health", "health_check_path: /nope"),
    )
    .unwrap();
    let o = run(&a, &["deploy", "--verify-timeout", "2s"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));

    // One service: its stats, as one JSON result.
    let o = run(&a, &["-o", "json", "history", "--stats"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let stats = lines[0]["stats"].as_array().unwrap();
    assert_eq!(stats.len(), 1, "{lines:?}");
    let s = &stats[0];
    assert_eq!(s["service"], format!("{prefix}-a"));
    assert_eq!(s["target"], "local");
    assert_eq!(s["deploys"], 3, "{s}");
    assert_eq!(s["succeeded"], 2, "{s}");
    assert!((s["success_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    for stage in ["plan", "apply", "verify"] {
        let p = &s["stages"][stage];
        assert!(
            p["p50_ms"].as_u64().unwrap() <= p["p95_ms"].as_u64().unwrap(),
            "{s}"
        );
    }
    assert!(s["duration"]["p95_ms"].as_u64().unwrap() > 0, "{s}");

    // The workspace: both services in one result; the table in text.
    let o = run(
        tmp.path(),
        &["-o", "json", "history", "--stats", "--workspace"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let got: Vec<(String, u64, u64)> = lines[0]["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_owned(),
                s["deploys"].as_u64().unwrap(),
                s["succeeded"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(format!("{prefix}-a"), 3, 2), (format!("{prefix}-b"), 2, 2)]
    );
    let o = run(tmp.path(), &["history", "--stats", "--workspace"]);
    let text = stdout(&o);
    assert!(text.contains("SERVICE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{prefix}-a ")) && l.contains("67%")),
        "{text}"
    );

    // --workspace without --stats is bad input.
    let o = deployctl(tmp.path(), &["history", "--workspace"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));

    // Destroy leaves no records.
    std::fs::write(a.join("deploy.yaml"), yaml).unwrap();
    let o = run(tmp.path(), &["destroy", "--workspace"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run(
        tmp.path(),
        &["-o", "json", "history", "--stats", "--workspace"],
    );
    let lines = json_lines(&o);
    assert_eq!(lines[0]["stats"], serde_json::json!([]), "{lines:?}");
}
