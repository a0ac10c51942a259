//! Removing a tenant (`destroy k8s --tenant`): reads which deployctl apps are left in the
//! tenant's namespace and which tenant objects exist (reads only), and deletes the tenant
//! objects and the Namespace only when no other app is left.

use deployctl_core::{Action, EventSink, Plan, ResourceChange, Stage};
use kube::api::{DeleteParams, ListParams};

use crate::cluster::{Cluster, InventoryEntry, KINDS, managed_kind, say};
use crate::error::{Error, api_err};
use crate::render::MANAGED_BY;
use crate::tenant::TENANT_LABEL;

/// Tenant kinds in delete order: bindings before what they bind, the Namespace last.
const DELETE_ORDER: &[(&str, &str)] = &[
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("v1", "ServiceAccount"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "LimitRange"),
    ("v1", "ResourceQuota"),
    ("v1", "Namespace"),
];

impl Cluster {
    /// The instance labels of the deployctl apps in the namespace other than this one.
    pub(crate) async fn other_apps(&self) -> Result<Vec<String>, Error> {
        let selector =
            format!("app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/instance");
        let mut apps = Vec::new();
        for kind in KINDS {
            let list = self
                .dynamic(kind)
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| api_err("list", format!("{} in {}", kind.kind, self.namespace), e))?;
            for o in list.items {
                if let Some(app) = o
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/instance"))
                    && *app != self.app
                    && !apps.contains(app)
                {
                    apps.push(app.clone());
                }
            }
        }
        apps.sort();
        Ok(apps)
    }

    /// The tenant objects in the namespace (label [`TENANT_LABEL`] and managed-by
    /// deployctl), in delete order, the Namespace last when it is the tenant's.
    pub(crate) async fn tenant_objects(&self) -> Result<Vec<InventoryEntry>, Error> {
        let selector = format!("{TENANT_LABEL},app.kubernetes.io/managed-by={MANAGED_BY}");
        let mut out = Vec::new();
        for (api_version, kind_name) in DELETE_ORDER {
            let Some(kind) = managed_kind(api_version, kind_name) else {
                continue;
            };
            if !kind.namespaced {
                let tenant_ns = self.namespace().await?.is_some_and(|ns| {
                    ns.metadata
                        .labels
                        .is_some_and(|l| l.contains_key(TENANT_LABEL))
                });
                if tenant_ns {
                    out.push(InventoryEntry {
                        kind,
                        name: self.namespace.clone(),
                    });
                }
                continue;
            }
            let list = self
                .dynamic(kind)
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| api_err("list", format!("{} in {}", kind.kind, self.namespace), e))?;
            out.extend(list.items.into_iter().map(|o| InventoryEntry {
                kind,
                name: o.metadata.name.unwrap_or_default(),
            }));
        }
        Ok(out)
    }

    /// What a tenant destroy deletes, after the app's own objects; an error naming the
    /// other apps when some are left.
    pub(crate) async fn tenant_destroy_plan(&self, plan: &mut Plan) -> Result<(), Error> {
        let apps = self.other_apps().await?;
        if !apps.is_empty() {
            return Err(Error::TenantInUse {
                namespace: self.namespace.clone(),
                apps,
            });
        }
        for entry in self.tenant_objects().await? {
            plan.push(ResourceChange::new(
                entry.kind.kind,
                entry.name,
                Action::Delete,
                "tenant object (--tenant)",
            ));
        }
        Ok(())
    }

    /// Deletes the tenant objects and the tenant's Namespace; refuses (deleting nothing)
    /// while another deployctl app is in the namespace.
    pub(crate) async fn destroy_tenant(
        &self,
        events: &dyn EventSink,
        stage: &Stage,
    ) -> Result<(), Error> {
        let apps = self.other_apps().await?;
        if !apps.is_empty() {
            return Err(Error::TenantInUse {
                namespace: self.namespace.clone(),
                apps,
            });
        }
        for entry in self.tenant_objects().await? {
            if self.delete(&entry, &DeleteParams::background()).await? {
                say(
                    events,
                    stage,
                    format!("deleted {}/{} (tenant)", entry.kind.kind, entry.name),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::TENANT_KINDS;

    #[test]
    fn the_delete_order_names_every_tenant_kind_once() {
        for k in TENANT_KINDS {
            let n = DELETE_ORDER
                .iter()
                .filter(|(_, kind)| *kind == k.kind)
                .count();
            assert_eq!(n, 1, "{}", k.kind);
        }
        for (api_version, kind) in DELETE_ORDER {
            assert!(managed_kind(api_version, kind).is_some(), "{kind}");
        }
    }
}
