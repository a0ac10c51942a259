//! Reading the app's OpenAPI 3.0 / 3.1 document: the subset routes and authentication
//! come from — `openapi`, `servers`, `paths` (operations and their `security`), the
//! top-level `security` and `components.securitySchemes`. YAML or JSON (by extension;
//! `.json` is JSON, anything else YAML, which also reads JSON). Every error names the file
//! and the JSON pointer of the value (or line:column when the text does not parse).
//!
//! No OpenAPI crate is used: the well-kept ones model either 3.0 or 3.1, and the part
//! needed here is small and the same in both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::KongError;

/// The methods an OpenAPI path item can hold, in Kong's spelling.
pub const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The parts of an OpenAPI document deployctl uses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Spec {
    /// Where it was read from.
    #[serde(skip)]
    pub file: PathBuf,
    /// `openapi:`, e.g. `3.0.3` or `3.1.0`.
    pub version: String,
    /// The path prefix of the first `servers` URL (`/v1` for `https://api.example.com/v1`),
    /// server variables replaced by their defaults; empty when none.
    pub base_path: String,
    /// Every operation, in document order.
    pub operations: Vec<Operation>,
    /// The top-level `security` requirement (alternatives of scheme names).
    pub security: Option<Vec<Vec<String>>>,
    /// `components.securitySchemes`, by name.
    pub schemes: BTreeMap<String, SecurityScheme>,
}

/// One path and method.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Operation {
    /// The path as written (`/users/{id}`).
    pub path: String,
    /// Lower-case method.
    pub method: String,
    /// `operationId`, when given.
    pub operation_id: Option<String>,
    /// The operation's own `security`, overriding the top-level one (`Some(vec![])` for
    /// `security: []`: open).
    pub security: Option<Vec<Vec<String>>>,
    /// The JSON pointer of the operation (for errors).
    pub pointer: String,
}

/// A `components.securitySchemes` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum SecurityScheme {
    /// `type: apiKey`.
    ApiKey {
        /// The header, query or cookie parameter name.
        name: String,
        /// `header`, `query` or `cookie`.
        location: String,
    },
    /// `type: http` (`scheme: basic`, `bearer`, …, lower-cased).
    Http {
        /// The scheme.
        scheme: String,
    },
    /// Anything else (`oauth2`, `openIdConnect`, `mutualTLS`).
    Other {
        /// The type as written.
        kind: String,
    },
}

/// Reads and parses the spec at `file`.
pub fn load(file: &Path) -> Result<Spec, KongError> {
    let text = std::fs::read_to_string(file).map_err(|source| KongError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(&text, file)
}

/// Parses `text` as the spec read from `file` (its extension picks JSON or YAML).
pub fn parse(text: &str, file: &Path) -> Result<Spec, KongError> {
    let json = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let doc: Value = if json {
        serde_json::from_str(text).map_err(|e| {
            KongError::spec(
                file,
                format!("{}:{}", e.line(), e.column()),
                format!("not valid JSON: {e}"),
                "fix the JSON syntax",
            )
        })?
    } else {
        let y: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            KongError::spec(
                file,
                at,
                format!("not valid YAML: {e}"),
                "fix the YAML syntax",
            )
        })?;
        yaml_to_json(y)
    };
    Reader { file }.spec(&doc)
}

/// YAML to JSON, keys as text (`200:` response codes are integers in YAML).
fn yaml_to_json(v: serde_yaml::Value) -> Value {
    match v {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect())
        }
        serde_yaml::Value::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        serde_yaml::Value::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        serde_yaml::Value::Tagged(t) => yaml_to_json(t.value),
    }
}

/// One JSON pointer token (`/` → `~1`, `~` → `~0`).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

struct Reader<'a> {
    file: &'a Path,
}

impl Reader<'_> {
    fn err(&self, pointer: &str, message: impl Into<String>, hint: &str) -> KongError {
        KongError::spec(self.file, pointer, message, hint)
    }

    fn object<'v>(
        &self,
        v: &'v Value,
        pointer: &str,
        what: &str,
    ) -> Result<&'v serde_json::Map<String, Value>, KongError> {
        v.as_object().ok_or_else(|| {
            self.err(
                pointer,
                format!("{what} must be an object, found {}", kind(v)),
                "see the OpenAPI specification for this field's shape",
            )
        })
    }

    fn spec(&self, doc: &Value) -> Result<Spec, KongError> {
        let root = self.object(doc, "", "the document")?;
        let version = match root.get("openapi") {
            Some(Value::String(v)) if v.starts_with("3.0") || v.starts_with("3.1") => v.clone(),
            Some(Value::String(v)) => {
                return Err(self.err(
                    "/openapi",
                    format!("OpenAPI `{v}` is not supported"),
                    "deployctl reads OpenAPI 3.0 and 3.1 documents",
                ));
            }
            Some(other) => {
                return Err(self.err(
                    "/openapi",
                    format!("must be a version string, found {}", kind(other)),
                    "write it quoted, e.g. openapi: \"3.1.0\"",
                ));
            }
            None if root.contains_key("swagger") => {
                return Err(self.err(
                    "/swagger",
                    "a Swagger 2.0 document, not OpenAPI 3",
                    "convert it to OpenAPI 3.0 (e.g. with swagger2openapi) and point kong.openapi at that",
                ));
            }
            None => {
                return Err(self.err(
                    "",
                    "no `openapi` version field: not an OpenAPI document",
                    "kong.openapi names the app's OpenAPI 3.0 or 3.1 document",
                ));
            }
        };
        let base_path = match root.get("servers") {
            Some(s) => self.base_path(s)?,
            None => String::new(),
        };
        let security = match root.get("security") {
            Some(s) => Some(self.security(s, "/security")?),
            None => None,
        };
        let schemes = match root
            .get("components")
            .and_then(|c| c.get("securitySchemes"))
        {
            Some(s) => self.schemes(s)?,
            None => BTreeMap::new(),
        };
        let operations = match root.get("paths") {
            Some(p) => self.paths(p)?,
            None => Vec::new(),
        };
        if operations.is_empty() {
            return Err(self.err(
                "/paths",
                "the document has no operations: there is nothing to route",
                "add the app's paths, or remove `kong:`",
            ));
        }
        Ok(Spec {
            file: self.file.to_owned(),
            version,
            base_path,
            operations,
            security,
            schemes,
        })
    }

    fn base_path(&self, servers: &Value) -> Result<String, KongError> {
        let Some(list) = servers.as_array() else {
            return Err(self.err(
                "/servers",
                format!("must be a list, found {}", kind(servers)),
                "servers: [{ url: https://api.example.com/v1 }]",
            ));
        };
        let Some(first) = list.first() else {
            return Ok(String::new());
        };
        let server = self.object(first, "/servers/0", "a server")?;
        let Some(Value::String(url)) = server.get("url") else {
            return Err(self.err(
                "/servers/0/url",
                "a server needs a `url` string",
                "e.g. url: https://api.example.com/v1",
            ));
        };
        let mut url = url.clone();
        if let Some(Value::Object(vars)) = server.get("variables") {
            for (name, var) in vars {
                let Some(Value::String(default)) = var.get("default") else {
                    return Err(self.err(
                        &format!("/servers/0/variables/{}/default", token(name)),
                        format!("server variable `{name}` needs a `default` string"),
                        "every server variable has a default",
                    ));
                };
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
        // Absolute (`https://host/v1`), scheme-relative (`//host/v1`) or relative (`/v1`).
        let path = if let Some(i) = url.find("://") {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        } else if let Some(rest) = url.strip_prefix("//") {
            rest.find('/').map_or("", |j| &rest[j..])
        } else {
            url.as_str()
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        if path.contains('{') {
            return Err(self.err(
                "/servers/0/url",
                format!("`{url}` keeps a `{{variable}}` without a declared default"),
                "declare it under `variables` with a `default`",
            ));
        }
        let trimmed = path.trim_end_matches('/');
        Ok(if trimmed.is_empty() || trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        })
    }

    fn security(&self, v: &Value, pointer: &str) -> Result<Vec<Vec<String>>, KongError> {
        let Some(list) = v.as_array() else {
            return Err(self.err(
                pointer,
                format!("`security` must be a list, found {}", kind(v)),
                "e.g. security: [{ api_key: [] }], or security: [] for an open operation",
            ));
        };
        list.iter()
            .enumerate()
            .map(|(i, alt)| {
                let m = self.object(alt, &format!("{pointer}/{i}"), "a security requirement")?;
                Ok(m.keys().cloned().collect())
            })
            .collect()
    }

    fn schemes(&self, v: &Value) -> Result<BTreeMap<String, SecurityScheme>, KongError> {
        let base = "/components/securitySchemes";
        let m = self.object(v, base, "`securitySchemes`")?;
        let mut out = BTreeMap::new();
        for (name, s) in m {
            let p = format!("{base}/{}", token(name));
            let s = self.object(s, &p, "a security scheme")?;
            if s.contains_key("$ref") {
                return Err(self.err(
                    &format!("{p}/$ref"),
                    format!("security scheme `{name}` is a `$ref`"),
                    "write the scheme inline under components.securitySchemes",
                ));
            }
            let text = |key: &str| s.get(key).and_then(Value::as_str).map(str::to_owned);
            let scheme = match text("type").as_deref() {
                Some("apiKey") => {
                    let (Some(pname), Some(location)) = (text("name"), text("in")) else {
                        return Err(self.err(
                            &p,
                            format!("apiKey scheme `{name}` needs `name` and `in`"),
                            "e.g. { type: apiKey, name: X-API-Key, in: header }",
                        ));
                    };
                    SecurityScheme::ApiKey {
                        name: pname,
                        location,
                    }
                }
                Some("http") => SecurityScheme::Http {
                    scheme: text("scheme").unwrap_or_default().to_ascii_lowercase(),
                },
                Some(other) => SecurityScheme::Other {
                    kind: other.to_owned(),
                },
                None => {
                    return Err(self.err(
                        &format!("{p}/type"),
                        format!("security scheme `{name}` has no `type`"),
                        "one of apiKey, http, oauth2, openIdConnect, mutualTLS",
                    ));
                }
            };
            out.insert(name.clone(), scheme);
        }
        Ok(out)
    }

    fn paths(&self, v: &Value) -> Result<Vec<Operation>, KongError> {
        let paths = self.object(v, "/paths", "`paths`")?;
        let mut out = Vec::new();
        for (path, item) in paths {
            let p = format!("/paths/{}", token(path));
            if !path.starts_with('/') {
                return Err(self.err(
                    &p,
                    format!("path `{path}` does not start with `/`"),
                    "paths are written /users/{id}",
                ));
            }
            let item = self.object(item, &p, "a path item")?;
            if item.contains_key("$ref") {
                return Err(self.err(
                    &format!("{p}/$ref"),
                    format!("path item `{path}` is a `$ref`"),
                    "write the path's operations inline",
                ));
            }
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let op_p = format!("{p}/{method}");
                let op = self.object(op, &op_p, "an operation")?;
                let security = match op.get("security") {
                    Some(s) => Some(self.security(s, &format!("{op_p}/security"))?),
                    None => None,
                };
                out.push(Operation {
                    path: path.clone(),
                    method: (*method).to_owned(),
                    operation_id: op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    security,
                    pointer: op_p,
                });
            }
        }
        Ok(out)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Spec, KongError> {
        parse(text, Path::new("api/openapi.yaml"))
    }

    #[test]
    fn yaml_with_integer_keys_servers_and_security() {
        let s = yaml(
            "openapi: 3.0.3\nservers:\n  - url: 'https://{host}/v{major}/'\n    variables: { host: { default: x }, major: { default: '2' } }\nsecurity: [{ key: [] }]\npaths:\n  /users/{id}:\n    get:\n      operationId: getUser\n      responses: { 200: { description: ok } }\n    delete:\n      security: []\n      responses: { 204: { description: gone } }\ncomponents:\n  securitySchemes:\n    key: { type: apiKey, name: X-Key, in: header }\n    basic: { type: http, scheme: Basic }\n",
        )
        .expect("parses");
        assert_eq!(s.base_path, "/v2");
        assert_eq!(s.operations.len(), 2);
        assert_eq!(s.operations[0].method, "get");
        assert_eq!(s.operations[1].security, Some(vec![]));
        assert_eq!(s.operations[1].pointer, "/paths/~1users~1{id}/delete");
        assert_eq!(
            s.schemes["basic"],
            SecurityScheme::Http {
                scheme: "basic".into()
            }
        );
    }

    #[test]
    fn errors_name_file_and_pointer() {
        let e = yaml("openapi: 3.1.0\npaths:\n  /a:\n    get:\n      security: { key: [] }\n")
            .expect_err("bad security");
        assert_eq!(
            e.to_string(),
            "api/openapi.yaml at /paths/~1a/get/security: `security` must be a list, found an object"
        );
        let e = yaml("swagger: '2.0'\n").expect_err("swagger");
        assert!(e.to_string().contains("at /swagger"), "{e}");
        let e = yaml("openapi: 3.0.0\npaths: [\n").expect_err("syntax");
        assert!(e.to_string().starts_with("api/openapi.yaml at 3:"), "{e}");
        let e = parse("{\"openapi\": \"3.1.0\",}", Path::new("o.json")).expect_err("json");
        assert!(e.to_string().starts_with("o.json at 1:"), "{e}");
    }

    #[test]
    fn relative_and_plain_servers() {
        for (url, want) in [
            ("/api", "/api"),
            ("https://h", ""),
            ("https://h/", ""),
            ("//h/x/y/", "/x/y"),
            ("v1", "/v1"),
        ] {
            let s = yaml(&format!(
                "openapi: 3.1.0\nservers: [{{ url: '{url}' }}]\npaths: {{ /a: {{ get: {{}} }} }}\n"
            ))
            .expect("parses");
            assert_eq!(s.base_path, want, "{url}");
        }
    }
}
