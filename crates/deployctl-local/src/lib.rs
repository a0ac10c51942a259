//! The local target of deployctl: the image as one container on the local Docker engine.
//!
//! Deploying creates (or, when the image or settings changed, replaces) a container named
//! `deployctl-<app>`, with the app's environment and secrets, a restart policy, and the app's
//! port reachable on `127.0.0.1` — published through the engine's bridge network when it has
//! one, else on the host network (the container then gets `PORT` set to the host port). Then it
//! waits until an HTTP GET of the health path answers with a success status. Status, logs,
//! rollback (to the image the container ran before) and destroy work on the same container.
//!
//! An unchanged redeploy changes nothing: the container's labels record the image and a
//! fingerprint of its settings, compared before anything is touched.
//!
//! Boundary: talks to the Docker Engine through the `bollard::Docker` it is given, and to the
//! app over HTTP on loopback. It does not build or push images.

mod error;
mod http;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use deployctl_config::Config;
use deployctl_core::{
    Action, ApplyOutcome, Cancellation, Endpoint, Event, EventKind, EventSink, FieldChange,
    LogLine, LogQuery, LogSink, Plan, PushedImage, ResourceChange, ResourceStatus, RollbackOutcome,
    Secret, Stage, StageError, Target, TargetStatus, Verification,
};
use futures::StreamExt;

pub use error::LocalError;

const LABEL_APP: &str = "deployctl.app";
const LABEL_MANAGED: &str = "deployctl.managed-by";
const LABEL_IMAGE: &str = "deployctl.image";
const LABEL_SETTINGS: &str = "deployctl.settings";
const LABEL_PREVIOUS: &str = "deployctl.previous-image";

/// What the local target runs, resolved from the config.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalSpec {
    /// `app.name`.
    pub app: String,
    /// Container name.
    pub container: String,
    /// Port on 127.0.0.1.
    pub host_port: u16,
    /// Port the app listens on inside the container.
    pub container_port: u16,
    /// Health path.
    pub health_path: String,
    /// Restart policy: `no`, `on-failure`, `always`, `unless-stopped`.
    pub restart: String,
    /// Plain environment.
    pub env: BTreeMap<String, String>,
    /// Secret environment.
    pub secrets: BTreeMap<String, Secret>,
    /// How long `apply` waits for the health check.
    pub health_timeout: Duration,
}

impl LocalSpec {
    /// The local deployment of `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            app: config.app.name.clone(),
            container: format!("deployctl-{}", config.app.name),
            host_port: config.local.port.unwrap_or(config.app.port),
            container_port: config.app.port,
            health_path: config.app.health_check_path.clone(),
            restart: config.local.restart.clone(),
            env: config.env.clone(),
            secrets: config.secrets.clone(),
            health_timeout: Duration::from_secs(30),
        }
    }

    /// The URL the app answers on.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.host_port)
    }
}

/// The plan for `spec`'s one container with `action`.
fn container_plan(spec: &LocalSpec, action: Action) -> Plan {
    let mut plan = Plan::new("local");
    plan.push(ResourceChange::new(
        "container",
        &spec.container,
        action,
        format!("serves {}", spec.url()),
    ));
    plan
}

/// What a first deploy of `spec` creates, without asking the engine: the plan `plan` shows
/// when the engine cannot be read (the same names `LocalTarget::plan` uses).
pub fn first_deploy_plan(spec: &LocalSpec) -> Plan {
    container_plan(spec, Action::Create)
}

/// The local Docker engine as a deploy target.
#[derive(Debug, Clone)]
pub struct LocalTarget {
    docker: Docker,
    spec: LocalSpec,
}

/// FNV-1a: a fingerprint that is stable across builds (labels outlive the binary).
fn fnv(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn engine(operation: &'static str, resource: &str, e: &bollard::errors::Error) -> LocalError {
    LocalError::Engine {
        operation,
        resource: resource.to_owned(),
        message: e.to_string(),
    }
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What the engine has for our container.
struct Existing {
    managed: bool,
    running: bool,
    image: Option<String>,
    settings: Option<String>,
    previous: Option<String>,
    started_at: Option<String>,
    status: String,
}

impl LocalTarget {
    /// A target running `spec` on `docker`.
    pub fn new(docker: Docker, spec: LocalSpec) -> Self {
        Self { docker, spec }
    }

    /// The spec.
    pub fn spec(&self) -> &LocalSpec {
        &self.spec
    }

    fn say(&self, events: &dyn EventSink, stage: Stage, text: String) {
        events.emit(Event::now(stage, EventKind::Message { text }));
    }

    /// Host networking when the engine has no bridge network (e.g. `dockerd --bridge=none`).
    async fn host_network(&self) -> bool {
        self.docker.inspect_network("bridge", None).await.is_err()
    }

    fn settings_fingerprint(&self, host_network: bool) -> String {
        let s = &self.spec;
        let mut parts: Vec<String> = vec![
            s.host_port.to_string(),
            s.container_port.to_string(),
            s.restart.clone(),
            host_network.to_string(),
        ];
        for (k, v) in &s.env {
            parts.push(format!("{k}={v}"));
        }
        for (k, v) in &s.secrets {
            parts.push(format!("{k}={}", v.expose()));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        fnv(&refs)
    }

    async fn existing(&self) -> Result<Option<Existing>, LocalError> {
        let c = match self
            .docker
            .inspect_container(&self.spec.container, None)
            .await
        {
            Ok(c) => c,
            Err(e) if is_404(&e) => return Ok(None),
            Err(e) => return Err(engine("inspect container", &self.spec.container, &e)),
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let state = c.state.as_ref();
        Ok(Some(Existing {
            managed: labels.get(LABEL_APP) == Some(&self.spec.app),
            running: state.and_then(|s| s.running).unwrap_or(false),
            image: labels.get(LABEL_IMAGE).cloned(),
            settings: labels.get(LABEL_SETTINGS).cloned(),
            previous: labels.get(LABEL_PREVIOUS).cloned(),
            started_at: state.and_then(|s| s.started_at.clone()),
            status: state
                .and_then(|s| s.status)
                .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
        }))
    }

    /// The image reference to run for `image`: the pushed digest when the engine knows it,
    /// else the digest as a local image ID (a build that was not pushed).
    async fn runnable(&self, image: &PushedImage) -> String {
        let by_digest = format!("{}@{}", image.reference.name(), image.digest());
        if self.docker.inspect_image(&by_digest).await.is_ok() {
            by_digest
        } else {
            image.digest().to_string()
        }
    }

    async fn replace(
        &self,
        image: &str,
        previous: Option<&str>,
        events: &dyn EventSink,
        stage: Stage,
        cancel: &Cancellation,
    ) -> Result<(), LocalError> {
        let s = &self.spec;
        let host_network = self.host_network().await;
        if cancel.is_cancelled() {
            return Err(LocalError::Cancelled("replacing the container".into()));
        }
        match self
            .docker
            .remove_container(
                &s.container,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
        {
            Ok(()) => self.say(
                events,
                stage.clone(),
                format!("removed the old container {}", s.container),
            ),
            Err(e) if is_404(&e) => {}
            Err(e) => return Err(engine("remove container", &s.container, &e)),
        }
        let mut env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(s.secrets.iter().map(|(k, v)| format!("{k}={}", v.expose())));
        let port_key = format!("{}/tcp", s.container_port);
        let mut labels = HashMap::from([
            (LABEL_APP.to_owned(), s.app.clone()),
            (LABEL_MANAGED.to_owned(), "deployctl".to_owned()),
            (LABEL_IMAGE.to_owned(), image.to_owned()),
            (
                LABEL_SETTINGS.to_owned(),
                self.settings_fingerprint(host_network),
            ),
        ]);
        if let Some(p) = previous {
            labels.insert(LABEL_PREVIOUS.to_owned(), p.to_owned());
        }
        let mut host = HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(match s.restart.as_str() {
                    "no" => RestartPolicyNameEnum::NO,
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::UNLESS_STOPPED,
                }),
                maximum_retry_count: None,
            }),
            ..HostConfig::default()
        };
        if host_network {
            host.network_mode = Some("host".into());
            env.push(format!("PORT={}", s.host_port));
        } else {
            host.port_bindings = Some(HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(s.host_port.to_string()),
                }]),
            )]));
        }
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: (!host_network).then(|| vec![port_key]),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        self.docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&s.container)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(|e| engine("create container", &s.container, &e))?;
        self.docker
            .start_container(&s.container, None)
            .await
            .map_err(|e| engine("start container", &s.container, &e))?;
        self.say(
            events,
            stage,
            format!(
                "started {} from {image} on {} ({})",
                s.container,
                s.url(),
                if host_network {
                    "host network"
                } else {
                    "published port"
                }
            ),
        );
        Ok(())
    }

    /// GETs the health path until it answers 2xx/3xx or the deadline passes.
    async fn wait_healthy(&self, cancel: &Cancellation) -> Result<Verification, LocalError> {
        let url = format!("{}{}", self.spec.url(), self.spec.health_path);
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < self.spec.health_timeout {
            if cancel.is_cancelled() {
                return Err(LocalError::Cancelled("the health check".into()));
            }
            let t = Instant::now();
            match http::get(
                self.spec.host_port,
                &self.spec.health_path,
                Duration::from_secs(2),
            )
            .await
            {
                Ok(status) if (200..400).contains(&status) => {
                    return Ok(Verification::Healthy {
                        url,
                        method: "http".to_owned(),
                        status,
                        latency_ms: u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
                    });
                }
                Ok(status) => last = format!("HTTP {status}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(LocalError::Unhealthy {
            url,
            seconds: self.spec.health_timeout.as_secs(),
            last,
        })
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn name(&self) -> &str {
        "local"
    }

    async fn plan(&self, image: Option<&PushedImage>) -> Result<Plan, StageError> {
        let name = &self.spec.container;
        let action = match self.existing().await? {
            None => Action::Create,
            Some(e) if !e.managed => return Err(LocalError::NotManaged(name.clone()).into()),
            Some(e) => {
                let host_network = self.host_network().await;
                let mut fields = Vec::new();
                match image {
                    Some(img) => {
                        let want = self.runnable(img).await;
                        if e.image.as_deref() != Some(want.as_str()) {
                            fields.push(FieldChange::new("image", e.image.clone(), Some(want)));
                        }
                    }
                    None => fields.push(FieldChange::new(
                        "image",
                        e.image.clone(),
                        Some("(the image this deploy builds)".into()),
                    )),
                }
                if e.settings.as_deref() != Some(self.settings_fingerprint(host_network).as_str()) {
                    fields.push(FieldChange::sensitive(
                        "environment, port or restart policy",
                    ));
                }
                if !e.running {
                    fields.push(FieldChange::new(
                        "state",
                        Some(e.status),
                        Some("running".into()),
                    ));
                }
                if fields.is_empty() {
                    Action::Unchanged
                } else {
                    Action::Update { fields }
                }
            }
        };
        Ok(container_plan(&self.spec, action))
    }

    async fn apply(
        &self,
        image: &PushedImage,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError> {
        let plan = self.plan(Some(image)).await?;
        let want = self.runnable(image).await;
        let existing = self.existing().await?;
        let changed = plan.changes.iter().any(|c| c.action.is_change());
        if changed {
            let previous = existing
                .as_ref()
                .and_then(|e| e.image.clone())
                .filter(|p| *p != want);
            self.replace(
                &want,
                previous.as_deref(),
                events,
                Stage::Apply("local".into()),
                cancel,
            )
            .await?;
            self.wait_healthy(cancel).await?;
        }
        Ok(ApplyOutcome::new(
            plan,
            Some(image.digest().short().to_owned()),
            vec![Endpoint::new("local", self.spec.url(), true)],
        ))
    }

    async fn verify(
        &self,
        _outcome: &ApplyOutcome,
        cancel: &Cancellation,
    ) -> Result<Vec<Verification>, StageError> {
        Ok(vec![self.wait_healthy(cancel).await?])
    }

    async fn status(&self) -> Result<TargetStatus, StageError> {
        let mut st = TargetStatus::new("local");
        let Some(e) = self.existing().await? else {
            return Ok(st);
        };
        st.deployed = e.managed;
        st.image.clone_from(&e.image);
        st.version = e
            .image
            .as_deref()
            .and_then(|i| i.rsplit("sha256:").next())
            .map(|h| h.chars().take(12).collect());
        let mut r = ResourceStatus::new("container", &self.spec.container, &e.status);
        if let Some(t) = &e.started_at {
            r.details.push(("started".into(), t.clone()));
        }
        if let Some(p) = &e.previous {
            r.details.push(("previous image".into(), p.clone()));
        }
        st.resources.push(r);
        st.endpoints
            .push(Endpoint::new("local", self.spec.url(), true));
        Ok(st)
    }

    async fn logs(
        &self,
        query: &LogQuery,
        sink: &dyn LogSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let name = &self.spec.container;
        if self.existing().await?.is_none() {
            return Err(LocalError::Missing(format!(
                "container {name} does not exist: nothing is deployed locally"
            ))
            .into());
        }
        let mut opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(query.follow)
            .timestamps(false);
        if let Some(s) = query.since_seconds {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            opts = opts.since(i32::try_from(now.saturating_sub(s)).unwrap_or(0));
        }
        if let Some(t) = query.tail {
            opts = opts.tail(&t.to_string());
        }
        let mut stream = self.docker.logs(name, Some(opts.build()));
        let mut pending = String::new();
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = wait_cancel(cancel) => None,
            };
            let Some(item) = next else { break };
            let chunk = item.map_err(|e| engine("logs", name, &e))?;
            pending.push_str(&chunk.to_string());
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let line = line.trim_end().to_owned();
                if query
                    .filter
                    .as_ref()
                    .is_none_or(|f| line.contains(f.as_str()))
                {
                    sink.line(LogLine::new(name.clone(), None, line));
                }
            }
        }
        if !pending.trim().is_empty() {
            sink.line(LogLine::new(
                name.clone(),
                None,
                pending.trim_end().to_owned(),
            ));
        }
        Ok(())
    }

    async fn destroy_plan(&self) -> Result<Plan, StageError> {
        let mut plan = Plan::new("local");
        match self.existing().await? {
            Some(e) if e.managed => plan.push(ResourceChange::new(
                "container",
                &self.spec.container,
                Action::Delete,
                "created by deployctl",
            )),
            Some(_) => plan.push(ResourceChange::new(
                "container",
                &self.spec.container,
                Action::Unchanged,
                "not created by deployctl; left alone",
            )),
            None => {}
        }
        Ok(plan)
    }

    async fn destroy(
        &self,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<Plan, StageError> {
        let plan = self.destroy_plan().await?;
        if plan.changes.iter().any(|c| c.action == Action::Delete) {
            if cancel.is_cancelled() {
                return Err(StageError::cancelled("removing the container"));
            }
            match self
                .docker
                .remove_container(
                    &self.spec.container,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await
            {
                Ok(()) => {}
                Err(e) if is_404(&e) => {}
                Err(e) => return Err(engine("remove container", &self.spec.container, &e).into()),
            }
            self.say(
                events,
                Stage::Destroy("local".into()),
                format!("removed container {}", self.spec.container),
            );
        }
        Ok(plan)
    }

    async fn history(&self) -> Result<Vec<deployctl_core::Revision>, StageError> {
        let Some(e) = self.existing().await?.filter(|e| e.managed) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(p) = e.previous {
            out.push(deployctl_core::Revision::new("previous", Some(p), false));
        }
        if let Some(i) = e.image {
            out.push(deployctl_core::Revision::new("current", Some(i), true));
        }
        Ok(out)
    }

    async fn rollback(
        &self,
        to: Option<&str>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<RollbackOutcome, StageError> {
        let Some(e) = self.existing().await?.filter(|e| e.managed) else {
            return Err(LocalError::Missing("nothing is deployed locally".into()).into());
        };
        let target = match (to, &e.previous) {
            (Some(t), _) => t.to_owned(),
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(LocalError::Missing(
                    "the container records no previous image; pass --to <image>".into(),
                )
                .into());
            }
        };
        self.replace(
            &target,
            e.image.as_deref(),
            events,
            Stage::Rollback("local".into()),
            cancel,
        )
        .await?;
        self.wait_healthy(cancel).await?;
        Ok(RollbackOutcome::new(e.image, target))
    }
}

async fn wait_cancel(cancel: &Cancellation) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
