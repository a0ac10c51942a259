//! The tenant objects of `kubernetes.tenant`: what makes the app's namespace an isolated
//! tenant of a platform — the Namespace with the org and project labels, a ResourceQuota,
//! a LimitRange with default requests and limits, a default-deny NetworkPolicy with its
//! explicit allows (same namespace, DNS to kube-system, the ingress namespace), and the
//! app's ServiceAccount (no token automount) with a namespace-scoped Role and RoleBinding.
//!
//! They carry `app.kubernetes.io/managed-by=deployctl` and [`TENANT_LABEL`], and never the
//! app's instance label: an app's prune and destroy select by instance, so they never touch
//! them; only a tenant destroy does. Built as values (no templates: the shape is fixed) and
//! held to the same [`check_strict`] as every rendered document.

use std::collections::BTreeMap;

use deployctl_config::{Config, Tenant};
use serde_json::{Value, json};

use crate::error::Error;
use crate::render::{MANAGED_BY, Manifest};
use crate::schema::check_strict;

/// The label naming the tenant (`<org>-<project>`) on every tenant object.
pub const TENANT_LABEL: &str = "deployctl/tenant";
/// The organisation label on every tenant object.
pub const ORG_LABEL: &str = "deployctl/org";
/// The project label on every tenant object.
pub const PROJECT_LABEL: &str = "deployctl/project";

/// What [`Manifest::template`] says for a tenant object.
pub(crate) const ORIGIN: &str = "tenant";

/// The name of the tenant's ResourceQuota.
pub const QUOTA_NAME: &str = "tenant-quota";
/// The name of the tenant's LimitRange.
pub const LIMIT_RANGE_NAME: &str = "tenant-limits";

/// The name of the app's ServiceAccount (and Role, RoleBinding) under a tenant:
/// `service_account.name`, else `app.name`.
pub(crate) fn service_account_name(config: &Config) -> String {
    config
        .kubernetes
        .service_account
        .name
        .clone()
        .unwrap_or_else(|| config.app.name.clone())
}

fn labels(t: &Tenant) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by", MANAGED_BY.to_owned()),
        (TENANT_LABEL, format!("{}-{}", t.org, t.project)),
        (ORG_LABEL, t.org.clone()),
        (PROJECT_LABEL, t.project.clone()),
    ])
}

/// The tenant objects of `config`, in apply order (empty without `kubernetes.tenant`).
pub fn render_tenant(config: &Config) -> Result<Vec<Manifest>, Error> {
    let Some(t) = &config.kubernetes.tenant else {
        return Ok(Vec::new());
    };
    let ns = config.kubernetes.namespace.as_str();
    let labels = labels(t);
    let meta = |name: &str| json!({"name": name, "namespace": ns, "labels": labels});
    let (req_cpu, req_mem) = t.limits.requests();
    let (lim_cpu, lim_mem) = t.limits.limits();
    let q = &t.quota;
    let sa = service_account_name(config);
    let mut sa_meta = meta(&sa);
    if !config.kubernetes.service_account.annotations.is_empty() {
        sa_meta["annotations"] = json!(config.kubernetes.service_account.annotations);
    }
    let all_pods = json!({});
    let docs = vec![
        (
            "v1",
            "Namespace",
            json!({"metadata": {"name": ns, "labels": labels}}),
        ),
        (
            "v1",
            "ResourceQuota",
            json!({
                "metadata": meta(QUOTA_NAME),
                "spec": {"hard": {
                    "requests.cpu": q.cpu, "limits.cpu": q.cpu,
                    "requests.memory": q.memory, "limits.memory": q.memory,
                    "pods": q.pods.to_string(),
                    "requests.storage": q.storage,
                }},
            }),
        ),
        (
            "v1",
            "LimitRange",
            json!({
                "metadata": meta(LIMIT_RANGE_NAME),
                "spec": {"limits": [{
                    "type": "Container",
                    "defaultRequest": {"cpu": req_cpu, "memory": req_mem},
                    "default": {"cpu": lim_cpu, "memory": lim_mem},
                }]},
            }),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            json!({
                "metadata": meta("tenant-default-deny"),
                "spec": {"podSelector": all_pods, "policyTypes": ["Ingress", "Egress"]},
            }),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            json!({
                "metadata": meta("tenant-allow-same-namespace"),
                "spec": {
                    "podSelector": all_pods,
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": all_pods}]}],
                    "egress": [{"to": [{"podSelector": all_pods}]}],
                },
            }),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            json!({
                "metadata": meta("tenant-allow-dns"),
                "spec": {
                    "podSelector": all_pods,
                    "policyTypes": ["Egress"],
                    "egress": [{
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }],
                },
            }),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            json!({
                "metadata": meta("tenant-allow-ingress"),
                "spec": {
                    "podSelector": all_pods,
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.ingress_namespace}}}]}],
                },
            }),
        ),
        (
            "v1",
            "ServiceAccount",
            json!({
                "metadata": sa_meta,
                "automountServiceAccountToken": false,
            }),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "Role",
            json!({
                "metadata": meta(&sa),
                "rules": [{
                    "apiGroups": [""],
                    "resources": ["configmaps", "endpoints", "pods", "services"],
                    "verbs": ["get", "list", "watch"],
                }],
            }),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            json!({
                "metadata": meta(&sa),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
            }),
        ),
    ];
    docs.into_iter()
        .map(|(api_version, kind, mut value)| {
            value["apiVersion"] = json!(api_version);
            value["kind"] = json!(kind);
            check_strict(&value)?;
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let yaml = serde_yaml::to_string(&value).map_err(|e| Error::Missing(e.to_string()))?;
            Ok(Manifest {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                name,
                namespace: if kind == "Namespace" {
                    String::new()
                } else {
                    ns.to_owned()
                },
                template: ORIGIN,
                yaml,
                value,
            })
        })
        .collect()
}

/// Whether `m` is a tenant object (not the app's).
#[allow(dead_code)]
pub(crate) fn is_tenant_object(m: &Manifest) -> bool {
    m.template == ORIGIN
}
