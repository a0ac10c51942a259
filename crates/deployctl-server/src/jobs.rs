//! The job side: bounded workers claim queued deployments from the store (one active per
//! app, in order), run them through the [`Runner`], store every event in order and record
//! the end. Claims are renewed by a heartbeat; a claim left without one (a server that died)
//! is marked `interrupted`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_core::{Cancellation, Event, EventSink};
use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::events::stage_state;
use crate::metrics::Metrics;
use crate::runner::{AppConfig, DeployRequest, Job, Operation, Runner};
use crate::status_cache::StatusCache;
use crate::store::{DeploymentRecord, Status, Store};
use crate::tokens::{now_ms, random_hex};
use crate::{Error, ServerConfig};

/// What the HTTP side and the workers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runner: Arc<dyn Runner>,
    pub(crate) config: ServerConfig,
    /// This process's id in `claimed_by`.
    pub(crate) server_id: String,
    /// Running here: their cancellations.
    pub(crate) running: Mutex<HashMap<String, Cancellation>>,
    /// Woken on enqueue and on finish: a worker may claim.
    pub(crate) work: Notify,
    /// The id of a deployment that has new events or ended: event streams look again.
    pub(crate) appended: broadcast::Sender<String>,
    /// What `/metrics` counts in this process.
    pub(crate) metrics: Metrics,
    /// The app status route's readings.
    pub(crate) statuses: StatusCache,
}

impl AppState {
    /// Starts the server's jobs on the current tokio runtime: marks deployments left
    /// `running` by a dead server as `interrupted`, then starts `config.workers` workers and
    /// the heartbeat. Serve [`crate::router`] with the returned state.
    pub async fn start(
        store: Arc<dyn Store>,
        runner: Arc<dyn Runner>,
        config: ServerConfig,
    ) -> Result<Self, Error> {
        let now = now_ms();
        // One server per SQLite file: whatever is running there was left by a dead process.
        // With a shared database, only claims whose heartbeat stopped.
        let stale_before = if config.shared {
            now - lease_ms(&config)
        } else {
            now
        };
        let interrupted = store.interrupt_stale(stale_before, now).await?;
        for id in &interrupted {
            tracing::warn!(deployment = %id, "marked interrupted: its server stopped while it ran");
        }
        if let Some(dir) = &config.uploads_dir {
            crate::upload_dirs::sweep(store.as_ref(), dir).await;
        }
        let (appended, _) = broadcast::channel(1024);
        let state = Self {
            inner: Arc::new(Inner {
                store,
                runner,
                server_id: format!("srv_{}", random_hex(6)?),
                config,
                running: Mutex::new(HashMap::new()),
                work: Notify::new(),
                appended,
                metrics: Metrics::default(),
                statuses: StatusCache::default(),
            }),
        };
        for _ in 0..state.inner.config.workers.max(1) {
            tokio::spawn(worker(state.clone()));
        }
        tokio::spawn(heartbeat(state.clone()));
        Ok(state)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// This process's id, as it appears in `claimed_by`.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// Jobs running in this process.
    pub(crate) fn active(&self) -> usize {
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Cancels a deployment running in this process; false when it does not run here.
    pub(crate) fn cancel_running(&self, id: &str) -> bool {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.get(id).map(Cancellation::cancel).is_some()
    }
}

fn lease_ms(config: &ServerConfig) -> i64 {
    i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX)
}

async fn worker(state: AppState) {
    let poll = state.inner.config.poll;
    loop {
        match state
            .inner
            .store
            .claim(&state.inner.server_id, now_ms())
            .await
        {
            Ok(Some(d)) => {
                run(&state, d).await;
                // The app's next deployment may go now.
                state.inner.work.notify_one();
            }
            Ok(None) => {
                let _ = tokio::time::timeout(poll, state.inner.work.notified()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a deployment; trying again");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

async fn heartbeat(state: AppState) {
    let lease = state.inner.config.lease;
    let every = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let now = now_ms();
        if let Err(e) = state
            .inner
            .store
            .heartbeat(&state.inner.server_id, now)
            .await
        {
            tracing::warn!(error = %e, "cannot renew the claims of running deployments");
        }
        if state.inner.config.shared {
            match state
                .inner
                .store
                .interrupt_stale(now - lease_ms(&state.inner.config), now)
                .await
            {
                Ok(ids) => {
                    for id in ids {
                        tracing::warn!(deployment = %id, "marked interrupted: its server stopped renewing its claim");
                        crate::upload_dirs::discard(&state, &id);
                        let _ = state.inner.appended.send(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for stale claims"),
            }
        }
    }
}

/// Where a [`Runner`] sends a job's events: the server numbers, stores and streams them in
/// the order they arrive. An [`EventSink`] for a runner that holds the pipeline's events,
/// and [`JobEvents::json`] for one that has them already as `--output json` objects (a
/// runner that runs `deployctl deploy --output json` as a child process).
#[derive(Debug, Clone)]
pub struct JobEvents(mpsc::UnboundedSender<Msg>);

#[derive(Debug)]
enum Msg {
    Event(Value),
    End,
}

impl JobEvents {
    /// An event object as `deployctl --output json` prints it (`"type": "event"`).
    pub fn json(&self, event: Value) {
        let _ = self.0.send(Msg::Event(event));
    }
}

impl EventSink for JobEvents {
    fn emit(&self, event: Event) {
        let _ = self.0.send(Msg::Event(event.to_json()));
    }
}

async fn run(state: &AppState, d: DeploymentRecord) {
    let inner = &state.inner;
    let id = d.id.clone();
    let request: DeployRequest = match serde_json::from_value(d.request.clone()) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the stored request cannot be read: {e}");
            finish(state, &id, Status::Failed, None, Some(&msg)).await;
            return;
        }
    };
    let Some(operation) = Operation::parse(&d.kind, &d.params) else {
        let msg = format!(
            "the stored operation `{}` {} cannot be read",
            d.kind, d.params
        );
        finish(state, &id, Status::Failed, None, Some(&msg)).await;
        return;
    };
    // An upload's files are on the server that received it.
    let dir = match &request.upload {
        Some(u) => match crate::upload_dirs::app_dir(state, &id, u) {
            Some(dir) if dir.join(crate::unpack::CONFIG_FILE).is_file() => Some(dir),
            _ => {
                let msg = "the upload of this deployment is not on this server process (several \
                           servers need one uploads directory they all see: --data-dir on a shared \
                           filesystem)";
                finish(state, &id, Status::Failed, None, Some(msg)).await;
                return;
            }
        },
        None => None,
    };
    let cancel = Cancellation::new();
    inner
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id.clone(), cancel.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_events(state.clone(), id.clone(), rx));
    let events = JobEvents(tx.clone());
    let job = Job {
        id: id.clone(),
        project: d.project.clone(),
        app: d.app.clone(),
        operation: operation.clone(),
        request: request.clone(),
        dir,
    };
    let outcome = inner.runner.run(job, events, cancel.clone()).await;
    crate::upload_dirs::discard(state, &id);
    let _ = tx.send(Msg::End);
    let targets = writer.await.unwrap_or_default();
    inner
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&id);
    let status = if outcome.cancelled || (cancel.is_cancelled() && !outcome.ok) {
        Status::Cancelled
    } else if outcome.ok {
        Status::Succeeded
    } else {
        Status::Failed
    };
    if status == Status::Succeeded && operation.sets_current() {
        let current =
            serde_json::to_value(current_of(request, &outcome.result)).unwrap_or(Value::Null);
        if let Err(e) = inner
            .store
            .set_current(&d.project, &d.app, &current, &id, now_ms())
            .await
        {
            tracing::error!(deployment = %id, error = %e, "cannot record the app's current config");
        }
    }
    inner
        .metrics
        .job_ended(operation.kind(), &targets, status.as_str());
    fresh_status(state, &d.project, &d.app).await;
    finish(
        state,
        &id,
        status,
        Some(&outcome.result),
        outcome.error.as_deref(),
    )
    .await;
}

/// A job of the app has ended: its status reading is replaced by a fresh one, taken before
/// the end is recorded so a client that sees the end reads the state the job left.
async fn fresh_status(state: &AppState, project: &str, app: &str) {
    let inner = &state.inner;
    match crate::store::current_request(inner.store.as_ref(), project, app).await {
        Ok(Some(request)) => {
            let current = AppConfig {
                project: project.to_owned(),
                app: app.to_owned(),
                request,
            };
            if let Err(e) = inner.statuses.refresh(&inner.runner, &current).await {
                tracing::debug!(project, app, error = %e.message, "cannot read the status after a job");
            }
        }
        Ok(None) => inner.statuses.invalidate(project, app),
        Err(e) => {
            tracing::warn!(project, app, error = %e, "cannot read the app's current config");
            inner.statuses.invalidate(project, app);
        }
    }
}

/// The app's current config after a successful deploy of `request`: the request, with the
/// image it deployed (the request's, else the one the deploy pushed, by digest).
fn current_of(mut request: DeployRequest, result: &Value) -> DeployRequest {
    // The upload is gone with its job; the current config deploys the image it built.
    request.upload = None;
    if request.image.is_none() {
        let image = &result["image"];
        let pinned = match (image["reference"].as_str(), image["digest"].as_str()) {
            (Some(r), _) if r.contains('@') => Some(r.to_owned()),
            (Some(r), Some(d)) => {
                let repo = match r.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => repo,
                    _ => r,
                };
                Some(format!("{repo}@{d}"))
            }
            _ => None,
        };
        request.image = pinned;
    }
    request
}

async fn finish(
    state: &AppState,
    id: &str,
    status: Status,
    result: Option<&Value>,
    error: Option<&str>,
) {
    if let Err(e) = state
        .inner
        .store
        .finish(id, status, result, error, now_ms())
        .await
    {
        tracing::error!(deployment = %id, error = %e, "cannot record the end of a deployment");
    }
    let _ = state.inner.appended.send(id.to_owned());
}

/// Stores each event with the next number of the deployment's stream, keeps the stages'
/// last states, and wakes the deployment's event streams. Returns the targets the events
/// named, in the order first seen.
async fn write_events(
    state: AppState,
    id: String,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) -> Vec<String> {
    let store = &state.inner.store;
    let mut seq = 0i64;
    let mut stages = serde_json::Map::new();
    let mut targets: Vec<String> = Vec::new();
    while let Some(Msg::Event(body)) = rx.recv().await {
        seq += 1;
        state.inner.metrics.event(&body);
        if let Some(t) = body.get("target").and_then(Value::as_str)
            && !targets.iter().any(|k| k == t)
        {
            targets.push(t.to_owned());
        }
        if let Err(e) = store.add_event(&id, seq, &body).await {
            tracing::error!(deployment = %id, error = %e, "cannot store an event");
        }
        if let Some((key, value)) = stage_state(&body) {
            stages.insert(key, value);
            if let Err(e) = store.set_stages(&id, &Value::Object(stages.clone())).await {
                tracing::warn!(deployment = %id, error = %e, "cannot store the stages");
            }
        }
        let _ = state.inner.appended.send(id.clone());
    }
    targets
}
