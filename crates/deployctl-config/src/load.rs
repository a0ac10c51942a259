//! The load pipeline: parse → overlay → interpolate → references → typed → rules.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::{ConfigError, Diagnostic};
use crate::expand::{interpolate_tree, resolve_references, secret_values};
use crate::model::Config;
use crate::positions::{self, Limit, MAX_DEPTH, MAX_PATH_BYTES, Pos, PositionIndex, Scan};
use crate::repair::{self, ParseShape};
use crate::{LoadOptions, rules};

/// Collects diagnostics and places them in the file.
pub(crate) struct Diags<'a> {
    file: &'a Path,
    index: PositionIndex,
    /// `environments.<name>` when an overlay is applied: overlaid paths are found there.
    overlay: Option<String>,
    pub(crate) list: Vec<Diagnostic>,
    /// Secret values left unresolved under [`SecretPolicy::Deferred`], as the diagnostics
    /// a strict load would have reported.
    pub(crate) unresolved: Vec<Diagnostic>,
    /// Secret values (to keep out of every message).
    pub(crate) secrets: Vec<String>,
}

impl<'a> Diags<'a> {
    /// Diagnostics for `file` after loading, placed with the load's `index`.
    pub(crate) fn detached(file: &'a Path, index: PositionIndex, overlay: Option<String>) -> Self {
        Diags {
            file,
            index,
            overlay,
            list: Vec::new(),
            unresolved: Vec::new(),
            secrets: Vec::new(),
        }
    }

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

    pub(crate) fn make(
        &self,
        path: &str,
        pos_path: &str,
        at_key: bool,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let pos = self.pos(pos_path, at_key);
        Diagnostic {
            file: self.file.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: path.to_owned(),
            message,
            hint,
        }
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
        let diag = self.make(path, pos_path, at_key, message, hint);
        self.list.push(diag);
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

/// The error for `diagnostics`, each shortened by [`clip_echoes`] (secrets must already be
/// redacted, so a clipped secret can never survive half-shown).
fn invalid(file: &Path, mut diagnostics: Vec<Diagnostic>) -> ConfigError {
    diagnostics.iter_mut().for_each(clip_echoes);
    ConfigError::Invalid {
        file: file.to_owned(),
        diagnostics,
    }
}

/// A problem with the whole file (no field), at `pos` when known.
fn whole_file(file: &Path, pos: Option<Pos>, message: String, hint: &str) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        path: String::new(),
        message,
        hint: Some(hint.to_owned()),
    }
}

/// The first character YAML does not allow in a document (C0 controls other than tab,
/// line feed and carriage return, DEL, C1 controls other than NEL, U+FFFE, U+FFFF), with
/// its 1-based line and column (in characters).
fn forbidden_char(source: &str) -> Option<(Pos, char)> {
    let (mut line, mut column) = (1u32, 0u32);
    for ch in source.chars() {
        column = column.saturating_add(1);
        let c = ch as u32;
        let allowed = matches!(ch, '\t' | '\n' | '\r')
            || (0x20..=0x7E).contains(&c)
            || c == 0x85
            || ((0xA0..=0x10FFFF).contains(&c) && c != 0xFFFE && c != 0xFFFF);
        if !allowed {
            return Some((Pos { line, column }, ch));
        }
        if ch == '\n' {
            line = line.saturating_add(1);
            column = 0;
        }
    }
    None
}

/// Diagnostics for a document serde_yaml cannot parse.
fn parse_failure(e: &serde_yaml::Error, scan: &Scan, file: &Path, source: &str) -> Vec<Diagnostic> {
    let text = e.to_string();
    let shape = repair::classify_parse(&text);
    if shape == ParseShape::DuplicateKey && !scan.duplicates.is_empty() {
        return scan
            .duplicates
            .iter()
            .map(|dup| Diagnostic {
                file: file.to_owned(),
                line: Some(dup.at.line),
                column: Some(dup.at.column),
                path: dup.path.clone(),
                message: format!(
                    "duplicate key `{}`: it is already defined at line {}, column {}",
                    dup.key, dup.first.line, dup.first.column
                ),
                hint: Some(
                    "each key may appear once per mapping; remove or merge the duplicate"
                        .to_owned(),
                ),
            })
            .collect();
    }
    let loc = e.location();
    let message = repair::strip_location(&text);
    let hint = if shape == ParseShape::Tab || source.contains('\t') {
        "YAML indentation must use spaces, not tabs"
    } else if shape == ParseShape::DuplicateKey {
        "each key may appear once per mapping; remove or merge the duplicate"
    } else {
        "check indentation, quoting and that every `key:` has a space after the colon"
    };
    let pos = loc.map(|l| Pos {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        column: u32::try_from(l.column()).unwrap_or(u32::MAX),
    });
    vec![whole_file(
        file,
        pos,
        format!("not valid YAML: {message}"),
        hint,
    )]
}

/// Loads `source` as if read from `file`. With `on_disk`, paths the config names relative to
/// the file (the build context) are also checked to exist, so `validate` passing means a
/// build can start.
pub(crate) fn load_str(
    source: &str,
    file: &Path,
    opts: &LoadOptions<'_>,
    on_disk: bool,
) -> Result<Config, ConfigError> {
    // A UTF-8 byte order mark is not content.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut d = Diags {
        file,
        index: PositionIndex::default(),
        overlay: None,
        list: Vec::new(),
        unresolved: Vec::new(),
        secrets: Vec::new(),
    };
    if let Some((pos, ch)) = forbidden_char(source) {
        let what = if ch == '\0' {
            "a NUL byte".to_owned()
        } else {
            format!("the control character U+{:04X}", ch as u32)
        };
        let diag = whole_file(
            file,
            Some(pos),
            format!("the file contains {what}, which YAML does not allow"),
            "remove it: deploy.yaml is plain text (is this the right file?)",
        );
        return Err(invalid(file, vec![diag]));
    }
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
    // Bounded work first: the event pass refuses deep nesting before libyaml sees it.
    let scan = match positions::scan(source) {
        Ok(scan) => scan,
        Err(Limit::TooDeep(pos)) => {
            let diag = whole_file(
                file,
                Some(pos),
                format!("collections nest deeper than {MAX_DEPTH} levels here"),
                "close every `[` with `]` and every `{` with `}`; deploy.yaml needs fewer than 10 levels",
            );
            return Err(invalid(file, vec![diag]));
        }
        Err(Limit::TooComplex(pos)) => {
            let diag = whole_file(
                file,
                Some(pos),
                format!(
                    "the document is too large to check: its field paths add up to more than {} MiB",
                    MAX_PATH_BYTES / (1024 * 1024)
                ),
                "shorten the keys; a deploy.yaml has short keys and a few hundred fields",
            );
            return Err(invalid(file, vec![diag]));
        }
    };
    let mut root: Value = match serde_yaml::from_str(source) {
        Ok(v) => v,
        Err(e) => return Err(invalid(file, parse_failure(&e, &scan, file, source))),
    };
    d.index = scan.index;
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

    if let Some(defaults) = opts.defaults {
        // The workspace's defaults sit under the file: the file's values win.
        let mut base = Value::Mapping(defaults.0.clone());
        merge(&mut base, root);
        root = base;
    }
    apply_overlay(&mut root, opts.environment, &mut d);

    interpolate_tree(&mut root, String::new(), opts, &mut d);
    resolve_references(&mut root, &mut d);
    d.secrets = secret_values(&root);
    let sources = crate::secret_refs::extract(&mut root, &mut d);
    let kong_token = crate::kong::extract_token_ref(&mut root, &mut d);

    stringify_string_fields(&mut root);
    crate::tenant::default_namespace(&mut root);
    let config = repair::deserialize(root, &mut d);
    if let Some(mut config) = config {
        config.file = file.to_owned();
        // Rules read which secrets are references (Lambda's `reference` mode).
        config.secret_sources.clone_from(&sources);
        if let Some(k) = config.kong.as_mut() {
            k.admin_token_source = kong_token;
        }
        // Rules also run on a document repaired after type errors, so every problem is
        // reported at once; a rule finding under a path that already failed to parse is
        // a consequence of the repair and is dropped.
        let parse_failures: Vec<String> = d.list.iter().map(|x| x.path.clone()).collect();
        let before = d.list.len();
        rules::check(&config, &mut d);
        if on_disk {
            check_paths(&config, file, &mut d);
        }
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
            let mut unresolved = std::mem::take(&mut d.unresolved);
            unresolved.iter_mut().for_each(clip_echoes);
            unresolved.sort_by_key(|x| (x.line.is_none(), x.line, x.column));
            config.unresolved_secrets = unresolved;
            if !sources.is_empty() {
                config.positions = Some(std::sync::Arc::new(crate::secret_refs::Positions {
                    index: std::mem::take(&mut d.index),
                    overlay: d.overlay.take(),
                }));
            }
            return Ok(config);
        }
    }
    let mut list = std::mem::take(&mut d.list);
    for diag in &mut list {
        for s in &d.secrets {
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

/// Longest echoed value (between backticks or double quotes) shown in a message.
const MAX_ECHO_CHARS: usize = 80;
/// Longest message, hint or field path shown.
const MAX_TEXT_CHARS: usize = 400;

/// Shortens what a diagnostic echoes from the file: values quoted in backticks or double
/// quotes beyond [`MAX_ECHO_CHARS`], and any text beyond [`MAX_TEXT_CHARS`], end in `…`.
pub(crate) fn clip_echoes(diag: &mut Diagnostic) {
    diag.message = clip_text(&clip_quoted(&diag.message), MAX_TEXT_CHARS);
    if let Some(h) = &mut diag.hint {
        *h = clip_text(&clip_quoted(h), MAX_TEXT_CHARS);
    }
    diag.path = clip_text(&diag.path, MAX_TEXT_CHARS);
}

fn clip_text(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s[i..].chars().nth(1).is_some() => format!("{}…", &s[..i]),
        _ => s.to_owned(),
    }
}

fn clip_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(&clip_text(part, MAX_ECHO_CHARS));
        } else {
            for (j, q) in part.split('"').enumerate() {
                if j > 0 {
                    out.push('"');
                }
                if j % 2 == 1 {
                    out.push_str(&clip_text(q, MAX_ECHO_CHARS));
                } else {
                    out.push_str(q);
                }
            }
        }
    }
    out
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
            // A secret the overlay gives as a reference replaces the base's entry whole:
            // `{ ssm: … }` over `{ aws_secret: … }` is another reference, not both.
            if let (Some(Value::Mapping(over)), Some(Value::Mapping(base))) =
                (o.get("secrets"), root.get_mut("secrets"))
            {
                for (k, v) in over {
                    if v.is_mapping() {
                        base.remove(k);
                    }
                }
            }
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

/// The build context must be a directory (relative to `file`'s directory).
fn check_paths(config: &Config, file: &Path, d: &mut Diags<'_>) {
    let context = resolve_path(&config.build.context, file);
    if !context.is_dir() {
        d.value(
            "build.context",
            if context.exists() {
                format!("{} is not a directory", context.display())
            } else {
                format!("{} does not exist", context.display())
            },
            Some("build.context is the directory sent to the engine, relative to deploy.yaml (usually `.`)".to_owned()),
        );
    }
    if let Some(k) = &config.kong {
        let spec = resolve_path(&k.openapi, file);
        if !spec.is_file() {
            d.value(
                "kong.openapi",
                format!("{} does not exist or is not a file", spec.display()),
                Some(
                    "kong.openapi is the app's OpenAPI document, relative to deploy.yaml"
                        .to_owned(),
                ),
            );
        }
    }
}

/// `path` as the config names it, resolved against `file`'s directory.
fn resolve_path(path: &Path, file: &Path) -> std::path::PathBuf {
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if path == Path::new(".") {
        base.to_path_buf()
    } else if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}

fn resolve_paths(config: &mut Config, file: &Path) {
    config.build.context = resolve_path(&config.build.context, file);
    if let Some(t) = &config.kubernetes.templates_dir {
        config.kubernetes.templates_dir = Some(resolve_path(t, file));
    }
    if let Some(k) = config.kong.as_mut() {
        k.openapi = resolve_path(&k.openapi, file);
    }
}
