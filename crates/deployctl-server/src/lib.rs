//! # deployctl-server — `deployctl serve` as a library
//!
//! The HTTP API (axum on tokio) that runs deployments for other programs: tokens scoped to a
//! project with a role, a queue per app with bounded workers, every event of every
//! deployment stored and streamed as Server-Sent Events, an audit row for every mutating
//! request. [`router`] gives the routes so another program can mount them in its own server;
//! `deployctl serve` is one such program. [`client::Client`] is the other side: the API's
//! Rust client, which `deployctl --server URL …` uses.
//!
//! ```text
//! POST   /api/v1/projects/{p}/apps/{a}/deployments   JSON or .tar.gz (unpacked), validate (422), queue (202, 429)
//! GET    /api/v1/deployments/{id}                    status per stage, result
//! DELETE /api/v1/deployments/{id}                    cancel
//! GET    /api/v1/deployments/{id}/events             SSE, replay + live, Last-Event-ID
//! GET    /api/v1/deployments/{id}/events/ws          the same over WebSocket
//! GET    /api/v1/projects/{p}/apps/{a}               status of every target
//! GET    /api/v1/projects/{p}/apps/{a}/history       the app's deployments
//! GET    /api/v1/projects/{p}/apps/{a}/logs[/ws]     log lines (SSE, WebSocket)
//! PUT    /api/v1/projects/{p}/apps/{a}/scale         queued like a deployment (202)
//! POST   /api/v1/projects/{p}/apps/{a}/redeploy      new plain env, current image (202)
//! POST   /api/v1/projects/{p}/apps/{a}/rollback      (202)
//! DELETE /api/v1/projects/{p}/apps/{a}               destroy on every target (202)
//! GET    /api/v1/audit · /metrics · /api/v1/openapi.json · /healthz
//! ```
//!
//! ## Boundary
//!
//! It depends on `deployctl-core` (events, cancellation) and `deployctl-config` (the same
//! validation and diagnostics as `deployctl validate`), never on an adapter crate: the
//! work is one [`Runner`] the embedding program passes in — jobs ([`Operation`]: deploy,
//! redeploy, scale, rollback, destroy), status and logs; the `deployctl` binary's runs the
//! same code paths as the CLI commands. The store is a [`Store`] trait; [`SqlStore`]
//! implements it on SQLite (a file in the data dir, WAL) and PostgreSQL (several servers
//! share one database; a job is claimed by exactly one).

pub mod client;
mod error;
mod events;
mod http;
mod jobs;
mod metrics;
mod names;
mod runner;
mod sql;
mod status_cache;
mod store;
pub mod tokens;
pub mod unpack;
#[cfg(test)]
mod unpack_tests;
mod upload_dirs;

use std::time::Duration;

pub use error::Error;
pub use http::{OPENAPI, router};
pub use jobs::{AppState, JobEvents};
pub use runner::{
    AppConfig, DeployRequest, Job, LogLine, LogLines, LogsQuery, Operation, Outcome, ReadError,
    Runner, Upload,
};
pub use sql::{SQLITE_FILE, SqlStore, redact_url};
pub use store::{
    AppRecord, AuditRow, DeploymentRecord, Enqueued, NewDeployment, Role, Status, Store,
    StoredEvent, TokenRecord,
};

/// How the server runs its jobs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Deployments run at once in this process (`--workers`).
    pub workers: usize,
    /// Deployments a project may have queued or running; one more is answered 429.
    pub project_queue_cap: u32,
    /// The `Retry-After` of a 429.
    pub retry_after: Duration,
    /// A running deployment whose server has not renewed its claim for this long is
    /// `interrupted` (shared databases only).
    pub lease: Duration,
    /// How often an idle worker looks for work it was not told about.
    pub poll: Duration,
    /// The store is shared by several server processes (PostgreSQL).
    pub shared: bool,
    /// A request's deploy.yaml may name build paths outside the job's directory (absolute or
    /// with `..`), that is on the server: for trusted clients only.
    pub trust_config_paths: bool,
    /// Where `.tar.gz` uploads are unpacked, `<dir>/<deployment id>/`, and kept until their
    /// job ends (so a queued upload survives a restart). None: uploads are answered 415.
    pub uploads_dir: Option<std::path::PathBuf>,
    /// Bounds on one upload.
    pub upload_limits: unpack::UploadLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            project_queue_cap: 20,
            retry_after: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            shared: false,
            trust_config_paths: false,
            uploads_dir: None,
            upload_limits: unpack::UploadLimits::default(),
        }
    }
}

impl ServerConfig {
    /// The defaults with `workers` workers, for a store that is `shared` or not.
    pub fn new(workers: usize, shared: bool) -> Self {
        Self {
            workers,
            shared,
            ..Self::default()
        }
    }

    /// With a per-project queue cap.
    #[must_use]
    pub fn with_queue_cap(mut self, cap: u32) -> Self {
        self.project_queue_cap = cap;
        self
    }

    /// Whether requests may name build paths on the server (see the field).
    #[must_use]
    pub fn with_trusted_config_paths(mut self, trust: bool) -> Self {
        self.trust_config_paths = trust;
        self
    }

    /// Takes `.tar.gz` uploads, unpacked under `dir` within `limits`.
    #[must_use]
    pub fn with_uploads(mut self, dir: std::path::PathBuf, limits: unpack::UploadLimits) -> Self {
        self.uploads_dir = Some(dir);
        self.upload_limits = limits;
        self
    }

    /// With a claim lease (shared stores).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source })
}
