//! The traits adapters implement.

use async_trait::async_trait;

use crate::cancel::Cancellation;
use crate::error::StageError;
use crate::event::EventSink;
use crate::hooks::{HookOutput, HookPhase, TargetTask};
use crate::image::{BuildSpec, BuiltImage, ImageRef, PushedImage, RegistryCredentials};
use crate::lock::DeployLock;
use crate::metrics::DeployRecord;
use crate::plan::Plan;

/// Builds an image from a [`BuildSpec`] (implemented over the Docker Engine API).
#[async_trait]
pub trait ImageBuilder: Send + Sync {
    /// Builds the image, reporting progress as [`Stage::Build`](crate::Stage::Build) events.
    async fn build(
        &self,
        spec: &BuildSpec,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<BuiltImage, StageError>;
}

/// Finds credentials for a registry (explicit config, ECR, Docker's config.json, …).
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// A short name for messages: `config`, `ecr`, `docker config`.
    fn name(&self) -> &str;

    /// Credentials for `registry`, or `None` when this source has none for it.
    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError>;
}

/// Pushes a built image to a registry and reports the manifest digest; also looks up an
/// image the registry already holds.
#[async_trait]
pub trait ImagePusher: Send + Sync {
    /// The image the registry holds as `reference` — a tag pushed earlier, or a digest to
    /// confirm — with the digest the registry serves. A read; nothing is pushed. The default
    /// says this pusher cannot read a registry.
    async fn resolve(
        &self,
        reference: &ImageRef,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<PushedImage, StageError> {
        let _ = credentials;
        Err(StageError::new(
            crate::ErrorKind::Environment,
            format!("cannot look up {reference}: no registry reader is configured"),
        ))
    }

    /// Pushes `image` as `destination`, reporting [`Stage::Push`](crate::Stage::Push) events.
    async fn push(
        &self,
        image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<PushedImage, StageError>;
}

/// A public endpoint of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// What it is: `api gateway`, `function url`, `service`, `ingress`, `local`.
    pub kind: String,
    /// The URL.
    pub url: String,
    /// Whether an HTTP GET from this machine can be expected to reach it.
    pub verifiable: bool,
}

impl Endpoint {
    /// An endpoint.
    pub fn new(kind: impl Into<String>, url: impl Into<String>, verifiable: bool) -> Self {
        Self {
            kind: kind.into(),
            url: url.into(),
            verifiable,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ApplyOutcome {
    /// The plan as carried out.
    pub plan: Plan,
    /// The version now live (Lambda version, Deployment revision, container id).
    pub version: Option<String>,
    /// Endpoints to verify.
    pub endpoints: Vec<Endpoint>,
}

impl ApplyOutcome {
    /// An outcome.
    pub fn new(plan: Plan, version: Option<String>, endpoints: Vec<Endpoint>) -> Self {
        Self {
            plan,
            version,
            endpoints,
        }
    }
}

/// Result of checking an endpoint after a deploy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verification {
    /// The health path answered with a success status.
    Healthy {
        /// URL checked (for an invoke, the function or alias it invoked).
        url: String,
        /// How it was checked: `http`, `invoke`, `service proxy`, `pod proxy`.
        method: String,
        /// HTTP status (for an invoke, the `statusCode` the function returned).
        status: u16,
        /// Latency of the successful request, in milliseconds.
        latency_ms: u64,
    },
    /// The endpoint cannot be checked from here (an emulator, a private address).
    NotVerifiable {
        /// Why.
        reason: String,
    },
    /// Verification was switched off.
    Skipped,
}

/// State of one resource, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ResourceStatus {
    /// Kind of resource.
    pub kind: String,
    /// Name.
    pub name: String,
    /// State in the provider's words (`Active`, `3/3 ready`).
    pub state: String,
    /// Further details as key/value pairs.
    pub details: Vec<(String, String)>,
}

impl ResourceStatus {
    /// A status line.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, state: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            state: state.into(),
            details: Vec::new(),
        }
    }
}

/// What `status` reports for one target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TargetStatus {
    /// Target name.
    pub target: String,
    /// Whether anything is deployed.
    pub deployed: bool,
    /// Live version, if any.
    pub version: Option<String>,
    /// Image digest that is live, if any.
    pub image: Option<String>,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Per-resource state.
    pub resources: Vec<ResourceStatus>,
}

impl TargetStatus {
    /// An empty status for `target`.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            deployed: false,
            version: None,
            image: None,
            endpoints: Vec::new(),
            resources: Vec::new(),
        }
    }
}

/// Which logs to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogQuery {
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// Only the last N lines per source.
    pub tail: Option<u64>,
    /// Only lines containing this pattern.
    pub filter: Option<String>,
    /// Keep following new lines until cancelled.
    pub follow: bool,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LogLine {
    /// Where it came from (pod name, log stream).
    pub source: String,
    /// When, in milliseconds since the Unix epoch, if known.
    pub at_ms: Option<u64>,
    /// The text.
    pub text: String,
}

impl LogLine {
    /// A log line.
    pub fn new(source: impl Into<String>, at_ms: Option<u64>, text: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            at_ms,
            text: text.into(),
        }
    }
}

/// Receives log lines as they are read.
pub trait LogSink: Send + Sync {
    /// One line.
    fn line(&self, line: LogLine);
}

/// One recorded version of a deployment, for `history`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Revision {
    /// Version or revision number.
    pub version: String,
    /// The image it runs.
    pub image: Option<String>,
    /// Whether it is live now.
    pub live: bool,
    /// How far it got, where the target records it: `pending` (its deploy was interrupted
    /// before the rollout was seen complete), `good`, `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Revision {
    /// A revision.
    pub fn new(version: impl Into<String>, image: Option<String>, live: bool) -> Self {
        Self {
            version: version.into(),
            image,
            live,
            state: None,
        }
    }

    /// With its recorded state.
    #[must_use]
    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RollbackOutcome {
    /// Version live before.
    pub from: Option<String>,
    /// Version live now.
    pub to: String,
}

impl RollbackOutcome {
    /// A rollback from `from` to `to`.
    pub fn new(from: Option<String>, to: impl Into<String>) -> Self {
        Self {
            from,
            to: to.into(),
        }
    }
}

/// A deploy target: Lambda, Kubernetes, the local engine.
///
/// `plan` and `destroy_plan` make no mutating call. `apply` reads the state again and changes
/// only what differs from the desired deployment, so it is idempotent (an unchanged redeploy
/// makes no mutating call) and never acts on a stale plan.
#[async_trait]
pub trait Target: Send + Sync {
    /// The target's name: `lambda`, `k8s`, `local`.
    fn name(&self) -> &str;

    /// The lock that keeps two deploys of this app on this target from interleaving; the
    /// pipeline holds it around apply and verify. `None`: the target cannot be locked.
    fn lock(&self) -> Option<&dyn DeployLock> {
        None
    }

    /// What deploying `image` would do. `image` is `None` when the image is not built yet
    /// (a dry run before build); the plan then says the image will change.
    async fn plan(&self, image: Option<&PushedImage>) -> Result<Plan, StageError>;

    /// Deploys `image`. Reads the current state again and makes only the changes that
    /// differ: a plan shown earlier is a preview, and the state may have moved since, so
    /// apply never carries out a stale plan (nor one made for another image). The outcome
    /// holds the plan as carried out.
    async fn apply(
        &self,
        image: &PushedImage,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError>;

    /// Checks the deployed endpoints. The default says there is nothing to check.
    async fn verify(
        &self,
        outcome: &ApplyOutcome,
        _cancel: &Cancellation,
    ) -> Result<Vec<Verification>, StageError> {
        let _ = outcome;
        Ok(vec![Verification::NotVerifiable {
            reason: format!("target {} exposes no endpoint to check", self.name()),
        }])
    }

    /// What is deployed now.
    async fn status(&self) -> Result<TargetStatus, StageError>;

    /// Reads logs into `sink`; with `follow`, until `cancel` fires.
    async fn logs(
        &self,
        query: &LogQuery,
        sink: &dyn LogSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError>;

    /// What `destroy` would delete (only resources deployctl created).
    async fn destroy_plan(&self) -> Result<Plan, StageError>;

    /// Deletes what `destroy_plan` lists. Running it again succeeds and deletes nothing.
    async fn destroy(
        &self,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<Plan, StageError>;

    /// The recorded versions, oldest first (what `rollback --to` accepts). The default: none.
    async fn history(&self) -> Result<Vec<Revision>, StageError> {
        Ok(Vec::new())
    }

    /// Keeps `record` (one finished deploy of this app) in the target's own history, with
    /// the last records before it. The pipeline calls it while holding the deploy lock,
    /// after apply, as a write of its own: it is not part of `apply`, whose unchanged
    /// redeploy still makes no mutating call. The default: this target records no deploys
    /// (an error saying so, which the pipeline reports as a warning).
    async fn record_deploy(&self, record: &DeployRecord) -> Result<(), StageError> {
        let _ = record;
        Err(StageError::new(
            crate::ErrorKind::Failed,
            format!("target {} does not record deploys", self.name()),
        ))
    }

    /// The deploys recorded by [`Target::record_deploy`], oldest first. `None`: this target
    /// does not record deploys (the default) — not the same as none recorded yet.
    async fn deploy_records(&self) -> Result<Option<Vec<DeployRecord>>, StageError> {
        Ok(None)
    }

    /// Moves back to the previous version, or to `to`.
    async fn rollback(
        &self,
        to: Option<&str>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<RollbackOutcome, StageError>;

    /// Runs a hook's `task` in the target from `image` (a Kubernetes Job, a Lambda invoke
    /// of the version about to go live), passing its output lines to `output`; fails with
    /// its exit status and last lines. The default: this target runs no tasks.
    async fn run_task(
        &self,
        phase: HookPhase,
        task: &TargetTask,
        image: &PushedImage,
        output: &dyn HookOutput,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let _ = (task, image, output, cancel);
        Err(StageError::new(
            crate::ErrorKind::InvalidInput,
            format!(
                "target {} cannot run a `task` hook step ({phase})",
                self.name()
            ),
        )
        .with_hint("use a local step (`run:` or `command:`) for this target"))
    }

    /// How this target runs a hook's `task` (what its plan says of a task step). The
    /// default: it runs none.
    fn task_runner(&self) -> Option<crate::hooks::TaskRunner> {
        None
    }

    /// Whether a failed `post_deploy` hook rolls this target back to the version live
    /// before the deploy (Kubernetes: yes). The default: no.
    fn rolls_back_on_failed_hook(&self) -> bool {
        false
    }
}
