//! `plan` shows what deploys: its resource names come from the adapters' own code.

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use std::process::Command;

use common::{json_lines, stderr, stdout, workspace};

const IMAGE: &str =
    "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Regression: the binary kept its own copy of the Kubernetes names (ConfigMap `{name}-env`
/// where render makes `{app}-config`). For every rendering case, the offline plan (no
/// cluster) names exactly what `render` produces.
#[test]
fn the_offline_kubernetes_plan_names_what_render_produces() {
    let cases = workspace().join("fixtures/k8s");
    let mut checked = 0;
    for case in std::fs::read_dir(&cases).unwrap() {
        let dir = case.unwrap().path();
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_deployctl"))
                .args(args)
                .current_dir(&dir)
                .env_remove("RUST_LOG")
                .env("KUBECONFIG", dir.join("no-kubeconfig"))
                .env("REGISTRY_PASSWORD", "pw")
                .env("DB_PASSWORD", "pw")
                .env("STRIPE_KEY", "pw")
                .output()
                .unwrap()
        };
        let rendered = run(&["-o", "json", "render", "k8s", "--image", IMAGE]);
        if !rendered.status.success() {
            // A case that does not render (a broken user template) has no plan either.
            assert_eq!(rendered.status.code(), Some(2), "{}", stderr(&rendered));
            continue;
        }
        let mut want: Vec<(String, String)> = json_lines(&rendered).pop().unwrap()["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no manifests", dir.display()))
            .iter()
            .map(|m| {
                (
                    m["kind"].as_str().unwrap().to_owned(),
                    m["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let planned = run(&["-o", "json", "plan"]);
        assert!(
            planned.status.success(),
            "{}: {}{}",
            dir.display(),
            stdout(&planned),
            stderr(&planned)
        );
        let result = json_lines(&planned).pop().unwrap();
        let k8s = result["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == "kubernetes")
            .unwrap_or_else(|| panic!("{}: no kubernetes section: {result}", dir.display()));
        assert_eq!(k8s["state_read"], false, "{k8s}");
        let mut got: Vec<(String, String)> = k8s["plan"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["action"], "create", "{c}");
                (
                    c["kind"].as_str().unwrap().to_owned(),
                    c["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{}", dir.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} cases were compared");
}
