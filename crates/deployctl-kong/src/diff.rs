//! Desired against observed: the plan. Pure.
//!
//! An entity is unchanged when every field deployctl sets has the value Kong reports
//! (Kong adds defaults; those are not deployctl's and are not compared). Tags compare as
//! sets. A tagged entity that is no longer desired is deleted; nothing untagged is ever
//! looked at. The consumer's key is kept when its credential exists, unless rotating.

use deployctl_core::{Action, FieldChange, Plan, ResourceChange};
use serde_json::Value;

use crate::desired::{Desired, Entity, Kind};
use crate::observe::Observed;

/// What `apply` will do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GatewayPlan {
    /// The plan as printed (target `kong`).
    pub plan: Plan,
    /// Entities to PUT, in creation order.
    pub upserts: Vec<Entity>,
    /// Tagged entities to delete, in deletion order: (kind, id, consumer ID for a
    /// credential).
    pub deletes: Vec<(Kind, String, Option<String>)>,
    /// What happens to the consumer's key.
    pub key: KeyAction,
}

/// What happens to the consumer's key-auth key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAction {
    /// No key is wanted.
    None,
    /// It exists and is kept (never read back into output).
    Keep,
    /// It does not exist: generate one, shown once.
    Create,
    /// `--rotate-key`: replace it with a new one, shown once.
    Rotate,
}

impl GatewayPlan {
    /// Whether applying changes nothing.
    pub fn is_noop(&self) -> bool {
        self.upserts.is_empty()
            && self.deletes.is_empty()
            && matches!(self.key, KeyAction::None | KeyAction::Keep)
    }
}

/// Compares; `rotate_key` asks for a new consumer key.
pub fn diff(desired: &Desired, observed: &Observed, rotate_key: bool) -> GatewayPlan {
    let mut plan = Plan::new("kong");
    let mut upserts = Vec::new();
    for e in &desired.entities {
        let action = match observed.get(e.kind, &e.id) {
            None => Action::Create,
            Some(have) => {
                let mut fields = Vec::new();
                compare(&e.body, have, "", &mut fields);
                if fields.is_empty() {
                    Action::Unchanged
                } else {
                    Action::Update { fields }
                }
            }
        };
        let reason = match &action {
            Action::Create => "not in Kong yet",
            Action::Update { .. } => "differs from the spec and deploy.yaml",
            _ => "as wanted",
        };
        if action.is_change() {
            upserts.push(e.clone());
        }
        plan.push(ResourceChange::new(e.kind.label(), &e.name, action, reason));
    }
    let key = match (
        &desired.key,
        desired
            .key
            .as_ref()
            .and_then(|k| observed.get(Kind::KeyAuth, &k.id)),
    ) {
        (None, _) => KeyAction::None,
        (Some(_), None) => KeyAction::Create,
        (Some(_), Some(_)) if rotate_key => KeyAction::Rotate,
        (Some(_), Some(_)) => KeyAction::Keep,
    };
    if let Some(k) = &desired.key {
        let consumer = desired
            .entities
            .iter()
            .find(|e| e.id == k.consumer_id)
            .map_or("consumer", |e| e.name.as_str());
        let (action, reason) = match key {
            KeyAction::Create => (Action::Create, "generated once, shown once"),
            KeyAction::Rotate => (
                Action::Update {
                    fields: vec![FieldChange::sensitive("key")],
                },
                "--rotate-key",
            ),
            _ => (Action::Unchanged, "kept (--rotate-key replaces it)"),
        };
        plan.push(ResourceChange::new(
            Kind::KeyAuth.label(),
            format!("key of {consumer}"),
            action,
            reason,
        ));
    }
    let mut deletes = Vec::new();
    for kind in [
        Kind::Plugin,
        Kind::Route,
        Kind::KeyAuth,
        Kind::Consumer,
        Kind::Service,
    ] {
        for (id, have) in observed.of(kind) {
            let wanted = match kind {
                Kind::KeyAuth => desired.key.as_ref().is_some_and(|k| &k.id == id),
                _ => desired
                    .entities
                    .iter()
                    .any(|e| e.kind == kind && &e.id == id),
            };
            if wanted {
                continue;
            }
            let name = have["name"]
                .as_str()
                .or_else(|| have["username"].as_str())
                .map_or_else(|| id.clone(), |n| n.to_owned());
            let consumer = have["consumer"]["id"].as_str().map(str::to_owned);
            plan.push(ResourceChange::new(
                kind.label(),
                name,
                Action::Delete,
                "tagged by deployctl, no longer in the spec or deploy.yaml",
            ));
            deletes.push((kind, id.clone(), consumer));
        }
    }
    GatewayPlan {
        plan,
        upserts,
        deletes,
        key,
    }
}

/// The fields of `want` whose value differs in `have` (objects compared key by key,
/// `tags` as sets, everything else by value).
fn compare(want: &Value, have: &Value, path: &str, out: &mut Vec<FieldChange>) {
    let Value::Object(w) = want else {
        if want != have {
            out.push(FieldChange::new(path, Some(short(have)), Some(short(want))));
        }
        return;
    };
    for (k, wv) in w {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let hv = have.get(k).unwrap_or(&Value::Null);
        if k == "tags" {
            let set = |v: &Value| {
                let mut t: Vec<String> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                t.sort();
                t
            };
            if set(wv) != set(hv) {
                out.push(FieldChange::new(p, Some(short(hv)), Some(short(wv))));
            }
        } else if wv.is_object() && hv.is_object() {
            compare(wv, hv, &p, out);
        } else if wv != hv {
            out.push(FieldChange::new(p, Some(short(hv)), Some(short(wv))));
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kong_defaults_are_not_differences() {
        let mut out = Vec::new();
        compare(
            &json!({"name": "a", "config": {"minute": 5}, "tags": ["x", "y"]}),
            &json!({"name": "a", "config": {"minute": 5, "hour": null}, "tags": ["y", "x"], "created_at": 1}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        compare(
            &json!({"config": {"minute": 6}, "paths": ["~/a$"]}),
            &json!({"config": {"minute": 5}, "paths": ["~/b$"]}),
            "",
            &mut out,
        );
        let fields: Vec<&str> = out.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["config.minute", "paths"]);
    }
}
