//! The Kubernetes target against a real cluster (kind, k3d, …). Runs only when
//! `DEPLOYCTL_E2E_KUBECONFIG` names a kubeconfig; `DEPLOYCTL_E2E_IMAGE` names the image to
//! run, by digest (`repository@sha256:…`), serving HTTP on `DEPLOYCTL_E2E_PORT` (default 8080)
//! with `DEPLOYCTL_E2E_HEALTH_PATH` (default `/`) answering 200.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::path::Path;
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
    target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert!(!target.status().await.unwrap().deployed);
}
