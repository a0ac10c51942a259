//! The `k8s_filters` target: values through the `q` and `yaml(indent=N)` tera filters
//! every Kubernetes template writes its values with.
//!
//! The input is a string (bytes that are not UTF-8 are replaced) and, when it is JSON, also
//! the value it spells; the first byte picks the indent (2 to 9).
//!
//! Properties, for every value:
//! - `q` writes one line, and `k: <q>` reads back (YAML) as the value; a string written by
//!   `q` in under 1000 bytes is also a valid key (`<q>: v` reads back with that key), and
//!   when quoted is a JSON string of the same text;
//! - `yaml(indent=N)` placed the way templates place it (`k:` then the value on the next
//!   line, indented by N) reads back as the value.

use std::collections::{BTreeMap, HashMap};

use super::{q_filter, yaml_filter};
use serde_json::Value;

/// Values nested deeper than this are not read back: the reader's own recursion limit
/// (128 levels) is not what is tested.
const MAX_DEPTH: usize = 100;

/// Checks the properties for `data`.
pub fn check(data: &[u8]) {
    let indent = 2 + usize::from(data.first().copied().unwrap_or(0) % 8);
    let text = String::from_utf8_lossy(data).into_owned();
    holds(&Value::String(text), indent);
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        holds(&value, indent);
    }
}

fn holds(v: &Value, indent: usize) {
    let q = filter_text(q_filter(v, &HashMap::new()), v);
    assert!(
        !q.contains(['\n', '\r']),
        "q wrote more than one line for {v:?}: {q:?}"
    );
    if depth(v) > MAX_DEPTH {
        return;
    }
    let doc = format!("k: {q}\n");
    assert_eq!(read_k(&doc, v), *v, "q: {doc:?}");
    // A key of 1024 characters or more cannot be implicit (the filters write `? key`
    // inside collections; a template writes `{{ k | q }}:` only with short keys).
    if let Value::String(s) = v
        && q.len() <= 1000
    {
        let doc = format!("{q}: v\n");
        let back: BTreeMap<String, String> = serde_yaml::from_str(&doc)
            .unwrap_or_else(|e| panic!("q of {s:?} as a key: {doc:?} does not read: {e}"));
        assert_eq!(back.keys().collect::<Vec<_>>(), [s], "q as a key: {doc:?}");
        if q.starts_with('"') {
            let json: String = serde_json::from_str(&q)
                .unwrap_or_else(|e| panic!("q of {s:?} is not a JSON string: {q:?}: {e}"));
            assert_eq!(json, *s, "q as JSON: {q:?}");
        }
    }
    let args = HashMap::from([("indent".to_owned(), Value::from(indent))]);
    let block = filter_text(yaml_filter(v, &args), v);
    let doc = format!("k:\n{}{block}\n", " ".repeat(indent));
    assert_eq!(read_k(&doc, v), *v, "yaml(indent={indent}): {doc:?}");
}

fn filter_text<E: std::fmt::Debug>(out: Result<Value, E>, v: &Value) -> String {
    match out {
        Ok(Value::String(s)) => s,
        other => panic!("a filter of {v:?} gave {other:?}, not a string"),
    }
}

fn read_k(doc: &str, v: &Value) -> Value {
    let mut back: BTreeMap<String, Value> = serde_yaml::from_str(doc)
        .unwrap_or_else(|e| panic!("{v:?} was written as {doc:?}, which does not read: {e}"));
    back.remove("k")
        .unwrap_or_else(|| panic!("{v:?} was written as {doc:?}, which has no `k`"))
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
