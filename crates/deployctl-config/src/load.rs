//! The load pipeline: parse → overlay → interpolate → references → typed → rules.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::{ConfigError, Diagnostic};
use crate::interpolate::interpolate;
use crate::model::Config;
use crate::positions::{Pos, PositionIndex};
use crate::{LoadOptions, rules};

/// Collects diagnostics and places them in the file.
pub(crate) struct Diags<'a> {
    file: &'a Path,
    index: PositionIndex,
    /// `environments.<name>` when an overlay is applied: overlaid paths are found there.
    overlay: Option<String>,
    pub(crate) list: Vec<Diagnostic>,
}

impl Diags<'_> {
    fn pos(&self, path: &str, key: bool) -> Option<Pos> {
        let find = |p: &str| {
            if key {
                self.index.key(p)
            } else {
                self.index.value(p)
            }
        };
        if let Some(prefix) = &self.overlay {
            let overlaid = if path.is_empty() {
                prefix.clone()
            } else {
                format!("{prefix}.{path}")
            };
            // Only an exact hit in the overlay counts; otherwise the base file is right.
            if self.index.key(&overlaid).is_some()
                && self.index.value(&overlaid) != self.index.value(prefix)
            {
                return find(&overlaid);
            }
        }
        if path.is_empty() { None } else { find(path) }
    }

    fn push(&mut self, path: &str, at_key: bool, message: String, hint: Option<String>) {
        self.push_at(path, path, at_key, message, hint);
    }

    /// A diagnostic about `path`, positioned at `pos_path` (a missing key sits at its parent).
    pub(crate) fn push_at(
        &mut self,
        path: &str,
        pos_path: &str,
        at_key: bool,
        message: String,
        hint: Option<String>,
    ) {
        let pos = self.pos(pos_path, at_key);
        self.list.push(Diagnostic {
            file: self.file.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: path.to_owned(),
            message,
            hint,
        });
    }

    /// A problem with the value at `path`.
    pub(crate) fn value(
        &mut self,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(path, false, message.into(), hint.into());
    }

    /// A problem with the key at `path` (unknown or misplaced keys).
    pub(crate) fn key(
        &mut self,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(path, true, message.into(), hint.into());
    }
}

fn invalid(file: &Path, diagnostics: Vec<Diagnostic>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        diagnostics,
    }
}

pub(crate) fn load_str(
    source: &str,
    file: &Path,
    opts: &LoadOptions<'_>,
) -> Result<Config, ConfigError> {
    let mut d = Diags {
        file,
        index: PositionIndex::default(),
        overlay: None,
        list: Vec::new(),
    };
    if source.trim().is_empty()
        || source
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        d.value(
            "",
            "the file is empty",
            Some("run `deployctl init` to write a commented deploy.yaml".to_owned()),
        );
        return Err(invalid(file, d.list));
    }
    let mut root: Value = match serde_yaml::from_str(source) {
        Ok(v) => v,
        Err(e) => {
            let loc = e.location();
            let message = e.to_string();
            // serde_yaml appends " at line L column C"; the position is shown up front.
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_owned(),
                None => message,
            };
            let hint = if message.contains("tab") || source.contains('\t') {
                "YAML indentation must use spaces, not tabs"
            } else if message.contains("duplicate entry") {
                "each key may appear once per mapping; remove or merge the duplicate"
            } else {
                "check indentation, quoting and that every `key:` has a space after the colon"
            };
            d.list.push(Diagnostic {
                file: file.to_owned(),
                line: loc.as_ref().and_then(|l| u32::try_from(l.line()).ok()),
                column: loc.as_ref().and_then(|l| u32::try_from(l.column()).ok()),
                path: String::new(),
                message: format!("not valid YAML: {message}"),
                hint: Some(hint.to_owned()),
            });
            return Err(invalid(file, d.list));
        }
    };
    d.index = PositionIndex::build(source);
    if !root.is_mapping() {
        d.value(
            "",
            format!(
                "the top level must be a mapping of sections, found {}",
                kind(&root)
            ),
            Some("start with `version: \"1.0\"` and an `app:` section".to_owned()),
        );
        return Err(invalid(file, d.list));
    }

    apply_overlay(&mut root, opts.environment, &mut d);

    interpolate_tree(&mut root, String::new(), opts, &mut d);
    resolve_references(&mut root, &mut d);
    let secrets = secret_values(&root);

    stringify_string_fields(&mut root);
    let config = deserialize(root, &mut d);
    if let Some(mut config) = config {
        config.file = file.to_owned();
        // Rules also run on a document repaired after type errors, so every problem is
        // reported at once; a rule finding under a path that already failed to parse is
        // a consequence of the repair and is dropped.
        let parse_failures: Vec<String> = d.list.iter().map(|x| x.path.clone()).collect();
        let before = d.list.len();
        rules::check(&config, &mut d);
        let rule_diags = d.list.split_off(before);
        d.list.extend(rule_diags.into_iter().filter(|r| {
            !parse_failures.iter().any(|p| {
                p == &r.path
                    || r.path.starts_with(&format!("{p}."))
                    || (!r.path.is_empty() && p.starts_with(&format!("{}.", r.path)))
            })
        }));
        if d.list.is_empty() {
            resolve_paths(&mut config, file);
            return Ok(config);
        }
    }
    let mut list = std::mem::take(&mut d.list);
    for diag in &mut list {
        for s in &secrets {
            diag.message = redact(&diag.message, s);
            if let Some(h) = &mut diag.hint {
                *h = redact(h, s);
            }
        }
    }
    list.sort_by_key(|x| (x.line.is_none(), x.line, x.column));
    list.dedup();
    Err(invalid(file, list))
}

fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 3 {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Deep-merges `environments.<name>` over the base; removes `environments`.
fn apply_overlay(root: &mut Value, env: Option<&str>, d: &mut Diags<'_>) {
    let Some(map) = root.as_mapping_mut() else {
        return;
    };
    let envs = map.remove("environments");
    let names: Vec<String> = match &envs {
        Some(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            d.value(
                "environments",
                format!(
                    "must be a mapping of environment name to overrides, found {}",
                    kind(other)
                ),
                Some(
                    "e.g. environments: { staging: { kubernetes: { namespace: staging } } }"
                        .to_owned(),
                ),
            );
            Vec::new()
        }
    };
    // Keep the names (not the content) so `Config.environments` can list them.
    let listing: Mapping = names
        .iter()
        .map(|n| (Value::from(n.as_str()), Value::Null))
        .collect();
    if !listing.is_empty() {
        map.insert("environments".into(), Value::Mapping(listing));
    }
    let Some(name) = env else { return };
    let overlay = envs.as_ref().and_then(|e| e.get(name)).cloned();
    match overlay {
        Some(Value::Mapping(o)) => {
            d.overlay = Some(format!("environments.{name}"));
            merge(root, Value::Mapping(o));
        }
        Some(Value::Null) => {}
        Some(other) => d.value(
            &format!("environments.{name}"),
            format!("must be a mapping of overrides, found {}", kind(&other)),
            None,
        ),
        None => {
            let hint = if names.is_empty() {
                "this file defines no `environments:`; add one or drop --env".to_owned()
            } else {
                let mut h = format!("defined environments: {}", names.join(", "));
                if let Some(s) = did_you_mean(name, names.iter().map(String::as_str)) {
                    h = format!("did you mean `{s}`? {h}");
                }
                h
            };
            d.value(
                "",
                format!("unknown environment `{name}` (from --env)"),
                Some(hint),
            );
        }
    }
}

/// Maps merge key by key; anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn interpolate_tree(v: &mut Value, path: String, opts: &LoadOptions<'_>, d: &mut Diags<'_>) {
    match v {
        Value::String(s) if s.contains('$') => match interpolate(s, opts.vars) {
            Ok(expanded) => {
                let typed = s.trim_start().starts_with("${") && s.trim_end().ends_with('}');
                *v = retype(expanded, typed);
            }
            Err(problems) => {
                for p in problems {
                    d.value(&path, p.message, Some(p.hint));
                }
            }
        },
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let key = key_text(k);
                interpolate_tree(val, child(&path, &key), opts, d);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, format!("{path}[{i}]"), opts, d);
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, path, opts, d),
        _ => {}
    }
}

/// A value that was one whole `${…}` takes the YAML type of what it expanded to
/// (`memory: ${MEM}` with MEM=1024 is a number); string fields accept numbers anyway.
fn retype(expanded: String, whole: bool) -> Value {
    if whole {
        if let Ok(n) = expanded.parse::<i64>() {
            return Value::from(n);
        }
        if let Ok(n) = expanded.parse::<f64>()
            && n.is_finite()
            && expanded.contains('.')
        {
            return Value::from(n);
        }
        match expanded.as_str() {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    Value::String(expanded)
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_owned(),
    }
}

/// Resolves `{{ app.name }}`-style references against the document (secrets excluded).
fn resolve_references(root: &mut Value, d: &mut Diags<'_>) {
    let mut ctx_value = root.clone();
    if let Some(m) = ctx_value.as_mapping_mut() {
        m.remove("secrets");
        m.remove("environments");
    }
    let json = match serde_json::to_value(&ctx_value) {
        Ok(j) => j,
        Err(_) => return,
    };
    let Ok(ctx) = tera::Context::from_value(json) else {
        return;
    };
    let mut paths = Vec::new();
    flatten_paths(&ctx_value, String::new(), &mut paths);
    walk_refs(root, String::new(), &ctx, &paths, d);
}

/// Every dotted path to a scalar (did-you-mean source for references).
fn flatten_paths(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                flatten_paths(val, child(&path, &key_text(k)), out);
            }
        }
        _ if !path.is_empty() => out.push(path),
        _ => {}
    }
}

fn walk_refs(v: &mut Value, path: String, ctx: &tera::Context, keys: &[String], d: &mut Diags<'_>) {
    match v {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            if path == "secrets" || path.starts_with("secrets.") {
                d.value(
                    &path,
                    "secret values cannot contain `{{ }}` references",
                    Some("use ${VAR} interpolation for secrets".to_owned()),
                );
                return;
            }
            match tera::Tera::one_off(s, ctx, false) {
                Ok(out) => *s = out,
                Err(e) => {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(cause) = src {
                        msg = cause.to_string();
                        src = cause.source();
                    }
                    let msg = msg.replace(" while rendering '__tera_one_off'", "");
                    let missing = msg
                        .strip_prefix("Variable `")
                        .and_then(|r| r.split('`').next())
                        .map(str::to_owned);
                    let hint = match missing
                        .as_deref()
                        .and_then(|m| did_you_mean(m, keys.iter().map(String::as_str)))
                    {
                        Some(s) => format!("did you mean `{{{{ {s} }}}}`?"),
                        None => "references name other config values, e.g. {{ app.name }}; \
                                 write {{ '{{' }} for a literal `{{`"
                            .to_owned(),
                    };
                    d.value(
                        &path,
                        format!("cannot resolve reference: {msg}"),
                        Some(hint),
                    );
                }
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let key = key_text(k);
                walk_refs(val, child(&path, &key), ctx, keys, d);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_refs(item, format!("{path}[{i}]"), ctx, keys, d);
            }
        }
        _ => {}
    }
}

fn secret_values(root: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Value::Mapping(m)) = root.get("secrets") {
        out.extend(m.values().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    if let Some(p) = root
        .get("registry")
        .and_then(|r| r.get("password"))
        .and_then(Value::as_str)
    {
        out.push(p.to_owned());
    }
    if let Some(Value::Mapping(args)) = root.get("build").and_then(|b| b.get("args")) {
        out.extend(
            args.values()
                .filter_map(|a| a.get("secret").and_then(Value::as_str).map(str::to_owned)),
        );
    }
    out
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

pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

/// Deserialises the typed model, reporting every serde error: after each one the offending
/// node is removed (or a placeholder inserted for a missing field) and deserialisation runs
/// again, until it succeeds or stops making progress.
fn deserialize(mut root: Value, d: &mut Diags<'_>) -> Option<Config> {
    let mut attempts: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let result: Result<Config, _> = serde_path_to_error::deserialize(root.clone());
        let err = match result {
            Ok(cfg) => return Some(cfg),
            Err(e) => e,
        };
        let mut segs = segments(err.path());
        let inner = err.into_inner().to_string();
        let inner = match inner.find(" at line ") {
            Some(i) => inner[..i].to_owned(),
            None => inner,
        };
        let repaired = if let Some(rest) = inner.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default().to_owned();
            // serde_path_to_error's path ends at the parent for unknown fields; make it the key.
            if !matches!(segs.last(), Some(Seg::Key(k)) if *k == field) {
                segs.push(Seg::Key(field.clone()));
            }
            let expected = backtick_list(&inner)
                .into_iter()
                .skip(1)
                .collect::<Vec<_>>();
            let path = path_string(&segs);
            let hint = match did_you_mean(&field, expected.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if expected.is_empty() => "remove it".to_owned(),
                None => format!("valid keys here: {}", expected.join(", ")),
            };
            d.key(&path, "unknown field", Some(hint));
            remove(&mut root, &segs)
        } else if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default().to_owned();
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
            let placeholder = match *n {
                1 => Value::Mapping(Mapping::new()),
                2 => Value::String(String::new()),
                3 => Value::from(0),
                4 => Value::Sequence(Vec::new()),
                _ => return None,
            };
            match node_mut(&mut root, &segs) {
                Some(Value::Mapping(m)) => {
                    m.insert(Value::from(field.as_str()), placeholder);
                    true
                }
                _ => false,
            }
        } else if let Some(n) = attempts.get_mut(&path_string(&segs)) {
            // The placeholder inserted for a missing field has the wrong type: try the next.
            *n += 1;
            let placeholder = match *n {
                2 => Value::String(String::new()),
                3 => Value::from(0),
                4 => Value::Sequence(Vec::new()),
                _ => return None,
            };
            match node_mut(&mut root, &segs) {
                Some(slot) => {
                    *slot = placeholder;
                    true
                }
                None => false,
            }
        } else {
            let path = path_string(&segs);
            let (message, hint) = describe(&inner);
            d.value(&path, message, hint);
            !segs.is_empty() && remove(&mut root, &segs)
        };
        if !repaired {
            return None;
        }
    }
    None
}

/// Rewords a serde error for people.
fn describe(inner: &str) -> (String, Option<String>) {
    if let Some(rest) = inner.strip_prefix("unknown variant `") {
        let got = rest.split('`').next().unwrap_or_default();
        let allowed = backtick_list(inner).into_iter().skip(1).collect::<Vec<_>>();
        let hint = match did_you_mean(got, allowed.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`? allowed: {}", allowed.join(", ")),
            None => format!("allowed: {}", allowed.join(", ")),
        };
        return (format!("`{got}` is not an allowed value"), Some(hint));
    }
    if let Some(rest) = inner.strip_prefix("invalid type: ") {
        let (got, want) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let want = match want {
            w if w.starts_with("struct ") => "a mapping",
            w if w.starts_with("a map") => "a mapping",
            w if w.starts_with("a sequence") => "a list",
            "u8" | "u16" | "u32" | "u64" | "i32" | "i64" | "usize" => "a whole number",
            "f64" | "f32" => "a number",
            "a boolean" | "bool" => "true or false",
            other => other,
        };
        let got = if got == "map" {
            "a mapping"
        } else if got == "sequence" {
            "a list"
        } else {
            got
        };
        return (
            format!("expected {want}, found {got}"),
            Some("check the value's type; quote strings that look like numbers".to_owned()),
        );
    }
    if let Some(rest) = inner.strip_prefix("invalid value: ") {
        let (got, want) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another value"));
        let want = match want {
            "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number that is not negative",
            other => other,
        };
        return (format!("expected {want}, found {got}"), None);
    }
    if inner.starts_with("data did not match any variant of untagged enum BuildArgValue") {
        return (
            "a build argument is a string or `{ secret: \"${VAR}\" }`".to_owned(),
            None,
        );
    }
    if inner.starts_with("data did not match any variant of untagged enum IntOrPercent") {
        return (
            "expected a whole number or a percentage such as \"25%\"".to_owned(),
            None,
        );
    }
    (inner.to_owned(), None)
}

/// Fields that are strings in the model accept numbers and booleans as written
/// (`version: 1.0`, `env: { PORT: 8080 }`): YAML would otherwise type them.
fn stringify_string_fields(root: &mut Value) {
    fn scalar_to_string(v: &mut Value) {
        match v {
            Value::Number(n) => *v = Value::String(n.to_string()),
            Value::Bool(b) => *v = Value::String(b.to_string()),
            _ => {}
        }
    }
    fn map_values(v: Option<&mut Value>) {
        if let Some(Value::Mapping(m)) = v {
            for val in m.values_mut() {
                scalar_to_string(val);
            }
        }
    }
    let Some(m) = root.as_mapping_mut() else {
        return;
    };
    if let Some(v) = m.get_mut("version") {
        scalar_to_string(v);
    }
    if let Some(app) = m.get_mut("app")
        && let Some(v) = app.get_mut("version")
    {
        scalar_to_string(v);
    }
    map_values(m.get_mut("env"));
    map_values(m.get_mut("secrets"));
    if let Some(build) = m.get_mut("build") {
        map_values(build.get_mut("args"));
        map_values(build.get_mut("labels"));
    }
    if let Some(k) = m.get_mut("kubernetes") {
        map_values(k.get_mut("configmap"));
    }
    if let Some(f) = m.get_mut("lambda").and_then(|l| l.get_mut("function")) {
        map_values(f.get_mut("env"));
    }
}

fn resolve_paths(config: &mut Config, file: &Path) {
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if config.build.context == Path::new(".") {
        config.build.context = base.to_path_buf();
    } else if config.build.context.is_relative() {
        config.build.context = base.join(&config.build.context);
    }
    if let Some(t) = &config.kubernetes.templates_dir
        && t.is_relative()
    {
        config.kubernetes.templates_dir = Some(base.join(t));
    }
}
