//! Field paths for server-side-apply ownership, with associative lists as a real API server
//! has them: a list whose items are keyed (`containers` by `name`, container `ports` by
//! `containerPort` + `protocol`, `env` by `name`, `volumeMounts` by `mountPath`…) is owned
//! per item and per field of the item, so two managers can own different containers or
//! env vars of one Deployment. Other lists are atomic (owned as one value).
//!
//! A path is its segments joined by U+001F; an item of an associative list is the segment
//! `k:{"name":"web"}` (its key fields as JSON, sorted), as in `managedFields`' `FieldsV1`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

const SEP: char = '\u{1f}';

/// The key fields of an item of list `field` (with their defaults), when that list is
/// associative in the Kubernetes API.
fn key_fields(field: &str, item: &Value) -> Option<Vec<(&'static str, Value)>> {
    let item = item.as_object()?;
    let get = |k: &str| item.get(k).cloned();
    let protocol = || get("protocol").unwrap_or_else(|| json!("TCP"));
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => vec![("name", get("name")?)],
        "volumeMounts" | "volumeDevices" => vec![("mountPath", get("mountPath")?)],
        "hostAliases" => vec![("ip", get("ip")?)],
        "ports" if item.contains_key("containerPort") => vec![
            ("containerPort", get("containerPort")?),
            ("protocol", protocol()),
        ],
        "ports" if item.contains_key("port") && !item.contains_key("endPort") => {
            vec![("port", get("port")?), ("protocol", protocol())]
        }
        _ => return None,
    })
}

/// The `k:{…}` segment of an item.
fn item_segment(keys: &[(&str, Value)]) -> String {
    let mut sorted: Vec<&(&str, Value)> = keys.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let body: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    format!("k:{{{}}}", body.join(","))
}

/// The `k:{…}` segment of an item of list `field`, when that list is associative.
pub fn item_key(field: &str, item: &Value) -> Option<String> {
    key_fields(field, item).map(|k| item_segment(&k))
}

/// The key fields a `k:{…}` segment names.
fn parse_item_segment(seg: &str) -> Option<Map<String, Value>> {
    serde_json::from_str::<Value>(seg.strip_prefix("k:")?)
        .ok()?
        .as_object()
        .cloned()
}

/// Whether `item` has the keys of a `k:{…}` segment (a missing `protocol` is `TCP`).
fn item_matches(item: &Value, keys: &Map<String, Value>) -> bool {
    keys.iter().all(|(k, v)| match item.get(k) {
        Some(got) => got == v,
        None => k == "protocol" && v == "TCP",
    })
}

/// The items of `list` (under field `field`) keyed, when the list is associative and its
/// keys are unique.
fn keyed_items<'a>(field: &str, list: &'a [Value]) -> Option<Vec<(String, &'a Value)>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let seg = item_segment(&key_fields(field, item)?);
        if !seen.insert(seg.clone()) {
            return None;
        }
        out.push((seg, item));
    }
    Some(out)
}

/// Leaf paths of an object that field ownership applies to (not identity, not status).
pub fn leaves(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, field: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        let join = |seg: &str| {
            if prefix.is_empty() {
                seg.to_owned()
            } else {
                format!("{prefix}{SEP}{seg}")
            }
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    walk(&join(k), k, child, out);
                }
            }
            Value::Array(a) if !a.is_empty() => match keyed_items(field, a) {
                Some(items) => {
                    for (seg, item) in items {
                        walk(&join(&seg), "", item, out);
                    }
                }
                None => {
                    out.insert(prefix.to_owned(), v.clone());
                }
            },
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", "", v, &mut out);
    out.retain(|p, _| {
        let first: Vec<&str> = p.splitn(3, SEP).collect();
        match first.as_slice() {
            ["apiVersion"] | ["kind"] => false,
            ["status", ..] => false,
            ["metadata", f, ..] => !matches!(
                *f,
                "name"
                    | "namespace"
                    | "resourceVersion"
                    | "uid"
                    | "generation"
                    | "creationTimestamp"
                    | "managedFields"
                    | "deletionTimestamp"
            ),
            _ => true,
        }
    });
    out
}

/// `.spec.template.spec.containers[name="web"].image`, as a real server names a field.
pub fn dotted(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split(SEP) {
        match parse_item_segment(seg) {
            Some(keys) => {
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            None => {
                out.push('.');
                out.push_str(seg);
            }
        }
    }
    out
}

fn child<'a>(cur: &'a Value, seg: &str) -> Option<&'a Value> {
    match (parse_item_segment(seg), cur) {
        (Some(keys), Value::Array(a)) => a.iter().find(|i| item_matches(i, &keys)),
        (Some(_), _) => None,
        (None, _) => cur.get(seg),
    }
}

pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split(SEP).try_fold(v, child)
}

pub fn set_path(v: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path.split(SEP).collect();
    let mut cur = v;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if let Some(keys) = parse_item_segment(seg) {
            if !cur.is_array() {
                *cur = json!([]);
            }
            let Some(list) = cur.as_array_mut() else {
                return;
            };
            let at = match list.iter().position(|item| item_matches(item, &keys)) {
                Some(at) => at,
                None => {
                    list.push(Value::Object(keys.clone()));
                    list.len() - 1
                }
            };
            cur = &mut list[at];
            if last {
                *cur = value;
                return;
            }
        } else {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            if last {
                // An empty map applied over a map merges into it (it does not clear it).
                let empty = value.as_object().is_some_and(Map::is_empty);
                if !(empty && cur.get(*seg).is_some_and(Value::is_object)) {
                    cur[*seg] = value;
                }
                return;
            }
            let next_is_item = segs.get(i + 1).is_some_and(|s| s.starts_with("k:{"));
            let fits = if next_is_item {
                cur.get(*seg).is_some_and(Value::is_array)
            } else {
                cur.get(*seg).is_some_and(Value::is_object)
            };
            if !fits {
                cur[*seg] = if next_is_item {
                    json!([])
                } else {
                    Value::Object(Map::new())
                };
            }
            cur = &mut cur[*seg];
        }
    }
}

/// Removes a field; removing a key field of a list item removes the item, and maps and
/// lists left empty go too.
pub fn remove_path(v: &mut Value, path: &str) {
    fn rec(cur: &mut Value, segs: &[&str], item_keys: Option<&Map<String, Value>>) -> bool {
        let Some((first, rest)) = segs.split_first() else {
            return false;
        };
        if let Some(keys) = parse_item_segment(first) {
            let Some(list) = cur.as_array_mut() else {
                return false;
            };
            let Some(at) = list.iter().position(|i| item_matches(i, &keys)) else {
                return false;
            };
            let remove_item = rest.is_empty() || rec(&mut list[at], rest, Some(&keys));
            if remove_item || list[at].as_object().is_some_and(Map::is_empty) {
                list.remove(at);
            }
            return false;
        }
        let Some(map) = cur.as_object_mut() else {
            return false;
        };
        if rest.is_empty() {
            map.remove(*first);
            // A key field gone: the whole item goes.
            return item_keys.is_some_and(|k| k.contains_key(*first));
        }
        if let Some(child) = map.get_mut(*first) {
            let gone = rec(child, rest, None);
            let empty = child.as_object().is_some_and(Map::is_empty)
                || child.as_array().is_some_and(Vec::is_empty);
            if empty {
                map.remove(*first);
            }
            return gone;
        }
        false
    }
    let segs: Vec<&str> = path.split(SEP).collect();
    rec(v, &segs, None);
}

/// The items of the associative lists in `result` that `applied` also has, put in
/// `applied`'s order in the places they hold (other managers' items stay where they are):
/// an apply decides the order of its own items.
pub fn order_like(result: &mut Value, applied: &Value, field: &str) {
    match (result, applied) {
        (Value::Object(r), Value::Object(a)) => {
            for (k, av) in a {
                if let Some(rv) = r.get_mut(k) {
                    order_like(rv, av, k);
                }
            }
        }
        (Value::Array(r), Value::Array(a)) => {
            let Some(wanted) = keyed_items(field, a) else {
                return;
            };
            let mut slots = Vec::new();
            let mut mine = Vec::new();
            for (seg, item) in wanted {
                let Some(keys) = parse_item_segment(&seg) else {
                    continue;
                };
                if let Some(at) = r.iter().position(|i| item_matches(i, &keys)) {
                    slots.push(at);
                    let mut taken = r[at].take();
                    order_like(&mut taken, item, "");
                    mine.push(taken);
                }
            }
            slots.sort_unstable();
            for (at, item) in slots.into_iter().zip(mine) {
                r[at] = item;
            }
        }
        _ => {}
    }
}

/// `managedFields`' `fieldsV1` of a set of paths.
pub fn fields_v1(paths: &BTreeSet<String>) -> Value {
    let mut root = Value::Object(Map::new());
    for p in paths {
        let mut cur = &mut root;
        for seg in p.split(SEP) {
            let item = seg.starts_with("k:{");
            let k = if item {
                seg.to_owned()
            } else {
                format!("f:{seg}")
            };
            if !cur.get(&k).is_some_and(Value::is_object) {
                cur[&k] = if item {
                    json!({".": {}})
                } else {
                    Value::Object(Map::new())
                };
            }
            cur = &mut cur[&k];
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        leaves(v).keys().map(|k| dotted(k)).collect()
    }

    #[test]
    fn keyed_lists_are_owned_per_item_and_field() {
        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "w:1", "ports": [{"containerPort": 8080}],
             "env": [{"name": "A", "value": "1"}], "args": ["x", "y"]}]}}}});
        assert_eq!(
            names(&d),
            [
                r#".spec.template.spec.containers[name="web"].args"#,
                r#".spec.template.spec.containers[name="web"].env[name="A"].name"#,
                r#".spec.template.spec.containers[name="web"].env[name="A"].value"#,
                r#".spec.template.spec.containers[name="web"].image"#,
                r#".spec.template.spec.containers[name="web"].name"#,
                r#".spec.template.spec.containers[name="web"].ports[containerPort=8080,protocol="TCP"].containerPort"#,
            ]
        );
        let image = leaves(&d)
            .into_keys()
            .find(|k| k.ends_with("image"))
            .unwrap();
        assert_eq!(get_path(&d, &image), Some(&json!("w:1")));
        // A port written with its protocol is the same item.
        let port = leaves(&d)
            .into_keys()
            .find(|k| k.ends_with("containerPort"))
            .unwrap();
        let explicit = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}});
        assert_eq!(get_path(&explicit, &port), Some(&json!(8080)));
    }

    #[test]
    fn set_and_remove_items() {
        let mut v = json!({"spec": {"containers": [{"name": "web", "image": "w:1"}]}});
        let side = json!({"spec": {"containers": [{"name": "log", "image": "l:1"}]}});
        for (p, val) in leaves(&side) {
            set_path(&mut v, &p, val);
        }
        assert_eq!(
            v["spec"]["containers"],
            json!([{"name": "web", "image": "w:1"}, {"name": "log", "image": "l:1"}])
        );
        // Dropping a non-key field keeps the item; dropping the key field drops it.
        let paths: Vec<String> = leaves(&side).into_keys().collect();
        remove_path(&mut v, &paths[0]); // image
        assert_eq!(v["spec"]["containers"][1], json!({"name": "log"}));
        remove_path(&mut v, &paths[1]); // name
        assert_eq!(
            v["spec"]["containers"],
            json!([{"name": "web", "image": "w:1"}])
        );
        let web: Vec<String> = leaves(&v).into_keys().collect();
        for p in &web {
            remove_path(&mut v, p);
        }
        assert_eq!(v, json!({}));
    }

    #[test]
    fn unkeyed_or_duplicate_lists_are_atomic() {
        let v = json!({"spec": {"rules": [{"host": "a"}], "env": [{"name": "A"}, {"name": "A"}]}});
        assert_eq!(names(&v), [".spec.env", ".spec.rules"]);
    }

    #[test]
    fn applied_order_wins() {
        let mut r = json!({"env": [{"name": "A"}, {"name": "X"}, {"name": "B"}]});
        order_like(&mut r, &json!({"env": [{"name": "B"}, {"name": "A"}]}), "");
        assert_eq!(
            r,
            json!({"env": [{"name": "B"}, {"name": "X"}, {"name": "A"}]})
        );
    }

    #[test]
    fn fields_v1_uses_key_segments() {
        let paths = leaves(&json!({"spec": {"containers": [{"name": "web", "image": "x"}]}}))
            .into_keys()
            .collect();
        assert_eq!(
            fields_v1(&paths),
            json!({"f:spec": {"f:containers": {r#"k:{"name":"web"}"#: {
                ".": {}, "f:image": {}, "f:name": {}}}}})
        );
    }
}
