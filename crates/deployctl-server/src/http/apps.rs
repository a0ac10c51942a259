//! The app endpoints: its status (the runner's `deployctl status`) and history (the stored
//! deployments), and the operations queued in the app's queue like deployments — scale,
//! redeploy with new plain env, rollback, destroy. Each works on the app's current config:
//! the request of its last successful deploy or redeploy.

use std::collections::BTreeMap;
use std::path::Path;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use deployctl_config::{Config, LoadOptions, ProcessEnv};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::deployments::{CONFIG_NAME, invalid_config, view};
use super::{ApiError, Audited, Params, authorize};
use crate::jobs::AppState;
use crate::names;
use crate::runner::{AppConfig, DeployRequest, Operation, ReadError};
use crate::store::Role;

/// The app's current config, or 404 (never deployed) with a hint.
pub(crate) async fn current(
    state: &AppState,
    project: &str,
    app: &str,
) -> Result<AppConfig, ApiError> {
    let request = crate::store::current_request(state.inner.store.as_ref(), project, app)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| {
            ApiError::not_found("app with a successful deploy").hint(format!(
                "deploy it first: POST /api/v1/projects/{project}/apps/{app}/deployments"
            ))
        })?;
    Ok(AppConfig {
        project: project.to_owned(),
        app: app.to_owned(),
        request,
    })
}

/// Loads `request`'s config the way a deploy would (secrets left as references).
pub(crate) fn load(request: &DeployRequest) -> Result<Config, ApiError> {
    let opts = LoadOptions::new(&ProcessEnv)
        .with_deferred_secrets()
        .with_environment(request.env.as_deref());
    deployctl_config::load_str(&request.config, Path::new(CONFIG_NAME), &opts)
        .map_err(|e| invalid_config(&e))
}

fn check_names(project: &str, app: &str) -> Result<(), ApiError> {
    names::check("project", project)
        .and_then(|()| names::check("app", app))
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))
}

/// A runner's read failure as an answer: 422 when the request cannot work, else 502.
pub(crate) fn read_failed(e: ReadError) -> ApiError {
    if e.invalid {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message)
    } else {
        ApiError::new(StatusCode::BAD_GATEWAY, e.message)
            .hint("the target could not be read; see the server's log and try again")
    }
}

/// `GET …/apps/{app}`: every enabled target's status, the result object of `deployctl
/// --output json status` run with the app's current config, from the app's reading (see
/// `status_cache`), with `read_at_ms`: when that reading was taken.
pub(crate) async fn status(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, &project, Role::Read).await?;
    check_names(&project, &app)?;
    let current = current(&state, &project, &app).await?;
    let reading = state
        .inner
        .statuses
        .read(&state.inner.runner, &current)
        .await
        .map_err(read_failed)?;
    let mut status = reading.status;
    if let Some(o) = status.as_object_mut() {
        o.insert("read_at_ms".into(), Value::from(reading.read_at_ms));
    }
    Ok(Json(status))
}

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    limit: Option<i64>,
}

/// `GET …/apps/{app}/history`: the app's deployments as the server stored them (every
/// kind), newest first.
pub(crate) async fn history(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    Params(q): Params<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, &project, Role::Read).await?;
    check_names(&project, &app)?;
    // 1 to 500: the document's bounds, checked before the handler runs.
    let limit = q.limit.unwrap_or(100);
    let store = &state.inner.store;
    let record = store
        .app(&project, &app)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| {
            ApiError::not_found("app").hint(format!(
                "deploy it first: POST /api/v1/projects/{project}/apps/{app}/deployments"
            ))
        })?;
    let all = store
        .deployments_of(&project, &app, limit)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(json!({
        "project": project,
        "app": app,
        "current_deployment": record.current_deployment,
        "deployments": all.iter().map(view).collect::<Vec<_>>(),
    })))
}

/// A JSON body of type `T`: 415 when it is not JSON, 400 when it is not a `T`.
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        )
        .hint(format!("send {shape}")));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not {shape}: {e}"),
        )
        .hint(format!("send {shape}"))
    })
}

/// The parts every mutating app request shares: the audit row, the token (deploy role),
/// the names, the current config; then `make` turns them into the job, which is queued.
async fn operate(
    state: &AppState,
    action: &str,
    project: &str,
    app: &str,
    headers: &HeaderMap,
    make: impl FnOnce(AppConfig) -> Result<(DeployRequest, Operation), ApiError>,
) -> Response {
    let mut audit = Audited::begin(action, Some(project), Some(app));
    let resp = async {
        let token = authorize(state, headers, project, Role::Deploy).await?;
        audit.row.token_id = Some(token.id.clone());
        check_names(project, app)?;
        let current = current(state, project, app).await?;
        let (request, op) = make(current)?;
        super::queue::enqueue(state, &mut audit, &token.id, project, app, &request, &op).await
    }
    .await;
    audit.end(state, resp).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: u32,
}

/// The most replicas `PUT …/scale` takes (the Deployment's field is an int32).
const MAX_REPLICAS: u32 = 10_000;

/// `PUT …/apps/{app}/scale {"replicas": n}`: `deployctl scale k8s n`, queued.
pub(crate) async fn scale(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    operate(&state, "app.scale", &project, &app, &headers, |current| {
        let b: ScaleBody = json_body(&headers, &body, r#"{"replicas": <0..10000>}"#)?;
        if b.replicas > MAX_REPLICAS {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("replicas: {} is more than {MAX_REPLICAS}", b.replicas),
            ));
        }
        let config = load(&current.request)?;
        if !config.kubernetes.enabled {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "scale works on the kubernetes target, which the app's config does not enable",
            )
            .hint("Lambda scales by itself (see lambda.function.reserved_concurrency)"));
        }
        Ok((
            current.request,
            Operation::Scale {
                replicas: b.replicas,
            },
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeployBody {
    /// Plain env to set; `null` removes the variable.
    env: BTreeMap<String, Option<String>>,
}

/// `POST …/apps/{app}/redeploy {"env": {…}}`: the current config with its plain `env:`
/// changed, deployed with the current image (no build).
pub(crate) async fn redeploy(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    operate(
        &state,
        "app.redeploy",
        &project,
        &app,
        &headers,
        |current| {
            let b: RedeployBody =
                json_body(&headers, &body, r#"{"env": {"NAME": "value" or null}}"#)?;
            let mut request = current.request;
            if request.image.is_none() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "the app's last deploy recorded no pushed image to redeploy",
                )
                .hint("deploy it with an image (or to a target that pushes one), then redeploy"));
            }
            let before = load(&request)?;
            for name in b.env.keys() {
                if !is_env_name(name) {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("env: `{name}` is not a variable name"),
                    )
                    .hint("use letters, digits and _, not starting with a digit"));
                }
                if before.secrets.contains_key(name) {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "env: `{name}` is a secret of the app; redeploy changes plain env only"
                        ),
                    )
                    .hint(
                        "change secrets where deploy.yaml's secrets: reference them, then redeploy",
                    ));
                }
            }
            request.config = with_env(&request.config, &b.env)?;
            load(&request)?;
            Ok((request, Operation::Redeploy))
        },
    )
    .await
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `config` (deploy.yaml text) with its top-level `env:` changed: set, or removed for
/// `None`. The text is written again from its parsed form (comments are not kept).
fn with_env(config: &str, env: &BTreeMap<String, Option<String>>) -> Result<String, ApiError> {
    let bad = |what: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the app's current {CONFIG_NAME} cannot take new env: {what}"),
        )
    };
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(config).map_err(|e| bad(e.to_string()))?;
    let root = doc
        .as_mapping_mut()
        .ok_or_else(|| bad("it is not a mapping".into()))?;
    let key = serde_yaml::Value::from("env");
    if !root.contains_key(&key) {
        root.insert(key.clone(), serde_yaml::Mapping::new().into());
    }
    let map = root
        .get_mut(&key)
        .and_then(serde_yaml::Value::as_mapping_mut)
        .ok_or_else(|| bad("its env: is not a mapping".into()))?;
    for (k, v) in env {
        match v {
            Some(v) => {
                map.insert(k.as_str().into(), v.as_str().into());
            }
            None => {
                map.remove(k.as_str());
            }
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| bad(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    to: Option<u64>,
    #[serde(default)]
    target: Option<String>,
}

/// `POST …/apps/{app}/rollback {"to": n, "target": "k8s"}`: `deployctl rollback` of each
/// enabled target that keeps versions (lambda, k8s), or of `target`.
pub(crate) async fn rollback(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    operate(
        &state,
        "app.rollback",
        &project,
        &app,
        &headers,
        |current| {
            let b: RollbackBody = if body.is_empty() {
                RollbackBody {
                    to: None,
                    target: None,
                }
            } else {
                json_body(
                    &headers,
                    &body,
                    r#"{"to": <version>, "target": "lambda" | "k8s"}"#,
                )?
            };
            let config = load(&current.request)?;
            let mut enabled = Vec::new();
            if config.lambda.enabled {
                enabled.push("lambda".to_owned());
            }
            if config.kubernetes.enabled {
                enabled.push("k8s".to_owned());
            }
            let targets = match b.target.as_deref() {
                None => enabled,
                Some(t) => {
                    let t = if t == "kubernetes" { "k8s" } else { t };
                    if !enabled.iter().any(|e| e == t) {
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("target: `{t}` is not an enabled target that keeps versions"),
                        )
                        .hint(format!("use one of: {}", enabled.join(", "))));
                    }
                    vec![t.to_owned()]
                }
            };
            if targets.is_empty() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the app has no target that keeps versions to roll back to",
                )
                .hint("rollback works on lambda and k8s; the local target keeps one container"));
            }
            Ok((current.request, Operation::Rollback { targets, to: b.to }))
        },
    )
    .await
}

/// `DELETE …/apps/{app}`: `deployctl destroy` of every enabled target, queued.
pub(crate) async fn destroy(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    operate(&state, "app.destroy", &project, &app, &headers, |current| {
        Ok((current.request, Operation::Destroy))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_set_and_removed_at_the_top_level_only() {
        let config = "app:\n  name: web\nenv:\n  A: \"1\"\n  B: two\nlambda:\n  enabled: true\n";
        let mut change = BTreeMap::new();
        change.insert("A".to_owned(), None);
        change.insert("C".to_owned(), Some("3".to_owned()));
        let out = with_env(config, &change).expect("rewritten");
        let v: serde_yaml::Value = serde_yaml::from_str(&out).expect("yaml");
        assert_eq!(v["env"]["C"], serde_yaml::Value::from("3"));
        assert_eq!(v["env"]["B"], serde_yaml::Value::from("two"));
        assert!(v["env"].get("A").is_none());
        assert_eq!(v["lambda"]["enabled"], serde_yaml::Value::from(true));
        let out = with_env("app:\n  name: web\n", &change).expect("env added");
        assert!(out.contains("C: '3'") || out.contains("C: \"3\""), "{out}");
        assert!(is_env_name("_A1") && !is_env_name("1A") && !is_env_name("A-B"));
    }
}
