//! `GET …/apps/{app}/logs?target=&follow=&since=` (Server-Sent Events) and `…/logs/ws`
//! (WebSocket): the app's log lines, read by the runner (`deployctl logs`) with the app's
//! current config. Each line is `{"target", "line", "source", "at_ms"}`; a target whose
//! read fails sends `{"target", "error"}` (SSE: `event: error`) and the others go on.
//! Without `follow` the stream ends when every target has been read; with it, when the
//! client goes away (the runner's reads stop then).

use std::convert::Infallible;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{ApiError, Params, authorize};
use crate::jobs::AppState;
use crate::runner::{LogItem, LogLines, LogsQuery};
use crate::store::Role;

/// Lines buffered per stream before the runner waits for the client.
const BUFFER: usize = 256;

#[derive(Debug, Deserialize)]
pub(crate) struct LogsParams {
    target: Option<String>,
    follow: Option<bool>,
    since: Option<String>,
}

/// Checks the request and starts the runner's reads: the receiving end of their lines.
async fn start(
    state: &AppState,
    headers: &HeaderMap,
    project: &str,
    app: &str,
    p: LogsParams,
) -> Result<mpsc::Receiver<LogItem>, ApiError> {
    authorize(state, headers, project, Role::Read).await?;
    crate::names::check("app", app).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let since_seconds = match p.since.as_deref() {
        None => None,
        Some(s) => Some(
            crate::tokens::parse_ttl(s)
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("since: `{s}` is not a duration"),
                    )
                    .hint("write a number and s, m, h or d, e.g. 10m")
                })?
                .as_secs(),
        ),
    };
    let current = super::apps::current(state, project, app).await?;
    let config = super::apps::load(&current.request)?;
    let enabled: Vec<String> = config
        .enabled_targets()
        .iter()
        .map(|t| match t {
            deployctl_config::TargetKind::Kubernetes => "k8s".to_owned(),
            other => other.to_string(),
        })
        .collect();
    let targets = match p.target.as_deref() {
        None => enabled,
        Some(t) => {
            let t = if t == "kubernetes" { "k8s" } else { t };
            if !enabled.iter().any(|e| e == t) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("target: `{t}` is not an enabled target of the app"),
                )
                .hint(format!("use one of: {}", enabled.join(", "))));
            }
            vec![t.to_owned()]
        }
    };
    let query = LogsQuery {
        follow: p.follow.unwrap_or(false),
        since_seconds,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    for target in targets {
        let runner = state.inner.runner.clone();
        let current = current.clone();
        let query = query.clone();
        let lines = LogLines(tx.clone());
        tokio::spawn(async move {
            if let Err(e) = runner.logs(&current, &target, &query, lines.clone()).await {
                let _ = lines
                    .0
                    .send(LogItem::Failed {
                        target,
                        message: e.message,
                    })
                    .await;
            }
        });
    }
    Ok(rx)
}

fn item_json(item: &LogItem) -> Value {
    match item {
        LogItem::Line(l) => serde_json::to_value(l).unwrap_or(Value::Null),
        LogItem::Failed { target, message } => json!({ "target": target, "error": message }),
    }
}

pub(crate) async fn sse(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    Params(p): Params<LogsParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let rx = start(&state, &headers, &project, &app, p).await?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let mut ev = SseEvent::default().data(item_json(&item).to_string());
        if matches!(item, LogItem::Failed { .. }) {
            ev = ev.event("error");
        }
        Some((Ok(ev), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub(crate) async fn ws(
    State(state): State<AppState>,
    UrlPath((project, app)): UrlPath<(String, String)>,
    Params(p): Params<LogsParams>,
    headers: HeaderMap,
    upgrade: super::Upgrade,
) -> Result<Response, ApiError> {
    let rx = start(&state, &headers, &project, &app, p).await?;
    Ok(super::upgrade_or_error(upgrade)?
        .on_upgrade(move |socket| send_lines(socket, rx))
        .into_response())
}

async fn send_lines(mut socket: WebSocket, mut rx: mpsc::Receiver<LogItem>) {
    loop {
        let item = tokio::select! {
            i = rx.recv() => i,
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let Some(item) = item else { break };
        let text = item_json(&item).to_string();
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
