//! `kubernetes.tenant:`: the app's namespace as a tenant of a platform — an organisation
//! and a project with a quota, default container resources and isolation. The model, its
//! defaults, and the one derived value the loader needs: the namespace `<org>-<project>`
//! when `kubernetes.namespace` is not written.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// `kubernetes.tenant:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Tenant {
    /// The organisation: a DNS-1123 label.
    pub org: String,
    /// The project: a DNS-1123 label.
    pub project: String,
    /// The namespace's ResourceQuota.
    pub quota: TenantQuota,
    /// The namespace's LimitRange: what a container without requests or limits gets.
    pub limits: TenantLimits,
    /// The namespace traffic may come in from (the ingress controller or gateway).
    pub ingress_namespace: String,
}

/// The namespace ingress controllers are commonly installed in.
pub const DEFAULT_INGRESS_NAMESPACE: &str = "ingress-nginx";

impl Default for Tenant {
    fn default() -> Self {
        Self {
            org: String::new(),
            project: String::new(),
            quota: TenantQuota::default(),
            limits: TenantLimits::default(),
            ingress_namespace: DEFAULT_INGRESS_NAMESPACE.into(),
        }
    }
}

impl Tenant {
    /// The namespace a tenant gets unless `kubernetes.namespace` is written.
    pub fn default_namespace(&self) -> String {
        format!("{}-{}", self.org, self.project)
    }
}

/// `kubernetes.tenant.quota:` (the ResourceQuota's `hard`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TenantQuota {
    /// `requests.cpu` and `limits.cpu`.
    pub cpu: String,
    /// `requests.memory` and `limits.memory`.
    pub memory: String,
    /// `pods`.
    pub pods: u32,
    /// `requests.storage`.
    pub storage: String,
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self {
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 20,
            storage: "20Gi".into(),
        }
    }
}

/// `kubernetes.tenant.limits:` (the LimitRange's container defaults). An amount not
/// written takes its default: requests `100m` / `128Mi`, limits `500m` / `256Mi` (the
/// Deployment's own defaults).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TenantLimits {
    /// `defaultRequest`.
    pub default_requests: TenantAmounts,
    /// `default` (limits).
    pub default_limits: TenantAmounts,
}

impl TenantLimits {
    /// The default requests, `(cpu, memory)`, defaults filled in.
    pub fn requests(&self) -> (&str, &str) {
        self.default_requests.or("100m", "128Mi")
    }

    /// The default limits, `(cpu, memory)`, defaults filled in.
    pub fn limits(&self) -> (&str, &str) {
        self.default_limits.or("500m", "256Mi")
    }
}

/// CPU and memory amounts, each optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TenantAmounts {
    /// CPU quantity.
    pub cpu: Option<String>,
    /// Memory quantity.
    pub memory: Option<String>,
}

impl TenantAmounts {
    fn or<'a>(&'a self, cpu: &'a str, memory: &'a str) -> (&'a str, &'a str) {
        (
            self.cpu.as_deref().unwrap_or(cpu),
            self.memory.as_deref().unwrap_or(memory),
        )
    }
}

/// The namespace a tenant implies, written into the document before it is deserialized:
/// `kubernetes.namespace: <org>-<project>` when `kubernetes.tenant` names both and
/// `kubernetes.namespace` is absent (an explicit namespace always wins).
pub(crate) fn default_namespace(root: &mut Value) {
    let Some(k) = root.get_mut("kubernetes").and_then(Value::as_mapping_mut) else {
        return;
    };
    if k.contains_key("namespace") {
        return;
    }
    let Some(t) = k.get("tenant") else {
        return;
    };
    let text = |key: &str| t.get(key).and_then(Value::as_str).map(str::to_owned);
    if let (Some(org), Some(project)) = (text("org"), text("project")) {
        k.insert(
            Value::String("namespace".into()),
            Value::String(format!("{org}-{project}")),
        );
    }
}
