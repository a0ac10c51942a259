//! The event stream: what the pipeline reports while it works.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::error::ErrorKind;

/// Version of the JSON event schema (`--output json`). Bumped on any incompatible change.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// A stage of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "stage", content = "target", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Building the image.
    Build,
    /// Pushing the image.
    Push,
    /// Planning one target.
    Plan(String),
    /// Applying to one target.
    Apply(String),
    /// Verifying one target's endpoint.
    Verify(String),
    /// Destroying one target's resources.
    Destroy(String),
    /// Rolling one target back.
    Rollback(String),
    /// One target's `pre_deploy` hooks.
    PreDeploy(String),
    /// One target's `post_deploy` hooks.
    PostDeploy(String),
    /// One target's `pre_destroy` hooks.
    PreDestroy(String),
}

impl Stage {
    /// The target this stage belongs to, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Stage::Build | Stage::Push => None,
            Stage::Plan(t)
            | Stage::Apply(t)
            | Stage::Verify(t)
            | Stage::Destroy(t)
            | Stage::Rollback(t)
            | Stage::PreDeploy(t)
            | Stage::PostDeploy(t)
            | Stage::PreDestroy(t) => Some(t),
        }
    }

    /// The stage's name without target.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Push => "push",
            Stage::Plan(_) => "plan",
            Stage::Apply(_) => "apply",
            Stage::Verify(_) => "verify",
            Stage::Destroy(_) => "destroy",
            Stage::Rollback(_) => "rollback",
            Stage::PreDeploy(_) => "pre_deploy",
            Stage::PostDeploy(_) => "post_deploy",
            Stage::PreDestroy(_) => "pre_destroy",
        }
    }
}

impl Stage {
    /// The stage running `phase`'s hooks on `target`.
    pub fn hook(phase: crate::hooks::HookPhase, target: &str) -> Self {
        use crate::hooks::HookPhase;
        let t = target.to_owned();
        match phase {
            HookPhase::PreDeploy => Stage::PreDeploy(t),
            HookPhase::PostDeploy => Stage::PostDeploy(t),
            HookPhase::PreDestroy => Stage::PreDestroy(t),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.target() {
            Some(t) => write!(f, "{} {t}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// Progress inside a stage: step n of m, bytes of a layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Progress {
    /// What is progressing (a build step, a layer id, a resource).
    pub item: String,
    /// Done so far.
    pub current: Option<u64>,
    /// Total, when known.
    pub total: Option<u64>,
    /// Unit of `current`/`total`: `step`, `bytes`, `replicas`.
    pub unit: Option<String>,
}

impl Progress {
    /// Progress on `item` without numbers.
    pub fn item(item: impl Into<String>) -> Self {
        Self {
            item: item.into(),
            current: None,
            total: None,
            unit: None,
        }
    }

    /// Progress on `item`: `current` of `total` `unit`.
    pub fn counted(
        item: impl Into<String>,
        current: u64,
        total: Option<u64>,
        unit: impl Into<String>,
    ) -> Self {
        Self {
            item: item.into(),
            current: Some(current),
            total,
            unit: Some(unit.into()),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The stage began.
    Started,
    /// The stage made progress.
    Progress(Progress),
    /// A line of output worth showing (a build log line, a notice).
    Message {
        /// The line, already scrubbed of secrets.
        text: String,
    },
    /// The stage finished.
    Finished {
        /// How long it took, in milliseconds.
        duration_ms: u64,
        /// One line on the result.
        summary: String,
    },
    /// The stage was skipped.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The stage failed.
    Failed {
        /// How long it ran, in milliseconds.
        duration_ms: u64,
        /// Kind of failure.
        kind: ErrorKind,
        /// The error and its causes, outermost first.
        error: Vec<String>,
        /// What to do.
        hint: Option<String>,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Which stage.
    #[serde(flatten)]
    pub stage: Stage,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event stamped now.
    pub fn now(stage: Stage, kind: EventKind) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, duration_ms);
        Self { at_ms, stage, kind }
    }

    /// The event's one JSON form, shared by `--output json` and the API's event streams:
    /// `{"schema_version": 1, "type": "event", "at_ms": …, "stage": …, "event": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj =
            serde_json::json!({ "schema_version": EVENT_SCHEMA_VERSION, "type": "event" });
        if let (serde_json::Value::Object(into), Ok(serde_json::Value::Object(from))) =
            (&mut obj, serde_json::to_value(self))
        {
            into.extend(from);
        }
        obj
    }

    /// The event read back from its [`Event::to_json`] form, as an API client receives it
    /// (`schema_version` and `type` are checked, not kept). `None` for anything else.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        if value.get("type").and_then(serde_json::Value::as_str) != Some("event")
            || value
                .get("schema_version")
                .and_then(serde_json::Value::as_u64)
                != Some(u64::from(EVENT_SCHEMA_VERSION))
        {
            return None;
        }
        let mut fields = value.as_object()?.clone();
        fields.remove("type");
        fields.remove("schema_version");
        serde_json::from_value(serde_json::Value::Object(fields)).ok()
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where events go. Implementations must be cheap and must not block for long: the CLI
/// renders progress or writes JSON lines; an embedding program may forward to a channel.
pub trait EventSink: Send + Sync {
    /// Receives one event.
    fn emit(&self, event: Event);
}

/// Discards events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}

/// Collects events in memory (for tests and embedding programs that read them afterwards).
#[derive(Debug, Default)]
pub struct VecSink {
    events: Mutex<Vec<Event>>,
}

impl VecSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        match self.events.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl EventSink for VecSink {
    fn emit(&self, event: Event) {
        match self.events.lock() {
            Ok(mut g) => g.push(event),
            Err(p) => p.into_inner().push(event),
        }
    }
}

impl<T: EventSink + ?Sized> EventSink for &T {
    fn emit(&self, event: Event) {
        (**self).emit(event);
    }
}

impl<T: EventSink + ?Sized> EventSink for std::sync::Arc<T> {
    fn emit(&self, event: Event) {
        (**self).emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_flat_and_tagged() {
        let e = Event {
            at_ms: 5,
            stage: Stage::Apply("lambda".into()),
            kind: EventKind::Finished {
                duration_ms: 12,
                summary: "3 created".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"at_ms":5,"stage":"apply","target":"lambda","event":"finished","duration_ms":12,"summary":"3 created"})
        );
        let e = Event {
            at_ms: 1,
            stage: Stage::Build,
            kind: EventKind::Started,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"at_ms":1,"stage":"build","event":"started"})
        );
    }

    #[test]
    fn every_event_reads_back_from_its_json() {
        let kinds = [
            EventKind::Started,
            EventKind::Progress(Progress::counted("layer", 3, Some(9), "bytes")),
            EventKind::Progress(Progress::item("step")),
            EventKind::Message { text: "hi".into() },
            EventKind::Finished {
                duration_ms: 4,
                summary: "ok".into(),
            },
            EventKind::Skipped {
                reason: "unchanged".into(),
            },
            EventKind::Failed {
                duration_ms: 2,
                kind: ErrorKind::Environment,
                error: vec!["a".into(), "b".into()],
                hint: Some("h".into()),
            },
        ];
        let stages = [
            Stage::Build,
            Stage::Push,
            Stage::Apply("k8s".into()),
            Stage::PreDestroy("lambda".into()),
        ];
        for kind in &kinds {
            for stage in &stages {
                let e = Event {
                    at_ms: 7,
                    stage: stage.clone(),
                    kind: kind.clone(),
                };
                assert_eq!(Event::from_json(&e.to_json()), Some(e.clone()), "{e:?}");
            }
        }
        assert_eq!(
            Event::from_json(&serde_json::json!({"type": "result"})),
            None
        );
        let mut other_version = Event::now(Stage::Build, EventKind::Started).to_json();
        other_version["schema_version"] = serde_json::json!(99);
        assert_eq!(Event::from_json(&other_version), None);
    }

    #[test]
    fn exit_codes_read_back_as_their_kind() {
        for k in [
            ErrorKind::Failed,
            ErrorKind::InvalidInput,
            ErrorKind::Environment,
            ErrorKind::Cancelled,
        ] {
            assert_eq!(ErrorKind::from_exit_code(i64::from(k.exit_code())), k);
        }
        assert_eq!(ErrorKind::from_exit_code(77), ErrorKind::Failed);
    }
}
