//! The checks Kong's schemas make beyond field types: a plugin's `config` against its
//! plugin, the values deployctl's plugin settings reach, entity-level rules, and a
//! service's `url` shorthand.

use serde_json::{Map, Value, json};

use crate::schema::{self, Kind};
use crate::validate::{Refusal, check};

pub(crate) fn one(field: &str, msg: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(field.into(), json!(msg));
    m
}

/// A plugin's `config`: the plugin must be known; its fields checked and defaulted.
pub(crate) fn plugin_config_of(
    ent: &Map<String, Value>,
    config: Value,
    lenient: bool,
) -> Result<Value, Refusal> {
    let name = ent["name"].as_str().unwrap_or_default();
    let Some(plugin) = schema::plugin(name) else {
        return Err(Refusal::schema(one(
            "name",
            &format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property"),
        )));
    };
    let given = match config {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return Err(Refusal::schema(one("config", "expected a record"))),
    };
    let checked = check(plugin.config, &given, lenient).map_err(|e| {
        let mut f = Map::new();
        f.insert("config".into(), Value::Object(e));
        Refusal::schema(f)
    })?;
    if let Some(errors) = config_value_checks(plugin.name, &checked) {
        let mut f = Map::new();
        f.insert("config".into(), Value::Object(errors));
        return Err(Refusal::schema(f));
    }
    if !plugin.at_least_one_of.is_empty()
        && plugin.at_least_one_of.iter().all(|f| checked[*f].is_null())
    {
        let names: Vec<String> = plugin
            .at_least_one_of
            .iter()
            .map(|f| format!("'config.{f}'"))
            .collect();
        let mut f = Map::new();
        f.insert(
            "@entity".into(),
            json!([format!(
                "at least one of these fields must be non-empty: {}",
                names.join(", ")
            )]),
        );
        return Err(Refusal::schema(f));
    }
    Ok(Value::Object(checked))
}

/// The value checks of the plugins' schemas that deployctl's settings reach: header names
/// (`key-auth`'s `key_names`, request-transformer's `remove.headers`) and `name:value`
/// pairs (request-transformer's add/append/replace/rename), with Kong's messages.
pub(crate) fn config_value_checks(
    plugin: &str,
    config: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let header_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let bad_name = |s: &str| {
        json!(format!(
            "bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    };
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let mut errors = Map::new();
    match plugin {
        "key-auth" => {
            if let Some(bad) = strs(&config["key_names"])
                .into_iter()
                .find(|k| !header_name(k))
            {
                errors.insert("key_names".into(), json!([bad_name(&bad)]));
            }
        }
        "request-transformer" => {
            for part in ["add", "append", "replace", "rename", "remove"] {
                let mut e = Map::new();
                for list in ["headers", "querystring", "body"] {
                    let items = strs(&config[part][list]);
                    let bad = items.iter().find(|item| match (part, list) {
                        ("remove", "headers") => !header_name(item),
                        ("remove", _) => false,
                        _ => item.split_once(':').is_none_or(|(k, _)| k.is_empty()),
                    });
                    if let Some(bad) = bad {
                        let msg = if (part, list) == ("remove", "headers") {
                            bad_name(bad)
                        } else {
                            json!(format!("invalid value: {bad}"))
                        };
                        e.insert(list.into(), json!([msg]));
                    }
                }
                if !e.is_empty() {
                    errors.insert(part.into(), Value::Object(e));
                }
            }
        }
        _ => {}
    }
    (!errors.is_empty()).then_some(errors)
}

/// The entity-level checks Kong makes on the kinds deployctl writes.
pub(crate) fn entity_checks(kind: &Kind, ent: &Map<String, Value>) -> Result<(), Refusal> {
    let entity_err = |msg: String| {
        let mut f = Map::new();
        f.insert("@entity".into(), json!([msg]));
        Refusal::schema(f)
    };
    match kind.collection {
        "consumers" if ent["username"].is_null() && ent["custom_id"].is_null() => Err(entity_err(
            "at least one of these fields must be non-empty: 'custom_id', 'username'".into(),
        )),
        "routes" => {
            let http = ent["protocols"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == "http" || x == "https"));
            let set = |f: &str| match &ent[f] {
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => false,
            };
            if http
                && !["methods", "hosts", "headers", "paths", "snis"]
                    .iter()
                    .any(|f| set(f))
            {
                return Err(entity_err(
                    "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
                        .into(),
                ));
            }
            let mut fields = Map::new();
            for p in ent["paths"].as_array().into_iter().flatten() {
                let p = p.as_str().unwrap_or_default();
                if !p.starts_with('/') && !p.starts_with("~/") {
                    fields.insert(
                        "paths".into(),
                        json!(["should start with: / (fixed path) or ~/ (regex path)"]),
                    );
                } else if let Some(re) = p.strip_prefix('~')
                    && let Err(e) = regex::Regex::new(&format!("^{re}"))
                {
                    // Kong 3's router matches regex paths with Rust's regex crate.
                    let why = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    fields.insert(
                        "paths".into(),
                        json!([format!("invalid regex: '{re}' ({why})")]),
                    );
                }
            }
            for m in ent["methods"].as_array().into_iter().flatten() {
                let m = m.as_str().unwrap_or_default();
                if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
                    fields.insert("methods".into(), json!([format!("invalid value: {m}")]));
                }
            }
            if fields.is_empty() {
                Ok(())
            } else {
                Err(Refusal::schema(fields))
            }
        }
        _ => Ok(()),
    }
}

/// A service's `url` shorthand becomes `protocol`, `host`, `port` and `path`.
pub(crate) fn expand_url(input: &mut Map<String, Value>) -> Result<(), Refusal> {
    let Some(url) = input.remove("url") else {
        return Ok(());
    };
    if url.is_null() {
        return Ok(());
    }
    let bad = || Refusal::schema(one("url", "missing host in url"));
    let url = url.as_str().ok_or_else(bad)?.to_owned();
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<i64>().map_err(|_| bad())?)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = port.unwrap_or(match scheme {
        "https" | "grpcs" | "wss" | "tls" => 443,
        _ => 80,
    });
    input.insert("protocol".into(), json!(scheme));
    input.insert("host".into(), json!(host));
    input.insert("port".into(), json!(port));
    input.insert("path".into(), path.map_or(Value::Null, |p| json!(p)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_shorthand_expands() {
        let mut m = Map::new();
        m.insert("url".into(), json!("https://api.example:8443/v1"));
        expand_url(&mut m).ok();
        assert_eq!(m["protocol"], "https");
        assert_eq!(m["host"], "api.example");
        assert_eq!(m["port"], 8443);
        assert_eq!(m["path"], "/v1");
    }
}
