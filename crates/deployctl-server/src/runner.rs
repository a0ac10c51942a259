//! The deploy itself, as a trait the embedding program implements: the `deployctl` binary
//! runs the same code path as `deployctl deploy` (core's `Pipeline` with its adapters). The
//! server adds no deploy logic of its own.

use async_trait::async_trait;
use deployctl_core::Cancellation;
use serde::{Deserialize, Serialize};

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
    /// it the runner builds from the job's directory (the upload, not done yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `lambda`, `k8s`, `local` or `all` (as `deployctl deploy [target]`); none: every
    /// enabled target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The `--env` overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// One deployment for a [`Runner`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// The deployment's id.
    pub id: String,
    /// Its project.
    pub project: String,
    /// Its app.
    pub app: String,
    /// What to deploy.
    pub request: DeployRequest,
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

/// Runs deployments. Events go to `events` (the server stores and streams them); the job
/// stops between remote calls once `cancel` is cancelled.
#[async_trait]
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// Deploys `job`.
    async fn deploy(&self, job: Job, events: JobEvents, cancel: Cancellation) -> Outcome;
}
