//! `GET /deployments/{id}/events` (Server-Sent Events) and `…/events/ws` (WebSocket): the
//! stored events (the JSON of `--output json`), replayed from the start — or after
//! `Last-Event-ID` — then live, ending with the deployment's result object once it has
//! ended. One cursor feeds both; each WebSocket text message is one event's JSON.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::deployments::visible;
use super::{ApiError, Params};
use crate::jobs::AppState;
use crate::store::{Role, StoredEvent};

/// How often a stream looks at the store when nothing woke it (events written by another
/// server process on a shared database).
const IDLE_LOOK: Duration = Duration::from_millis(500);

struct Cursor {
    state: AppState,
    id: String,
    after: i64,
    pending: VecDeque<StoredEvent>,
    woken: broadcast::Receiver<String>,
    done: bool,
}

/// One frame of a deployment's stream.
enum Frame {
    /// A stored event and its number.
    Event(i64, Value),
    /// The deployment's result object: the last frame.
    Result(Value),
}

#[derive(Debug, Deserialize)]
pub(crate) struct AfterQuery {
    /// Resume after this event (WebSocket clients cannot set `Last-Event-ID`).
    after: Option<i64>,
}

async fn cursor(
    state: AppState,
    headers: &HeaderMap,
    id: &str,
    after: Option<i64>,
) -> Result<Cursor, ApiError> {
    let (record, _) = visible(&state, headers, id, Role::Read).await?;
    let after = after
        .or_else(|| {
            headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
        .unwrap_or(0)
        .max(0);
    Ok(Cursor {
        woken: state.inner.appended.subscribe(),
        state,
        id: record.id,
        after,
        pending: VecDeque::new(),
        done: false,
    })
}

pub(crate) async fn events(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Params(q): Params<AfterQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let c = cursor(state, &headers, &id, q.after).await?;
    let stream = futures::stream::unfold(c, |mut c| async move {
        let frame = next(&mut c).await?;
        let ev = match frame {
            Frame::Event(seq, body) => SseEvent::default()
                .id(seq.to_string())
                .data(body.to_string()),
            Frame::Result(body) => SseEvent::default().event("result").data(body.to_string()),
        };
        Some((Ok(ev), c))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub(crate) async fn events_ws(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Params(q): Params<AfterQuery>,
    headers: HeaderMap,
    ws: super::Upgrade,
) -> Result<Response, ApiError> {
    let c = cursor(state, &headers, &id, q.after).await?;
    Ok(super::upgrade_or_error(ws)?
        .on_upgrade(move |socket| send_frames(socket, c))
        .into_response())
}

async fn send_frames(mut socket: WebSocket, mut c: Cursor) {
    loop {
        let frame = tokio::select! {
            n = next(&mut c) => n,
            // The client closed or went away; anything else it sends is ignored.
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let Some(frame) = frame else { break };
        let body = match frame {
            Frame::Event(_, body) | Frame::Result(body) => body,
        };
        if socket
            .send(Message::Text(body.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The next frame; `None` once the result was sent or the deployment is gone. Cancel-safe:
/// a dropped call loses no event (each is taken from `pending` only when returned).
async fn next(c: &mut Cursor) -> Option<Frame> {
    loop {
        if c.done {
            return None;
        }
        if let Some(e) = c.pending.pop_front() {
            c.after = e.seq;
            return Some(Frame::Event(e.seq, e.body));
        }
        let store = &c.state.inner.store;
        // The status first: a deployment that has ended has all its events stored already.
        let record = match store.deployment(&c.id).await {
            Ok(Some(r)) => r,
            _ => return None,
        };
        match store.events(&c.id, c.after).await {
            Ok(evs) if !evs.is_empty() => {
                c.pending.extend(evs);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(deployment = %c.id, error = %e, "cannot read events");
                return None;
            }
        }
        if record.status.is_final() {
            c.done = true;
            let result = json!({
                "schema_version": deployctl_core::EVENT_SCHEMA_VERSION,
                "type": "result",
                "command": record.kind,
                "ok": record.status == crate::store::Status::Succeeded,
                "status": record.status,
                "deployment": super::deployments::view(&record),
            });
            return Some(Frame::Result(result));
        }
        wait(c).await;
    }
}

async fn wait(c: &mut Cursor) {
    let deadline = tokio::time::sleep(IDLE_LOOK);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return,
            got = c.woken.recv() => match got {
                Ok(id) if id == c.id => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
