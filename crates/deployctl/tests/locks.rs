//! The deploy lock through the binary, against the Kubernetes stand-in: a command that
//! changes the app waits for another holder and names it, `--lock-timeout 0` fails at once
//! (exit 1), and `unlock` breaks a stale lock.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{stderr, stdout};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;

fn run(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap()
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A Lease as another deployctl run (pid 4242 on ci-7) would hold it, renewed just now.
fn held_lease(seconds: i32) -> Lease {
    let now = k8s_openapi::jiff::Timestamp::now();
    serde_json::from_value(json!({
        "metadata": {
            "name": "web-deployctl-lock",
            "annotations": {"deployctl/lock-holder": "ana@ci-7 (pid 4242)"},
        },
        "spec": {
            "holderIdentity": "ci-7-4242-abc",
            "leaseDurationSeconds": seconds,
            "acquireTime": now.to_string(),
            "renewTime": now.to_string(),
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_stops_a_rollback_naming_its_holder_and_unlock_breaks_it() {
    let standin = StandIn::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        "version: \"1.0\"\napp:\n  name: web\n  port: 8080\nregistry:\n  url: 127.0.0.1:5000\nkubernetes:\n  enabled: true\n  namespace: shop\n",
    )
    .unwrap();
    // The namespace exists and another run holds the app's lock.
    let c = client(&kubeconfig).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap(),
        )
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(c.clone(), "shop");
    leases
        .create(&PostParams::default(), &held_lease(300))
        .await
        .unwrap();

    let dir = tmp.path().to_owned();
    let kc = kubeconfig.clone();
    let o = tokio::task::spawn_blocking(move || {
        run(&dir, &kc, &["--lock-timeout", "0", "rollback", "k8s"])
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("another deploy holds the lock (Lease web-deployctl-lock in namespace shop)"),
        "{err}"
    );
    assert!(err.contains("ana@ci-7 (pid 4242)"), "{err}");
    assert!(err.contains("deployctl unlock"), "{err}");

    // Waiting: the run says whom it waits for, then gives up at its deadline.
    let dir = tmp.path().to_owned();
    let kc = kubeconfig.clone();
    let started = std::time::Instant::now();
    let o = tokio::task::spawn_blocking(move || {
        run(&dir, &kc, &["--lock-timeout", "2s", "rollback", "k8s"])
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let err = stderr(&o);
    assert!(err.contains("waiting for the deploy lock"), "{err}");
    assert!(err.contains("(waited 2s)"), "{err}");

    // unlock breaks it and says whose it was; then the rollback runs (and finds nothing to
    // roll back: the app was never deployed).
    let dir = tmp.path().to_owned();
    let kc = kubeconfig.clone();
    let o = tokio::task::spawn_blocking(move || run(&dir, &kc, &["unlock", "k8s"]))
        .await
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("k8s: broke the deploy lock (Lease web-deployctl-lock in namespace shop) held by ana@ci-7 (pid 4242)"),
        "{}",
        stdout(&o)
    );
    assert!(
        leases
            .get_opt("web-deployctl-lock")
            .await
            .unwrap()
            .is_none()
    );
    let dir = tmp.path().to_owned();
    let kc = kubeconfig.clone();
    let o = tokio::task::spawn_blocking(move || {
        run(&dir, &kc, &["--lock-timeout", "0", "rollback", "k8s"])
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no deploy history"), "{}", stderr(&o));
    // The run released its own lock.
    assert!(
        leases
            .get_opt("web-deployctl-lock")
            .await
            .unwrap()
            .is_none()
    );
}
