//! Shared by the integration tests that deploy to the stand-in: a `kube::Client` for it,
//! a config, images, a target, a deploy (plan + apply), and a tiny HTTP server that stands
//! for the app behind the API server's proxy.

#![allow(clippy::unwrap_used, dead_code)] // a failure here is a test failure

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_core::{Cancellation, Digest, ImageRef, NullSink, PushedImage, Target};
use deployctl_k8s::{K8sOptions, K8sTarget};
use deployctl_kube_standin::StandIn;
use kube::config::{KubeConfigOptions, Kubeconfig};

struct Env;
impl deployctl_config::VarLookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        (name == "DB_PASSWORD").then(|| "k8s-secret-value".to_owned())
    }
}

pub async fn client(standin: &StandIn) -> kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let path = std::env::temp_dir().join(format!(
        "deployctl-k8s-{}-{}",
        std::process::id(),
        standin.url().rsplit(':').next().unwrap()
    ));
    standin.write_kubeconfig(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

pub fn config(extra: &str) -> deployctl_config::Config {
    let yaml = format!(
        "app:\n  name: web\n  port: 8080\n  health_check_path: /health\nsecrets:\n  DB_PASSWORD: ${{DB_PASSWORD}}\nkubernetes:\n  enabled: true\n  namespace: shop\n  deployment:\n    replicas: 2\n{extra}"
    );
    deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&Env),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"))
}

pub fn image(name: &str, n: u8) -> PushedImage {
    let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
    PushedImage::new(
        ImageRef::parse(&format!("127.0.0.1:5000/{name}@{digest}")).unwrap(),
        Digest::parse(&digest).unwrap(),
        None,
    )
}

pub fn target(client: &kube::Client, extra: &str) -> K8sTarget {
    let c = config(extra);
    let options = K8sOptions::from_config(&c).rollout_timeout(Duration::from_secs(20));
    K8sTarget::new(client.clone(), c, options)
}

pub async fn deploy(
    t: &K8sTarget,
    img: &PushedImage,
) -> Result<deployctl_core::ApplyOutcome, deployctl_core::StageError> {
    t.apply(img, &NullSink, &Cancellation::new()).await
}

/// An HTTP server on loopback answering every request with `status`; the request lines it
/// received are in the second value.
pub async fn http_server(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let s = deployctl_testsupport::http_server(status).await;
    (s.url, s.requests)
}
