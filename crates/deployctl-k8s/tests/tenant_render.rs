//! Rendering a tenant (`fixtures/k8s/tenant`): the golden, and what the tenant objects
//! must be — before the app's, labelled as the tenant's and never with the app's instance
//! label (so an app's prune and destroy never select them), in the tenant namespace,
//! passing the strict check; the pod runs as the tenant's ServiceAccount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deployctl_config::{Config, LoadOptions, load, load_str};
use deployctl_core::{Digest, ImageRef, PushedImage};
use deployctl_k8s::{
    Manifest, ORG_LABEL, PROJECT_LABEL, RenderInput, TENANT_LABEL, check_strict, first_deploy_plan,
    managed_resources, render, to_multi_document,
};
use serde_json::json;

const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/k8s/tenant/deploy.yaml")
}

fn render_config(config: &Config) -> Vec<Manifest> {
    let image = PushedImage::new(
        ImageRef::parse(&format!("127.0.0.1:5000/{}:latest", config.app.name))
            .expect("a valid reference"),
        Digest::parse(DIGEST).expect("a valid digest"),
        None,
    );
    render(RenderInput::new(config, &image)).unwrap_or_else(|e| panic!("{e}"))
}

fn load_fixture() -> Config {
    load(&fixture(), &LoadOptions::new(&BTreeMap::new())).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_tenant_case_renders_its_golden() {
    insta::assert_snapshot!("tenant", to_multi_document(&render_config(&load_fixture())));
}

#[test]
fn tenant_objects_come_first_labelled_as_the_tenants_and_never_as_the_apps() {
    let config = load_fixture();
    let manifests = render_config(&config);
    let order: Vec<String> = manifests
        .iter()
        .map(|m| format!("{}/{}", m.kind, m.name))
        .collect();
    assert_eq!(
        order[..10],
        [
            "Namespace/acme-shop",
            "ResourceQuota/tenant-quota",
            "LimitRange/tenant-limits",
            "NetworkPolicy/tenant-default-deny",
            "NetworkPolicy/tenant-allow-same-namespace",
            "NetworkPolicy/tenant-allow-dns",
            "NetworkPolicy/tenant-allow-ingress",
            "ServiceAccount/shop-api",
            "Role/shop-api",
            "RoleBinding/shop-api",
        ],
        "{order:?}"
    );
    assert!(order[10..].contains(&"Deployment/shop-api".to_owned()));
    for m in &manifests[..10] {
        let labels = &m.value["metadata"]["labels"];
        assert_eq!(labels[TENANT_LABEL], json!("acme-shop"), "{}", m.name);
        assert_eq!(labels[ORG_LABEL], json!("acme"));
        assert_eq!(labels[PROJECT_LABEL], json!("shop"));
        assert_eq!(labels["app.kubernetes.io/managed-by"], json!("deployctl"));
        assert!(
            labels.get("app.kubernetes.io/instance").is_none(),
            "{} {} carries the app's instance label: an app's prune would delete it",
            m.kind,
            m.name
        );
        check_strict(&m.value).unwrap_or_else(|e| panic!("{e}"));
        if m.kind != "Namespace" {
            assert_eq!(m.value["metadata"]["namespace"], json!("acme-shop"));
        }
    }
    for m in &manifests[10..] {
        assert_eq!(m.namespace, "acme-shop", "{} {}", m.kind, m.name);
        assert!(m.value["metadata"]["labels"].get(TENANT_LABEL).is_none());
    }
}

#[test]
fn quota_limits_isolation_and_the_service_account_follow_the_config() {
    let manifests = render_config(&load_fixture());
    let get = |kind: &str, name: &str| {
        manifests
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
            .value
            .clone()
    };
    let hard = &get("ResourceQuota", "tenant-quota")["spec"]["hard"];
    assert_eq!(hard["requests.cpu"], json!("2"));
    assert_eq!(hard["limits.memory"], json!("4Gi"));
    assert_eq!(hard["pods"], json!("10"));
    assert_eq!(hard["requests.storage"], json!("20Gi"), "the default");
    let lr = &get("LimitRange", "tenant-limits")["spec"]["limits"][0];
    assert_eq!(
        lr["defaultRequest"],
        json!({"cpu": "50m", "memory": "128Mi"})
    );
    assert_eq!(lr["default"], json!({"cpu": "500m", "memory": "256Mi"}));
    let deny = &get("NetworkPolicy", "tenant-default-deny")["spec"];
    assert_eq!(deny["podSelector"], json!({}));
    assert_eq!(deny["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(deny.get("ingress").is_none() && deny.get("egress").is_none());
    let dns = &get("NetworkPolicy", "tenant-allow-dns")["spec"]["egress"][0];
    assert_eq!(
        dns["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        json!("kube-system")
    );
    assert_eq!(
        dns["ports"],
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])
    );
    let ing = &get("NetworkPolicy", "tenant-allow-ingress")["spec"]["ingress"][0];
    assert_eq!(
        ing["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        json!("kong")
    );
    assert_eq!(
        get("ServiceAccount", "shop-api")["automountServiceAccountToken"],
        json!(false)
    );
    let rb = get("RoleBinding", "shop-api");
    assert_eq!(rb["roleRef"]["name"], json!("shop-api"));
    assert_eq!(
        rb["subjects"],
        json!([{"kind": "ServiceAccount", "name": "shop-api", "namespace": "acme-shop"}])
    );
    let dep = get("Deployment", "shop-api");
    assert_eq!(
        dep["spec"]["template"]["spec"]["serviceAccountName"],
        json!("shop-api"),
        "the pod runs as the tenant's ServiceAccount"
    );
}

#[test]
fn without_a_tenant_nothing_changes_and_plan_lists_the_tenant() {
    let vars = BTreeMap::new();
    let plain = load_str(
        "app: { name: web }\nkubernetes: { enabled: true, service_account: { create: true } }\n",
        Path::new("deploy.yaml"),
        &LoadOptions::new(&vars),
    )
    .unwrap();
    let manifests = render_config(&plain);
    assert!(
        manifests
            .iter()
            .all(|m| m.kind != "ResourceQuota" && m.kind != "Namespace")
    );
    assert!(
        manifests
            .iter()
            .any(|m| m.kind == "ServiceAccount" && m.name == "web")
    );
    let listed = managed_resources(&load_fixture()).unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r.kind == "ResourceQuota" && r.namespace == "acme-shop")
    );
    // The offline plan says where each lives; the Namespace is cluster-scoped.
    let plan = first_deploy_plan(&load_fixture()).unwrap();
    let reason = |kind: &str| {
        plan.changes
            .iter()
            .find(|c| c.kind == kind)
            .map(|c| c.reason.clone())
            .unwrap()
    };
    assert_eq!(reason("Namespace"), "v1, cluster-scoped");
    assert_eq!(reason("ResourceQuota"), "v1 in namespace acme-shop");
}
