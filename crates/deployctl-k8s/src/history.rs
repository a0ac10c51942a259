//! The deploy history: numbered revisions kept in the ConfigMap `<app>-deployctl-history`,
//! parsed into typed [`Revision`]s. Each revision holds the Deployment as applied, the data
//! of the app's ConfigMap and the checksum (never the values) of its Secret. Reading the
//! ConfigMap is in `observe`, writing it in `apply`; this module only converts.
//!
//! Stored form: one key `revision-N` per revision holding a YAML document
//! `{deployment: <manifest>, configMap: <manifest>, secret: {name, checksum}}`; the annotation
//! `deployctl/current-revision` names the live one. A key holding a bare Deployment
//! (what earlier versions recorded) reads as a revision without configuration.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::cluster::{Cluster, HISTORY_LABEL, container_image};
use crate::error::Error;
use crate::render::{MANAGED_BY, Manifest};

/// The key holding the deploy records (`history --stats`), written by its own field
/// manager so the revisions' apply (which does not list it) leaves it alone.
pub(crate) const RECORDS_KEY: &str = "deploys";
/// The field manager of [`RECORDS_KEY`].
pub(crate) const RECORDS_FIELD_MANAGER: &str = "deployctl-deploy-records";

/// The annotation naming the live revision.
pub(crate) const CURRENT_ANNOTATION: &str = "deployctl/current-revision";
const KEY_PREFIX: &str = "revision-";

/// The app's Secret at a revision: its name and a checksum of its data. Values are never
/// recorded, so a rollback can only say whether the Secret still matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordedSecret {
    pub name: String,
    pub checksum: String,
}

/// How far a recorded revision got. A revision is recorded `pending` before anything of it
/// is applied, so a deploy that is killed part-way leaves a record a re-run finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RevisionState {
    /// Applied (or about to be), its rollout not yet seen complete.
    Pending,
    /// Rolled out and verified. Records written before states existed read as good.
    #[default]
    Good,
    /// Its rollout or verification failed.
    Failed,
}

impl RevisionState {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::Pending => "pending",
            RevisionState::Good => "good",
            RevisionState::Failed => "failed",
        }
    }
}

/// One recorded revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Revision {
    /// The Deployment manifest as applied.
    pub deployment: Value,
    /// The app's ConfigMap manifest as applied (it holds no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<RecordedSecret>,
    /// How far it got.
    #[serde(default)]
    pub state: RevisionState,
}

impl Revision {
    /// A revision of just a Deployment.
    pub fn of_deployment(deployment: Value) -> Self {
        Self {
            deployment,
            config_map: None,
            secret: None,
            state: RevisionState::Good,
        }
    }

    /// The revision the rendered `manifests` make: their Deployment, the app's ConfigMap
    /// and the checksum of the app's Secret. `None` without a Deployment.
    pub fn from_manifests(manifests: &[Manifest]) -> Option<Self> {
        let by_template = |t: &str| manifests.iter().find(|m| m.template == t);
        let deployment = manifests.iter().find(|m| m.kind == "Deployment")?;
        Some(Self {
            deployment: deployment.value.clone(),
            config_map: by_template("configmap.yaml.tera").map(|m| m.value.clone()),
            secret: by_template("secret.yaml.tera").map(|m| RecordedSecret {
                name: m.name.clone(),
                checksum: secret_checksum(&m.value),
            }),
            state: RevisionState::Pending,
        })
    }

    /// The ConfigMap's name, when one is recorded.
    pub fn config_map_name(&self) -> Option<&str> {
        self.config_map
            .as_ref()?
            .pointer("/metadata/name")
            .and_then(Value::as_str)
    }

    /// The Deployment's name.
    pub fn deployment_name(&self) -> &str {
        self.deployment
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The image it runs.
    pub fn image(&self) -> Option<&str> {
        container_image(&self.deployment)
    }

    /// Whether `other` would roll out the same thing (the configuration included),
    /// whatever either's state.
    pub fn same_as(&self, other: &Revision) -> bool {
        self.deployment == other.deployment
            && self.config_map == other.config_map
            && self.secret == other.secret
    }

    /// This revision in `state`.
    #[must_use]
    pub fn in_state(mut self, state: RevisionState) -> Self {
        self.state = state;
        self
    }

    fn parse(text: &str) -> Option<Self> {
        let value: Value = serde_yaml::from_str(text).ok()?;
        if value.get("kind").and_then(Value::as_str) == Some("Deployment") {
            return Some(Self::of_deployment(value));
        }
        serde_json::from_value(value).ok()
    }

    fn to_text(&self) -> Result<String, Error> {
        serde_yaml::to_string(self)
            .map_err(|e| Error::Missing(format!("cannot write the deploy history: {e}")))
    }
}

/// SHA-256 (hex) over a Secret's `data` with its `stringData` folded in (base64, as the API
/// server stores it; keys sorted): equal for the rendered manifest and the object the API
/// server returns for it.
pub(crate) fn secret_checksum(secret: &Value) -> String {
    use base64::Engine as _;
    let mut data: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    if let Some(map) = secret.get("data").and_then(Value::as_object) {
        for (k, v) in map {
            data.insert(k, v.as_str().unwrap_or_default().to_owned());
        }
    }
    if let Some(map) = secret.get("stringData").and_then(Value::as_object) {
        for (k, v) in map {
            let text = v.as_str().unwrap_or_default();
            data.insert(
                k,
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            );
        }
    }
    let mut hasher = sha2::Sha256::new();
    for (k, v) in data {
        hasher.update(b"data/");
        hasher.update(k.as_bytes());
        hasher.update(b"=");
        hasher.update(v.as_bytes());
        hasher.update(b"\n");
    }
    hex(&hasher.finalize())
}

/// Lower-case hex of a digest (the checksums revisions and annotations carry).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every recorded revision, by number, and the live one.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct History {
    pub revisions: BTreeMap<u64, Revision>,
    pub current: Option<u64>,
}

impl History {
    /// Reads the history ConfigMap; keys that do not parse are left out.
    pub fn from_config_map(cm: &ConfigMap) -> Self {
        let revisions = cm
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(KEY_PREFIX)?.parse().ok()?;
                Some((n, Revision::parse(v)?))
            })
            .collect();
        let current = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CURRENT_ANNOTATION))
            .and_then(|c| c.parse().ok());
        Self { revisions, current }
    }

    /// The live revision, with its number.
    pub fn live(&self) -> Option<(u64, &Revision)> {
        let n = self.current?;
        Some((n, self.revisions.get(&n)?))
    }

    /// The number a new revision gets.
    pub fn next_number(&self) -> u64 {
        self.revisions.keys().max().copied().unwrap_or(0) + 1
    }

    /// The newest good revision older than `n`: what a rollback from `n` goes back to.
    pub fn before(&self, n: u64) -> Option<u64> {
        self.revisions
            .range(..n)
            .rev()
            .find(|(_, r)| r.state == RevisionState::Good)
            .map(|(k, _)| *k)
    }

    /// The number `revision` is recorded under by this deploy: the live revision's when it
    /// is the same, the newest record's when that is the same and never went live (a
    /// deploy of it was interrupted or failed and is being run again), else a new number.
    pub fn number_for(&self, revision: &Revision) -> u64 {
        if let Some((n, live)) = self.live()
            && live.same_as(revision)
        {
            return n;
        }
        match self.revisions.iter().next_back() {
            Some((n, newest))
                if newest.same_as(revision) && newest.state != RevisionState::Good =>
            {
                *n
            }
            _ => self.next_number(),
        }
    }

    /// Records `revision` as `number` in `state`; a good one becomes the live revision.
    pub fn record(&mut self, number: u64, revision: Revision, state: RevisionState) {
        self.revisions.insert(number, revision.in_state(state));
        if state == RevisionState::Good {
            self.current = Some(number);
        }
    }

    /// The recorded numbers, oldest first, for messages.
    pub fn numbers(&self) -> String {
        let known: Vec<String> = self.revisions.keys().map(ToString::to_string).collect();
        known.join(", ")
    }

    /// The ConfigMap to server-side apply: the newest `keep` revisions, `current` live.
    pub fn to_config_map(&self, cluster: &Cluster, keep: usize) -> Result<Value, Error> {
        self.config_map_for(
            &cluster.app,
            &cluster.namespace,
            &cluster.history_name(),
            keep,
        )
    }

    fn config_map_for(
        &self,
        app: &str,
        namespace: &str,
        name: &str,
        keep: usize,
    ) -> Result<Value, Error> {
        let mut data = BTreeMap::new();
        // The newest `keep`, and the live one even when failed attempts came after it.
        let live = self.live();
        let newest = self.revisions.iter().rev().take(keep.max(1));
        for (n, r) in newest.map(|(n, r)| (*n, r)).chain(live) {
            data.insert(format!("{KEY_PREFIX}{n}"), r.to_text()?);
        }
        let mut annotations = serde_json::Map::new();
        if let Some(c) = self.current {
            annotations.insert(CURRENT_ANNOTATION.to_owned(), json!(c.to_string()));
        }
        Ok(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name, "namespace": namespace,
                "labels": history_labels(app),
                "annotations": annotations,
            },
            "data": data,
        }))
    }
}

/// The labels of the history ConfigMap.
pub(crate) fn history_labels(app: &str) -> Value {
    json!({
        "app.kubernetes.io/name": app, "app.kubernetes.io/instance": app,
        "app.kubernetes.io/managed-by": MANAGED_BY, HISTORY_LABEL: "true",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn cm(data: &[(&str, String)], current: Option<&str>) -> ConfigMap {
        let mut cm = ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        if let Some(c) = current {
            cm.metadata.annotations = Some([(CURRENT_ANNOTATION.to_owned(), c.to_owned())].into());
        }
        cm
    }

    #[test]
    fn reads_bare_deployments_and_full_records_and_skips_garbage() {
        let full = Revision {
            deployment: deployment("r/web@sha256:2"),
            config_map: Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web-config"}, "data": {"A": "1"}})),
            secret: Some(RecordedSecret {
                name: "web-secrets".into(),
                checksum: "abc".into(),
            }),
            state: RevisionState::Good,
        };
        let h = History::from_config_map(&cm(
            &[
                (
                    "revision-1",
                    serde_yaml::to_string(&deployment("r/web@sha256:1")).unwrap_or_default(),
                ),
                ("revision-2", full.to_text().unwrap_or_default()),
                ("revision-x", "kind: Deployment".into()),
                ("revision-3", ": not yaml [".into()),
                ("other", "x".into()),
            ],
            Some("2"),
        ));
        assert_eq!(h.revisions.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(h.revisions[&1].image(), Some("r/web@sha256:1"));
        assert_eq!(h.revisions[&1].config_map, None);
        assert_eq!(h.revisions[&2], full);
        assert_eq!(h.revisions[&2].config_map_name(), Some("web-config"));
        assert_eq!(h.live().map(|(n, _)| n), Some(2));
        assert_eq!(h.next_number(), 3);
        assert_eq!(h.before(2), Some(1));
        assert_eq!(h.before(1), None);
        assert_eq!(h.numbers(), "1, 2");
    }

    #[test]
    fn writes_the_newest_revisions_and_reads_them_back() {
        let mut h = History::default();
        for n in 1..=4 {
            h.revisions.insert(
                n,
                Revision::of_deployment(deployment(&format!("r/web@sha256:{n}"))),
            );
        }
        h.current = Some(4);
        let value = h.config_map_for("web", "shop", "web-deployctl-history", 2);
        let stored: ConfigMap = value
            .and_then(|v| serde_json::from_value(v).map_err(|e| Error::Missing(e.to_string())))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.metadata.namespace.as_deref(), Some("shop"));
        let labels = stored.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(HISTORY_LABEL).map(String::as_str), Some("true"));
        let back = History::from_config_map(&stored);
        assert_eq!(back.revisions.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(back.revisions[&4], h.revisions[&4]);
        assert_eq!(back.current, Some(4));
    }

    #[test]
    fn the_secret_checksum_follows_the_data_only() {
        let a = json!({"metadata": {"name": "s", "uid": "1"}, "data": {"A": "eA==", "B": "eQ=="}});
        let same = json!({"metadata": {"name": "s"}, "data": {"B": "eQ==", "A": "eA=="}});
        let other = json!({"metadata": {"name": "s"}, "data": {"A": "eg==", "B": "eQ=="}});
        assert_eq!(secret_checksum(&a), secret_checksum(&same));
        assert_ne!(secret_checksum(&a), secret_checksum(&other));
        assert_eq!(secret_checksum(&a).len(), 64);
        // What the server keeps of `stringData`: the same checksum.
        let rendered = json!({"stringData": {"K": "hello"}});
        let stored = json!({"data": {"K": "aGVsbG8="}});
        assert_eq!(secret_checksum(&rendered), secret_checksum(&stored));
    }
}
