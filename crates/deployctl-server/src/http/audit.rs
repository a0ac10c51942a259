//! `GET /api/v1/audit?project=&since=&limit=` (the project's admin) and `GET /metrics`
//! (Prometheus text; any valid token — no series names a project or an app).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Params};
use crate::jobs::AppState;
use crate::store::Role;

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    project: Option<String>,
    since: Option<i64>,
    limit: Option<i64>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Params(q): Params<AuditQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = super::auth::authenticate(&state, &headers).await?;
    // Without ?project=, the token's own project.
    let project = q.project.unwrap_or_else(|| token.project.clone());
    super::auth::permit(&token, &project, Role::Admin)?;
    let since = q.since.unwrap_or(0);
    // 1 to 1000: the document's bounds, checked before the handler runs.
    let limit = q.limit.unwrap_or(1000);
    let rows = state
        .inner
        .store
        .audit_of(&project, since, limit)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(json!({ "project": project, "rows": rows })))
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::auth::authenticate(&state, &headers).await?;
    let (queued, running) = state
        .inner
        .store
        .queue_counts()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let text = state.inner.metrics.render(queued, running, state.active());
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
