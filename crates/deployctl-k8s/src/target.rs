//! [`K8sTarget`]: the core `Target` over a Kubernetes cluster — server-side apply of the
//! rendered manifests, prune, a watched rollout with fast failure and automatic rollback,
//! status, logs, history/rollback and destroy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deployctl_config::Config;
use deployctl_core::{
    Action, ApplyOutcome, Cancellation, Digest, Endpoint, Event, EventKind, EventSink, FieldChange,
    ImageRef, LogLine, LogQuery, LogSink, Plan, PushedImage, ResourceChange, ResourceStatus,
    RollbackOutcome, Stage, StageError, Target, TargetStatus,
};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event as KubeEvent, Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::error::Error;
use crate::render::{MANAGED_BY, Manifest, RenderInput, render};

/// Field manager name for server-side apply.
pub const FIELD_MANAGER: &str = "deployctl";
const HISTORY_LABEL: &str = "deployctl/history";
const CURRENT_ANNOTATION: &str = "deployctl/current-revision";
const FAILING: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// The kinds deployctl renders, with their plurals (for prune and destroy).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "ServiceAccount", "serviceaccounts"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("apps", "v1", "Deployment", "deployments"),
    ("", "v1", "Service", "services"),
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
    ),
];

/// Options that come from flags rather than deploy.yaml.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct K8sOptions {
    /// Take over fields another field manager owns.
    pub force_conflicts: bool,
    /// Roll back automatically when a rollout fails.
    pub auto_rollback: bool,
    /// How long a rollout may take.
    pub rollout_timeout: Duration,
    /// Plans also send every manifest as a server-side dry run (`dryRun=All`), so the API
    /// server validates them and reports conflicts without storing anything.
    pub server_dry_run: bool,
}

impl K8sOptions {
    /// Options from the config's `kubernetes.rollout`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            force_conflicts: false,
            auto_rollback: config.kubernetes.rollout.auto_rollback,
            rollout_timeout: Duration::from_secs(u64::from(
                config.kubernetes.rollout.timeout_seconds,
            )),
            server_dry_run: false,
        }
    }

    /// With `--server-dry-run`.
    #[must_use]
    pub fn server_dry_run(mut self, on: bool) -> Self {
        self.server_dry_run = on;
        self
    }

    /// With `--force-conflicts`.
    #[must_use]
    pub fn force_conflicts(mut self, force: bool) -> Self {
        self.force_conflicts = force;
        self
    }

    /// With `--no-rollback`.
    #[must_use]
    pub fn auto_rollback(mut self, on: bool) -> Self {
        self.auto_rollback = on;
        self
    }

    /// With a rollout deadline.
    #[must_use]
    pub fn rollout_timeout(mut self, timeout: Duration) -> Self {
        self.rollout_timeout = timeout;
        self
    }
}

/// Deploys the rendered manifests to a cluster through the `kube::Client` it is given.
#[derive(Clone)]
pub struct K8sTarget {
    client: kube::Client,
    config: Config,
    options: K8sOptions,
}

impl std::fmt::Debug for K8sTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sTarget")
            .field("app", &self.config.app.name)
            .field("namespace", &self.config.kubernetes.namespace)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn api_err(operation: &'static str, resource: impl Into<String>, e: kube::Error) -> Error {
    let resource = resource.into();
    match e {
        kube::Error::Api(s) if s.code == 409 && operation == "apply" => Error::Conflict {
            resource,
            message: s.message.clone(),
        },
        kube::Error::Api(s) => Error::Api {
            operation,
            resource,
            message: s.message.clone(),
            code: Some(s.code),
        },
        other => Error::Api {
            operation,
            resource,
            message: other.to_string(),
            code: None,
        },
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Leaf paths of a manifest (segments; label keys may contain dots) and their values.
fn leaves(v: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(prefix: &mut Vec<String>, v: &Value, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(prefix, child, out);
                    prefix.pop();
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, child) in a.iter().enumerate() {
                    prefix.push(format!("[{i}]"));
                    walk(prefix, child, out);
                    prefix.pop();
                }
            }
            other => out.push((prefix.clone(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(&mut Vec::new(), v, &mut out);
    out
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| {
        match seg
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) => cur.get(i),
            None => cur.get(seg),
        }
    })
}

impl K8sTarget {
    /// A target deploying `config` through `client`.
    pub fn new(client: kube::Client, config: Config, options: K8sOptions) -> Self {
        Self {
            client,
            config,
            options,
        }
    }

    fn ns(&self) -> &str {
        &self.config.kubernetes.namespace
    }

    fn app(&self) -> &str {
        &self.config.app.name
    }

    fn selector(&self) -> String {
        format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGED_BY}",
            self.app()
        )
    }

    fn history_name(&self) -> String {
        format!("{}-deployctl-history", self.app())
    }

    fn dynamic(&self, api_version: &str, kind: &str) -> Option<Api<DynamicObject>> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let plural = KINDS
            .iter()
            .find(|(g, v, k, _)| *g == group && *v == version && *k == kind)?
            .3;
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        Some(Api::namespaced_with(self.client.clone(), self.ns(), &ar))
    }

    fn say(&self, events: &dyn EventSink, stage: Stage, text: String) {
        events.emit(Event::now(stage, EventKind::Message { text }));
    }

    fn render(&self, image: Option<&PushedImage>) -> Result<Vec<Manifest>, Error> {
        let placeholder;
        let image = match image {
            Some(i) => i,
            None => {
                let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64)))
                    .map_err(|e| Error::Missing(e.to_string()))?;
                let reference = ImageRef::parse(&format!("{}@{digest}", self.app()))
                    .map_err(|e| Error::Missing(e.to_string()))?;
                placeholder = PushedImage::new(reference, digest, None);
                &placeholder
            }
        };
        render(RenderInput::new(&self.config, image))
    }

    /// Objects with the app's instance label that deployctl manages, by kind.
    async fn inventory(&self) -> Result<Vec<(String, String, String)>, Error> {
        let mut out = Vec::new();
        for (group, version, kind, _) in KINDS {
            let api_version = if group.is_empty() {
                (*version).to_owned()
            } else {
                format!("{group}/{version}")
            };
            let Some(api) = self.dynamic(&api_version, kind) else {
                continue;
            };
            let list = api
                .list(&ListParams::default().labels(&self.selector()))
                .await
                .map_err(|e| api_err("list", format!("{kind} in {}", self.ns()), e))?;
            for o in list.items {
                let name = o.metadata.name.clone().unwrap_or_default();
                let history = o
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(HISTORY_LABEL));
                if !history {
                    out.push((api_version.clone(), (*kind).to_owned(), name));
                }
            }
        }
        Ok(out)
    }

    async fn plan_for(&self, image: Option<&PushedImage>) -> Result<(Plan, Vec<Manifest>), Error> {
        let manifests = self.render(image)?;
        let mut plan = Plan::new("k8s");
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(self.ns())
            .await
            .map_err(|e| api_err("get", format!("Namespace/{}", self.ns()), e))?
            .is_none()
        {
            plan.push(ResourceChange::new(
                "Namespace",
                self.ns(),
                Action::Create,
                "created if missing",
            ));
        }
        let mut rendered = BTreeSet::new();
        for m in &manifests {
            rendered.insert((m.kind.clone(), m.name.clone()));
            let Some(api) = self.dynamic(&m.api_version, &m.kind) else {
                continue;
            };
            let existing = api
                .get_opt(&m.name)
                .await
                .map_err(|e| api_err("get", format!("{}/{}", m.kind, m.name), e))?;
            let action = match existing {
                None => Action::Create,
                Some(obj) => {
                    let have = serde_json::to_value(&obj).unwrap_or_default();
                    let mut fields = Vec::new();
                    for (segments, want) in leaves(&m.value) {
                        let got = at(&have, &segments);
                        let path = format!(".{}", segments.join(".")).replace(".[", "[");
                        if got == Some(&want) {
                            continue;
                        }
                        let image_unknown = image.is_none() && path.ends_with(".image");
                        fields.push(
                            if m.is_secret() && path.starts_with(".data")
                                || path.starts_with(".stringData")
                            {
                                FieldChange::sensitive(path)
                            } else if image_unknown {
                                FieldChange::new(
                                    path,
                                    got.map(value_text),
                                    Some("(the image this deploy builds)".into()),
                                )
                            } else {
                                FieldChange::new(path, got.map(value_text), Some(value_text(&want)))
                            },
                        );
                    }
                    if fields.is_empty() {
                        Action::Unchanged
                    } else {
                        Action::Update { fields }
                    }
                }
            };
            plan.push(ResourceChange::new(
                &m.kind,
                &m.name,
                action,
                format!("server-side apply ({})", m.api_version),
            ));
        }
        for (_, kind, name) in self.inventory().await? {
            if !rendered.contains(&(kind.clone(), name.clone())) {
                plan.push(ResourceChange::new(
                    kind,
                    name,
                    Action::Delete,
                    "no longer rendered (prune)",
                ));
            }
        }
        if self.options.server_dry_run {
            let namespace_exists = !plan.changes.iter().any(|c| c.kind == "Namespace");
            if namespace_exists {
                for m in &manifests {
                    self.apply_manifest(m, true).await?;
                }
            }
        }
        Ok((plan, manifests))
    }

    async fn apply_manifest(&self, m: &Manifest, dry_run: bool) -> Result<(), Error> {
        let api = self
            .dynamic(&m.api_version, &m.kind)
            .ok_or_else(|| Error::Missing(format!("no API for {}", m.kind)))?;
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        if self.options.force_conflicts {
            pp = pp.force();
        }
        pp.dry_run = dry_run;
        api.patch(&m.name, &pp, &Patch::Apply(&m.value))
            .await
            .map(|_| ())
            .map_err(|e| api_err("apply", format!("{}/{}", m.kind, m.name), e))
    }

    async fn ensure_namespace(&self) -> Result<(), Error> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = self.ns();
        if namespaces
            .get_opt(ns)
            .await
            .map_err(|e| api_err("get", format!("Namespace/{ns}"), e))?
            .is_some()
        {
            return Ok(());
        }
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}}))
            .map_err(|e| Error::Missing(e.to_string()))?;
        match namespaces.create(&PostParams::default(), &obj).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_err("create", format!("Namespace/{ns}"), e)),
        }
    }

    /// The history ConfigMap: revision → Deployment manifest, and the current revision.
    async fn recorded(&self) -> Result<(BTreeMap<u64, String>, Option<u64>), Error> {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns());
        let Some(cm) = cms
            .get_opt(&self.history_name())
            .await
            .map_err(|e| api_err("get", format!("ConfigMap/{}", self.history_name()), e))?
        else {
            return Ok((BTreeMap::new(), None));
        };
        let revisions = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("revision-")?.parse().ok()?, v)))
            .collect();
        let current = cm
            .metadata
            .annotations
            .and_then(|a| a.get(CURRENT_ANNOTATION).and_then(|c| c.parse().ok()));
        Ok((revisions, current))
    }

    async fn save_history(
        &self,
        revisions: &BTreeMap<u64, String>,
        current: u64,
    ) -> Result<(), Error> {
        let keep = usize::try_from(self.config.kubernetes.deployment.revision_history.max(1))
            .unwrap_or(10);
        let data: BTreeMap<String, String> = revisions
            .iter()
            .rev()
            .take(keep)
            .map(|(k, v)| (format!("revision-{k}"), v.clone()))
            .collect();
        let cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": self.history_name(), "namespace": self.ns(),
                "labels": {
                    "app.kubernetes.io/name": self.app(), "app.kubernetes.io/instance": self.app(),
                    "app.kubernetes.io/managed-by": MANAGED_BY, HISTORY_LABEL: "true",
                },
                "annotations": {CURRENT_ANNOTATION: current.to_string()},
            },
            "data": data,
        });
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns());
        cms.patch(
            &self.history_name(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map(|_| ())
        .map_err(|e| api_err("apply", format!("ConfigMap/{}", self.history_name()), e))
    }

    /// Why a pod of `image` is failing, with its events; `None` while nothing fails.
    async fn failing_pod(&self, image: &str) -> Result<Option<(String, Vec<String>)>, Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.ns());
        let list = pods
            .list(
                &ListParams::default()
                    .labels(&format!("app.kubernetes.io/instance={}", self.app())),
            )
            .await
            .map_err(|e| api_err("list", "pods", e))?;
        for p in list.items {
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
                    let events: Api<KubeEvent> = Api::namespaced(self.client.clone(), self.ns());
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

    /// Waits, through a watch, until the Deployment's current generation is fully rolled
    /// out; fails fast on a failing pod or `ProgressDeadlineExceeded`. Returns the revision.
    async fn wait_rollout(
        &self,
        name: &str,
        image: &str,
        events: &dyn EventSink,
        stage: &Stage,
        cancel: &Cancellation,
    ) -> Result<String, Error> {
        let deps: Api<Deployment> = Api::namespaced(self.client.clone(), self.ns());
        let deadline = Instant::now() + self.options.rollout_timeout;
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
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled("the rollout finished".into()));
                }
                if Instant::now() > deadline {
                    let (reason, evs) = self.failing_pod(image).await?.unwrap_or_else(|| {
                        (
                            format!(
                                "not complete after {} s",
                                self.options.rollout_timeout.as_secs()
                            ),
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
                    self.say(events, stage.clone(), line.clone());
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

    fn deployment_image(m: &Manifest) -> String {
        m.value["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn endpoints(&self) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let svcs: Api<Service> = Api::namespaced(self.client.clone(), self.ns());
        if let Ok(Some(svc)) = svcs.get_opt(self.app()).await {
            let port = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map_or(80, |p| p.port);
            let lb = svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .and_then(|i| i.into_iter().next())
                .and_then(|i| i.hostname.or(i.ip));
            match lb {
                Some(host) => out.push(Endpoint::new(
                    "service",
                    format!("http://{host}:{port}"),
                    true,
                )),
                None => out.push(Endpoint::new(
                    "service",
                    format!(
                        "http://{}.{}.svc.cluster.local:{port}",
                        self.app(),
                        self.ns()
                    ),
                    false,
                )),
            }
        }
        for h in &self.config.kubernetes.ingress.hosts {
            if self.config.kubernetes.ingress.enabled {
                let tls = self
                    .config
                    .kubernetes
                    .ingress
                    .tls
                    .iter()
                    .any(|t| t.hosts.contains(&h.host));
                out.push(Endpoint::new(
                    "ingress",
                    format!("{}://{}/", if tls { "https" } else { "http" }, h.host),
                    true,
                ));
            }
        }
        out
    }

    /// Sets the Deployment's replicas to `replicas`: the live revision is applied again with
    /// that count (field manager `deployctl`, so the next deploy returns to the configured
    /// count without a conflict), then the rollout is waited for.
    pub async fn scale(
        &self,
        replicas: i32,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        if self.config.kubernetes.hpa.enabled {
            return Err(Error::Missing(
                "the HorizontalPodAutoscaler owns the replica count (kubernetes.hpa.enabled); change hpa.min_replicas/max_replicas instead".into(),
            )
            .into());
        }
        let (revisions, current) = self.recorded().await?;
        let Some(yaml) = current.and_then(|c| revisions.get(&c)) else {
            return Err(Error::Missing(format!(
                "{} is not deployed in namespace {}: nothing to scale",
                self.app(),
                self.ns()
            ))
            .into());
        };
        let mut value: Value = serde_yaml::from_str(yaml)
            .map_err(|e| Error::Missing(format!("the recorded revision is not readable: {e}")))?;
        value["spec"]["replicas"] = json!(replicas);
        let scaled = serde_yaml::to_string(&value)
            .map_err(|e| Error::Missing(format!("cannot write the manifest: {e}")))?;
        let stage = Stage::Apply("k8s".into());
        self.say(
            events,
            stage.clone(),
            format!("scaling {} to {replicas}", self.app()),
        );
        self.rollout_to(&scaled, events, &stage, cancel).await?;
        Ok(())
    }

    async fn rollout_to(
        &self,
        deployment_yaml: &str,
        events: &dyn EventSink,
        stage: &Stage,
        cancel: &Cancellation,
    ) -> Result<String, Error> {
        let value: Value = serde_yaml::from_str(deployment_yaml)
            .map_err(|e| Error::Missing(format!("the recorded revision is not readable: {e}")))?;
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let image = value["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let deps: Api<Deployment> = Api::namespaced(self.client.clone(), self.ns());
        deps.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .map_err(|e| api_err("apply", format!("Deployment/{name}"), e))?;
        self.wait_rollout(&name, &image, events, stage, cancel)
            .await
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Target for K8sTarget {
    fn name(&self) -> &str {
        "k8s"
    }

    async fn plan(&self, image: Option<&PushedImage>) -> Result<Plan, StageError> {
        Ok(self.plan_for(image).await?.0)
    }

    async fn apply(
        &self,
        _plan: &Plan,
        image: &PushedImage,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError> {
        let stage = Stage::Apply("k8s".into());
        let (plan, manifests) = self.plan_for(Some(image)).await?;
        if plan.is_noop() {
            let (_, current) = self.recorded().await?;
            return Ok(ApplyOutcome::new(
                plan,
                current.map(|c| c.to_string()),
                self.endpoints().await,
            ));
        }
        self.ensure_namespace().await?;
        for m in &manifests {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("applying {}/{}", m.kind, m.name)).into());
            }
            self.apply_manifest(m, false).await?;
        }
        self.say(
            events,
            stage.clone(),
            format!(
                "applied {} resources (server-side, field manager {FIELD_MANAGER})",
                manifests.len()
            ),
        );
        for c in plan.changes.iter().filter(|c| c.action == Action::Delete) {
            let Some((api_version, _, _)) = self
                .inventory()
                .await?
                .into_iter()
                .find(|(_, k, n)| *k == c.kind && *n == c.name)
            else {
                continue;
            };
            if let Some(api) = self.dynamic(&api_version, &c.kind) {
                match api.delete(&c.name, &DeleteParams::background()).await {
                    Ok(_) => self.say(
                        events,
                        stage.clone(),
                        format!("pruned {}/{}", c.kind, c.name),
                    ),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(api_err("delete", format!("{}/{}", c.kind, c.name), e).into());
                    }
                }
            }
        }
        let Some(dep) = manifests.iter().find(|m| m.kind == "Deployment") else {
            return Ok(ApplyOutcome::new(plan, None, self.endpoints().await));
        };
        let (mut revisions, current) = self.recorded().await?;
        let previous = current.and_then(|c| revisions.get(&c).cloned().map(|y| (c, y)));
        let changed = previous.as_ref().is_none_or(|(_, y)| *y != dep.yaml);
        let number = if changed {
            revisions.keys().max().copied().unwrap_or(0) + 1
        } else {
            current.unwrap_or(1)
        };
        match self
            .wait_rollout(
                &dep.name,
                &Self::deployment_image(dep),
                events,
                &stage,
                cancel,
            )
            .await
        {
            Ok(_) => {
                revisions.insert(number, dep.yaml.clone());
                self.save_history(&revisions, number).await?;
                Ok(ApplyOutcome::new(
                    plan,
                    Some(number.to_string()),
                    self.endpoints().await,
                ))
            }
            Err(Error::Rollout {
                deployment,
                reason,
                events: evs,
                ..
            }) => {
                let back = match previous.filter(|_| self.options.auto_rollback) {
                    Some((n, yaml)) => {
                        self.say(
                            events,
                            stage.clone(),
                            format!("rollout failed ({reason}); rolling back to revision {n}"),
                        );
                        self.rollout_to(&yaml, events, &stage, cancel).await?;
                        Some(n.to_string())
                    }
                    None => None,
                };
                Err(Error::Rollout {
                    deployment,
                    reason,
                    events: evs,
                    rolled_back: back,
                }
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn verify(
        &self,
        outcome: &ApplyOutcome,
        _cancel: &Cancellation,
    ) -> Result<Vec<deployctl_core::Verification>, StageError> {
        Ok(outcome
            .endpoints
            .iter()
            .map(|e| deployctl_core::Verification::NotVerifiable {
                reason: if e.verifiable {
                    format!("{} {} is outside this machine's reach; the rollout's readiness probes passed", e.kind, e.url)
                } else {
                    format!("{} {} is reachable only inside the cluster; the rollout's readiness probes passed", e.kind, e.url)
                },
            })
            .collect())
    }

    async fn status(&self) -> Result<TargetStatus, StageError> {
        let mut st = TargetStatus::new("k8s");
        let deps: Api<Deployment> = Api::namespaced(self.client.clone(), self.ns());
        let Some(d) = deps
            .get_opt(self.app())
            .await
            .map_err(|e| api_err("get", format!("Deployment/{}", self.app()), e))?
        else {
            return Ok(st);
        };
        st.deployed = true;
        let (_, current) = self.recorded().await?;
        st.version = current.map(|c| c.to_string());
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
            self.app(),
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
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.ns());
        let list = pods
            .list(
                &ListParams::default()
                    .labels(&format!("app.kubernetes.io/instance={}", self.app())),
            )
            .await
            .map_err(|e| api_err("list", "pods", e))?;
        for p in list.items {
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
        st.endpoints = self.endpoints().await;
        Ok(st)
    }

    async fn logs(
        &self,
        query: &LogQuery,
        sink: &dyn LogSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.ns());
        let selector = format!("app.kubernetes.io/instance={}", self.app());
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let params = LogParams {
            follow: query.follow,
            since_seconds: query.since_seconds.and_then(|s| i64::try_from(s).ok()),
            tail_lines: query.tail.and_then(|t| i64::try_from(t).ok()),
            ..LogParams::default()
        };
        let keep = |line: &str| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| line.contains(f.as_str()))
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(256);
        let mut tasks = Vec::new();
        loop {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| api_err("list", "pods", e))?;
            for p in list.items {
                let name = p.metadata.name.unwrap_or_default();
                if !seen.insert(name.clone()) {
                    continue;
                }
                if !query.follow {
                    let text = pods
                        .logs(&name, &params)
                        .await
                        .map_err(|e| api_err("logs", format!("Pod/{name}"), e))?;
                    for l in text.lines().filter(|l| keep(l)) {
                        sink.line(LogLine::new(name.clone(), None, l));
                    }
                    continue;
                }
                let (pods, params, tx) = (pods.clone(), params.clone(), tx.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(stream) = pods.log_stream(&name, &params).await else {
                        return;
                    };
                    let mut lines = stream.lines();
                    while let Ok(Some(l)) = lines.try_next().await {
                        if tx.send(LogLine::new(name.clone(), None, l)).await.is_err() {
                            return;
                        }
                    }
                }));
            }
            if !query.follow {
                return Ok(());
            }
            // Follow: forward lines; look for new pods every second.
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while tokio::time::Instant::now() < until {
                if cancel.is_cancelled() {
                    for t in &tasks {
                        t.abort();
                    }
                    return Ok(());
                }
                if let Ok(Some(l)) =
                    tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
                    && keep(&l.text)
                {
                    sink.line(l);
                }
            }
        }
    }

    async fn destroy_plan(&self) -> Result<Plan, StageError> {
        let mut plan = Plan::new("k8s");
        for (_, kind, name) in self.inventory().await? {
            plan.push(ResourceChange::new(
                kind,
                name,
                Action::Delete,
                "carries the app's instance label",
            ));
        }
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns());
        if cms
            .get_opt(&self.history_name())
            .await
            .map_err(|e| api_err("get", "history", e))?
            .is_some()
        {
            plan.push(ResourceChange::new(
                "ConfigMap",
                self.history_name(),
                Action::Delete,
                "deploy history",
            ));
        }
        Ok(plan)
    }

    async fn destroy(
        &self,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<Plan, StageError> {
        let plan = self.destroy_plan().await?;
        let stage = Stage::Destroy("k8s".into());
        let mut inventory = self.inventory().await?;
        inventory.push(("v1".into(), "ConfigMap".into(), self.history_name()));
        for (api_version, kind, name) in &inventory {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("deleting {kind}/{name}")).into());
            }
            let Some(api) = self.dynamic(api_version, kind) else {
                continue;
            };
            match api.delete(name, &DeleteParams::foreground()).await {
                Ok(_) => self.say(events, stage.clone(), format!("deleted {kind}/{name}")),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err("delete", format!("{kind}/{name}"), e).into()),
            }
        }
        // Confirm it is gone.
        let start = Instant::now();
        while !self.inventory().await?.is_empty() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(Error::Missing(
                    "resources with the app's label are still present after 60 s".into(),
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(plan)
    }

    async fn history(&self) -> Result<Vec<deployctl_core::Revision>, StageError> {
        let (revisions, current) = self.recorded().await?;
        Ok(revisions
            .iter()
            .map(|(n, yaml)| {
                let image = serde_yaml::from_str::<Value>(yaml).ok().and_then(|v| {
                    v["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .map(str::to_owned)
                });
                deployctl_core::Revision::new(n.to_string(), image, Some(*n) == current)
            })
            .collect())
    }

    async fn rollback(
        &self,
        to: Option<&str>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<RollbackOutcome, StageError> {
        let (mut revisions, current) = self.recorded().await?;
        let Some(current) = current else {
            return Err(Error::Missing(format!(
                "{} has no deploy history in namespace {}: nothing to roll back",
                self.app(),
                self.ns()
            ))
            .into());
        };
        let target = match to {
            Some(t) => t.parse::<u64>().map_err(|_| Error::Missing(format!("`{t}` is not a revision number")))?,
            None => revisions.keys().rev().copied().find(|r| *r < current).ok_or_else(|| {
                Error::Missing(format!("revision {current} is the oldest recorded; there is nothing to roll back to"))
            })?,
        };
        let Some(yaml) = revisions.get(&target).cloned() else {
            let known: Vec<String> = revisions.keys().map(ToString::to_string).collect();
            return Err(Error::Missing(format!(
                "no revision {target}; recorded: {}",
                known.join(", ")
            ))
            .into());
        };
        self.rollout_to(&yaml, events, &Stage::Rollback("k8s".into()), cancel)
            .await?;
        revisions.entry(target).or_insert(yaml);
        self.save_history(&revisions, target).await?;
        Ok(RollbackOutcome::new(
            Some(current.to_string()),
            target.to_string(),
        ))
    }
}
