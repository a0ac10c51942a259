//! Query and header parameters checked against the OpenAPI document, the one place their
//! rules are written: before a handler runs, each parameter its operation documents is
//! checked against its schema (type, enum, pattern, minimum/maximum, length), and a request
//! that breaks one is 400 naming the parameter. The handlers then only convert values.
//!
//! The checker understands the schema keywords the document uses and no others: a document
//! that uses another keyword for a parameter fails [`table`] (a unit test), so the document
//! and what is enforced cannot drift apart.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use regex::Regex;
use serde_json::Value;

use super::ApiError;

/// Where a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Query,
    Header,
}

impl Place {
    fn as_str(self) -> &'static str {
        match self {
            Place::Query => "query parameter",
            Place::Header => "header",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    String,
    Integer,
    Boolean,
}

/// One documented parameter and its schema.
#[derive(Debug)]
struct Param {
    name: String,
    place: Place,
    required: bool,
    description: Option<String>,
    kind: Type,
    enumeration: Option<Vec<String>>,
    pattern: Option<(String, Regex)>,
    minimum: Option<i64>,
    maximum: Option<i64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
}

/// Operations by (path as routed, lowercase method): their query and header parameters.
type Table = HashMap<(String, String), Vec<Param>>;

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    table(super::OPENAPI).unwrap_or_else(|e| {
        // The unit test `the_document_gives_a_table` keeps this from happening.
        tracing::error!(error = %e, "the OpenAPI document's parameters cannot be read; none are checked");
        HashMap::new()
    })
});

/// Reads every operation's query and header parameters from `doc`.
fn table(doc: &str) -> Result<Table, String> {
    let doc: Value = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no paths")?;
    let mut out = Table::new();
    for (path, item) in paths {
        let item = item.as_object().ok_or(format!("{path} is not an object"))?;
        let shared = item.get("parameters").and_then(Value::as_array);
        for (method, op) in item {
            if method == "parameters" {
                continue;
            }
            let mut params = Vec::new();
            let own = op.get("parameters").and_then(Value::as_array);
            for p in shared
                .into_iter()
                .flatten()
                .chain(own.into_iter().flatten())
            {
                let where_ = format!("{method} {path}");
                if let Some(p) = param(&doc, p).map_err(|e| format!("{where_}: {e}"))? {
                    // An operation's own entry overrides the path's of the same name.
                    params.retain(|q: &Param| !(q.name == p.name && q.place == p.place));
                    params.push(p);
                }
            }
            out.insert((path.clone(), method.to_ascii_lowercase()), params);
        }
    }
    Ok(out)
}

/// A query or header parameter of the document (None for a path parameter: the handlers
/// check names).
fn param(doc: &Value, p: &Value) -> Result<Option<Param>, String> {
    let name = p["name"].as_str().ok_or("a parameter without a name")?;
    let place = match p["in"].as_str() {
        Some("query") => Place::Query,
        Some("header") => Place::Header,
        Some("path") => return Ok(None),
        other => return Err(format!("{name}: parameters in {other:?} are not checked")),
    };
    let mut schema = &p["schema"];
    if let Some(r) = schema["$ref"].as_str() {
        let pointer = r.strip_prefix('#').ok_or(format!("{name}: $ref {r}"))?;
        schema = doc
            .pointer(pointer)
            .ok_or(format!("{name}: $ref {r} is not in the document"))?;
    }
    let schema = schema.as_object().ok_or(format!("{name}: no schema"))?;
    for key in schema.keys() {
        if !matches!(
            key.as_str(),
            "type" | "enum" | "pattern" | "minimum" | "maximum" | "minLength" | "maxLength"
        ) {
            return Err(format!("{name}: the schema keyword `{key}` is not checked"));
        }
    }
    let kind = match schema.get("type").and_then(Value::as_str) {
        Some("string") => Type::String,
        Some("integer") => Type::Integer,
        Some("boolean") => Type::Boolean,
        other => return Err(format!("{name}: the type {other:?} is not checked")),
    };
    let int = |k: &str| -> Result<Option<i64>, String> {
        schema
            .get(k)
            .map(|v| v.as_i64().ok_or(format!("{name}: {k} is not an integer")))
            .transpose()
    };
    let len = |k: &str| -> Result<Option<usize>, String> {
        Ok(int(k)?.and_then(|n| usize::try_from(n).ok()))
    };
    let enumeration = schema
        .get("enum")
        .map(|v| {
            v.as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
                .ok_or(format!("{name}: enum is not a list of strings"))
        })
        .transpose()?;
    let pattern = schema
        .get("pattern")
        .map(|v| {
            let text = v
                .as_str()
                .ok_or(format!("{name}: pattern is not a string"))?;
            Regex::new(text)
                .map(|re| (text.to_owned(), re))
                .map_err(|e| format!("{name}: pattern {text}: {e}"))
        })
        .transpose()?;
    Ok(Some(Param {
        name: name.to_owned(),
        place,
        required: p["required"].as_bool().unwrap_or(false),
        description: p["description"].as_str().map(str::to_owned),
        kind,
        enumeration,
        pattern,
        minimum: int("minimum")?,
        maximum: int("maximum")?,
        min_length: len("minLength")?,
        max_length: len("maxLength")?,
    }))
}

/// Middleware on every route: the request's query and header parameters against its
/// operation's.
pub(crate) async fn check(path: Option<MatchedPath>, req: Request, next: Next) -> Response {
    if let Some(path) = path {
        let method = req.method().as_str().to_ascii_lowercase();
        if let Some(params) = TABLE.get(&(path.as_str().to_owned(), method))
            && let Err(e) = validate(params, req.uri().query(), req.headers())
        {
            return e.into_response();
        }
    }
    next.run(req).await
}

fn validate(params: &[Param], query: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let pairs: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    for p in params {
        let values: Vec<String> = match p.place {
            Place::Query => pairs
                .iter()
                .filter(|(k, _)| *k == p.name)
                .map(|(_, v)| v.clone())
                .collect(),
            Place::Header => headers
                .get_all(p.name.as_str())
                .iter()
                .map(|v| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| bad(p, "is not visible ASCII text"))
                })
                .collect::<Result<_, _>>()?,
        };
        match values.as_slice() {
            [] if p.required => return Err(bad(p, "is required")),
            [] => {}
            [one] => one_value(p, one)?,
            _ => return Err(bad(p, "is given more than once")),
        }
    }
    Ok(())
}

fn one_value(p: &Param, v: &str) -> Result<(), ApiError> {
    let shown = format!("`{}`", v.chars().take(100).collect::<String>());
    match p.kind {
        Type::Integer => {
            let n: i64 = v
                .parse()
                .map_err(|_| bad(p, &format!("{shown} is not an integer")))?;
            if let Some(min) = p.minimum.filter(|m| n < *m) {
                return Err(bad(p, &format!("{shown} is below the minimum {min}")));
            }
            if let Some(max) = p.maximum.filter(|m| n > *m) {
                return Err(bad(p, &format!("{shown} is above the maximum {max}")));
            }
        }
        Type::Boolean => {
            if v != "true" && v != "false" {
                return Err(bad(p, &format!("{shown} is not true or false")));
            }
        }
        Type::String => {
            let chars = v.chars().count();
            if let Some(min) = p.min_length.filter(|m| chars < *m) {
                return Err(bad(p, &format!("{shown} is shorter than {min}")));
            }
            if let Some(max) = p.max_length.filter(|m| chars > *m) {
                return Err(bad(p, &format!("{shown} is longer than {max}")));
            }
        }
    }
    if let Some(allowed) = &p.enumeration
        && !allowed.iter().any(|a| a == v)
    {
        return Err(bad(
            p,
            &format!("{shown} is not one of {}", allowed.join(", ")),
        ));
    }
    if let Some((text, re)) = &p.pattern
        && !re.is_match(v)
    {
        return Err(bad(p, &format!("{shown} does not match {text}")));
    }
    Ok(())
}

fn bad(p: &Param, what: &str) -> ApiError {
    let hint = match &p.description {
        Some(d) => format!("{}: {d} (see /api/v1/openapi.json)", p.name),
        None => "see the operation's parameters in /api/v1/openapi.json".to_owned(),
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("{} `{}`: {what}", p.place.as_str(), p.name),
    )
    .hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(path: &str, method: &str) -> &'static [Param] {
        TABLE
            .get(&(path.to_owned(), method.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("{method} {path} is not in the table"))
    }

    fn query(path: &str, method: &str, q: &str) -> Result<(), String> {
        validate(op(path, method), Some(q), &HeaderMap::new()).map_err(|e| e.message)
    }

    #[test]
    fn the_document_gives_a_table() {
        let t = table(super::super::OPENAPI).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.len() >= 15, "{}", t.len());
        assert!(!TABLE.is_empty());
    }

    #[test]
    fn parameters_are_checked_by_the_documents_rules() {
        let logs = "/api/v1/projects/{project}/apps/{app}/logs";
        assert!(query(logs, "get", "since=10m&follow=true&target=k8s").is_ok());
        let e = query(logs, "get", "since=0d").unwrap_err();
        assert!(e.contains("`since`") && e.contains("`0d`"), "{e}");
        assert!(query(logs, "get", "since=10").is_err());
        assert!(
            query(logs, "get", "follow=yes")
                .unwrap_err()
                .contains("`follow`")
        );
        assert!(
            query(logs, "get", "target=mars")
                .unwrap_err()
                .contains("`target`")
        );
        let history = "/api/v1/projects/{project}/apps/{app}/history";
        assert!(query(history, "get", "limit=500").is_ok());
        assert!(
            query(history, "get", "limit=0")
                .unwrap_err()
                .contains("minimum 1")
        );
        assert!(
            query(history, "get", "limit=501")
                .unwrap_err()
                .contains("maximum 500")
        );
        assert!(query(history, "get", "limit=1&limit=2").is_err());
        let deploy = "/api/v1/projects/{project}/apps/{app}/deployments";
        assert!(query(deploy, "post", "target=local&env=staging").is_ok());
        assert!(
            query(deploy, "post", "target=")
                .unwrap_err()
                .contains("`target`")
        );
        assert!(query("/api/v1/audit", "get", "project=Shop!").is_err());
        assert!(query("/api/v1/audit", "get", "project=shop&since=1&limit=10").is_ok());

        let events = op("/api/v1/deployments/{id}/events", "get");
        let mut h = HeaderMap::new();
        h.insert("last-event-id", "3".parse().unwrap_or_else(|_| panic!()));
        assert!(validate(events, None, &h).is_ok());
        h.insert("last-event-id", "x".parse().unwrap_or_else(|_| panic!()));
        let e = validate(events, None, &h).unwrap_err();
        assert!(
            e.message.contains("header `Last-Event-ID`"),
            "{}",
            e.message
        );
        assert!(validate(events, Some("after=-1"), &HeaderMap::new()).is_err());
    }

    #[test]
    fn an_unknown_schema_keyword_fails_the_table() {
        let doc = r#"{"paths": {"/x": {"get": {"parameters": [
            {"name": "n", "in": "query", "schema": {"type": "integer", "multipleOf": 2}}]}}}}"#;
        assert!(table(doc).unwrap_err().contains("multipleOf"));
    }
}
