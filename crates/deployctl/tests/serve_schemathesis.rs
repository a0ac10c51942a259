//! API conformance of `deployctl serve`, checked by a client we did not write: the Python
//! package `schemathesis` (installed into the services' venv by `cargo xtask services up`)
//! reads the live `/api/v1/openapi.json` of the built binary and sends a bounded number of
//! generated requests to every operation the document lists (examples, coverage, fuzzing,
//! and the stateful phase that follows the document's links from a created deployment).
//! Every answer must be below 500, have a documented status, content type and headers, and
//! match its schema; and every request the document forbids (a parameter or body that breaks
//! its schema) must be refused (4xx). Jobs the run creates fail fast: the server's engine
//! socket leads nowhere.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serve::{Db, Server, http, token, venv_tool};

/// Generated requests per operation and phase: enough to reach every status each operation
/// documents, bounded so the run takes seconds.
const EXAMPLES: &str = "25";

/// The checks: the answers, and that data the document forbids is rejected
/// (`negative_data_rejection`). Not `positive_data_acceptance`: a config that is schema-valid
/// but not a valid deploy.yaml is rightly a 422.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      negative_data_rejection";

#[test]
fn schemathesis_finds_every_answer_of_the_live_document_conformant() {
    let Some(st) = venv_tool("schemathesis") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::Dir(tmp.path().join("data"));
    let secret = token(&db, "demo", "admin");
    let nowhere = format!("unix://{}/no-engine.sock", tmp.path().display());
    let kubeconfig = tmp.path().join("no-kubeconfig");
    let server = Server::start(
        &db,
        &["--workers", "2", "--queue-cap", "50"],
        &[
            ("DOCKER_HOST", nowhere.as_str()),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("XDG_STATE_HOME", tmp.path().to_str().unwrap()),
        ],
        tmp.path(),
    );
    let doc = http(
        server.port,
        "GET",
        "/api/v1/openapi.json",
        Some(&secret),
        None,
    )
    .json();
    let methods = ["get", "put", "post", "delete", "patch"];
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| methods.iter().filter(|m| item.get(**m).is_some()).count())
        .sum();
    assert!(operations >= 5, "{doc}");

    // The token's project for every `{project}`, so requests get past 403 to the logic.
    let config = tmp.path().join("schemathesis.toml");
    std::fs::write(&config, "[parameters]\n\"path.project\" = \"demo\"\n").unwrap();
    let out = tmp.path().join("schemathesis.out");
    let mut child = Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!(
            "http://127.0.0.1:{}/api/v1/openapi.json",
            server.port
        ))
        .args(["-H", &format!("Authorization: Bearer {secret}")])
        .args(["--max-examples", EXAMPLES, "--checks", CHECKS])
        .args(["--seed", "17", "--request-timeout", "15", "--no-color"])
        .args(["--max-failures", "20"])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "schemathesis ran for 5 minutes:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!(
        "schemathesis ({:.1} s):\n{}",
        start.elapsed().as_secs_f64(),
        report
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        status.success(),
        "schemathesis found non-conformant answers:\n{report}\nserver log:\n{}",
        server.log_text()
    );
    // Every operation schemathesis selected from the document was tested, and that is all of
    // them but the document's own path, which it leaves out.
    let selected: usize = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Selected: "))
        .and_then(|s| s.split_once('/'))
        .filter(|(a, b)| a == b)
        .and_then(|(a, _)| a.parse().ok())
        .unwrap_or_else(|| panic!("no `Selected: N/N` line:\n{report}"));
    assert!(
        selected + 1 >= operations && report.contains(&format!("Tested: {selected}")),
        "{selected} of the {operations} operations tested:\n{report}"
    );
    assert!(!report.contains("Errors:"), "{report}");
}
