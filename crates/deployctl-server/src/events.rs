//! Events as the API keeps them: the same JSON objects `deployctl --output json` prints
//! (`deployctl_core::Event::to_json`), so a client reads one format whichever way it
//! deploys; here, how an event moves a deployment's stages.

use serde_json::{Value, json};

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
