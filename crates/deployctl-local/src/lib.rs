//! The local target of deployctl: the image as one container on the local Docker engine.
//!
//! Deploying creates (or, when the image or settings changed, replaces) a container named
//! `deployctl-<app>`, with the app's environment and secrets, a restart policy, and the app's
//! port reachable on `127.0.0.1` — published through the engine's bridge network when it has
//! one, else on the host network (the container then gets `PORT` set to the host port). Then it
//! waits until an HTTP GET of the health path answers with a success status. Status, logs,
//! rollback (to the image the container ran before) and destroy work on the same container.
//!
//! Two deploys of one app on one machine take turns: the target's deploy lock is an `flock`
//! on a file per container (module `lock`), which the operating system frees when its holder
//! dies.
//!
//! An unchanged redeploy changes nothing: the container's labels record the image and a
//! fingerprint of its settings, compared before anything is touched.
//!
//! Boundary: talks to the Docker Engine through the `bollard::Docker` it is given, and to the
//! app over HTTP on loopback. It does not build or push images.

mod container;
mod error;
mod http;
mod lock;
mod port;
mod records;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use deployctl_config::Config;
use deployctl_core::{
    Action, ApplyOutcome, Cancellation, Endpoint, EventSink, FieldChange, LogLine, LogQuery,
    LogSink, Plan, PushedImage, ResourceChange, ResourceStatus, RollbackOutcome, Secret, Stage,
    StageError, Target, TargetStatus, Verification,
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
    lock: lock::FileLock,
    records: records::RecordsFile,
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

impl LocalTarget {
    /// A target running `spec` on `docker`.
    pub fn new(docker: Docker, spec: LocalSpec) -> Self {
        Self {
            lock: lock::FileLock::for_container(&spec.container),
            records: records::RecordsFile::for_container(&spec.container),
            docker,
            spec,
        }
    }

    /// The spec.
    pub fn spec(&self) -> &LocalSpec {
        &self.spec
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn name(&self) -> &str {
        "local"
    }

    fn lock(&self) -> Option<&dyn deployctl_core::DeployLock> {
        Some(&self.lock)
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
            // A port someone else holds is named now, not after a 30 s health check.
            let holds_port = existing.as_ref().is_some_and(|e| e.managed && e.running);
            if !holds_port && port::in_use(self.spec.host_port) {
                return Err(LocalError::PortTaken {
                    port: self.spec.host_port,
                    holder: port::holder(&self.docker, self.spec.host_port, &self.spec.container)
                        .await,
                }
                .into());
            }
            let previous = existing
                .as_ref()
                .and_then(|e| e.image.clone())
                .filter(|p| *p != want);
            let started = async {
                self.replace(
                    &want,
                    previous.as_deref(),
                    events,
                    Stage::Apply("local".into()),
                    cancel,
                )
                .await?;
                self.wait_healthy(cancel).await
            }
            .await;
            match started {
                Ok(_) => {}
                // Interrupted: leave things as they are; a re-run converges.
                Err(e @ LocalError::Cancelled(_)) => return Err(e.into()),
                Err(cause) => {
                    let outcome = self.undo(existing.as_ref(), events, cancel).await;
                    return Err(LocalError::Reverted {
                        cause: Box::new(cause),
                        outcome,
                    }
                    .into());
                }
            }
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
        self.records.delete()?;
        Ok(plan)
    }

    async fn record_deploy(&self, record: &deployctl_core::DeployRecord) -> Result<(), StageError> {
        Ok(self.records.append(record)?)
    }

    async fn deploy_records(
        &self,
    ) -> Result<Option<Vec<deployctl_core::DeployRecord>>, StageError> {
        Ok(Some(self.records.read()?))
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
