//! Rollouts: a watch on the Deployment until its generation is fully rolled out, fast
//! failure on a failing pod or `ProgressDeadlineExceeded`, restoring a recorded revision
//! (Deployment and ConfigMap; the Secret is checked, never restored), and the automatic
//! rollback after a failed rollout or verification.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deployctl_core::{Cancellation, EventSink, Stage};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Secret};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

use crate::cluster::{Cluster, managed_kind, say};
use crate::error::{Error, api_err};
use crate::history::{Revision, RevisionState, secret_checksum};

/// Waiting reasons that mean a pod will not become ready by itself.
const FAILING: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// How a rollout is followed: where progress goes, Ctrl-C, the deadline.
pub(crate) struct Watch<'a> {
    pub events: &'a dyn EventSink,
    pub stage: Stage,
    pub cancel: &'a Cancellation,
    pub timeout: Duration,
}

impl Watch<'_> {
    fn say(&self, text: String) {
        say(self.events, &self.stage, text);
    }
}

impl Cluster {
    /// Why a pod of `image` is failing, with its events; `None` while nothing fails.
    async fn failing_pod(&self, image: &str) -> Result<Option<(String, Vec<String>)>, Error> {
        for p in self.pods().await? {
            let name = p.metadata.name.clone().unwrap_or_default();
            let Some(status) = p.status else { continue };
            for cs in status.container_statuses.unwrap_or_default() {
                if cs.image != image && !image.is_empty() && !cs.image.contains(image) {
                    continue;
                }
                let waiting = cs.state.and_then(|s| s.waiting);
                if let Some(w) = waiting
                    && let Some(reason) = w.reason.filter(|r| FAILING.contains(&r.as_str()))
                {
                    let events: Api<KubeEvent> = self.api();
                    let evs = events
                        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                        .await
                        .map(|l| {
                            l.items
                                .into_iter()
                                .map(|e| {
                                    format!(
                                        "{}: {}",
                                        e.reason.unwrap_or_default(),
                                        e.message.unwrap_or_default()
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let message = w.message.map(|m| format!(" ({m})")).unwrap_or_default();
                    return Ok(Some((format!("pod {name}: {reason}{message}"), evs)));
                }
            }
        }
        Ok(None)
    }

    /// The namespace's Events by name, with their resource version: what was already there
    /// when a rollout's watch began.
    async fn event_versions(&self) -> BTreeMap<String, String> {
        let events: Api<KubeEvent> = self.api();
        events
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|e| {
                        (
                            e.metadata.name.unwrap_or_default(),
                            e.metadata.resource_version.unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A quota rejection of the Deployment's pods: a `FailedCreate` Event on one of its
    /// ReplicaSets (`<name>-…`) saying "exceeded quota", new or updated since `before`
    /// (the ReplicaSet controller updates the Event on each retry).
    async fn quota_rejection(
        &self,
        name: &str,
        before: &BTreeMap<String, String>,
    ) -> Option<String> {
        let events: Api<KubeEvent> = self.api();
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let key = e.metadata.name.clone().unwrap_or_default();
            let fresh = before.get(&key) != e.metadata.resource_version.as_ref();
            let involved = &e.involved_object;
            let message = e.message.unwrap_or_default();
            (fresh
                && e.reason.as_deref() == Some("FailedCreate")
                && involved.kind.as_deref() == Some("ReplicaSet")
                && involved
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("{name}-")))
                && message.contains("exceeded quota"))
            .then(|| {
                format!(
                    "ReplicaSet {}: FailedCreate: {message}",
                    involved.name.clone().unwrap_or_default()
                )
            })
        })
    }

    /// Waits, through a watch, until the Deployment's current generation is fully rolled
    /// out; fails fast on a failing pod or `ProgressDeadlineExceeded`. Returns the
    /// Deployment's revision annotation.
    pub async fn wait_rollout(
        &self,
        name: &str,
        image: &str,
        w: &Watch<'_>,
    ) -> Result<String, Error> {
        let deps: Api<Deployment> = self.api();
        let deadline = Instant::now() + w.timeout;
        let events_before = self.event_versions().await;
        let mut last_line = String::new();
        let fail = |reason: String, events: Vec<String>| Error::Rollout {
            deployment: name.to_owned(),
            reason,
            events,
            rolled_back: None,
        };
        loop {
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(60);
            let mut stream = deps
                .watch(&params, "0")
                .await
                .map_err(|e| api_err("watch", format!("Deployment/{name}"), e))?
                .boxed();
            loop {
                if w.cancel.is_cancelled() {
                    return Err(Error::Cancelled("the rollout finished".into()));
                }
                if Instant::now() > deadline {
                    let (reason, evs) = self.failing_pod(image).await?.unwrap_or_else(|| {
                        (
                            format!("not complete after {} s", w.timeout.as_secs()),
                            Vec::new(),
                        )
                    });
                    return Err(fail(reason, evs));
                }
                let next =
                    tokio::time::timeout(Duration::from_millis(400), stream.try_next()).await;
                let dep = match next {
                    Err(_) => None,
                    Ok(Ok(Some(WatchEvent::Added(d) | WatchEvent::Modified(d)))) => Some(d),
                    Ok(Ok(Some(WatchEvent::Deleted(_)))) => {
                        return Err(fail(
                            "the Deployment was deleted during the rollout".into(),
                            Vec::new(),
                        ));
                    }
                    Ok(Ok(Some(_))) => None,
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                };
                if let Some((reason, evs)) = self.failing_pod(image).await? {
                    return Err(fail(reason, evs));
                }
                // Pods the quota refuses are never created: no pod to fail, only an Event.
                if let Some(reason) = self.quota_rejection(name, &events_before).await {
                    return Err(fail(reason, Vec::new()));
                }
                let Some(d) = dep else { continue };
                let generation = d.metadata.generation.unwrap_or(0);
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let st = d.status.clone().unwrap_or_default();
                let observed = st.observed_generation.unwrap_or(0) >= generation;
                let line = format!(
                    "rollout {name}: {}/{want} updated, {}/{want} ready",
                    st.updated_replicas.unwrap_or(0),
                    st.ready_replicas.unwrap_or(0)
                );
                if observed && line != last_line {
                    w.say(line.clone());
                    last_line = line;
                }
                if observed
                    && let Some(c) = st
                        .conditions
                        .as_ref()
                        .and_then(|c| c.iter().find(|c| c.type_ == "Progressing"))
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                {
                    let (reason, evs) = self.failing_pod(image).await?.unwrap_or_else(|| {
                        (
                            c.message
                                .clone()
                                .unwrap_or_else(|| "ProgressDeadlineExceeded".into()),
                            Vec::new(),
                        )
                    });
                    return Err(fail(format!("ProgressDeadlineExceeded: {reason}"), evs));
                }
                let done = observed
                    && st.updated_replicas.unwrap_or(0) == want
                    && st.ready_replicas.unwrap_or(0) == want
                    && st.available_replicas.unwrap_or(0) == want
                    && st.replicas.unwrap_or(0) == want;
                if done {
                    return Ok(d
                        .metadata
                        .annotations
                        .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
                        .unwrap_or_default());
                }
            }
        }
    }

    /// Applies a recorded revision (its ConfigMap, then its Deployment), waits for the
    /// rollout, and says whether the Secret still matches what the revision ran with.
    pub async fn restore(
        &self,
        revision: &Revision,
        number: u64,
        w: &Watch<'_>,
    ) -> Result<String, Error> {
        if let (Some(cm), Some(kind)) = (&revision.config_map, managed_kind("v1", "ConfigMap")) {
            self.apply_recorded(kind, cm).await?;
            w.say(format!(
                "restored ConfigMap/{} of revision {number}",
                revision.config_map_name().unwrap_or_default()
            ));
        }
        if let Some(note) = self.secret_drift(revision, number).await? {
            w.say(note);
        }
        let kind = managed_kind("apps/v1", "Deployment")
            .ok_or_else(|| Error::Missing("no API for Deployment".into()))?;
        self.apply_recorded(kind, &revision.deployment).await?;
        self.wait_rollout(
            revision.deployment_name(),
            revision.image().unwrap_or_default(),
            w,
        )
        .await
    }

    /// A warning when the app's Secret no longer holds what `revision` ran with: secret
    /// values are never recorded, so they cannot be restored.
    async fn secret_drift(
        &self,
        revision: &Revision,
        number: u64,
    ) -> Result<Option<String>, Error> {
        let Some(recorded) = &revision.secret else {
            return Ok(None);
        };
        let secrets: Api<Secret> = self.api();
        let live = secrets
            .get_opt(&recorded.name)
            .await
            .map_err(|e| api_err("get", format!("Secret/{}", recorded.name), e))?;
        let live_sum = live
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|v| secret_checksum(&v));
        Ok(
            (live_sum.as_deref() != Some(recorded.checksum.as_str())).then(|| {
                format!(
                    "warning: Secret/{} has changed since revision {number} and cannot be restored \
                 (deployctl never records secret values); the pods run with its current values — \
                 set the old values in deploy.yaml's secrets and deploy to restore them",
                    recorded.name
                )
            }),
        )
    }

    /// After a failed rollout or verification: restores `previous` when automatic
    /// rollback is on. Returns the revision restored.
    pub async fn roll_back_after_failure(
        &self,
        previous: Option<(u64, &Revision)>,
        reason: &str,
        auto_rollback: bool,
        w: &Watch<'_>,
    ) -> Result<Option<String>, Error> {
        let Some((n, revision)) = previous.filter(|_| auto_rollback) else {
            return Ok(None);
        };
        w.say(format!("{reason}; rolling back to revision {n}"));
        self.restore(revision, n, w).await?;
        Ok(Some(n.to_string()))
    }

    /// After the revision `failed` rolled out but failed its verification: restores
    /// `previous`, makes it the live revision again and records `failed` as failed.
    pub async fn undo_deploy(
        &self,
        failed: u64,
        previous: (u64, &Revision),
        reason: &str,
        keep: usize,
        w: &Watch<'_>,
    ) -> Result<String, Error> {
        let (n, revision) = previous;
        w.say(format!("{reason}; rolling back to revision {n}"));
        self.restore(revision, n, w).await?;
        let mut history = self.history().await?;
        if let Some(r) = history.revisions.get_mut(&failed) {
            r.state = RevisionState::Failed;
        }
        history.current = Some(n);
        self.save_history(&history, keep).await?;
        Ok(n.to_string())
    }
}
