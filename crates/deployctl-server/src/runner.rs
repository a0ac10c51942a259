//! The work itself, as a trait the embedding program implements: the `deployctl` binary
//! runs the same code paths as `deployctl deploy`, `scale`, `rollback`, `destroy`,
//! `status` and `logs` (core's `Pipeline` with its adapters). The server adds no deploy
//! logic of its own.

use async_trait::async_trait;
use deployctl_core::Cancellation;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::jobs::JobEvents;

/// What a client asked to deploy (the JSON body of `POST …/deployments`, with `?target=`
/// and `?env=`). Kept with the deployment as its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeployRequest {
    /// The app's `deploy.yaml`, as text. Secrets in it are references (`${VAR}`,
    /// `secretsmanager:`…) resolved where the job runs, never values sent over the API.
    pub config: String,
    /// An image already pushed, `repository@sha256:…`: deployed without a build. Without
    /// it the runner builds from the job's directory (the upload's, see [`Job::dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `lambda`, `k8s`, `local` or `all` (as `deployctl deploy [target]`); none: every
    /// enabled target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The `--env` overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Set by the server when the body was a `.tar.gz` of the app directory (a JSON body
    /// may not name it): where its config was and what it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Upload>,
}

/// An uploaded app directory, unpacked by the server under its uploads directory until the
/// job ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Upload {
    /// The config's path in the archive (`deploy.yaml` or `<dir>/deploy.yaml`).
    pub config: String,
    /// Entries unpacked.
    pub files: u64,
    /// Bytes of file content unpacked.
    pub bytes: u64,
}

/// What a queued job does to its app. Stored as the deployment's `kind` and `params`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `deployctl deploy [target] [--image …]` of the request's config.
    Deploy,
    /// The same as [`Operation::Deploy`], of the app's current config with changed plain
    /// env and its current image (`POST …/redeploy`).
    Redeploy,
    /// `deployctl scale k8s <replicas>`.
    Scale {
        /// The Deployment's replicas.
        replicas: u32,
    },
    /// `deployctl rollback <target> [--to N]` for each target, in order.
    Rollback {
        /// The targets (`lambda`, `k8s`).
        targets: Vec<String>,
        /// The version to go back to; none: the one before the live one.
        to: Option<u64>,
    },
    /// `deployctl destroy`: every enabled target.
    Destroy,
}

impl Operation {
    /// The kind's name: `deploy`, `redeploy`, `scale`, `rollback`, `destroy`.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Deploy => "deploy",
            Operation::Redeploy => "redeploy",
            Operation::Scale { .. } => "scale",
            Operation::Rollback { .. } => "rollback",
            Operation::Destroy => "destroy",
        }
    }

    /// Its parameters as stored (`{}` for those without).
    pub fn params(&self) -> Value {
        match self {
            Operation::Scale { replicas } => serde_json::json!({ "replicas": replicas }),
            Operation::Rollback { targets, to } => {
                serde_json::json!({ "targets": targets, "to": to })
            }
            _ => serde_json::json!({}),
        }
    }

    /// Back from a stored kind and params.
    pub fn parse(kind: &str, params: &Value) -> Option<Self> {
        Some(match kind {
            "deploy" => Operation::Deploy,
            "redeploy" => Operation::Redeploy,
            "scale" => Operation::Scale {
                replicas: u32::try_from(params.get("replicas")?.as_u64()?).ok()?,
            },
            "rollback" => Operation::Rollback {
                targets: serde_json::from_value(params.get("targets")?.clone()).ok()?,
                to: params.get("to").and_then(Value::as_u64),
            },
            "destroy" => Operation::Destroy,
            _ => return None,
        })
    }

    /// Whether success makes the job's config the app's current config.
    pub fn sets_current(&self) -> bool {
        matches!(self, Operation::Deploy | Operation::Redeploy)
    }
}

/// One job for a [`Runner`]: a deployment, or another operation on an app.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// The deployment's id.
    pub id: String,
    /// Its project.
    pub project: String,
    /// Its app.
    pub app: String,
    /// What to do.
    pub operation: Operation,
    /// The config (and image, target, `--env` overlay) to do it with: the request's for a
    /// deploy, the app's current one for the others.
    pub request: DeployRequest,
    /// For an upload: the unpacked app directory, holding its `deploy.yaml` — build and
    /// deploy from there. The server removes it when the job has ended.
    pub dir: Option<std::path::PathBuf>,
}

/// An app's current config, for the reads ([`Runner::status`], [`Runner::logs`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppConfig {
    /// The project.
    pub project: String,
    /// The app.
    pub app: String,
    /// The config of its last successful deploy (with its image, target and overlay).
    pub request: DeployRequest,
}

/// What `GET …/logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogsQuery {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only lines newer than this many seconds (`deployctl logs --since`).
    pub since_seconds: Option<u64>,
}

/// One log line of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LogLine {
    /// `lambda`, `k8s` or `local`.
    pub target: String,
    /// The line.
    pub line: String,
    /// Where on the target it came from (a pod, a log stream, a container).
    pub source: String,
    /// When it was written, ms since the Unix epoch, when the target says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
}

impl LogLine {
    /// A line of `target` from `source`.
    pub fn new(target: &str, source: &str, line: &str, at_ms: Option<i64>) -> Self {
        Self {
            target: target.to_owned(),
            line: line.to_owned(),
            source: source.to_owned(),
            at_ms,
        }
    }
}

/// Where a [`Runner`] sends log lines. Closed when the client went away: stop then.
#[derive(Debug, Clone)]
pub struct LogLines(pub(crate) mpsc::Sender<LogItem>);

/// What a logs stream carries.
#[derive(Debug)]
pub(crate) enum LogItem {
    Line(LogLine),
    /// A target's read failed.
    Failed {
        target: String,
        message: String,
    },
}

impl LogLines {
    /// Sends a line, waiting while the client is slow; false once it went away. Not from
    /// an async task (use [`LogLines::send`]).
    pub fn send_blocking(&self, line: LogLine) -> bool {
        self.0.blocking_send(LogItem::Line(line)).is_ok()
    }

    /// Sends a line; false once the client went away.
    pub async fn send(&self, line: LogLine) -> bool {
        self.0.send(LogItem::Line(line)).await.is_ok()
    }

    /// Completes when the client went away.
    pub async fn closed(&self) {
        self.0.closed().await;
    }

    /// Whether the client went away.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A read that failed: the message (free of secrets) and whether the request was at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadError {
    /// What went wrong, with the hint.
    pub message: String,
    /// The request cannot work as asked (exit 2 of the CLI): 422 rather than 502.
    pub invalid: bool,
}

impl ReadError {
    /// A read that failed on the target's side.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            invalid: false,
        }
    }

    /// A read the request made impossible.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            invalid: true,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Outcome {
    /// Every target deployed.
    pub ok: bool,
    /// It stopped because it was cancelled.
    pub cancelled: bool,
    /// The result object, as `deployctl deploy --output json` ends with (targets,
    /// endpoints, versions, durations).
    pub result: serde_json::Value,
    /// The error and its hint, when not ok (already free of secrets).
    pub error: Option<String>,
}

impl Outcome {
    /// Done, every target deployed.
    pub fn succeeded(result: serde_json::Value) -> Self {
        Self {
            ok: true,
            cancelled: false,
            result,
            error: None,
        }
    }

    /// Ended with `error`.
    pub fn failed(result: serde_json::Value, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            cancelled: false,
            result,
            error: Some(error.into()),
        }
    }

    /// Stopped by its [`Cancellation`].
    pub fn cancelled(result: serde_json::Value) -> Self {
        Self {
            ok: false,
            cancelled: true,
            result,
            error: Some("cancelled".into()),
        }
    }
}

/// Runs the app operations. A job's events go to `events` (the server stores and streams
/// them); it stops between remote calls once `cancel` is cancelled.
#[async_trait]
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// Does `job` ([`Job::operation`]).
    async fn run(&self, job: Job, events: JobEvents, cancel: Cancellation) -> Outcome;

    /// Every enabled target's status: the result object of `deployctl --output json
    /// status` (`{"targets": […], "gateway": …}`).
    async fn status(&self, app: &AppConfig) -> Result<Value, ReadError> {
        let _ = app;
        Err(ReadError::failed(
            "this server's runner does not read status",
        ))
    }

    /// `target`'s log lines to `lines` (with `follow`: until `lines` is closed).
    async fn logs(
        &self,
        app: &AppConfig,
        target: &str,
        query: &LogsQuery,
        lines: LogLines,
    ) -> Result<(), ReadError> {
        let _ = (app, target, query, lines);
        Err(ReadError::failed("this server's runner does not read logs"))
    }
}
