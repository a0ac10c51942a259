//! Queueing a job, whatever it does: the id, the per-project cap (429 with `Retry-After`),
//! and the 202 answer with the job's URLs. Deployments and the mutating app operations
//! share it, so they share one queue per app.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, Audited};
use crate::jobs::AppState;
use crate::runner::{DeployRequest, Operation};
use crate::store::{Enqueued, NewDeployment, Status};
use crate::tokens::{now_ms, random_hex};

/// Queues `op` of `project`/`app` with `request`, asked for by `token`; 202 with its id and
/// URLs, or 429 when the project's queue is full.
pub(crate) async fn enqueue(
    state: &AppState,
    audit: &mut Audited,
    token: &str,
    project: &str,
    app: &str,
    request: &DeployRequest,
    op: &Operation,
) -> Result<Response, ApiError> {
    let id = new_id()?;
    enqueue_as(state, audit, id, token, project, app, request, op).await
}

/// A fresh job id (`dep_…`).
pub(crate) fn new_id() -> Result<String, ApiError> {
    Ok(format!(
        "dep_{}",
        random_hex(10).map_err(|e| ApiError::internal(&e))?
    ))
}

/// [`enqueue`] with an id chosen before (an upload is unpacked under it first).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enqueue_as(
    state: &AppState,
    audit: &mut Audited,
    id: String,
    token: &str,
    project: &str,
    app: &str,
    request: &DeployRequest,
    op: &Operation,
) -> Result<Response, ApiError> {
    audit.row.deployment_id = Some(id.clone());
    let request_json = serde_json::to_value(request).unwrap_or(Value::Null);
    let new = NewDeployment::new(id.clone(), project, app, request_json, token, now_ms())
        .with_operation(op);
    let cap = state.inner.config.project_queue_cap;
    match state.inner.store.enqueue(&new, cap).await {
        Ok(Enqueued::Accepted) => {}
        Ok(_) => {
            audit.row.deployment_id = None;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("the project already has {cap} deployments queued or running"),
            )
            .hint("try again after Retry-After seconds")
            .header(
                header::RETRY_AFTER,
                &state.inner.config.retry_after.as_secs().max(1).to_string(),
            ));
        }
        Err(e) => return Err(ApiError::internal(&e)),
    }
    state.inner.work.notify_one();
    let urls = urls(&id);
    let location = urls["self"].as_str().unwrap_or_default().to_owned();
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(json!({ "id": id, "kind": op.kind(), "status": Status::Queued, "urls": urls })),
    )
        .into_response())
}

/// A job's URLs.
pub(crate) fn urls(id: &str) -> Value {
    json!({
        "self": format!("/api/v1/deployments/{id}"),
        "events": format!("/api/v1/deployments/{id}/events"),
        "events_ws": format!("/api/v1/deployments/{id}/events/ws"),
    })
}
