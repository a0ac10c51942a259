//! `/openapi/v2` and `/openapi/v3` (+ `/openapi/v3/<api|apis/group>/<version>`), generated
//! from [`KINDS`]: one definition per kind with its `x-kubernetes-group-version-kind`, so
//! kubectl finds a schema for every kind served. The schemas are vendored
//! (`openapi/k8s-v1_33-schemas.json`, generated from k8s-openapi's `schemars` feature; see
//! `openapi/README.md`) and also drive `fieldValidation=Strict` ([`unknown_fields`]).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};

use crate::server::Body;
use crate::store::{KINDS, Kind};

/// The definition name of a kind as Kubernetes spells it (`io.k8s.api.apps.v1.Deployment`;
/// a custom resource's by its reversed group, `com.konghq.configuration.v1.KongPlugin`).
fn definition(k: &Kind) -> String {
    if k.group.contains('.') && !k.group.ends_with(".k8s.io") {
        let reversed: Vec<&str> = k.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), k.version, k.kind);
    }
    let group = if k.group.is_empty() {
        "core".to_owned()
    } else {
        // `networking.k8s.io` → `networking`, `rbac.authorization.k8s.io` → `rbac`.
        k.group.split('.').next().unwrap_or(k.group).to_owned()
    };
    format!("io.k8s.api.{group}.{}.{}", k.version, k.kind)
}

/// The vendored component schemas (see `openapi/README.md` for their source), with the
/// Kong Ingress Controller's CRD schemas (`kong-crds-schemas.json`).
static SCHEMAS: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(|| {
    let mut all: Map<String, Value> =
        serde_json::from_str(include_str!("../openapi/k8s-v1_33-schemas.json")).unwrap_or_default();
    let kong: Map<String, Value> =
        serde_json::from_str(include_str!("../openapi/kong-crds-schemas.json")).unwrap_or_default();
    all.extend(kong);
    all
});

fn schema(k: &Kind) -> Value {
    let mut s = SCHEMAS
        .get(&definition(k))
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": k.group, "version": k.version, "kind": k.kind}]);
    s
}

/// Every schema, the served kinds' with their GVK.
fn all_schemas() -> Map<String, Value> {
    let mut all = SCHEMAS.clone();
    for k in KINDS {
        all.insert(definition(k), schema(k));
    }
    all
}

/// The fields of `object` (of kind `k`) its schema does not declare, as paths
/// (`spec.template.spec.containers[0].bogus`): what `fieldValidation=Strict` rejects.
pub fn unknown_fields(k: &Kind, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = SCHEMAS.get(&definition(k)) {
        walk(s, object, "", &mut out, 0);
    }
    out
}

fn resolve(schema: &Value) -> &Value {
    if let Some(r) = schema["$ref"].as_str()
        && let Some(name) = r.strip_prefix("#/components/schemas/")
        && let Some(s) = SCHEMAS.get(name)
    {
        return s;
    }
    if let Some(first) = schema["allOf"].as_array().and_then(|a| a.first()) {
        return resolve(first);
    }
    schema
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    let schema = resolve(schema);
    match value {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, v) in m {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match props.get(key) {
                        Some(s) => walk(s, v, &p, out, depth + 1),
                        None if schema.get("additionalProperties").is_some() => {}
                        None => out.push(p),
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, v) in m {
                    walk(extra, v, &format!("{path}.{key}"), out, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn v2() -> Value {
    let defs: Value = serde_json::from_str(
        &Value::Object(all_schemas())
            .to_string()
            .replace("#/components/schemas/", "#/definitions/"),
    )
    .unwrap_or_default();
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0-deployctl-standin"},
        "paths": {}, "definitions": defs})
}

fn gv_path(k: &Kind) -> String {
    if k.group.is_empty() {
        format!("api/{}", k.version)
    } else {
        format!("apis/{}/{}", k.group, k.version)
    }
}

fn v3_index() -> Value {
    let mut paths = Map::new();
    for k in KINDS {
        let p = gv_path(k);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
        );
    }
    json!({"paths": paths})
}

fn v3(gv: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = KINDS.iter().filter(|k| gv_path(k) == gv).collect();
    if kinds.is_empty() {
        return None;
    }
    let schemas = all_schemas();
    let mut paths = Map::new();
    for k in &kinds {
        let ns = if k.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let reference = json!({"$ref": format!("#/components/schemas/{}", definition(k))});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        // The query parameters the stand-in accepts on PATCH; kubectl looks for
        // `fieldValidation` here to decide whether the server validates fields.
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string"}}))
            .collect();
        let op = |verb: &str| {
            json!({"operationId": format!("{verb}{}", k.kind),
                "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk,
                "parameters": params, "responses": {"200": body}})
        };
        paths.insert(
            format!("/{}/{ns}{}/{{name}}", gv_path(k), k.plural),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        paths.insert(
            format!("/{}/{ns}{}", gv_path(k), k.plural),
            json!({"get": op("list"), "post": op("post")}),
        );
    }
    Some(json!({"openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-deployctl-standin"},
        "paths": paths, "components": {"schemas": schemas}}))
}

/// The OpenAPI document for `path`, if it names one.
pub fn answer(path: &str, accept: &str) -> Option<Response<Body>> {
    let p = path.trim_end_matches('/');
    let json_ok = accept.is_empty()
        || accept
            .split(',')
            .any(|m| m.trim().starts_with("application/json") || m.trim().starts_with("*/*"));
    if p.starts_with("/openapi/") && !json_ok {
        // Only JSON is served (kubectl's protobuf OpenAPI v2 request gets a 406).
        let mut r = Response::new(
            Full::new(Bytes::from_static(b"only application/json is served")).boxed(),
        );
        *r.status_mut() = StatusCode::NOT_ACCEPTABLE;
        return Some(r);
    }
    let doc = match p {
        "/openapi/v2" => v2(),
        "/openapi/v3" => v3_index(),
        _ => match p.strip_prefix("/openapi/v3/") {
            Some(gv) => v3(gv)?,
            None => return None,
        },
    };
    let mut r = Response::new(Full::new(Bytes::from(doc.to_string())).boxed());
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::{SCHEMAS, definition, unknown_fields};
    use crate::store::{KINDS, kind_named};
    use serde_json::json;

    #[test]
    fn every_served_kind_has_its_vendored_schema() {
        let missing: Vec<String> = KINDS
            .iter()
            .map(definition)
            .filter(|d| !SCHEMAS.contains_key(d))
            .collect();
        assert!(
            missing.is_empty(),
            "regenerate openapi/ (see its README) for {missing:?}"
        );
    }

    #[test]
    fn strict_validation_checks_rbac_and_quota_fields() {
        let role = kind_named("Role").expect("Role is served");
        let object = json!({"metadata": {"name": "app"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "verb": ["list"]}]});
        assert_eq!(unknown_fields(&role, &object), ["rules[0].verb"]);
        let quota = kind_named("ResourceQuota").expect("ResourceQuota is served");
        let object =
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5"}, "limit": {}}});
        assert_eq!(unknown_fields(&quota, &object), ["spec.limit"]);
    }
}
