//! `kubernetes.tenant`: the namespace it implies, its defaults, and an explicit namespace
//! winning over it.

use std::collections::BTreeMap;
use std::path::Path;

use deployctl_config::{Config, LoadOptions, load_str};

fn load(kubernetes: &str) -> Config {
    let vars = BTreeMap::<String, String>::new();
    load_str(
        &format!("version: '1'\napp:\n  name: shop\nkubernetes:\n  enabled: true\n{kubernetes}"),
        Path::new("deploy.yaml"),
        &LoadOptions::new(&vars),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_tenant_names_the_namespace_org_dash_project() {
    let c = load("  tenant: { org: acme, project: shop }\n");
    assert_eq!(c.kubernetes.namespace, "acme-shop");
    let t = c.kubernetes.tenant.expect("tenant");
    assert_eq!((t.org.as_str(), t.project.as_str()), ("acme", "shop"));
    assert_eq!(t.quota.cpu, "4");
    assert_eq!(t.quota.memory, "8Gi");
    assert_eq!(t.quota.pods, 20);
    assert_eq!(t.quota.storage, "20Gi");
    assert_eq!(t.limits.requests(), ("100m", "128Mi"));
    assert_eq!(t.limits.limits(), ("500m", "256Mi"));
    assert_eq!(t.ingress_namespace, "ingress-nginx");
}

#[test]
fn an_explicit_namespace_wins_and_defaults_are_overridable() {
    let c = load(
        "  namespace: payments\n  tenant:\n    org: acme\n    project: shop\n    \
         quota: { cpu: '2', pods: 5 }\n    limits: { default_requests: { cpu: 50m } }\n    \
         ingress_namespace: kong\n",
    );
    assert_eq!(c.kubernetes.namespace, "payments");
    let t = c.kubernetes.tenant.expect("tenant");
    assert_eq!(t.quota.cpu, "2");
    assert_eq!(t.quota.pods, 5);
    assert_eq!(t.quota.memory, "8Gi", "unset amounts keep their default");
    assert_eq!(t.limits.requests(), ("50m", "128Mi"));
    assert_eq!(t.ingress_namespace, "kong");
}

#[test]
fn without_a_tenant_the_namespace_stays_default() {
    let c = load("");
    assert_eq!(c.kubernetes.namespace, "default");
    assert!(c.kubernetes.tenant.is_none());
}
