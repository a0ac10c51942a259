//! YAML-safe output for template values: the `q` and `yaml` tera filters.
//!
//! Templates never interpolate a value raw. A string is written plain only when it is
//! unambiguous for every YAML reader Kubernetes tooling uses (YAML 1.2 here, YAML 1.1-ish
//! `sigs.k8s.io/yaml` in kubectl and the API server's clients): it starts with a letter, `_`
//! or `/`, holds only letters, digits and `._/-`, and is not one of the YAML 1.1 boolean or
//! null words (`yes`, `no`, `on`, `off`, `y`, `n`, `true`, `false`, `null`, any case).
//! Everything else is written as a double-quoted scalar that is also a valid JSON string,
//! with every character YAML does not allow raw (C0/C1 controls, DEL, U+2028/U+2029, BOM)
//! escaped as `\uXXXX`, so a value survives any reader byte for byte.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Words some YAML reader resolves to a boolean or null when written plain.
const AMBIGUOUS_WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// Whether `s` can be written as a plain (unquoted) scalar without changing its meaning.
pub(crate) fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_' || first == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !AMBIGUOUS_WORDS.contains(&s.to_ascii_lowercase().as_str())
}

/// `s` as a double-quoted scalar that is valid YAML and valid JSON.
pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Not printable in YAML (or a line break to YAML 1.1 readers): escape.
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string scalar: plain when unambiguous, else double-quoted.
pub(crate) fn string_scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        double_quoted(s)
    }
}

/// YAML readers refuse an implicit (`key: value`) key of 1024 characters or more: a longer
/// one is written as an explicit key (`? key`), which has no limit.
const MAX_IMPLICIT_KEY: usize = 1000;

/// A value on one line: scalars as scalars, collections in flow style.
pub(crate) fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_scalar(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let key = string_scalar(k);
                    let explicit = if key.len() > MAX_IMPLICIT_KEY {
                        "? "
                    } else {
                        ""
                    };
                    format!("{explicit}{key}: {}", inline(v))
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

/// Block-style lines for `v`, relative to indentation 0.
fn block_lines(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, val) in map {
                let key = string_scalar(k);
                if key.len() > MAX_IMPLICIT_KEY {
                    // `? key` then `: value`, the value's lines indented below the `:`.
                    out.push(format!("? {key}"));
                    let mut nested = Vec::new();
                    block_lines(val, &mut nested);
                    if is_block(val) {
                        out.push(":".to_owned());
                        out.extend(nested.into_iter().map(|l| format!("  {l}")));
                    } else {
                        out.push(format!(": {}", inline(val)));
                    }
                } else if is_block(val) {
                    out.push(format!("{key}:"));
                    let mut nested = Vec::new();
                    block_lines(val, &mut nested);
                    out.extend(nested.into_iter().map(|l| format!("  {l}")));
                } else {
                    out.push(format!("{key}: {}", inline(val)));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let mut nested = Vec::new();
                block_lines(item, &mut nested);
                for (i, l) in nested.into_iter().enumerate() {
                    out.push(if i == 0 {
                        format!("- {l}")
                    } else {
                        format!("  {l}")
                    });
                }
            }
        }
        scalar => out.push(inline(scalar)),
    }
}

/// A whole document in block style, ending in a newline (a document not rendered by a
/// template: one another library made, or one changed after rendering).
pub(crate) fn to_yaml(v: &Value) -> String {
    let mut text = block(v, 0);
    text.push('\n');
    text
}

/// `v` in block style. The first line is not indented (the template places it); every
/// following line is indented by `indent` spaces. Empty collections are `{}` / `[]`.
pub(crate) fn block(v: &Value, indent: usize) -> String {
    let mut lines = Vec::new();
    block_lines(v, &mut lines);
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

/// The `q` filter: one value on one line, YAML-safe.
pub fn q_filter(v: &Value, _args: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(inline(v)))
}

/// The `yaml(indent=N)` filter: a value in block style, continuation lines indented by N.
pub fn yaml_filter(v: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let indent = match args.get("indent") {
        None => 0,
        Some(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| tera::Error::msg("yaml filter: `indent` must be a whole number"))?,
    };
    Ok(Value::String(block(v, indent)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TRICKY: &[&str] = &[
        "",
        " ",
        "yes",
        "No",
        "ON",
        "off",
        "y",
        "N",
        "true",
        "False",
        "null",
        "Null",
        "~",
        "123",
        "0x1F",
        "1_000",
        "1e3",
        "1.0",
        ".inf",
        "-.Inf",
        ".NaN",
        "2001-12-14",
        "1:20",
        "0755",
        "+1",
        "*star",
        "&anchor",
        "!tag",
        "%directive",
        "@at",
        "`tick",
        "|",
        ">",
        "- dash",
        "-",
        "? q",
        "a: b",
        "a:b",
        "key: value # comment",
        "#comment",
        "a #b",
        "{flow}",
        "[list]",
        "a, b",
        "'single'",
        "\"double\"",
        "back\\slash",
        "line\nbreak",
        "trailing\n",
        "tab\there",
        "cr\rhere",
        " leading",
        "trailing ",
        "nul\u{0}byte",
        "bell\u{7}",
        "del\u{7f}",
        "nel\u{85}",
        "c1\u{9b}",
        "ls\u{2028}ps\u{2029}",
        "\u{feff}bom",
        "émoji 🚀 ünïcode",
        "<<",
        "=",
        "---",
        "...",
        "multi\n\nline\n  indented",
        "$(shell) ${VAR} {{ tera }} {% tag %}",
        "plain-value_1.2/x",
        "/health",
    ];

    #[test]
    fn every_tricky_string_round_trips_through_yaml() {
        for s in TRICKY {
            let doc = format!("k: {}\n", string_scalar(s));
            let back: BTreeMapStr = serde_yaml::from_str(&doc)
                .unwrap_or_else(|e| panic!("{s:?} rendered as {doc:?}: {e}"));
            assert_eq!(back.k, *s, "{doc}");
            // As a key, too.
            let doc = format!("{}: v\n", string_scalar(s));
            let back: std::collections::BTreeMap<String, String> = serde_yaml::from_str(&doc)
                .unwrap_or_else(|e| panic!("key {s:?} rendered as {doc:?}: {e}"));
            assert_eq!(back.keys().next().map(String::as_str), Some(*s), "{doc}");
        }
    }

    #[test]
    fn quoted_strings_are_json_and_printable() {
        for s in TRICKY {
            let q = double_quoted(s);
            let back: String = serde_json::from_str(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(back, *s);
            assert!(
                q.chars().all(|c| c == ' '
                    || (!c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))),
                "{q:?} holds a raw non-printable character"
            );
        }
    }

    #[test]
    fn only_unambiguous_strings_are_plain() {
        for plain in [
            "shop-api",
            "app.kubernetes.io/name",
            "/healthz",
            "ClusterIP",
            "_x",
        ] {
            assert_eq!(string_scalar(plain), plain);
        }
        for quoted in [
            "yes", "NO", "On", "1.0", "123", "a:b", "*x", "", "-x", ".x", "a b",
        ] {
            assert!(string_scalar(quoted).starts_with('"'), "{quoted}");
        }
    }

    #[test]
    fn block_style_nests_and_indents() {
        let v = json!({
            "a": "yes",
            "b": {"c": 1, "d": [true, "x"]},
            "e": [{"f": "g", "h": "i"}],
            "z": {},
            "zz": []
        });
        let text = block(&v, 4);
        assert_eq!(
            text,
            "a: \"yes\"\n    b:\n      c: 1\n      d:\n        - true\n        - x\n    e:\n      - f: g\n        h: i\n    z: {}\n    zz: []"
        );
        let doc = format!("root:\n    {text}\n");
        let back: Value = serde_yaml::from_str(&doc).unwrap();
        assert_eq!(back["root"], v);
        assert_eq!(block(&json!({}), 2), "{}");
        // Broke the `k8s_filters` fuzz property (fixtures/fuzz/k8s_filters/): a key of 1024
        // characters or more cannot be implicit, so it is written `? key`.
        let long = "K".repeat(1100);
        let v = json!({ &long: {"a": [1, "b"]}, "short": long, "flat": { &long: 2 } });
        for indent in [2, 6] {
            let doc = format!("root:\n{}{}\n", " ".repeat(indent), block(&v, indent));
            let back: Value = serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(back["root"], v);
        }
        let doc = format!("root: {}\n", inline(&v));
        let back: Value = serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!(back["root"], v);
        assert_eq!(inline(&json!({"k": ["a b", 1]})), "{k: [\"a b\", 1]}");
    }

    #[derive(serde::Deserialize)]
    struct BTreeMapStr {
        k: String,
    }
}
