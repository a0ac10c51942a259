//! `deployctl destroy k8s --tenant` through the binary, against the stand-in: refused with
//! exit 1 and the other app's name while it lives in the tenant's namespace (nothing
//! deleted); a plain destroy of the last app leaves the tenant; `--tenant` then removes it
//! and the namespace. The apps are deployed with the library (no image build needed).

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::path::Path;
use std::time::Duration;

use deployctl_core::{Cancellation, Digest, ImageRef, NullSink, PushedImage, Target};
use deployctl_k8s::{K8sOptions, K8sTarget};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

fn deploy_yaml(app: &str) -> String {
    format!(
        "version: \"1.0\"\napp: {{ name: {app}, port: 8080 }}\nkubernetes:\n  enabled: true\n  tenant: {{ org: acme, project: shop }}\n"
    )
}

async fn deploy(client: &kube::Client, app: &str) {
    let vars = std::collections::BTreeMap::<String, String>::new();
    let config = deployctl_config::load_str(
        &deploy_yaml(app),
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&vars),
    )
    .unwrap();
    let options = K8sOptions::from_config(&config).rollout_timeout(Duration::from_secs(20));
    let digest = format!("sha256:{}", "ab".repeat(32));
    let image = PushedImage::new(
        ImageRef::parse(&format!("127.0.0.1:5000/{app}@{digest}")).unwrap(),
        Digest::parse(&digest).unwrap(),
        None,
    );
    K8sTarget::new(client.clone(), config, options)
        .apply(&image, &NullSink, &Cancellation::new())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_tenant_is_refused_while_another_app_lives_there_then_removes_it() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let standin = StandIn::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    deploy(&client, "web").await;
    deploy(&client, "api").await;
    for app in ["web", "api"] {
        std::fs::create_dir_all(tmp.path().join(app)).unwrap();
        std::fs::write(tmp.path().join(app).join("deploy.yaml"), deploy_yaml(app)).unwrap();
    }
    let run = |app: &'static str, args: &'static [&'static str]| {
        let (dir, kubeconfig) = (tmp.path().join(app), kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_deployctl"))
                .args(args)
                .current_dir(dir)
                .env_remove("RUST_LOG")
                .env("KUBECONFIG", kubeconfig)
                .output()
                .unwrap()
        })
    };
    standin.take_mutations();

    let o = run("web", &["destroy", "k8s", "--tenant"]).await.unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the tenant namespace acme-shop still holds other deployctl apps (api)"),
        "{err}"
    );
    let deletes: Vec<String> = standin
        .take_mutations()
        .into_iter()
        .filter(|m| m.starts_with("DELETE") && !m.contains("/leases/"))
        .collect();
    assert_eq!(deletes, Vec::<String>::new(), "nothing deleted");

    let o = run("web", &["destroy", "k8s"]).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "acme-shop");
    assert!(quotas.get_opt("tenant-quota").await.unwrap().is_some());

    let o = run("api", &["destroy", "k8s", "--tenant"]).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("tenant-quota"), "{out}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("acme-shop").await.unwrap().is_none());
}
