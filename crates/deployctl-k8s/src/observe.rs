//! Reading what the cluster holds for the app. Every call here is a read (get, list).

use deployctl_config::Config;
use deployctl_core::{Endpoint, ResourceStatus, TargetStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::cluster::{
    CUSTOM_KINDS, Cluster, HISTORY_LABEL, InventoryEntry, KINDS, ManagedKind, instance_selector,
    managed_kind, managed_selector,
};
use crate::diff::Observed;
use crate::error::{Error, api_err, is_not_found};
use crate::history::History;
use crate::render::{MANAGED_BY, Manifest};

impl Cluster {
    /// The app's namespace, when it exists.
    pub async fn namespace(&self) -> Result<Option<Namespace>, Error> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .get_opt(&self.namespace)
            .await
            .map_err(|e| api_err("get", format!("Namespace/{}", self.namespace), e))
    }

    /// Objects with the app's instance and managed-by labels, by kind (history excluded).
    pub async fn inventory(&self) -> Result<Vec<InventoryEntry>, Error> {
        let mut out = Vec::new();
        for kind in KINDS.iter().chain(CUSTOM_KINDS) {
            let list = match self
                .dynamic(kind)
                .list(&ListParams::default().labels(&managed_selector(&self.app)))
                .await
            {
                Ok(list) => list,
                // A custom kind the cluster does not serve, or that deployctl may not list
                // (a cluster with Kong's CRDs, an app without Kong): none of the app's.
                Err(e) if kind.custom && is_not_found(&e) => continue,
                Err(kube::Error::Api(s)) if kind.custom && s.code == 403 => continue,
                Err(e) => {
                    return Err(api_err(
                        "list",
                        format!("{} in {}", kind.kind, self.namespace),
                        e,
                    ));
                }
            };
            for o in list.items {
                let history = o
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(HISTORY_LABEL));
                if !history {
                    out.push(InventoryEntry {
                        kind,
                        name: o.metadata.name.clone().unwrap_or_default(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Objects in the namespace that are not the app's (nor what the cluster creates in
    /// every namespace): what keeps deployctl from deleting a namespace it created.
    /// Looks at the kinds deployctl renders and the usual workload and RBAC kinds; a kind
    /// the server does not serve counts as empty.
    pub async fn foreign_objects(&self) -> Result<Vec<String>, Error> {
        let mine = self.inventory().await?;
        let history = self.history_name();
        let mut out = Vec::new();
        for kind in KINDS.iter().chain(CUSTOM_KINDS).chain(OTHER_KINDS) {
            let list = match self.dynamic(kind).list(&ListParams::default()).await {
                Ok(list) => list,
                Err(e) if is_not_found(&e) => continue,
                // Not allowed to look: the namespace cannot be shown to be empty.
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    out.push(format!("{} (not allowed to list)", kind.kind));
                    continue;
                }
                Err(e) => {
                    return Err(api_err(
                        "list",
                        format!("{} in {}", kind.kind, self.namespace),
                        e,
                    ));
                }
            };
            for o in list.items {
                let name = o.metadata.name.clone().unwrap_or_default();
                let ours = mine.iter().any(|e| e.kind == kind && e.name == name)
                    || (kind.kind == "ConfigMap" && name == history)
                    || o.metadata.deletion_timestamp.is_some()
                    || is_cluster_default(kind.kind, &name, &o.data)
                    // The Deployment's ReplicaSets and pods, going with it.
                    || (matches!(kind.kind, "Pod" | "ReplicaSet")
                        && o.metadata.labels.as_ref().is_some_and(|l| {
                            l.get("app.kubernetes.io/instance") == Some(&self.app)
                        }));
                if !ours {
                    out.push(format!("{}/{name}", kind.kind));
                }
            }
        }
        Ok(out)
    }

    /// The live object of each manifest (`None` when absent), in order.
    pub async fn live(&self, manifests: &[Manifest]) -> Result<Vec<Option<Value>>, Error> {
        let mut out = Vec::with_capacity(manifests.len());
        for m in manifests {
            let kind = managed_kind(&m.api_version, &m.kind)
                .ok_or_else(|| Error::Missing(format!("no API for {}", m.kind)))?;
            let existing = match self.dynamic(kind).get_opt(&m.name).await {
                Ok(o) => o,
                // Not served: absent (the apply says what to install).
                Err(e) if kind.custom && is_not_found(&e) => None,
                Err(e) => return Err(api_err("get", format!("{}/{}", m.kind, m.name), e)),
            };
            out.push(existing.and_then(|o| serde_json::to_value(o).ok()));
        }
        Ok(out)
    }

    /// Fails, naming the kind, when a manifest is of a custom kind the cluster does not
    /// serve (its CRD is not installed): before anything is applied.
    pub async fn check_served(&self, manifests: &[Manifest]) -> Result<(), Error> {
        let mut checked: Vec<&str> = Vec::new();
        for m in manifests {
            let Some(kind) = managed_kind(&m.api_version, &m.kind).filter(|k| k.custom) else {
                continue;
            };
            if checked.contains(&kind.kind) {
                continue;
            }
            checked.push(kind.kind);
            match self
                .dynamic(kind)
                .list(&ListParams::default().limit(1))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    return Err(Error::KindNotServed {
                        api_version: m.api_version.clone(),
                        kind: m.kind.clone(),
                        name: m.name.clone(),
                    });
                }
                Err(e) => {
                    return Err(api_err(
                        "list",
                        format!("{} in {}", kind.kind, self.namespace),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Everything the diff needs.
    pub async fn observe(&self, manifests: &[Manifest]) -> Result<Observed, Error> {
        self.check_served(manifests).await?;
        Ok(Observed {
            namespace_exists: self.namespace().await?.is_some(),
            live: self.live(manifests).await?,
            inventory: self.inventory().await?,
        })
    }

    /// Whether destroy deletes the namespace: deployctl created it (label
    /// managed-by=deployctl), it is not being deleted already, and nothing but the app's
    /// objects is in it.
    pub async fn namespace_to_delete(&self) -> Result<bool, Error> {
        match self.namespace().await? {
            // A tenant's namespace goes only with the tenant (`destroy --tenant`).
            Some(ns) if is_tenant_namespace(&ns) => Ok(false),
            Some(ns) if created_by_deployctl(&ns) && ns.metadata.deletion_timestamp.is_none() => {
                Ok(self.foreign_objects().await?.is_empty())
            }
            _ => Ok(false),
        }
    }

    /// The deploy history (empty when nothing was deployed).
    pub async fn history(&self) -> Result<History, Error> {
        let cms: Api<ConfigMap> = self.api();
        let name = self.history_name();
        Ok(cms
            .get_opt(&name)
            .await
            .map_err(|e| api_err("get", format!("ConfigMap/{name}"), e))?
            .map(|cm| History::from_config_map(&cm))
            .unwrap_or_default())
    }

    /// The deploy records kept in the history ConfigMap, oldest first (none when nothing
    /// was recorded).
    pub async fn deploy_records(&self) -> Result<Vec<deployctl_core::DeployRecord>, Error> {
        let cms: Api<ConfigMap> = self.api();
        let name = self.history_name();
        let cm = cms
            .get_opt(&name)
            .await
            .map_err(|e| api_err("get", format!("ConfigMap/{name}"), e))?;
        let text = cm
            .and_then(|cm| cm.data)
            .and_then(|mut d| d.remove(crate::history::RECORDS_KEY))
            .unwrap_or_default();
        deployctl_core::parse_records(&text).map_err(|source| Error::Records {
            config_map: name,
            key: crate::history::RECORDS_KEY,
            source,
        })
    }

    /// The app's pods (by instance label).
    pub async fn pods(&self) -> Result<Vec<Pod>, Error> {
        let pods: Api<Pod> = self.api();
        Ok(pods
            .list(&ListParams::default().labels(&instance_selector(&self.app)))
            .await
            .map_err(|e| api_err("list", "pods", e))?
            .items)
    }

    /// The app's Service, when it exists.
    pub async fn service(&self) -> Result<Option<Service>, Error> {
        let svcs: Api<Service> = self.api();
        svcs.get_opt(&self.service)
            .await
            .map_err(|e| api_err("get", format!("Service/{}", self.service), e))
    }

    /// The app's endpoints: the Service (load balancer or cluster DNS) and Ingress hosts.
    pub async fn endpoints(&self, config: &Config) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if let Ok(Some(svc)) = self.service().await {
            let port = service_port(&svc).unwrap_or(80);
            let lb = svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .and_then(|i| i.into_iter().next())
                .and_then(|i| i.hostname.or(i.ip));
            out.push(match lb {
                Some(host) => Endpoint::new("service", format!("http://{host}:{port}"), true),
                None => Endpoint::new(
                    "service",
                    format!(
                        "http://{}.{}.svc.cluster.local:{port}",
                        self.service, self.namespace
                    ),
                    false,
                ),
            });
        }
        let ingress = &config.kubernetes.ingress;
        for h in &ingress.hosts {
            if ingress.enabled {
                let tls = ingress.tls.iter().any(|t| t.hosts.contains(&h.host));
                out.push(Endpoint::new(
                    "ingress",
                    format!("{}://{}/", if tls { "https" } else { "http" }, h.host),
                    true,
                ));
            }
        }
        out
    }

    /// What `status` reports: the Deployment, its pods and the endpoints.
    pub async fn status(&self, config: &Config) -> Result<TargetStatus, Error> {
        let mut st = TargetStatus::new("k8s");
        let deps: Api<Deployment> = self.api();
        let Some(d) = deps
            .get_opt(&self.app)
            .await
            .map_err(|e| api_err("get", format!("Deployment/{}", self.app), e))?
        else {
            return Ok(st);
        };
        st.deployed = true;
        st.version = self.history().await?.current.map(|c| c.to_string());
        st.image = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone());
        let s = d.status.clone().unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mut r = ResourceStatus::new(
            "Deployment",
            &self.app,
            format!("{}/{want} ready", s.ready_replicas.unwrap_or(0)),
        );
        r.details.push((
            "updated".into(),
            format!("{}/{want}", s.updated_replicas.unwrap_or(0)),
        ));
        if let Some(c) = s
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Progressing")
        {
            r.details
                .push(("last rollout".into(), c.reason.unwrap_or_default()));
        }
        st.resources.push(r);
        for p in self.pods().await? {
            let status = p.status.unwrap_or_default();
            let restarts: i32 = status
                .container_statuses
                .as_ref()
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            let mut r = ResourceStatus::new(
                "Pod",
                p.metadata.name.unwrap_or_default(),
                status.phase.unwrap_or_default(),
            );
            r.details.push(("restarts".into(), restarts.to_string()));
            st.resources.push(r);
        }
        st.endpoints = self.endpoints(config).await;
        Ok(st)
    }
}

/// The Service's first port.
pub(crate) fn service_port(svc: &Service) -> Option<i32> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.port)
}

/// Whether deployctl created the namespace (it labels those managed-by=deployctl).
pub(crate) fn created_by_deployctl(ns: &Namespace) -> bool {
    ns.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
        .is_some_and(|v| v == MANAGED_BY)
}

/// Whether the namespace is a tenant's (label `deployctl/tenant`).
fn is_tenant_namespace(ns: &Namespace) -> bool {
    ns.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(crate::tenant::TENANT_LABEL))
}

/// Kinds that deployctl does not render but that make a namespace someone else's too.
const OTHER_KINDS: &[ManagedKind] = &[
    ManagedKind::new("", "v1", "Pod", "pods"),
    ManagedKind::new("apps", "v1", "ReplicaSet", "replicasets"),
    ManagedKind::new("apps", "v1", "StatefulSet", "statefulsets"),
    ManagedKind::new("apps", "v1", "DaemonSet", "daemonsets"),
    ManagedKind::new("batch", "v1", "Job", "jobs"),
    ManagedKind::new("batch", "v1", "CronJob", "cronjobs"),
    ManagedKind::new("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ManagedKind::new(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
    ),
];

/// What Kubernetes creates in every namespace: the `default` ServiceAccount (and its token
/// Secret on old clusters) and the `kube-root-ca.crt` ConfigMap.
fn is_cluster_default(kind: &str, name: &str, data: &Value) -> bool {
    match kind {
        "ServiceAccount" => name == "default",
        "ConfigMap" => name == "kube-root-ca.crt",
        "Secret" => {
            name.starts_with("default-token-")
                && data.get("type").and_then(Value::as_str)
                    == Some("kubernetes.io/service-account-token")
        }
        _ => false,
    }
}
