//! Usage: global options anywhere on the line, and every usage error exits 2 (invalid input).

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use common::{deployctl, fixture, json_lines, stderr, stdout};

#[test]
fn global_options_are_accepted_after_the_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture("config/valid/seed-000.yaml");
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["validate", "--config", cfg],
        vec!["validate", "-c", cfg],
        vec!["validate", "-c", cfg, "-o", "json"],
        vec!["-o", "json", "validate", "--config", cfg],
        vec!["validate", "--output", "json", "--config", cfg, "-v"],
    ] {
        let o = deployctl(tmp.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        if args.contains(&"json") {
            let result = json_lines(&o).pop().unwrap();
            assert_eq!(result["command"], "validate", "{args:?}");
            assert_eq!(result["ok"], true, "{args:?}");
        }
    }
    // `--env` after the subcommand is read too: an unknown environment is refused.
    let o = deployctl(tmp.path(), &["validate", "-c", cfg, "--env", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["validate", "--no-such-flag"],
        vec!["--no-such-flag", "validate"],
        vec!["no-such-command"],
        vec!["deploy", "local", "--output"],
        vec!["--output", "yaml", "validate"],
        // Not a version number: refused before any target is contacted.
        vec!["rollback", "lambda", "--to", "abc"],
        vec!["scale", "k8s", "many"],
        vec!["logs", "local", "--since", "5x"],
        vec!["deploy", "--verify-timeout", "soon"],
    ] {
        let o = deployctl(tmp.path(), &args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stderr(&o).contains("--help"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_is_exit_0_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [vec!["--help"], vec!["deploy", "--help"]] {
        let o = deployctl(tmp.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage"), "{args:?}: {}", stdout(&o));
    }
}

/// Log lines written to a pipe (a CI log) carry no ANSI colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixture("config/valid/seed-000.yaml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(["-c", cfg.to_str().unwrap(), "plan"])
        .current_dir(tmp.path())
        .env("RUST_LOG", "trace")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("KUBECONFIG", tmp.path().join("none"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("TRACE") || err.contains("DEBUG"),
        "no log lines: {err}"
    );
    assert!(!err.contains('\u{1b}'), "ANSI escape in piped logs: {err}");
}
