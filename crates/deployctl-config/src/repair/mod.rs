//! Turning serde and serde_yaml errors into diagnostics, and repairing the document after
//! each one so that every problem is reported in one run.
//!
//! serde's errors are strings, so this module reads their English text. That is a contract
//! with code we do not own; it is written down here and each shape has a unit test that
//! produces the message from the real library (`repair/tests.rs`), so an upgrade that rewords one
//! fails a test instead of silently degrading a diagnostic.
//!
//! ## Parse errors (serde_yaml, before any typed deserialisation)
//!
//! | shape | source | what we do |
//! |---|---|---|
//! | `<message> at line L column C[, …]` | serde_yaml / libyaml `Display` | cut at the first ` at line `; the position comes from `Error::location()` instead ([`strip_location`]) |
//! | `[<path>: ]duplicate entry with key "<k>"` (also `` `<bool>` ``, a number, `with null key`, `in YAML map`) | serde_yaml `Mapping` | [`ParseShape::DuplicateKey`]: the loader reports every repeated key itself, at the *second* occurrence (the message's own position is the first) |
//! | anything containing `tab` | libyaml scanner: `found a tab character where an indentation space is expected` (block scalar), `found a tab character that violates indentation` (plain scalar) | [`ParseShape::Tab`]: hint about spaces (a tab that only yields `found character that cannot start any token` is caught by the loader, which also gives the hint whenever the file contains a tab) |
//!
//! ## Deserialisation errors (serde's `de::Error` defaults, via `serde_path_to_error`)
//!
//! | shape | what we do |
//! |---|---|
//! | ``unknown field `f`, expected `a` `` / ``…, expected one of `a`, `b` `` / ``…, there are no fields`` | report at the key with a did-you-mean from the backticked list; remove the key; retry |
//! | ``missing field `f` `` | report once at the parent; insert a placeholder (mapping, then string, number, list as each is rejected); retry |
//! | ``unknown variant `v`, expected … `` | "`v` is not an allowed value" with the allowed list; remove the value; retry |
//! | `invalid type: <got>, expected <want>` | "expected <want in words>, found <got>"; remove; retry |
//! | `invalid value: <got>, expected <want>` | the same, with integer ranges spelled out (`u16` → 0 to 65535, a port 1 to 65535); remove; retry |
//! | `data did not match any variant of untagged enum <Name>` | a sentence per enum we have (`BuildArgValue`, `IntOrPercent`); remove; retry |
//!
//! Any other message is shown as serde wrote it (still placed at its field path), and the
//! node is removed so the run continues.

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

use crate::load::{Diags, did_you_mean};
use crate::model::Config;

/// The suffix serde_yaml and libyaml append to a message that has a position.
const LOCATION_MARK: &str = " at line ";

/// The message without serde_yaml's ` at line L column C…` suffix.
pub(crate) fn strip_location(message: &str) -> &str {
    match message.find(LOCATION_MARK) {
        Some(i) => &message[..i],
        None => message,
    }
}

/// What a serde_yaml parse error (from `serde_yaml::from_str`) is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseShape {
    /// A mapping key appears twice.
    DuplicateKey,
    /// A tab where YAML wants spaces.
    Tab,
    /// Any other syntax error.
    Other,
}

/// Classifies a serde_yaml parse error message (location already stripped or not).
pub(crate) fn classify_parse(message: &str) -> ParseShape {
    let message = strip_location(message);
    if message.contains("duplicate entry with") || message.contains("duplicate entry in YAML map") {
        ParseShape::DuplicateKey
    } else if message.contains("tab") {
        ParseShape::Tab
    } else {
        ParseShape::Other
    }
}

/// What a deserialisation error says, read from serde's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// ``unknown field `field`, expected …``
    UnknownField {
        /// The key as written.
        field: String,
        /// The valid keys serde listed.
        expected: Vec<String>,
    },
    /// ``missing field `field` ``
    MissingField {
        /// The missing key.
        field: String,
    },
    /// ``unknown variant `got`, expected …``
    UnknownVariant {
        /// The value as written.
        got: String,
        /// The allowed values.
        allowed: Vec<String>,
    },
    /// `invalid type: got, expected want`
    InvalidType {
        /// What was found, in serde's words (`string "x"`, `map`).
        got: String,
        /// What was expected, in serde's words (`u32`, `a sequence`).
        want: String,
    },
    /// `invalid value: got, expected want`
    InvalidValue {
        /// What was found (`integer `70000``).
        got: String,
        /// What was expected (`u16`).
        want: String,
    },
    /// `data did not match any variant of untagged enum Name`
    UntaggedEnum {
        /// The enum's Rust name.
        name: String,
    },
    /// Anything else.
    Other(String),
}

/// Reads a deserialisation error message (see the module docs for the shapes).
pub(crate) fn classify(message: &str) -> Shape {
    let inner = strip_location(message);
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        return Shape::UnknownField {
            field: rest.split('`').next().unwrap_or_default().to_owned(),
            expected: backtick_list(inner).into_iter().skip(1).collect(),
        };
    }
    if let Some(rest) = inner.strip_prefix("missing field `") {
        return Shape::MissingField {
            field: rest.split('`').next().unwrap_or_default().to_owned(),
        };
    }
    if let Some(rest) = inner.strip_prefix("unknown variant `") {
        return Shape::UnknownVariant {
            got: rest.split('`').next().unwrap_or_default().to_owned(),
            allowed: backtick_list(inner).into_iter().skip(1).collect(),
        };
    }
    for (prefix, is_type) in [("invalid type: ", true), ("invalid value: ", false)] {
        if let Some(rest) = inner.strip_prefix(prefix) {
            let (got, want) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
            let (got, want) = (got.to_owned(), want.to_owned());
            return if is_type {
                Shape::InvalidType { got, want }
            } else {
                Shape::InvalidValue { got, want }
            };
        }
    }
    if let Some(name) = inner.strip_prefix("data did not match any variant of untagged enum ") {
        return Shape::UntaggedEnum {
            name: name.trim().to_owned(),
        };
    }
    Shape::Other(inner.to_owned())
}

/// One step of a path as serde_path_to_error reports it.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

fn path_string(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn node_mut<'v>(root: &'v mut Value, segs: &[Seg]) -> Option<&'v mut Value> {
    let mut cur = root;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Seg::Index(i), Value::Sequence(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the node at `segs`; returns whether something was removed.
fn remove(root: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parent)) = segs.split_last() else {
        return false;
    };
    match (last, node_mut(root, parent)) {
        (Seg::Key(k), Some(Value::Mapping(m))) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Some(Value::Sequence(items))) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

fn backtick_list(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// At most this many deserialisation passes (one per problem found).
const MAX_PASSES: usize = 200;
/// Budget of values visited over all passes: keeps the repair loop well under a second on
/// a 1 MiB document (a pass costs about a microsecond per value in a release build).
const MAX_NODE_VISITS: usize = 300_000;

/// The number of values in the document (every scalar, sequence and mapping).
fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Sequence(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Mapping(m) => {
            1 + m
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        Value::Tagged(t) => 1 + count_nodes(&t.value),
        _ => 1,
    }
}

/// The placeholder tried for a missing field on its `n`th attempt.
fn placeholder(n: usize) -> Option<Value> {
    match n {
        1 => Some(Value::Mapping(Mapping::new())),
        2 => Some(Value::String(String::new())),
        3 => Some(Value::from(0)),
        4 => Some(Value::Sequence(Vec::new())),
        _ => None,
    }
}

/// Deserialises the typed model, reporting every serde error: after each one the offending
/// node is removed (or a placeholder inserted for a missing field) and deserialisation runs
/// again, until it succeeds or stops making progress.
///
/// Each pass walks the whole document, so the number of passes is bounded by
/// [`MAX_NODE_VISITS`] over the document's size (and by [`MAX_PASSES`]); when that budget
/// ends with problems left, a last diagnostic says the list is incomplete.
pub(crate) fn deserialize(mut root: Value, d: &mut Diags<'_>) -> Option<Config> {
    let mut attempts: HashMap<String, usize> = HashMap::new();
    let nodes = count_nodes(&root).max(1);
    let passes = (MAX_NODE_VISITS / nodes).clamp(1, MAX_PASSES);
    for pass in 0..=passes {
        if pass == passes {
            if passes < MAX_PASSES {
                d.value(
                    "",
                    format!(
                        "stopped checking types after {passes} repair passes: the document has \
                         {nodes} values and each problem needs a pass over all of them"
                    ),
                    Some("fix the problems above and validate again".to_owned()),
                );
            }
            return None;
        }
        let result: Result<Config, _> = serde_path_to_error::deserialize(&root);
        let err = match result {
            Ok(cfg) => return Some(cfg),
            Err(e) => e,
        };
        let mut segs = segments(err.path());
        let shape = classify(&err.into_inner().to_string());
        let repaired = match shape {
            Shape::UnknownField { field, expected } => {
                // serde_path_to_error's path ends at the parent for unknown fields.
                if !matches!(segs.last(), Some(Seg::Key(k)) if *k == field) {
                    segs.push(Seg::Key(field.clone()));
                }
                let path = path_string(&segs);
                let hint = match did_you_mean(&field, expected.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if expected.is_empty() => "remove it".to_owned(),
                    None => format!("valid keys here: {}", expected.join(", ")),
                };
                d.key(&path, "unknown field", Some(hint));
                remove(&mut root, &segs)
            }
            Shape::MissingField { field } => {
                let parent = path_string(&segs);
                let full = child(&parent, &field);
                let n = attempts.entry(full.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    d.push_at(
                        &full,
                        &parent,
                        true,
                        format!("missing required field `{field}`"),
                        Some(if parent.is_empty() {
                            format!("add a top-level `{field}:` section")
                        } else {
                            format!("add `{field}:` under `{parent}`")
                        }),
                    );
                }
                let value = placeholder(*n)?;
                match node_mut(&mut root, &segs) {
                    Some(Value::Mapping(m)) => {
                        m.insert(Value::from(field.as_str()), value);
                        true
                    }
                    _ => false,
                }
            }
            shape => {
                let path = path_string(&segs);
                if let Some(n) = attempts.get_mut(&path) {
                    // The placeholder inserted for a missing field has the wrong type.
                    *n += 1;
                    let value = placeholder(*n)?;
                    match node_mut(&mut root, &segs) {
                        Some(slot) => {
                            *slot = value;
                            true
                        }
                        None => false,
                    }
                } else {
                    let (message, hint) = describe(shape, &path);
                    d.value(&path, message, hint);
                    !segs.is_empty() && remove(&mut root, &segs)
                }
            }
        };
        if !repaired {
            return None;
        }
    }
    None
}

/// A serde type name in words; integer ranges are spelled out when `ranged` (a value of
/// the right type but out of range).
fn want_in_words(want: &str, path: &str, ranged: bool) -> String {
    let port = path.ends_with("port");
    match want {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" if !ranged => {
            "a whole number".to_owned()
        }
        w if w.starts_with("struct ") || w.starts_with("a map") => "a mapping".to_owned(),
        w if w.starts_with("a sequence") => "a list".to_owned(),
        "u16" if port => "a port number from 1 to 65535".to_owned(),
        "u8" => "a whole number from 0 to 255".to_owned(),
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" => "a whole number from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a whole number that is not negative".to_owned(),
        "i32" | "i64" => "a whole number".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        "" => "another value".to_owned(),
        other => other.to_owned(),
    }
}

/// Rewords a serde error for people. `path` is the field it is about.
fn describe(shape: Shape, path: &str) -> (String, Option<String>) {
    match shape {
        Shape::UnknownVariant { got, allowed } => {
            let hint = match did_you_mean(&got, allowed.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`? allowed: {}", allowed.join(", ")),
                None => format!("allowed: {}", allowed.join(", ")),
            };
            (format!("`{got}` is not an allowed value"), Some(hint))
        }
        Shape::InvalidType { got, want } => {
            let got = match got.as_str() {
                "map" => "a mapping".to_owned(),
                "sequence" => "a list".to_owned(),
                _ => got,
            };
            (
                format!(
                    "expected {}, found {got}",
                    want_in_words(&want, path, false)
                ),
                Some("check the value's type; quote strings that look like numbers".to_owned()),
            )
        }
        Shape::InvalidValue { got, want } => {
            let want = want_in_words(&want, path, true);
            let hint = want
                .split_once(" from ")
                .map(|(_, range)| format!("use {range}"));
            (format!("expected {want}, found {got}"), hint)
        }
        Shape::UntaggedEnum { name } if name == "BuildArgValue" => (
            "a build argument is a string or `{ secret: \"${VAR}\" }`".to_owned(),
            None,
        ),
        Shape::UntaggedEnum { name } if name == "IntOrPercent" => (
            "expected a whole number or a percentage such as \"25%\"".to_owned(),
            None,
        ),
        Shape::UntaggedEnum { name } => (
            format!("data did not match any variant of untagged enum {name}"),
            None,
        ),
        Shape::UnknownField { field, .. } => (format!("unknown field `{field}`"), None),
        Shape::MissingField { field } => (format!("missing required field `{field}`"), None),
        Shape::Other(text) => (text, None),
    }
}

#[cfg(test)]
mod tests;
