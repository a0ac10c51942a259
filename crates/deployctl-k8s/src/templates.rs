//! The templates a render uses: the built-in ones (embedded) with the user's replacements
//! from `kubernetes.templates_dir`, parsed, and rendering one of them into a checked
//! [`Manifest`] (exactly one document of the template's kind, in the configured namespace,
//! passing [`check_strict`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, TemplateOrigin};
use crate::render::{BUILTINS, Builtin, Manifest, TEMPLATE_NAMES};
use crate::schema::check_strict;
use crate::yaml;

/// Built-in templates with the user's replacements, parsed.
///
/// Parsing is most of a render's cost, so only the templates a config renders are parsed,
/// split across two threads, each group into its own `Tera` (built-in templates stand
/// alone: none includes another). A templates directory may hold templates that include
/// each other, so with one, every template goes into one `Tera` as before.
pub(crate) struct Templates {
    groups: Vec<tera::Tera>,
    /// Template name → index into `groups`.
    group_of: BTreeMap<&'static str, usize>,
    origins: BTreeMap<&'static str, TemplateOrigin>,
}

/// The templates in a user's templates directory, by built-in name: (path, source).
fn read_overrides(dir: &Path) -> Result<BTreeMap<&'static str, (PathBuf, String)>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::TemplatesDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut unknown = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::TemplatesDir {
            dir: dir.to_owned(),
            source,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        // Hidden files (.gitkeep, editor swap files) are not templates.
        if file_name.starts_with('.') {
            continue;
        }
        match TEMPLATE_NAMES.iter().find(|n| **n == file_name) {
            Some(name) if entry.path().is_file() => files.push((*name, entry.path())),
            _ => unknown.push(file_name),
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(Error::UnknownTemplates {
            dir: dir.to_owned(),
            files: unknown,
        });
    }
    let mut overrides = BTreeMap::new();
    for (name, path) in files {
        let source = std::fs::read_to_string(&path).map_err(|source| Error::ReadTemplate {
            path: path.clone(),
            source,
        })?;
        overrides.insert(name, (path, source));
    }
    Ok(overrides)
}

/// A `Tera` with deployctl's filters and no HTML escaping.
fn new_tera() -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.register_filter("q", yaml::q_filter);
    tera.register_filter("yaml", yaml::yaml_filter);
    tera
}

/// Parses `sources` (name, origin, text) into one `Tera`.
fn parse_group(sources: Vec<(&'static str, TemplateOrigin, &str)>) -> Result<tera::Tera, Error> {
    let mut tera = new_tera();
    for (name, origin, source) in sources {
        if let Err(source) = tera.add_raw_template(name, source) {
            return Err(Error::Template {
                template: origin,
                source,
            });
        }
    }
    Ok(tera)
}

impl Templates {
    /// The built-in templates named in `wanted`, or every template (built-in or from
    /// `user_dir`) when a templates directory is set.
    pub(crate) fn load(user_dir: Option<&Path>, wanted: &[&'static str]) -> Result<Self, Error> {
        let Some(dir) = user_dir else {
            return Self::builtins(wanted);
        };
        let mut overrides = read_overrides(dir)?;
        let mut sources = Vec::new();
        for b in &BUILTINS {
            let (origin, source) = match overrides.remove(b.name) {
                Some((path, source)) => (TemplateOrigin::User { name: b.name, path }, source),
                None => (
                    TemplateOrigin::BuiltIn { name: b.name },
                    b.source.to_owned(),
                ),
            };
            sources.push((b.name, origin, source));
        }
        let tera = parse_group(
            sources
                .iter()
                .map(|(n, o, s)| (*n, o.clone(), s.as_str()))
                .collect(),
        )?;
        Ok(Self {
            groups: vec![tera],
            group_of: BUILTINS.iter().map(|b| (b.name, 0)).collect(),
            origins: sources.into_iter().map(|(n, o, _)| (n, o)).collect(),
        })
    }

    fn builtins(wanted: &[&'static str]) -> Result<Self, Error> {
        let mut chosen: Vec<&Builtin> = BUILTINS
            .iter()
            .filter(|b| wanted.contains(&b.name))
            .collect();
        // Largest first, each to the lighter of two groups.
        chosen.sort_by_key(|b| std::cmp::Reverse(b.source.len()));
        let mut split: [(usize, Vec<&Builtin>); 2] = [(0, Vec::new()), (0, Vec::new())];
        for b in chosen {
            let lighter = usize::from(split[1].0 < split[0].0);
            split[lighter].0 += b.source.len();
            split[lighter].1.push(b);
        }
        let [(_, first), (_, second)] = split;
        let sources = |group: &[&Builtin]| -> Vec<(&'static str, TemplateOrigin, &'static str)> {
            group
                .iter()
                .map(|b| (b.name, TemplateOrigin::BuiltIn { name: b.name }, b.source))
                .collect()
        };
        let (a, b) = if second.is_empty() {
            (parse_group(sources(&first)), Ok(new_tera()))
        } else {
            std::thread::scope(|scope| {
                let other = scope.spawn(|| parse_group(sources(&second)));
                let mine = parse_group(sources(&first));
                // A panic there is a panic here, as if both groups were parsed on this thread.
                let other = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (mine, other)
            })
        };
        let mut group_of = BTreeMap::new();
        for b in &first {
            group_of.insert(b.name, 0);
        }
        for b in &second {
            group_of.insert(b.name, 1);
        }
        Ok(Self {
            groups: vec![a?, b?],
            group_of,
            origins: BTreeMap::new(),
        })
    }

    /// Renders `b`: `None` when the template renders nothing but blank lines and comments
    /// (a user template can drop a resource that way).
    pub(crate) fn render(
        &self,
        b: &Builtin,
        ctx: &tera::Context,
        namespace: &str,
    ) -> Result<Option<Manifest>, Error> {
        let origin = self
            .origins
            .get(b.name)
            .cloned()
            .unwrap_or(TemplateOrigin::BuiltIn { name: b.name });
        let tera = self
            .group_of
            .get(b.name)
            .and_then(|i| self.groups.get(*i))
            .ok_or_else(|| Error::Document {
                template: origin.clone(),
                reason: "the template was not loaded for this render".to_owned(),
            })?;
        let text = tera.render(b.name, ctx).map_err(|source| Error::Template {
            template: origin.clone(),
            source,
        })?;
        let yaml = normalize(&text);
        if yaml.is_empty() {
            return Ok(None);
        }
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&yaml) {
            let value =
                <Value as serde::Deserialize>::deserialize(doc).map_err(|source| Error::Yaml {
                    template: origin.clone(),
                    source,
                })?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        let bad = |reason: String| Error::Document {
            template: origin.clone(),
            reason,
        };
        let value = match docs.len() {
            0 => return Ok(None),
            1 => docs.remove(0),
            n => {
                return Err(bad(format!(
                    "{n} documents; a template renders exactly one resource"
                )));
            }
        };
        let field = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        let api_version = field("/apiVersion").unwrap_or_default().to_owned();
        let kind = field("/kind").unwrap_or_default().to_owned();
        if api_version != b.api_version || kind != b.kind {
            return Err(bad(format!(
                "it is `{api_version}` `{kind}`, but this template renders `{}` `{}`",
                b.api_version, b.kind
            )));
        }
        let name = match field("/metadata/name") {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => return Err(bad("metadata.name is missing or empty".to_owned())),
        };
        match field("/metadata/namespace") {
            Some(n) if n == namespace => {}
            Some(n) => {
                return Err(bad(format!(
                    "metadata.namespace is `{n}`, not the configured namespace `{namespace}`"
                )));
            }
            None => {
                return Err(bad(format!(
                    "metadata.namespace is missing (expected `{namespace}`)"
                )));
            }
        }
        check_strict(&value).map_err(|e| e.in_template(origin.clone()))?;
        Ok(Some(Manifest {
            api_version,
            kind,
            name,
            namespace: namespace.to_owned(),
            template: b.name,
            yaml,
            value,
        }))
    }
}

/// Trims blank lines and a leading `---` / trailing `---` or `...` marker; the result is
/// empty when nothing but blank lines and comments remain, else ends in one newline.
pub(crate) fn normalize(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    while lines
        .first()
        .is_some_and(|l| l.trim().is_empty() || l.trim_end() == "---")
    {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| {
        let l = l.trim_end();
        l.is_empty() || l == "---" || l == "..."
    }) {
        lines.pop();
    }
    if lines
        .iter()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return String::new();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_parses_in_either_group() {
        let t = Templates::builtins(TEMPLATE_NAMES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.group_of.len(), BUILTINS.len());
        // Both groups hold templates: the parse is split.
        assert!(t.group_of.values().any(|g| *g == 0) && t.group_of.values().any(|g| *g == 1));
        let one = Templates::builtins(&["service.yaml.tera"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            one.group_of.keys().copied().collect::<Vec<_>>(),
            ["service.yaml.tera"]
        );
    }

    #[test]
    fn normalize_drops_markers_and_comment_only_text() {
        assert_eq!(normalize("\n---\na: 1\n\n---\n"), "a: 1\n");
        assert_eq!(normalize("# nothing here\n\n  # really\n"), "");
        assert_eq!(
            normalize("a: |\n  x  \n"),
            "a: |\n  x  \n",
            "content is kept"
        );
    }
}
