//! The Kubernetes target against a real cluster (kind, k3d, …). Runs only when
//! `DEPLOYCTL_E2E_KUBECONFIG` names a kubeconfig; `DEPLOYCTL_E2E_IMAGE` names the image to
//! run, by digest (`repository@sha256:…`), serving HTTP on `DEPLOYCTL_E2E_PORT` (default 8080)
//! with `DEPLOYCTL_E2E_HEALTH_PATH` (default `/`) answering 200.
//!
//! The real clients that prove the stand-in check the same cluster: kubectl reads and
//! watches what deployctl deployed, and helm installs `fixtures/helm/hello` (the chart
//! equivalent to what deployctl renders) with `--wait`, then uninstalls it. They are found as
//! `DEPLOYCTL_E2E_KUBECTL` / `DEPLOYCTL_E2E_HELM`, else where the stand-in's tests extract
//! them (`target/clients/`), else on `PATH`.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use deployctl_core::{Action, Cancellation, ImageRef, NullSink, PushedImage, Target};
use deployctl_k8s::{K8sOptions, K8sTarget};
use kube::config::{KubeConfigOptions, Kubeconfig};

struct NoVars;
impl deployctl_config::VarLookup for NoVars {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

/// A real client (`kubectl`, `helm`) for the e2e run: `env`, else `target/clients/<member>`,
/// else `name` on `PATH`.
fn client(env: &str, member: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let extracted = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/clients")
        .join(member);
    if extracted.is_file() {
        extracted
    } else {
        PathBuf::from(name)
    }
}

/// Runs `bin --kubeconfig <kubeconfig> <args>` off the async runtime; its stdout, or a
/// failure naming the command and what it printed.
async fn run_client(bin: &Path, kubeconfig: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    let shown = format!("{} {}", bin.display(), args.join(" "));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("cannot run {shown}: {e} (set DEPLOYCTL_E2E_KUBECTL / DEPLOYCTL_E2E_HELM)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// kubectl sees what deployctl deployed as deployctl says it is, and its own rollout logic
/// finds the rollout complete.
async fn kubectl_checks(kubeconfig: &str, ns: &str, image: &str) {
    let kubectl = client("DEPLOYCTL_E2E_KUBECTL", "kubectl/kubectl", "kubectl");
    let k = |args: Vec<&str>| {
        let mut all = vec!["--namespace", ns];
        all.extend(args);
        let kubectl = kubectl.clone();
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            run_client(&kubectl, kubeconfig, &refs).await
        }
    };
    let deployment: serde_json::Value =
        serde_json::from_str(&k(vec!["get", "deployment", "e2e", "-o", "json"]).await).unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"], image,
        "{deployment:#}"
    );
    let names = k(vec![
        "get",
        "deployment,service,configmap",
        "-l",
        "app.kubernetes.io/instance=e2e",
        "-o",
        "name",
    ])
    .await;
    for want in ["deployment.apps/e2e", "service/e2e"] {
        assert!(names.lines().any(|l| l == want), "{want} not in {names}");
    }
    k(vec![
        "rollout",
        "status",
        "deployment/e2e",
        "--timeout=120s",
    ])
    .await;
    let history = k(vec!["rollout", "history", "deployment/e2e"]).await;
    assert!(history.contains("REVISION"), "{history}");
    let described = k(vec!["describe", "deployment", "e2e"]).await;
    assert!(described.contains(image), "{described}");
}

/// helm installs the equivalent chart beside the app, waits for it, and uninstalls it.
async fn helm_checks(kubeconfig: &str, ns: &str, image: &str, port: &str, health: &str) {
    let helm = client("DEPLOYCTL_E2E_HELM", "helm/helm", "helm");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/helm/hello");
    let (image, port, health) = (
        format!("image={image}"),
        format!("port={port}"),
        format!("healthPath={health}"),
    );
    run_client(
        &helm,
        kubeconfig,
        &[
            "upgrade",
            "--install",
            "hello",
            chart.to_str().unwrap(),
            "--namespace",
            ns,
            "--wait",
            "--timeout",
            "300s",
            "--set",
            &image,
            "--set",
            &port,
            "--set",
            &health,
        ],
    )
    .await;
    let status: serde_json::Value = serde_json::from_str(
        &run_client(
            &helm,
            kubeconfig,
            &["status", "hello", "--namespace", ns, "-o", "json"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(status["info"]["status"], "deployed", "{status:#}");
    run_client(
        &helm,
        kubeconfig,
        &["uninstall", "hello", "--namespace", ns, "--wait"],
    )
    .await;
}

#[tokio::test]
async fn deploy_redeploy_destroy_on_a_real_cluster() {
    let Ok(kubeconfig) = std::env::var("DEPLOYCTL_E2E_KUBECONFIG") else {
        eprintln!("skipped: DEPLOYCTL_E2E_KUBECONFIG is not set (see docs/KUBERNETES.md)");
        return;
    };
    let image = std::env::var("DEPLOYCTL_E2E_IMAGE").expect(
        "DEPLOYCTL_E2E_IMAGE=<repository>@sha256:… is required with DEPLOYCTL_E2E_KUBECONFIG",
    );
    let port = std::env::var("DEPLOYCTL_E2E_PORT").unwrap_or_else(|_| "8080".into());
    let health = std::env::var("DEPLOYCTL_E2E_HEALTH_PATH").unwrap_or_else(|_| "/".into());
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let ns = format!(
        "deployctl-e2e-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 100_000
    );
    // Quantities not in canonical form: the server stores `50m`, `1`, `128Mi`, and the plan
    // after the deploy must still be unchanged (the stand-in simulates this; here it is real).
    let yaml = format!(
        "app:\n  name: e2e\n  port: {port}\n  health_check_path: {health}\nkubernetes:\n  enabled: true\n  namespace: {ns}\n  deployment:\n    replicas: 1\n    resources:\n      requests: {{ cpu: \"0.05\", memory: 64Mi }}\n      limits: {{ cpu: 1000m, memory: 0.125Gi }}\n"
    );
    let cfg = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&NoVars),
    )
    .unwrap();
    let reference = ImageRef::parse(&image).unwrap();
    let digest = reference
        .digest
        .clone()
        .expect("DEPLOYCTL_E2E_IMAGE must carry a digest");
    let pushed = PushedImage::new(reference, digest, None);
    let options = K8sOptions::from_config(&cfg).rollout_timeout(Duration::from_secs(300));
    let target = K8sTarget::new(client, cfg, options);

    target
        .apply(&pushed, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let again = target.plan(Some(&pushed)).await.unwrap();
    assert!(
        again.changes.iter().all(|c| c.action == Action::Unchanged),
        "{again:#?}"
    );
    let status = target.status().await.unwrap();
    assert!(status.deployed);
    kubectl_checks(&kubeconfig, &ns, &image).await;
    helm_checks(&kubeconfig, &ns, &image, &port, &health).await;
    target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert!(!target.status().await.unwrap().deployed);
}
