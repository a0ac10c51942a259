//! The only module that changes the cluster: server-side apply of the manifests (and its
//! `dryRun=All` form), the namespace, prune and destroy deletions, and the history
//! ConfigMap. Everything else reads.

use std::time::{Duration, Instant};

use deployctl_core::{Cancellation, EventSink, Stage};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::cluster::{Cluster, InventoryEntry, ManagedKind, managed_kind, say};
use crate::error::{Error, api_err, is_not_found};
use crate::history::History;
use crate::render::{MANAGED_BY, Manifest};

/// Field manager name for server-side apply.
pub const FIELD_MANAGER: &str = "deployctl";

impl Cluster {
    /// Creates the app's namespace (labelled managed-by=deployctl) when it is missing.
    pub async fn ensure_namespace(&self) -> Result<(), Error> {
        if self.namespace().await?.is_some() {
            return Ok(());
        }
        let ns = &self.namespace;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}}))
            .map_err(|e| Error::Missing(e.to_string()))?;
        match namespaces.create(&PostParams::default(), &obj).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_err("create", format!("Namespace/{ns}"), e)),
        }
    }

    /// Server-side applies `m` (field manager [`FIELD_MANAGER`]); with `dry_run`, as
    /// `dryRun=All` (validated, conflicts reported, nothing stored).
    pub async fn apply_manifest(
        &self,
        m: &Manifest,
        force: bool,
        dry_run: bool,
    ) -> Result<(), Error> {
        let kind = managed_kind(&m.api_version, &m.kind)
            .ok_or_else(|| Error::Missing(format!("no API for {}", m.kind)))?;
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        if force {
            pp = pp.force();
        }
        pp.dry_run = dry_run;
        match self
            .dynamic(kind)
            .patch(&m.name, &pp, &Patch::Apply(&m.value))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if kind.custom && is_not_found(&e) => Err(Error::KindNotServed {
                api_version: m.api_version.clone(),
                kind: m.kind.clone(),
                name: m.name.clone(),
            }),
            Err(e) => Err(api_err("apply", format!("{}/{}", m.kind, m.name), e)),
        }
    }

    /// Server-side applies a recorded object, taking over its fields (a rollback, a scale).
    pub async fn apply_recorded(&self, kind: &ManagedKind, value: &Value) -> Result<(), Error> {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.dynamic(kind)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(value),
            )
            .await
            .map(|_| ())
            .map_err(|e| api_err("apply", format!("{}/{name}", kind.kind), e))
    }

    /// Deletes `entry`; `false` when it was already gone.
    pub async fn delete(&self, entry: &InventoryEntry, dp: &DeleteParams) -> Result<bool, Error> {
        match self.dynamic(entry.kind).delete(&entry.name, dp).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_err(
                "delete",
                format!("{}/{}", entry.kind.kind, entry.name),
                e,
            )),
        }
    }

    /// Writes the history ConfigMap, keeping the newest `keep` revisions.
    pub async fn save_history(&self, history: &History, keep: usize) -> Result<(), Error> {
        let cm = history.to_config_map(self, keep)?;
        let cms: Api<ConfigMap> = self.api();
        let name = self.history_name();
        cms.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map(|_| ())
        .map_err(|e| api_err("apply", format!("ConfigMap/{name}"), e))
    }

    /// Writes the deploy records (`text`, as `deployctl_core::append_record` made it) to
    /// their key of the history ConfigMap, as their own field manager: the revisions'
    /// apply leaves the key alone, and this apply leaves the revisions alone.
    pub async fn save_deploy_records(&self, text: &str) -> Result<(), Error> {
        let name = self.history_name();
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name, "namespace": self.namespace,
                "labels": crate::history::history_labels(&self.app),
            },
            "data": { crate::history::RECORDS_KEY: text },
        });
        let cms: Api<ConfigMap> = self.api();
        cms.patch(
            &name,
            &PatchParams::apply(crate::history::RECORDS_FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map(|_| ())
        .map_err(|e| api_err("apply", format!("ConfigMap/{name}"), e))
    }

    /// Deletes the inventory and the history (foreground), then lists until nothing with
    /// the app's labels is left (up to 60 s).
    pub async fn destroy_all(
        &self,
        events: &dyn EventSink,
        stage: &Stage,
        cancel: &Cancellation,
    ) -> Result<(), Error> {
        let mut inventory = self.inventory().await?;
        if let Some(kind) = managed_kind("v1", "ConfigMap") {
            inventory.push(InventoryEntry {
                kind,
                name: self.history_name(),
            });
        }
        for entry in &inventory {
            let what = format!("{}/{}", entry.kind.kind, entry.name);
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("deleting {what}")));
            }
            if self.delete(entry, &DeleteParams::foreground()).await? {
                say(events, stage, format!("deleted {what}"));
            }
        }
        let start = Instant::now();
        while !self.inventory().await?.is_empty() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(Error::Missing(
                    "resources with the app's label are still present after 60 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if self.namespace_to_delete().await? {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            match namespaces
                .delete(&self.namespace, &DeleteParams::background())
                .await
            {
                Ok(_) => say(
                    events,
                    stage,
                    format!(
                        "deleted Namespace/{} (created by deployctl, now empty)",
                        self.namespace
                    ),
                ),
                Err(e) if is_not_found(&e) => {}
                Err(kube::Error::Api(s)) if s.code == 403 => say(
                    events,
                    stage,
                    format!(
                        "kept Namespace/{}: not allowed to delete namespaces ({})",
                        self.namespace, s.message
                    ),
                ),
                Err(e) => {
                    return Err(api_err(
                        "delete",
                        format!("Namespace/{}", self.namespace),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}
