//! The stand-in through Python clients nobody here wrote, from the services' venv (`cargo
//! xtask services up` installs them, list in xtask/src/clients.rs):
//! - the official client (`kubernetes`): namespaces, ConfigMap create/read/patch/list/
//!   replace/delete, Secret defaults, server-side apply through `kubernetes.dynamic` of every
//!   manifest `deployctl render k8s` produces for the fixtures, a Deployment's defaults and
//!   canonical quantities, a watch until its rollout completes, apply conflicts and force,
//!   a strategic merge patch, scale, delete with cascade, a Service's cluster IP
//!   (`tests/python/official_client.py`);
//! - `kubernetes-validate --strict` on the same manifests, for the Kubernetes version the
//!   stand-in reports.
//!
//! The manifests are the golden files of `crates/deployctl-k8s/tests/render.rs` (kept equal
//! to the renderer's output by that test). Skipped with a printed reason when the venv or
//! the packages are missing; a failure when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failure here is a test failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use deployctl_kube_standin::StandIn;

/// Skips with the reason, or fails when `CI=true`.
fn absent(why: &str) {
    common::absent("the Python Kubernetes clients", why);
}

/// The venv's python, when it imports both packages.
fn python() -> Option<PathBuf> {
    let Some(venv) = common::services_env().remove("DEPLOYCTL_TEST_VENV") else {
        absent("DEPLOYCTL_TEST_VENV is not set in target/services/services.env");
        return None;
    };
    let python = Path::new(&venv).join("bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes, kubernetes_validate, yaml"])
        .output();
    match probe {
        Ok(o) if o.status.success() => Some(python),
        Ok(o) => {
            absent(String::from_utf8_lossy(&o.stderr).trim());
            None
        }
        Err(e) => {
            absent(&format!("cannot run {}: {e}", python.display()));
            None
        }
    }
}

/// The rendered fixtures, one YAML file each (the insta header removed), and how many
/// documents they hold.
fn rendered_manifests(dir: &Path) -> (Vec<PathBuf>, usize) {
    let snapshots = common::workspace_root().join("crates/deployctl-k8s/tests/snapshots");
    let mut files = Vec::new();
    let mut docs = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    entries.sort();
    for snap in entries {
        let text = std::fs::read_to_string(&snap).unwrap();
        // `---`, source, expression, `---`, then the rendered stream.
        let body = text.split_once("\n---\n").unwrap().1;
        docs += body.lines().filter(|l| l.starts_with("kind: ")).count();
        let out = dir.join(
            snap.file_stem()
                .unwrap()
                .to_string_lossy()
                .replace("render__", "")
                + ".yaml",
        );
        std::fs::write(&out, body).unwrap();
        files.push(out);
    }
    (files, docs)
}

async fn run(mut cmd: Command) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_and_kubernetes_validate() {
    let Some(python) = python() else { return };
    let standin = StandIn::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("deployctl-python-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let (manifests, documents) = rendered_manifests(&dir);
    assert!(manifests.len() >= 5 && documents >= 20, "{manifests:?}");

    let mut cmd = Command::new(&python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/official_client.py"))
        .arg(&kubeconfig)
        .args(&manifests)
        .env("HOME", &dir);
    let (ok, stdout, stderr) = run(cmd).await;
    eprintln!("{stdout}{stderr}");
    assert!(
        ok,
        "the official client's checks failed:\n{stdout}\n{stderr}"
    );
    let passed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(
        passed,
        [
            "ok namespace",
            "ok configmap crud",
            "ok secret defaults",
            "ok server-side apply of rendered manifests",
            "ok deployment defaults",
            "ok watch rollout complete",
            "ok apply conflict and force",
            "ok strategic merge patch",
            "ok scale and delete",
            "ok service defaults",
        ]
    );
    let kinds = stdout
        .lines()
        .find_map(|l| l.strip_prefix("applied kinds: "))
        .unwrap();
    assert_eq!(
        kinds,
        "ConfigMap Deployment HorizontalPodAutoscaler Ingress Job LimitRange Namespace NetworkPolicy PersistentVolumeClaim PodDisruptionBudget ResourceQuota Role RoleBinding Secret Service ServiceAccount"
    );

    // kubernetes-validate, strict, for the version the stand-in reports.
    let version = stdout
        .lines()
        .find_map(|l| l.strip_prefix("version "))
        .unwrap()
        .trim_end_matches('+');
    let mut cmd = Command::new(python.with_file_name("kubernetes-validate"));
    cmd.args(["--strict", "-k", &format!("{version}.0")])
        .args(&manifests);
    let (ok, stdout, stderr) = run(cmd).await;
    eprintln!("{stdout}{stderr}");
    assert!(
        ok,
        "kubernetes-validate refused a rendered manifest:\n{stdout}{stderr}"
    );
    let passed = format!("{stdout}{stderr}")
        .lines()
        .filter(|l| l.contains("passed for resource") && l.contains(version))
        .count();
    assert_eq!(passed, documents, "{stdout}{stderr}");

    // And it does refuse what a strict server would.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n",
    )
    .unwrap();
    let mut cmd = Command::new(python.with_file_name("kubernetes-validate"));
    cmd.args(["--strict", "-k", &format!("{version}.0")])
        .arg(&bad);
    let (ok, stdout, stderr) = run(cmd).await;
    assert!(
        !ok && format!("{stdout}{stderr}").contains("datta"),
        "{stdout}{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
