//! The store behind the API: what is kept, as a trait ([`Store`]) and its records. The one
//! implementation ([`crate::SqlStore`]) speaks SQLite and PostgreSQL.

use async_trait::async_trait;
use serde::Serialize;

use crate::Error;

/// What a token may do within its project. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Read deployments, events and status.
    Read,
    /// Read, and start or cancel deployments.
    Deploy,
    /// Everything within the project.
    Admin,
}

impl Role {
    /// The name used on the command line, in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }

    /// Parses `read`, `deploy` or `admin`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Role::Read),
            "deploy" => Some(Role::Deploy),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A token as stored: never the secret itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TokenRecord {
    /// Public id (`tok_…`), shown in lists and audit rows.
    pub id: String,
    /// The project it is scoped to.
    pub project: String,
    /// What it may do there.
    pub role: Role,
    /// Creation, ms since the Unix epoch.
    pub created_ms: i64,
    /// Expiry, ms since the Unix epoch.
    pub expires_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// Where a deployment is. Set to `queued` when it is accepted (so the queue cap counts it at
/// once), `running` when a worker claims it, then one of the final ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Waiting for its app's earlier deployments or a free worker.
    Queued,
    /// A worker runs it.
    Running,
    /// It finished and every target deployed.
    Succeeded,
    /// It finished with an error.
    Failed,
    /// It was cancelled (`DELETE /deployments/{id}`).
    Cancelled,
    /// The server running it stopped before it finished; a re-run converges.
    Interrupted,
}

impl Status {
    /// The name in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::Cancelled,
            Status::Interrupted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether it will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// A deployment to add to the queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewDeployment {
    /// Its id (`dep_…`).
    pub id: String,
    /// Project and app.
    pub project: String,
    /// The app.
    pub app: String,
    /// The request as JSON (secrets are not part of it: deploy.yaml names them).
    pub request: serde_json::Value,
    /// The token that asked for it.
    pub requested_by: String,
    /// Now, ms since the Unix epoch.
    pub created_ms: i64,
    /// `deploy`, `redeploy`, `scale`, `rollback` or `destroy` ([`crate::Operation::kind`]).
    pub kind: String,
    /// The operation's parameters ([`crate::Operation::params`]).
    pub params: serde_json::Value,
}

impl NewDeployment {
    /// A deployment of `project`/`app` asked for by the token `requested_by`.
    pub fn new(
        id: String,
        project: &str,
        app: &str,
        request: serde_json::Value,
        requested_by: &str,
        created_ms: i64,
    ) -> Self {
        Self {
            id,
            project: project.to_owned(),
            app: app.to_owned(),
            request,
            requested_by: requested_by.to_owned(),
            created_ms,
            kind: "deploy".to_owned(),
            params: serde_json::json!({}),
        }
    }

    /// The same, doing `op` rather than a deploy.
    #[must_use]
    pub fn with_operation(mut self, op: &crate::Operation) -> Self {
        self.kind = op.kind().to_owned();
        self.params = op.params();
        self
    }
}

/// An app as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AppRecord {
    /// The project.
    pub project: String,
    /// The app.
    pub name: String,
    /// First seen, ms since the Unix epoch.
    pub created_ms: i64,
    /// Its current config: the request (config, image, target, overlay) of its last
    /// successful deploy or redeploy; none before one.
    pub current: Option<serde_json::Value>,
    /// The deployment that set it.
    pub current_deployment: Option<String>,
    /// When it was set.
    pub current_ms: Option<i64>,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeploymentRecord {
    /// Its id.
    pub id: String,
    /// Queue position: lower was accepted earlier.
    #[serde(skip)]
    pub seq: i64,
    /// The project.
    pub project: String,
    /// The app.
    pub app: String,
    /// `deploy`, `redeploy`, `scale`, `rollback` or `destroy`.
    pub kind: String,
    /// The operation's parameters (`{"replicas": 3}`, `{"targets": ["k8s"], "to": 2}`).
    pub params: serde_json::Value,
    /// Where it is.
    pub status: Status,
    /// The request as accepted.
    pub request: serde_json::Value,
    /// The token id that asked for it.
    pub requested_by: String,
    /// Per stage (`build`, `push`, `apply lambda` …): the last state seen.
    pub stages: serde_json::Value,
    /// The runner's result object (targets, endpoints, versions), once finished.
    pub result: Option<serde_json::Value>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The server process that claimed it.
    pub claimed_by: Option<String>,
    /// Accepted, ms since the Unix epoch.
    pub created_ms: i64,
    /// Claimed by a worker.
    pub started_ms: Option<i64>,
    /// Finished.
    pub finished_ms: Option<i64>,
}

/// One event of a deployment, as `--output json` prints it, with its place in the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoredEvent {
    /// 1, 2, 3 … within the deployment: the SSE event id (`Last-Event-ID`).
    pub seq: i64,
    /// The event JSON.
    pub body: serde_json::Value,
}

/// One audit row: who did what to which project/app, with what result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditRow {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The request's id (`X-Request-Id` of the response).
    pub request_id: String,
    /// The token's id, when one was given and known.
    pub token_id: Option<String>,
    /// `deployment.create`, `deployment.cancel`, `token.create` …
    pub action: String,
    /// The project named by the request.
    pub project: Option<String>,
    /// The app named by the request.
    pub app: Option<String>,
    /// The deployment concerned.
    pub deployment_id: Option<String>,
    /// The HTTP status answered.
    pub status: i64,
    /// One line on the result.
    pub result: String,
}

impl AuditRow {
    /// A row for a command run on the server's machine (`deployctl serve token …`): request
    /// id `cli`, HTTP status 0.
    pub fn cli(action: &str, project: Option<&str>, token_id: &str, at_ms: i64) -> Self {
        Self {
            at_ms,
            request_id: "cli".into(),
            token_id: Some(token_id.to_owned()),
            action: action.to_owned(),
            project: project.map(str::to_owned),
            app: None,
            deployment_id: None,
            status: 0,
            result: "ok".into(),
        }
    }
}

/// How [`Store::enqueue`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// Accepted as `queued`.
    Accepted,
    /// The project already has `cap` deployments queued or running.
    Full,
}

/// Where deployctl serve keeps everything. Every method is one atomic step on the database,
/// so several server processes may share one (PostgreSQL).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Adds a token (its hash only).
    async fn add_token(&self, token: &TokenRecord, hash: &str) -> Result<(), Error>;
    /// The token whose secret hashes to `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, Error>;
    /// Every token, newest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, Error>;
    /// Revokes a token; false when there is no such token.
    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, Error>;

    /// Records the project and app (once) and queues the deployment, unless the project
    /// already has `cap` deployments queued or running: the count and the insert are one step.
    async fn enqueue(&self, d: &NewDeployment, cap: u32) -> Result<Enqueued, Error>;
    /// One deployment.
    async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error>;
    /// Claims the oldest queued deployment whose app has none running, for `server`; a
    /// deployment is claimed by exactly one caller.
    async fn claim(&self, server: &str, now_ms: i64) -> Result<Option<DeploymentRecord>, Error>;
    /// Renews the claims of `server` (its running deployments are alive).
    async fn heartbeat(&self, server: &str, now_ms: i64) -> Result<(), Error>;
    /// Marks `running` deployments whose last heartbeat is before `stale_before_ms` as
    /// `interrupted`; returns their ids.
    async fn interrupt_stale(
        &self,
        stale_before_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, Error>;
    /// Cancels a queued deployment at once (true), or leaves a running one to its worker.
    async fn cancel_queued(&self, id: &str, now_ms: i64) -> Result<bool, Error>;
    /// Records the stages' last states.
    async fn set_stages(&self, id: &str, stages: &serde_json::Value) -> Result<(), Error>;
    /// Records the end of a running deployment.
    async fn finish(
        &self,
        id: &str,
        status: Status,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Error>;
    /// Queued and running deployments of `project`.
    async fn active_count(&self, project: &str) -> Result<i64, Error>;

    /// Appends an event; `seq` is the next number of the deployment's stream.
    async fn add_event(
        &self,
        deployment: &str,
        seq: i64,
        body: &serde_json::Value,
    ) -> Result<(), Error>;
    /// The deployment's events after `after` (0: all), in order.
    async fn events(&self, deployment: &str, after: i64) -> Result<Vec<StoredEvent>, Error>;

    /// The app, if a deployment of it was ever accepted.
    async fn app(&self, project: &str, app: &str) -> Result<Option<AppRecord>, Error>;
    /// Makes `current` the app's current config (a deploy or redeploy `deployment` succeeded).
    async fn set_current(
        &self,
        project: &str,
        app: &str,
        current: &serde_json::Value,
        deployment: &str,
        now_ms: i64,
    ) -> Result<(), Error>;
    /// The app's deployments, newest first, at most `limit`.
    async fn deployments_of(
        &self,
        project: &str,
        app: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>, Error>;
    /// Deployments queued and running, over every project (the metrics' queue depth).
    async fn queue_counts(&self) -> Result<(i64, i64), Error>;

    /// Writes an audit row.
    async fn audit(&self, row: &AuditRow) -> Result<(), Error>;
    /// Audit rows, oldest first.
    async fn audit_rows(&self) -> Result<Vec<AuditRow>, Error>;
    /// The project's audit rows at or after `since_ms`, oldest first, at most `limit`.
    async fn audit_of(
        &self,
        project: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, Error>;
}

/// The app's current config (the request of its last successful deploy or redeploy); none
/// before one.
pub(crate) async fn current_request(
    store: &dyn Store,
    project: &str,
    app: &str,
) -> Result<Option<crate::runner::DeployRequest>, Error> {
    let Some(current) = store.app(project, app).await?.and_then(|r| r.current) else {
        return Ok(None);
    };
    serde_json::from_value(current)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            what: format!("the current config of {project}/{app}: {e}"),
        })
}
