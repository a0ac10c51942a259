//! Where each field path sits in the source: an index built from YAML parser events.
//!
//! serde_yaml gives a position only for the first error it meets while deserialising; every
//! other diagnostic (ranges, cross-field rules, unknown keys found later) needs the position
//! of an arbitrary field. This module walks the YAML event stream once and records, for each
//! path (`lambda.function.memory`, `kubernetes.ingress.hosts[0].host`), the position of its
//! key and, for scalars, of its value.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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

/// Path → position.
#[derive(Debug, Default)]
pub struct PositionIndex {
    entries: HashMap<String, Entry>,
}

impl PositionIndex {
    /// Indexes `source`. A document the event parser rejects yields an empty index (the
    /// syntax error itself is reported by serde_yaml, with its position).
    pub fn build(source: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut b, false).is_err() {
            return Self::default();
        }
        Self { entries: b.entries }
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

enum Frame {
    Map {
        path: String,
        pending_key: Option<(String, Pos)>,
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
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// Called when a value (scalar or collection start) appears; returns its path.
    fn place_value(&mut self, pos: Pos, scalar: bool) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, pending_key }) => {
                let (key, key_pos) = pending_key.take()?;
                let full = join(path, &key);
                self.entries.insert(
                    full.clone(),
                    Entry {
                        key: key_pos,
                        value: scalar.then_some(pos),
                    },
                );
                Some(full)
            }
            Some(Frame::Seq { path, index }) => {
                let full = format!("{path}[{index}]");
                *index += 1;
                self.entries.insert(
                    full.clone(),
                    Entry {
                        key: pos,
                        value: scalar.then_some(pos),
                    },
                );
                Some(full)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, ..) => {
                // A scalar in key position of a map opens an entry.
                if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut()
                    && pending_key.is_none()
                {
                    *pending_key = Some((text, pos));
                    return;
                }
                self.place_value(pos, true);
            }
            Event::Alias(_) => {
                self.place_value(pos, true);
            }
            Event::MappingStart(..) => {
                // A complex (non-scalar) key is not something deploy.yaml uses; its contents
                // are indexed under an empty name.
                let path = self.place_value(pos, false).unwrap_or_default();
                self.stack.push(Frame::Map {
                    path,
                    pending_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.place_value(pos, false).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
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
}
