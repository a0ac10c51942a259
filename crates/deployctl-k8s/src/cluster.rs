//! The handle on one app in one namespace of a cluster: the client, the kinds deployctl
//! manages and how to address them, the label selectors that find the app's objects, and
//! where a Deployment keeps its image. No calls are made here; `observe` reads and `apply`
//! writes through it.

use deployctl_core::{Event, EventKind, EventSink, Stage};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::render::MANAGED_BY;

/// The label on the deploy-history ConfigMap, which keeps it out of the inventory.
pub(crate) const HISTORY_LABEL: &str = "deployctl/history";

/// One kind deployctl renders, with its plural (for prune and destroy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ManagedKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// Whether objects of the kind live in a namespace (all but Namespace).
    pub namespaced: bool,
    /// A custom resource (a CRD's kind): a cluster may not serve it, and listing it there
    /// finds nothing rather than failing.
    pub custom: bool,
}

impl ManagedKind {
    pub(crate) const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
    ) -> Self {
        Self {
            group,
            version,
            kind,
            plural,
            namespaced: true,
            custom: false,
        }
    }

    const fn custom(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
    ) -> Self {
        Self {
            custom: true,
            ..Self::new(group, version, kind, plural)
        }
    }
}

/// Custom resources deployctl applies with the app when another library renders them
/// ([`crate::Extra`]: the Kong Ingress Controller's `KongPlugin`s and `KongConsumer`).
/// Part of the app's inventory — prune and destroy find them by the instance label even
/// when the config no longer renders them — and skipped where the cluster does not serve
/// them.
pub(crate) const CUSTOM_KINDS: &[ManagedKind] = &[
    ManagedKind::custom(
        "configuration.konghq.com",
        "v1",
        "KongPlugin",
        "kongplugins",
    ),
    ManagedKind::custom(
        "configuration.konghq.com",
        "v1",
        "KongConsumer",
        "kongconsumers",
    ),
];

/// The kinds only a tenant renders (`kubernetes.tenant`; its NetworkPolicies and
/// ServiceAccount are of [`KINDS`]). Not in the app's inventory: an app's prune and destroy
/// never list them.
pub(crate) const TENANT_KINDS: &[ManagedKind] = &[
    ManagedKind {
        namespaced: false,
        ..ManagedKind::new("", "v1", "Namespace", "namespaces")
    },
    ManagedKind::new("", "v1", "ResourceQuota", "resourcequotas"),
    ManagedKind::new("", "v1", "LimitRange", "limitranges"),
    ManagedKind::new("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ManagedKind::new(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
    ),
];

/// The kinds deployctl renders, in the order the inventory lists them.
pub(crate) const KINDS: &[ManagedKind] = &[
    ManagedKind::new("", "v1", "ServiceAccount", "serviceaccounts"),
    ManagedKind::new("", "v1", "Secret", "secrets"),
    ManagedKind::new("", "v1", "ConfigMap", "configmaps"),
    ManagedKind::new("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ManagedKind::new("apps", "v1", "Deployment", "deployments"),
    ManagedKind::new("", "v1", "Service", "services"),
    ManagedKind::new("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ManagedKind::new(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    ManagedKind::new(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
    ),
    ManagedKind::new(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
    ),
];

/// The managed kind with this `apiVersion` and `kind`.
pub(crate) fn managed_kind(api_version: &str, kind: &str) -> Option<&'static ManagedKind> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    KINDS
        .iter()
        .chain(CUSTOM_KINDS)
        .chain(TENANT_KINDS)
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// An object of the app found in the cluster (carrying the instance and managed-by labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InventoryEntry {
    pub kind: &'static ManagedKind,
    pub name: String,
}

/// `app.kubernetes.io/instance=<app>`: every object of the app, pods included.
pub(crate) fn instance_selector(app: &str) -> String {
    format!("app.kubernetes.io/instance={app}")
}

/// The instance selector narrowed to what deployctl manages (what prune and destroy touch).
pub(crate) fn managed_selector(app: &str) -> String {
    format!(
        "{},app.kubernetes.io/managed-by={MANAGED_BY}",
        instance_selector(app)
    )
}

/// The image of a Deployment manifest's first container
/// (`spec.template.spec.containers[0].image`).
pub(crate) fn container_image(deployment: &Value) -> Option<&str> {
    deployment
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
}

/// Reports a progress line.
pub(crate) fn say(events: &dyn EventSink, stage: &Stage, text: String) {
    events.emit(Event::now(stage.clone(), EventKind::Message { text }));
}

/// The client and the app's coordinates.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub client: kube::Client,
    pub namespace: String,
    pub app: String,
    /// The app's Service (`Config::kubernetes_service_name`, as the templates name it).
    pub service: String,
}

impl Cluster {
    /// The API of a managed kind in the app's namespace.
    pub fn dynamic(&self, kind: &ManagedKind) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    /// A typed API in the app's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The deploy-history ConfigMap's name.
    pub fn history_name(&self) -> String {
        format!("{}-deployctl-history", self.app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_api_version_and_kind() {
        let d = managed_kind("apps/v1", "Deployment").map(|k| k.plural);
        assert_eq!(d, Some("deployments"));
        assert_eq!(
            managed_kind("v1", "Secret").map(|k| (k.group, k.plural)),
            Some(("", "secrets"))
        );
        assert!(managed_kind("apps/v1beta1", "Deployment").is_none());
        assert!(managed_kind("v1", "Pod").is_none());
    }

    #[test]
    fn selectors_and_image_path() {
        assert_eq!(
            managed_selector("web"),
            "app.kubernetes.io/instance=web,app.kubernetes.io/managed-by=deployctl"
        );
        let d = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"image": "r/web@sha256:1"}]}}}});
        assert_eq!(container_image(&d), Some("r/web@sha256:1"));
        assert_eq!(container_image(&serde_json::json!({})), None);
    }
}
