//! `/openapi/v2` and `/openapi/v3` (+ `/openapi/v3/<api|apis/group>/<version>`), generated
//! from [`KINDS`]: one definition per kind with its `x-kubernetes-group-version-kind`, so
//! kubectl finds a schema for every kind served. The schemas are open
//! (`x-kubernetes-preserve-unknown-fields`): no field-level schema yet, so client-side
//! validation cannot reject unknown fields (see docs/KUBERNETES.md).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};

use crate::server::Body;
use crate::store::{KINDS, Kind};

/// The definition name of a kind as Kubernetes spells it (`io.k8s.api.apps.v1.Deployment`).
fn definition(k: &Kind) -> String {
    let group = if k.group.is_empty() {
        "core".to_owned()
    } else {
        k.group.trim_end_matches(".k8s.io").to_owned()
    };
    format!("io.k8s.api.{group}.{}.{}", k.version, k.kind)
}

fn schema(k: &Kind) -> Value {
    json!({
        "description": format!("{} ({}), as the deployctl stand-in serves it.", k.kind, k.api_version()),
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
        "x-kubernetes-group-version-kind": [{"group": k.group, "version": k.version, "kind": k.kind}],
    })
}

fn v2() -> Value {
    let defs: Map<String, Value> = KINDS.iter().map(|k| (definition(k), schema(k))).collect();
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
    let schemas: Map<String, Value> = kinds.iter().map(|k| (definition(k), schema(k))).collect();
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
