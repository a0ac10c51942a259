//! The tree passes between parsing and typing: `${VAR}` interpolation (with deferred
//! secrets, see [`crate::SecretPolicy`]) and `{{ path }}` references.

use serde_yaml::Value;

use crate::interpolate::interpolate;
use crate::load::{Diags, did_you_mean};
use crate::{LoadOptions, SecretPolicy};

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn interpolate_tree(
    v: &mut Value,
    path: String,
    opts: &LoadOptions<'_>,
    d: &mut Diags<'_>,
) {
    match v {
        Value::String(s) if s.contains('$') => match interpolate(s, opts.vars) {
            Ok(expanded) => {
                let typed = s.trim_start().starts_with("${") && s.trim_end().ends_with('}');
                *v = retype(expanded, typed);
            }
            Err(problems) => {
                let defer = opts.secrets == SecretPolicy::Deferred
                    && is_secret_path(&path)
                    && problems.iter().all(|p| p.missing);
                for p in problems {
                    if defer {
                        let diag = d.make(&path, &path, false, p.message, Some(p.hint));
                        d.unresolved.push(diag);
                    } else {
                        d.value(&path, p.message, Some(p.hint));
                    }
                }
                if defer {
                    // An unresolved `Secret` placeholder; `Config::require_secrets` reports it.
                    *v = Value::String(String::new());
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

/// Whether the value at `path` becomes a `Secret`: `secrets.*`, `registry.password`,
/// `build.args.*.secret`.
fn is_secret_path(path: &str) -> bool {
    path.starts_with("secrets.")
        || path == "registry.password"
        || path == crate::kong::TOKEN_PATH
        || (path.starts_with("build.args.") && path.ends_with(".secret"))
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
pub(crate) fn resolve_references(root: &mut Value, d: &mut Diags<'_>) {
    // Building the template context copies the whole document: skip it when no value
    // has a reference (most files).
    if !has_template(root) {
        return;
    }
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

/// Whether any string in the document contains `{{` or `{%`.
fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("{{") || s.contains("{%"),
        Value::Sequence(items) => items.iter().any(has_template),
        Value::Mapping(m) => m.values().any(has_template),
        Value::Tagged(t) => has_template(&t.value),
        _ => false,
    }
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

pub(crate) fn secret_values(root: &Value) -> Vec<String> {
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
    out.extend(crate::kong::token_value(root));
    if let Some(Value::Mapping(args)) = root.get("build").and_then(|b| b.get("args")) {
        out.extend(
            args.values()
                .filter_map(|a| a.get("secret").and_then(Value::as_str).map(str::to_owned)),
        );
    }
    out
}
