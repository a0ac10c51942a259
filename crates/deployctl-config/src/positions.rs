//! Where each field path sits in the source: an index built from YAML parser events.
//!
//! serde_yaml gives a position only for the first error it meets while deserialising; every
//! other diagnostic (ranges, cross-field rules, unknown keys found later) needs the position
//! of an arbitrary field. This module walks the YAML event stream once and records, for each
//! path (`lambda.function.memory`, `kubernetes.ingress.hosts[0].host`), the position of its
//! key and, for scalars, of its value.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn from_marker(m: Marker) -> Self {
        Self {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Pos,
    value: Option<Pos>,
}

/// Deeper nesting than this is refused before serde_yaml sees the text: libyaml's work on
/// unclosed flow collections grows with the nesting depth times the length of the file.
/// The deepest real deploy.yaml path (an inline IAM policy condition) is about 10 levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// Budget for the total length of every field path in the document. Each later pass builds
/// a path per node, so a long key over many children would otherwise cost length ×
/// children; a real config uses a few hundred kilobytes at most.
pub(crate) const MAX_PATH_BYTES: usize = 16 * 1024 * 1024;

/// Path → position.
#[derive(Debug, Default, Clone)]
pub struct PositionIndex {
    entries: HashMap<String, Entry>,
}

/// A mapping key that appears twice in the same mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    /// Field path of the key (`app.name`).
    pub path: String,
    /// The key as written.
    pub key: String,
    /// Where the repeated key is.
    pub at: Pos,
    /// Where the key first appears.
    pub first: Pos,
}

/// A document refused before parsing, to keep the work bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Collections nested deeper than [`MAX_DEPTH`]; where the first too-deep one opens.
    TooDeep(Pos),
    /// Field paths longer in total than [`MAX_PATH_BYTES`]; where the budget ran out.
    TooComplex(Pos),
}

/// What one pass over the YAML events found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Path → position (empty when the event parser rejects the document: the syntax
    /// error itself is reported by serde_yaml, with its position).
    pub index: PositionIndex,
    /// Repeated keys, in the order of their second occurrence.
    pub duplicates: Vec<Duplicate>,
}

/// Walks the YAML events of `source` once: indexes positions, finds repeated keys, and
/// refuses documents nested deeper than [`MAX_DEPTH`] (also when the event parser gives
/// up early, by a lexical count of flow brackets) or with too long paths in total.
pub(crate) fn scan(source: &str) -> Result<Scan, Limit> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(source);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => b.on_event(ev, mark)?,
            Err(_) => {
                if let Some(at) = lexical_flow_too_deep(source) {
                    return Err(Limit::TooDeep(at));
                }
                return Ok(Scan::default());
            }
        }
    }
    Ok(Scan {
        index: PositionIndex { entries: b.entries },
        duplicates: b.duplicates,
    })
}

impl PositionIndex {
    /// Indexes `source` (empty when it is not valid YAML or over a [`scan`] limit).
    #[cfg(test)]
    pub fn build(source: &str) -> Self {
        scan(source).map(|s| s.index).unwrap_or_default()
    }

    /// Position of the value at `path` (for scalars), else of its key.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.lookup(path).map(|e| e.value.unwrap_or(e.key))
    }

    /// Position of the key at `path`.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.lookup(path).map(|e| e.key)
    }

    /// The entry at `path`, or at its nearest indexed ancestor.
    fn lookup(&self, path: &str) -> Option<Entry> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.get(p) {
                return Some(*e);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// The first place where flow collections (`[`, `{`) outside quotes and comments nest
/// deeper than [`MAX_DEPTH`]. Used only when the event parser stops on a syntax error, so
/// serde_yaml never sees deep flow nesting whatever the event parser thought of the text.
fn lexical_flow_too_deep(source: &str) -> Option<Pos> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1u32, 0u32);
    let mut prev = '\n';
    let mut chars = source.chars().peekable();
    #[derive(PartialEq)]
    enum Mode {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut mode = Mode::Plain;
    while let Some(ch) = chars.next() {
        col = col.saturating_add(1);
        match mode {
            Mode::Plain => match ch {
                '#' if prev.is_whitespace() => mode = Mode::Comment,
                '\'' | '"' if prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':') => {
                    mode = if ch == '"' {
                        Mode::Double
                    } else {
                        Mode::Single
                    };
                }
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(Pos { line, column: col });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
            Mode::Single if ch == '\'' => {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    col = col.saturating_add(1);
                } else {
                    mode = Mode::Plain;
                }
            }
            Mode::Double if ch == '\\' && chars.next().is_some() => {
                col = col.saturating_add(1);
            }
            Mode::Double if ch == '"' => mode = Mode::Plain,
            Mode::Comment if ch == '\n' => mode = Mode::Plain,
            _ => {}
        }
        if ch == '\n' {
            line = line.saturating_add(1);
            col = 0;
        }
        prev = ch;
    }
    None
}

enum Frame {
    Map {
        path: String,
        /// The next node is a key (else a value).
        at_key: bool,
        /// The key whose value comes next; `None` after a complex (non-scalar) key.
        pending_key: Option<(String, Pos)>,
        /// Scalar keys seen so far: identity → (key as written, position).
        seen: HashMap<(bool, String), Pos>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    entries: HashMap<String, Entry>,
    duplicates: Vec<Duplicate>,
    path_bytes: usize,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Key identity as serde_yaml compares keys: a quoted scalar is a string; a plain one is a
/// string unless it reads as a number, boolean or null. `(is_string, text)`.
fn key_identity(text: &str, style: TScalarStyle) -> (bool, String) {
    let plain_non_string = style == TScalarStyle::Plain
        && (text.parse::<f64>().is_ok()
            || matches!(
                text,
                "true"
                    | "false"
                    | "True"
                    | "False"
                    | "TRUE"
                    | "FALSE"
                    | "null"
                    | "Null"
                    | "NULL"
                    | "~"
                    | ""
            ));
    (!plain_non_string, text.to_owned())
}

impl Builder {
    /// Called when a node (scalar or collection start) appears. Returns its path, or
    /// `None` when the node is a mapping key.
    fn place(&mut self, pos: Pos, scalar: Option<(&str, TScalarStyle)>) -> Option<String> {
        let (full, entry) = match self.stack.last_mut() {
            None => return Some(String::new()),
            Some(Frame::Map {
                path,
                at_key,
                pending_key,
                seen,
            }) => {
                if *at_key {
                    *at_key = false;
                    *pending_key = None;
                    if let Some((text, style)) = scalar {
                        let id = key_identity(text, style);
                        if let Some(first) = seen.get(&id) {
                            self.duplicates.push(Duplicate {
                                path: join(path, text),
                                key: text.to_owned(),
                                at: pos,
                                first: *first,
                            });
                        } else {
                            seen.insert(id, pos);
                        }
                        *pending_key = Some((text.to_owned(), pos));
                    }
                    return None;
                }
                *at_key = true;
                let (key, key_pos) = pending_key.take().unwrap_or_else(|| ("?".to_owned(), pos));
                (
                    join(path, &key),
                    Entry {
                        key: key_pos,
                        value: scalar.is_some().then_some(pos),
                    },
                )
            }
            Some(Frame::Seq { path, index }) => {
                let full = format!("{path}[{index}]");
                *index += 1;
                (
                    full,
                    Entry {
                        key: pos,
                        value: scalar.is_some().then_some(pos),
                    },
                )
            }
        };
        self.path_bytes = self.path_bytes.saturating_add(full.len());
        self.entries.insert(full.clone(), entry);
        Some(full)
    }

    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), Limit> {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, style, ..) => {
                self.place(pos, Some((&text, style)));
            }
            Event::Alias(_) => {
                self.place(pos, Some(("*", TScalarStyle::Plain)));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Limit::TooDeep(pos));
                }
                // A complex (non-scalar) key is not something deploy.yaml uses; its
                // contents are indexed under an empty name.
                let path = self.place(pos, None).unwrap_or_default();
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        at_key: true,
                        pending_key: None,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(Limit::TooComplex(pos));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_values_and_sequences() {
        let src = "app:\n  name: x\nlambda:\n  function:\n    memory: 64\nhosts:\n  - host: a\n    paths: [\"/\", \"/b\"]\n";
        let idx = PositionIndex::build(src);
        assert_eq!(idx.value("app.name"), Some(Pos { line: 2, column: 9 }));
        assert_eq!(idx.key("app.name"), Some(Pos { line: 2, column: 3 }));
        assert_eq!(
            idx.value("lambda.function.memory"),
            Some(Pos {
                line: 5,
                column: 13
            })
        );
        assert_eq!(
            idx.value("lambda.function"),
            Some(Pos { line: 4, column: 3 })
        );
        assert_eq!(
            idx.value("hosts[0].host"),
            Some(Pos {
                line: 7,
                column: 11
            })
        );
        assert_eq!(
            idx.value("hosts[0].paths[1]"),
            Some(Pos {
                line: 8,
                column: 18
            })
        );
        // Unknown deeper paths fall back to the nearest ancestor.
        assert_eq!(
            idx.value("app.name.deeper"),
            Some(Pos { line: 2, column: 9 })
        );
        assert_eq!(idx.value("nope"), None);
    }

    #[test]
    fn lexical_depth_counts_flow_brackets_outside_quotes_and_comments() {
        let deep = format!("a: {}", "[".repeat(MAX_DEPTH + 1));
        assert_eq!(
            lexical_flow_too_deep(&deep),
            Some(Pos {
                line: 1,
                column: u32::try_from(4 + MAX_DEPTH).unwrap_or(0)
            })
        );
        let balanced = format!("a: {}\n", "[]".repeat(100));
        assert_eq!(lexical_flow_too_deep(&balanced), None);
        let quoted = format!(
            "a: '{0}'\nb: \"{0}\\\"\"\n# {0}\nc: 'it''s {0}'\n",
            "[".repeat(100)
        );
        assert_eq!(lexical_flow_too_deep(&quoted), None, "{quoted}");
        // A `]` inside quotes does not close anything.
        let sneaky = "[ \"]\" ".repeat(MAX_DEPTH + 1);
        assert!(lexical_flow_too_deep(&sneaky).is_some());
    }

    #[test]
    fn scan_finds_duplicates_and_limits() {
        let s = scan("a:\n  b: 1\n  b: 2\n").unwrap_or_default();
        assert_eq!(
            s.duplicates,
            vec![Duplicate {
                path: "a.b".into(),
                key: "b".into(),
                at: Pos { line: 3, column: 3 },
                first: Pos { line: 2, column: 3 },
            }]
        );
        let deep = "- ".repeat(MAX_DEPTH + 1) + "x\n";
        assert!(matches!(scan(&deep), Err(Limit::TooDeep(_))));
        assert!(scan(&"- ".repeat(MAX_DEPTH - 1)).is_ok());
    }
}
