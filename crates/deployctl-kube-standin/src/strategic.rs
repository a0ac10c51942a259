//! Strategic merge patch (`application/strategic-merge-patch+json`, what `kubectl patch`,
//! `set image`, `edit` and `rollout restart` send) as the JSON merge patch it amounts to on
//! the current object: the items of associative lists (containers by `name`, ports by
//! `containerPort`… — the lists [`crate::fieldpath`] keys) are merged by key instead of
//! replacing the list, `$patch: delete` removes an item, and the `$setElementOrder`,
//! `$retainKeys` and `$deleteFromPrimitiveList` directives are dropped. Other lists are
//! replaced, as Kubernetes does for lists without a patch strategy.

use serde_json::{Map, Value};

use crate::fieldpath::item_key;

/// The JSON merge patch that has the effect of strategic merge patch `patch` on `current`.
pub fn to_merge_patch(current: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = Map::new();
    for (k, pv) in p {
        if k.starts_with("$setElementOrder/")
            || k.starts_with("$deleteFromPrimitiveList/")
            || k == "$retainKeys"
            || k == "$patch"
        {
            continue;
        }
        let cur = current.get(k);
        let merged = match (cur, pv) {
            (Some(Value::Array(have)), Value::Array(items))
                if items.iter().all(|i| item_key(k, i).is_some()) =>
            {
                Value::Array(merge_items(k, have, items))
            }
            (Some(c @ Value::Object(_)), Value::Object(_)) => to_merge_patch(c, pv),
            (_, Value::Array(items)) => Value::Array(items.iter().map(strip).collect()),
            (_, other) => strip(other),
        };
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn merge_items(field: &str, have: &[Value], items: &[Value]) -> Vec<Value> {
    let mut list = have.to_vec();
    for item in items {
        let key = item_key(field, item);
        let at = list
            .iter()
            .position(|i| item_key(field, i).is_some() && item_key(field, i) == key);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (at, delete) {
            (Some(at), true) => {
                list.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => {
                let patch = to_merge_patch(&list[at], item);
                json_merge(&mut list[at], &patch);
            }
            (None, false) => list.push(strip(item)),
        }
    }
    list
}

/// `v` without `$` directives.
pub fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

/// RFC 7386 JSON merge patch.
fn json_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(current: &Value, patch: &Value) -> Value {
        let mut v = current.clone();
        json_merge(&mut v, &to_merge_patch(current, patch));
        v
    }

    #[test]
    fn keyed_items_merge_by_key() {
        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "w:1", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
             "env": [{"name": "A", "value": "1"}]},
            {"name": "log", "image": "l:1"}]}}}});
        // kubectl set image web=w:2
        let set_image = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
            "containers": [{"name": "web", "image": "w:2"}]}}}});
        let out = apply(&d, &set_image);
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "w:2");
        assert_eq!(c[0]["ports"][0]["containerPort"], 8080);
        assert_eq!(c[1], json!({"name": "log", "image": "l:1"}));
        // kubectl set env: a new env item, and one removed with `$patch: delete`.
        let env = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "B", "value": "2"}, {"name": "A", "$patch": "delete"}]}]}}}});
        let out = apply(&d, &env);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "B", "value": "2"}])
        );
        // A new container is appended; null removes a field.
        let add = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "side", "image": "s:1"}, {"name": "log", "image": null}]}}}});
        let out = apply(&d, &add);
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 3);
        assert_eq!(c[1], json!({"name": "log"}));
        assert_eq!(c[2], json!({"name": "side", "image": "s:1"}));
    }

    #[test]
    fn other_lists_and_maps_as_merge_patch() {
        let d = json!({"spec": {"replicas": 1, "template": {"metadata": {"annotations": {"a": "1"}},
            "spec": {"containers": [{"name": "web", "args": ["x", "y"]}]}}}});
        let p = json!({"spec": {"replicas": 3, "template": {"metadata": {"annotations": {"b": "2"}},
            "spec": {"containers": [{"name": "web", "args": ["z"]}]}}}});
        let out = apply(&d, &p);
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"],
            json!({"a": "1", "b": "2"})
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["z"])
        );
    }
}
