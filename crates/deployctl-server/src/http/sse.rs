//! `GET /deployments/{id}/events`: Server-Sent Events of the stored events (the JSON of
//! `--output json`, `id:` its number), replayed from the start — or after `Last-Event-ID` —
//! then live, ending with the deployment's result object once it has ended.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast;

use super::ApiError;
use super::deployments::visible;
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

pub(crate) async fn events(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let (record, _) = visible(&state, &headers, &id, Role::Read).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let cursor = Cursor {
        woken: state.inner.appended.subscribe(),
        state,
        id: record.id,
        after,
        pending: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(cursor, next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn next(mut c: Cursor) -> Option<(Result<SseEvent, Infallible>, Cursor)> {
    loop {
        if c.done {
            return None;
        }
        if let Some(e) = c.pending.pop_front() {
            c.after = e.seq;
            let ev = SseEvent::default()
                .id(e.seq.to_string())
                .data(e.body.to_string());
            return Some((Ok(ev), c));
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
                "command": "deploy",
                "ok": record.status == crate::store::Status::Succeeded,
                "status": record.status,
                "deployment": super::deployments::view(&record),
            });
            let ev = SseEvent::default().event("result").data(result.to_string());
            return Some((Ok(ev), c));
        }
        wait(&mut c).await;
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
