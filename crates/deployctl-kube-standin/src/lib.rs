//! # deployctl-kube-standin — a Kubernetes API server stand-in for tests
//!
//! No real API server can run on the machines deployctl is tested on, so this crate serves
//! the Kubernetes REST API over plain HTTP on `127.0.0.1` and writes a kubeconfig for it.
//! In-process tests and CLI end-to-end tests talk to it through the real `kube` client
//! exactly as to a cluster. It is test support: never linked into the shipped binary.
//!
//! ## Faithful where deployctl depends on it
//! - Kinds: Namespace, Pod (+ `log`), Service, ConfigMap, Secret, PersistentVolumeClaim,
//!   ServiceAccount, Event, Deployment (+ `status`), ReplicaSet, Ingress, NetworkPolicy,
//!   HorizontalPodAutoscaler (autoscaling/v2), PodDisruptionBudget, Lease.
//! - Discovery as kubectl reads it, from the one table [`KINDS`]: `/version`, legacy
//!   (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>` with `singularName`, `verbs`,
//!   `shortNames`, `categories` and the subresources) and aggregated discovery
//!   (`apidiscovery.k8s.io` v2/v2beta1 when `Accept` asks for it). `/openapi/v3` (+ per
//!   group-version) and `/openapi/v2` (JSON only) list every kind with its GVK, PATCH
//!   parameters and field-level schemas (vendored, generated from k8s-openapi 0.29's
//!   `schemars` feature: `openapi/README.md`); `fieldValidation=Strict` rejects fields they
//!   do not declare. Real clients prove it: kubectl (`tests/kubectl.rs`), helm 4
//!   (`tests/helm.rs`), the official Python client and `kubernetes-validate`
//!   (`tests/python_clients.rs`).
//! - The `scale` subresource of Deployments and ReplicaSets (an `autoscaling/v1` Scale).
//! - Objects get `uid`, `creationTimestamp`, a global `resourceVersion`, `generation`
//!   (bumped only when `spec` changes after defaulting) and `managedFields` per manager.
//! - Defaulting as a real server does it on create, update, patch and apply
//!   (`defaulting.rs`, from k8s.io/kubernetes `pkg/apis/*/defaults.go`): pod templates and
//!   containers (`imagePullPolicy` by tag, `terminationMessagePath`/`Policy`, port
//!   `protocol`, probe timings and `scheme`, `restartPolicy`, `dnsPolicy`,
//!   `schedulerName`, `securityContext`, `terminationGracePeriodSeconds`, volume
//!   `defaultMode`), Deployment `replicas`/`revisionHistoryLimit`/`progressDeadlineSeconds`/
//!   `strategy`, Service `type`/`sessionAffinity`/`clusterIP(s)` (allocated from
//!   10.96.0.0/16, kept across updates)/`ipFamilies`/`ipFamilyPolicy`/
//!   `internalTrafficPolicy`/port `targetPort`, Secret `type` and `stringData` folded into
//!   `data`, Namespace label/finalizer/phase, PVC `volumeMode`, HPA `minReplicas`/`metrics`/
//!   `behavior`, NetworkPolicy `policyTypes`; Pods get `enableServiceLinks` and requests
//!   from limits. Quantities are stored in `resource.Quantity` canonical form
//!   (`quantity.rs`: `1000m` → `1`, `0.5` → `500m`, `1024Mi` → `1Gi`; resource lists
//!   rounded up to milli units).
//! - Server-side apply: create if missing; field ownership per manager, associative lists
//!   owned per item (`fieldpath.rs`: containers, volumes, env, imagePullSecrets by `name`,
//!   volumeMounts by `mountPath`, ports by `containerPort`/`port` + `protocol`; other lists
//!   whole); a field another manager owns with a different value is a 409 `Conflict`
//!   naming the manager and field ("Apply failed with 1 conflict: conflict with
//!   \"kubectl\": .spec.template.spec.containers[name=\"web\"].image") unless `force=true`;
//!   fields (and list items) the applier stops sending are removed, defaulted fields are
//!   nobody's and stay; a no-op apply changes nothing (same `resourceVersion`).
//! - Merge patch: JSON merge, and strategic merge with list items merged by key
//!   (`strategic.rs`; `$patch: delete`; its sender owns only what it sent), PUT with
//!   `resourceVersion` conflicts, POST with `AlreadyExists`, DELETE with ownerReference
//!   cascade (and `Orphan`), `dryRun=All` everywhere, `status` subresource writes.
//! - GET, LIST and WATCH with equality and set-based label selectors and field selectors on
//!   `metadata.name`/`metadata.namespace`; watches resume from a `resourceVersion` (410
//!   `Expired` when too old), send initial `ADDED` events without one, bookmarks on request;
//!   streaming lists (`sendInitialEvents=true`) end the initial events with the
//!   `k8s.io/initial-events-end` bookmark.
//! - A Deployment controller: one ReplicaSet per pod template (`pod-template-hash`,
//!   `deployment.kubernetes.io/revision`, re-applying an old template reuses its ReplicaSet
//!   with a new revision), Pods whose status moves over time, Deployment status with
//!   `observedGeneration`, replica counts and `Progressing`/`Available` conditions including
//!   `ProgressDeadlineExceeded`. Old pods stay until the new ones are ready.
//! - A Job controller (`job_controller.rs`, `batch/v1`, one pod, no retries): the pod
//!   labelled `job-name`/`controller-uid` as the real controller does, its `envFrom`
//!   ConfigMaps and Secrets resolved when it starts (missing → `CreateContainerConfigError`),
//!   the lines set with [`StandIn::set_job_output`] (`${NAME}` from that environment) as its
//!   log, and `terminated.exitCode` from [`Behavior::Exit`] (0 without a rule); the Job then
//!   `Complete` (`status.succeeded`) or `Failed` (`BackoffLimitExceeded`, or
//!   `DeadlineExceeded` past `activeDeadlineSeconds`).
//! - Pod fates by image name (`fail-pull` → `ErrImagePull`/`ImagePullBackOff`, `crash` →
//!   `CrashLoopBackOff` with climbing restarts, `config-error` →
//!   `CreateContainerConfigError`, `never-ready`, `slow`), or set per test with
//!   [`StandIn::set_behavior`] / `POST /standin/control`; failures emit Warning Events.
//! - The `proxy` subresource of Services and Pods (`…/services/web:80/proxy/health`):
//!   forwarded to the URL a test registers for the Service with
//!   [`StandIn::set_proxy_target`] (or [`StandIn::set_default_proxy_target`],
//!   `POST /standin/control {"proxy": {"namespace", "service", "url"}}`, or the binary's
//!   `DEPLOYCTL_STANDIN_PROXY_TARGET`); 503 `no endpoints available for service` when no
//!   ready pod matches the Service's selector or nothing is registered.
//! - Request bodies in JSON, YAML or, for Secret, ConfigMap and DeleteOptions, Kubernetes
//!   protobuf (`application/vnd.kubernetes.protobuf`: client-go's typed clients send it,
//!   helm 4 stores its releases that way); other protobuf kinds get 415. Responses are JSON.
//! - A record of the mutating requests served ([`StandIn::take_mutations`]), so a test can
//!   assert that a plan or an unchanged redeploy changed nothing; with
//!   `DEPLOYCTL_STANDIN_TRACE` set, every request is printed on stderr (`cargo xtask bench
//!   k8s` counts each client's requests from it).
//! - `pods/log` with `tailLines` and `follow` (streams until the pod is deleted);
//!   [`StandIn::append_log`] writes lines.
//!
//! ## Limits (what a real API server does that this does not)
//! No TLS, authentication or RBAC (any token is accepted); admission of new pods only
//! by LimitRange and ResourceQuota (`admission.rs`: defaults, min/max, `pods`, cpu and
//! memory requests and limits, `status.used`; the controller's refused pod becomes a
//! `FailedCreate` Event on the ReplicaSet) — no other quota resources, no Pod Security —
//! and no schema validation beyond kind/name checks and
//! unknown fields under `fieldValidation=Strict` (types and `Warn` are not checked; merge
//! patches are not validated); no defaulting of feature-gated fields (HPA
//! `selectionStrategy`, pod-level resources) and no `nodePort` allocation; no server-side
//! `Table` output (kubectl prints NAME and AGE only); no protobuf responses (the protobuf
//! OpenAPI v2 kubectl asks for is not served) and no protobuf bodies of other kinds;
//! strategic merge patch merges by key only the lists named above
//! (others are replaced; `$retainKeys` and `$deleteFromPrimitiveList` are ignored);
//! associative lists other than those named above (tolerations,
//! topologySpreadConstraints, ownerReferences…) are owned as whole values in server-side
//! apply; JSON patch is refused; no finalizers or graceful deletion (a Namespace's objects
//! go at once); no scheduling, nodes, endpoints or real containers; Services get no
//! load-balancer status; `limit`/`continue` paging is ignored (lists are complete).

mod admission;
mod content;
mod controller;
mod defaulting;
mod discovery;
mod fieldpath;
mod job_controller;
mod openapi;
mod ops;
mod protobuf;
mod proxy;
mod quantity;
mod server;
mod store;
mod strategic;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use store::{KINDS, Kind};

/// What a Pod of a matching image does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// Becomes ready shortly after creation.
    Ready,
    /// Becomes ready after this long.
    Slow(Duration),
    /// `ErrImagePull`, then `ImagePullBackOff`.
    ImagePullBackOff,
    /// Runs, exits, restarts: `CrashLoopBackOff` with a climbing restart count.
    CrashLoopBackOff,
    /// `CreateContainerConfigError` (e.g. a missing Secret).
    CreateContainerConfigError,
    /// Runs but never passes readiness.
    NeverReady,
    /// Runs to completion and exits with this code: what a Job's pod does (its Job then
    /// succeeds on 0 and fails otherwise). A Job's pod of an image without a rule exits 0;
    /// a Deployment's pod with this behaviour stays pending.
    Exit(i32),
}

impl Behavior {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => Self::Ready,
            "slow" => Self::Slow(Duration::from_secs(3)),
            "image-pull-back-off" => Self::ImagePullBackOff,
            "crash-loop-back-off" => Self::CrashLoopBackOff,
            "create-container-config-error" => Self::CreateContainerConfigError,
            "never-ready" => Self::NeverReady,
            other => Self::Exit(other.strip_prefix("exit-")?.parse().ok()?),
        })
    }
}

/// Starting the stand-in failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StandInError {
    /// Binding the port failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// Writing the kubeconfig failed.
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running stand-in API server; stops when dropped.
#[derive(Debug)]
pub struct StandIn {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<store::State>>,
    stop: watch::Sender<bool>,
}

impl StandIn {
    /// Starts serving on a free port of 127.0.0.1, with the controller running.
    pub async fn start() -> Result<Self, StandInError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(StandInError::Bind)?;
        let addr = listener.local_addr().map_err(StandInError::Bind)?;
        let (tx, _) = broadcast::channel(4096);
        let state = Arc::new(Mutex::new(store::State::new(tx)));
        {
            let mut st = lock(&state);
            if let Some(ns) = store::kind_named("Namespace") {
                for name in ["default", "kube-system"] {
                    st.put(
                        ns,
                        "",
                        serde_json::json!({"metadata": {"name": name}, "spec": {}}),
                    );
                }
            }
        }
        let (stop, stopped) = watch::channel(false);
        let serve_state = state.clone();
        let mut serve_stop = stopped.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = serve_stop.changed() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let st = serve_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| server::handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let ctl_state = state.clone();
        let mut ctl_stop = stopped;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(40)) => {}
                    _ = ctl_stop.changed() => return,
                }
                let mut st = lock(&ctl_state);
                controller::reconcile(&mut st);
                job_controller::reconcile(&mut st);
                admission::refresh_quotas(&mut st);
            }
        });
        Ok(Self { addr, state, stop })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig (context `standin`, namespace `default`) pointing at this server.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), StandInError> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\nusers:\n- name: standin\n  user:\n    token: standin-token\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\ncurrent-context: standin\n",
            self.url()
        );
        std::fs::write(path, text).map_err(|source| StandInError::Kubeconfig {
            path: path.to_owned(),
            source,
        })
    }

    /// Pods whose image contains `image` behave as `behavior` (later rules win).
    pub fn set_behavior(&self, image: &str, behavior: Behavior) {
        lock(&self.state)
            .behaviors
            .push((image.to_owned(), behavior));
    }

    /// How long a `Ready` pod takes to become ready (default 150 ms).
    pub fn set_ready_after(&self, after: Duration) {
        lock(&self.state).ready_after = after;
    }

    /// The proxy of Service `service` in `namespace` (and of the pods it selects) forwards
    /// to `url` (`http://host:port`, optionally with a base path): what the app's
    /// containers would answer.
    pub fn set_proxy_target(&self, namespace: &str, service: &str, url: &str) {
        lock(&self.state)
            .proxy_targets
            .insert((namespace.to_owned(), service.to_owned()), url.to_owned());
    }

    /// The proxy of every Service without its own target forwards to `url` (`None`: 503
    /// as with no endpoints).
    pub fn set_default_proxy_target(&self, url: Option<&str>) {
        lock(&self.state).default_proxy_target = url.map(str::to_owned);
    }

    /// The mutating requests (`POST`, `PUT`, `PATCH`, `DELETE`; dry runs excluded) served
    /// since the last call, as `METHOD path`, oldest first: what a client changed.
    pub fn take_mutations(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.state).mutations)
    }

    /// The pod of a Job whose image contains `image` prints `lines` when it runs (later
    /// rules win); `${NAME}` in a line becomes the value of NAME in the pod's environment
    /// (`env`, and `envFrom` ConfigMaps and Secrets as they are when the pod starts).
    pub fn set_job_output(&self, image: &str, lines: &[&str]) {
        lock(&self.state).job_output.push((
            image.to_owned(),
            lines.iter().map(|l| (*l).to_owned()).collect(),
        ));
    }

    /// Appends a line to a pod's log.
    pub fn append_log(&self, namespace: &str, pod: &str, line: &str) {
        lock(&self.state)
            .logs
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .push(line.to_owned());
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(state: &Arc<Mutex<store::State>>) -> std::sync::MutexGuard<'_, store::State> {
    match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
