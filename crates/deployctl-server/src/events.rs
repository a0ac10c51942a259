//! Events as JSON: the same objects `deployctl --output json` prints, so a client of the API
//! reads one format whichever way it deploys.

use deployctl_core::{EVENT_SCHEMA_VERSION, Event};
use serde_json::{Value, json};

/// `{"schema_version": 1, "type": "event", "at_ms": …, "stage": …, "event": …}`.
pub fn event_json(event: &Event) -> Value {
    let mut obj = json!({ "schema_version": EVENT_SCHEMA_VERSION, "type": "event" });
    if let (Value::Object(into), Ok(Value::Object(from))) = (&mut obj, serde_json::to_value(event))
    {
        into.extend(from);
    }
    obj
}

/// The key of an event's stage in a deployment's `stages` (`build`, `apply lambda` …) and
/// its state there (`started`, `finished`, `failed` …).
pub(crate) fn stage_state(body: &Value) -> Option<(String, Value)> {
    let stage = body.get("stage")?.as_str()?;
    let key = match body.get("target").and_then(Value::as_str) {
        Some(t) => format!("{stage} {t}"),
        None => stage.to_owned(),
    };
    let kind = body.get("event")?.as_str()?;
    if kind == "progress" || kind == "message" {
        return None;
    }
    let mut state = json!({ "state": kind, "at_ms": body.get("at_ms") });
    if let Some(d) = body.get("duration_ms") {
        state["duration_ms"] = d.clone();
    }
    Some((key, state))
}
