//! The HTTP API under `/api/v1` (axum): routes, the error body every failure shares, and the
//! audit row of every mutating request.

mod apps;
mod audit;
mod auth;
mod deployments;
mod logs;
mod params;
mod queue;
mod sse;
mod upload;

use axum::Json;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::jobs::AppState;
use crate::store::AuditRow;
use crate::tokens::{now_ms, random_hex};

pub(crate) use auth::authorize;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The API's routes on `state`; mount it at `/` (its paths start with `/api/v1` and
/// `/healthz`).
pub fn router(state: AppState) -> Router {
    // A body (an upload's .tar.gz, or JSON) is read into memory up to this.
    let body_limit =
        usize::try_from(state.inner.config.upload_limits.compressed_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/projects/{project}/apps/{app}/deployments",
            axum::routing::post(deployments::create)
                .layer(axum::extract::DefaultBodyLimit::max(body_limit)),
        )
        .route(
            "/api/v1/deployments/{id}",
            get(deployments::show).delete(deployments::cancel),
        )
        .route("/api/v1/deployments/{id}/events", get(sse::events))
        .route("/api/v1/deployments/{id}/events/ws", get(sse::events_ws))
        .route(
            "/api/v1/projects/{project}/apps/{app}",
            get(apps::status).delete(apps::destroy),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/history",
            get(apps::history),
        )
        .route("/api/v1/projects/{project}/apps/{app}/logs", get(logs::sse))
        .route(
            "/api/v1/projects/{project}/apps/{app}/logs/ws",
            get(logs::ws),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/scale",
            put(apps::scale),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/redeploy",
            post(apps::redeploy),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/rollback",
            post(apps::rollback),
        )
        .route("/api/v1/audit", get(audit::list))
        .route("/metrics", get(audit::metrics))
        // Query and header parameters against the document, before any handler.
        .route_layer(axum::middleware::from_fn(params::check))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Every error answer is the JSON error body, also the ones axum writes itself as plain text
/// (a query string or path it cannot read, a method the path does not have): the OpenAPI
/// document promises JSON for each error status.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase()
    } else {
        text
    };
    let fresh = ApiError::new(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.extend(fresh_parts.headers);
    Response::from_parts(parts, fresh_body)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

async fn openapi(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    auth::authenticate(&state, &headers).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such API path")
        .hint("the API is under /api/v1; see /api/v1/openapi.json")
}

/// An error answer: `{"error": {"message", "hint", "diagnostics"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) diagnostics: Option<Box<Value>>,
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            hint: None,
            diagnostics: None,
            headers: Vec::new(),
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// A store failure: logged in full here, answered without details.
    pub(crate) fn internal(e: &crate::Error) -> Self {
        tracing::error!(error = %e, cause = ?std::error::Error::source(e), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server's store failed",
        )
        .hint("see the server's log; try again")
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "message": self.message });
        if let Some(h) = self.hint {
            error["hint"] = Value::from(h);
        }
        if let Some(d) = self.diagnostics {
            error["diagnostics"] = *d;
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

/// One mutating request: its id, and the audit row written when it is answered.
#[derive(Debug)]
pub(crate) struct Audited {
    pub(crate) request_id: String,
    pub(crate) row: AuditRow,
}

impl Audited {
    pub(crate) fn begin(action: &str, project: Option<&str>, app: Option<&str>) -> Self {
        let request_id =
            random_hex(8).map_or_else(|_| format!("req_{}", now_ms()), |h| format!("req_{h}"));
        Self {
            row: AuditRow {
                at_ms: now_ms(),
                request_id: request_id.clone(),
                token_id: None,
                action: action.to_owned(),
                project: project.map(str::to_owned),
                app: app.map(str::to_owned),
                deployment_id: None,
                status: 0,
                result: String::new(),
            },
            request_id,
        }
    }

    /// Writes the row for `resp` and tags the response with the request id.
    pub(crate) async fn end(
        mut self,
        state: &AppState,
        resp: Result<Response, ApiError>,
    ) -> Response {
        let mut resp = match resp {
            Ok(r) => {
                self.row.result = "ok".into();
                r
            }
            Err(e) => {
                self.row.result = e.message.clone();
                e.into_response()
            }
        };
        self.row.status = i64::from(resp.status().as_u16());
        if let Err(e) = state.inner.store.audit(&self.row).await {
            tracing::error!(error = %e, request = %self.request_id, "cannot write the audit row");
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}

/// `Query<T>` whose rejection is the API's JSON error (400), not axum's plain text.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Params(v))
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
                    .hint("see the parameters in /api/v1/openapi.json")
            })
    }
}

/// A WebSocket upgrade, or the API's JSON error when the request is not one (400, 426).
pub(crate) type Upgrade = Result<
    axum::extract::ws::WebSocketUpgrade,
    axum::extract::ws::rejection::WebSocketUpgradeRejection,
>;

pub(crate) fn upgrade_or_error(
    u: Upgrade,
) -> Result<axum::extract::ws::WebSocketUpgrade, ApiError> {
    u.map(|u| u.protocols([auth::WS_PROTOCOL])).map_err(|e| {
        ApiError::new(e.status(), e.body_text())
            .hint("open it with a WebSocket client (GET with Upgrade: websocket)")
    })
}
