//! `POST …/deployments` (validate, then queue), `GET /deployments/{id}`,
//! `DELETE /deployments/{id}` (cancel).

use std::path::Path;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deployctl_config::{ConfigError, LoadOptions, ProcessEnv};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Audited, authorize};
use crate::jobs::AppState;
use crate::names;
use crate::runner::DeployRequest;
use crate::store::{DeploymentRecord, Role, Status, TokenRecord};
use crate::tokens::now_ms;

/// The name diagnostics give the uploaded config.
pub(crate) const CONFIG_NAME: &str = "deploy.yaml";

#[derive(Debug, Deserialize)]
pub(crate) struct DeployQuery {
    target: Option<String>,
    env: Option<String>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    Query(q): Query<DeployQuery>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let mut audit = Audited::begin("deployment.create", Some(&project), Some(&app));
    let resp = match body {
        Ok(body) => create_inner(&state, &mut audit, &project, &app, q, &headers, body).await,
        Err(e) => Err(ApiError::new(e.status(), e.body_text()).hint(format!(
            "a body may have at most {} bytes",
            state.inner.config.upload_limits.compressed_bytes
        ))),
    };
    audit.end(&state, resp).await
}

async fn create_inner(
    state: &AppState,
    audit: &mut Audited,
    project: &str,
    app: &str,
    q: DeployQuery,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = authorize(state, headers, project, Role::Deploy).await?;
    audit.row.token_id = Some(token.id.clone());
    names::check("app", app).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if super::upload::is_upload(content_type) {
        let id = super::queue::new_id()?;
        let request = super::upload::receive(state, &id, app, q.target, q.env, body).await?;
        let queued = super::queue::enqueue_as(
            state,
            audit,
            id.clone(),
            &token.id,
            project,
            app,
            &request,
            &crate::runner::Operation::Deploy,
        )
        .await;
        if queued.is_err() {
            crate::upload_dirs::discard(state, &id);
        }
        return queued;
    }
    let json_body = content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim() == "application/json");
    if !json_body {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/gzip (a .tar.gz of the app directory) or application/json",
        )
        .hint(r#"send the app directory with its deploy.yaml as application/gzip, or {"config": "<deploy.yaml text>", "image": "repository@sha256:…"} as application/json"#));
    }
    let mut request: DeployRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a deployment request: {e}"),
        )
        .hint(r#"send {"config": "<deploy.yaml text>", "image": "repository@sha256:…"}"#)
    })?;
    if request.upload.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`upload` is set by the server, not in a JSON request",
        )
        .hint("send the app directory as application/gzip instead"));
    }
    if q.target.is_some() {
        request.target = q.target;
    }
    if q.env.is_some() {
        request.env = q.env;
    }
    validate(&request, app, state.inner.config.trust_config_paths)?;
    super::queue::enqueue(
        state,
        audit,
        &token.id,
        project,
        app,
        &request,
        &crate::runner::Operation::Deploy,
    )
    .await
}

/// The same checks as `deployctl validate`, answered as 422 with its diagnostics.
pub(crate) fn validate(
    request: &DeployRequest,
    app: &str,
    trust_paths: bool,
) -> Result<(), ApiError> {
    validate_named(request, app, trust_paths, CONFIG_NAME)
}

/// [`validate`], the config named `name` in diagnostics (an upload's path in its archive).
pub(crate) fn validate_named(
    request: &DeployRequest,
    app: &str,
    trust_paths: bool,
    name: &str,
) -> Result<(), ApiError> {
    let opts = LoadOptions::new(&ProcessEnv)
        .with_deferred_secrets()
        .with_environment(request.env.as_deref());
    let config = deployctl_config::load_str(&request.config, Path::new(name), &opts)
        .map_err(|e| invalid_config_named(&e, name))?;
    if config.app.name != app {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name} is for the app `{}`, not `{app}`", config.app.name),
        )
        .hint("post it to …/apps/<app.name>/deployments"));
    }
    // A job builds in its own directory: a path out of it would read the server's files.
    let escapes = |p: &Path| {
        p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
    };
    if !trust_paths && (escapes(&config.build.context) || escapes(&config.build.dockerfile)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{name}: build.context and build.dockerfile must stay inside the job's directory (got {} and {})",
                config.build.context.display(),
                config.build.dockerfile.display()
            ),
        )
        .hint("use relative paths without `..`; the server reads its own paths only when started with --trust-config-paths"));
    }
    Ok(())
}

pub(crate) fn invalid_config(err: &ConfigError) -> ApiError {
    invalid_config_named(err, CONFIG_NAME)
}

fn invalid_config_named(err: &ConfigError, name: &str) -> ApiError {
    match err {
        ConfigError::Invalid { diagnostics, .. } => {
            let n = diagnostics.len();
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{name} is invalid ({n} problem{})",
                    if n == 1 { "" } else { "s" }
                ),
            )
            .hint("fix the fields listed, then run `deployctl validate` again");
            e.diagnostics = Some(Box::new(json!({
                "items": diagnostics,
                "text": lines,
            })));
            e
        }
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot load {name}: {other}"),
        ),
    }
}

/// The deployment, if it exists and the request's token may act as `need` on its project;
/// otherwise 404 either way (a token of another project learns nothing of it). The token is
/// looked up once.
pub(crate) async fn visible(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    need: Role,
) -> Result<(DeploymentRecord, TokenRecord), ApiError> {
    let token = super::auth::authenticate(state, headers).await?;
    let record = visible_to(state, &token, id, need).await?;
    Ok((record, token))
}

/// [`visible`] for a token looked up already.
pub(crate) async fn visible_to(
    state: &AppState,
    token: &TokenRecord,
    id: &str,
    need: Role,
) -> Result<DeploymentRecord, ApiError> {
    let record = state
        .inner
        .store
        .deployment(id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .filter(|d| d.project == token.project)
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    super::auth::permit(token, &record.project, need)?;
    Ok(record)
}

pub(crate) async fn show(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (record, _) = visible(&state, &headers, &id, Role::Read).await?;
    Ok(Json(view(&record)))
}

/// A deployment as the API shows it.
pub(crate) fn view(d: &DeploymentRecord) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    v["urls"] = super::queue::urls(&d.id);
    v["duration_ms"] = match (d.started_ms, d.finished_ms) {
        (Some(s), Some(f)) => Value::from(f - s),
        _ => Value::Null,
    };
    v
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut audit = Audited::begin("deployment.cancel", None, None);
    audit.row.deployment_id = Some(id.clone());
    let resp = cancel_inner(&state, &mut audit, &id, &headers).await;
    audit.end(&state, resp).await
}

async fn cancel_inner(
    state: &AppState,
    audit: &mut Audited,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let token = super::auth::authenticate(state, headers).await?;
    audit.row.token_id = Some(token.id.clone());
    let record = visible_to(state, &token, id, Role::Deploy).await?;
    audit.row.project = Some(record.project.clone());
    audit.row.app = Some(record.app.clone());
    let store = &state.inner.store;
    let answer = if store
        .cancel_queued(id, now_ms())
        .await
        .map_err(|e| ApiError::internal(&e))?
    {
        let _ = state.inner.appended.send(id.to_owned());
        crate::upload_dirs::discard(state, id);
        "cancelled before it started"
    } else if record.status == Status::Running && state.cancel_running(id) {
        "cancelling: it stops after the current remote call"
    } else if record.status == Status::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the deployment runs on another server process",
        )
        .hint("send the DELETE to the server that claimed it (claimed_by)"));
    } else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the deployment has already ended ({})",
                record.status.as_str()
            ),
        ));
    };
    let now = store
        .deployment(id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "message": answer, "deployment": now.as_ref().map(view) })),
    )
        .into_response())
}
