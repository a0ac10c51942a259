//! Discovery as a real API server serves it, driven by [`KINDS`]: `/version`, legacy
//! discovery (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) and aggregated
//! discovery (`apidiscovery.k8s.io` v2 and v2beta1, chosen by the `Accept` header as kubectl
//! and client-go ask for it first).

use serde_json::{Value, json};

use crate::store::{KINDS, Kind};

/// What a discovery path answers: the document and its content type.
pub struct Answer {
    /// The body.
    pub body: Value,
    /// `Content-Type`.
    pub content_type: String,
}

/// The verbs every kind serves (no `deletecollection`: the stand-in has none).
fn verbs() -> Value {
    json!([
        "create", "delete", "get", "list", "patch", "update", "watch"
    ])
}

/// The kind a subresource answers with, and its verbs.
fn subresource(k: &Kind, sub: &str) -> (Value, Value) {
    match sub {
        "scale" => (
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            json!(["get", "patch", "update"]),
        ),
        "log" => (
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            json!(["get"]),
        ),
        "proxy" => (
            json!({"group": "", "version": "v1", "kind": format!("{}ProxyOptions", k.kind)}),
            json!(["create", "delete", "get", "patch", "update"]),
        ),
        _ => (
            json!({"group": k.group, "version": k.version, "kind": k.kind}),
            json!(["get", "patch", "update"]),
        ),
    }
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = KINDS
        .iter()
        .filter(|k| !k.group.is_empty())
        .map(|k| (k.group, k.version))
        .collect();
    groups.dedup();
    groups
}

fn legacy_resources(gv: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = KINDS.iter().filter(|k| k.api_version() == gv).collect();
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds {
        let mut r = json!({"name": k.plural, "singularName": k.singular,
            "namespaced": k.namespaced, "kind": k.kind, "verbs": verbs()});
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        if !k.categories.is_empty() {
            r["categories"] = json!(k.categories);
        }
        resources.push(r);
        for sub in k.subresources {
            let (kind, verbs) = subresource(k, sub);
            let mut r = json!({"name": format!("{}/{sub}", k.plural), "singularName": "",
                "namespaced": k.namespaced, "kind": kind["kind"], "verbs": verbs});
            if kind["group"] != json!(k.group) || kind["version"] != json!(k.version) {
                r["group"] = kind["group"].clone();
                r["version"] = kind["version"].clone();
            }
            resources.push(r);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
        "resources": resources}),
    )
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            let mut r = json!({
                "resource": k.plural,
                "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
                "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": k.singular,
                "verbs": verbs(),
            });
            if !k.short_names.is_empty() {
                r["shortNames"] = json!(k.short_names);
            }
            if !k.categories.is_empty() {
                r["categories"] = json!(k.categories);
            }
            let subs: Vec<Value> = k
                .subresources
                .iter()
                .map(|sub| {
                    let (kind, verbs) = subresource(k, sub);
                    json!({"subresource": sub, "responseKind": kind, "verbs": verbs})
                })
                .collect();
            if !subs.is_empty() {
                r["subresources"] = json!(subs);
            }
            r
        })
        .collect();
    let mut item = json!({"metadata": {"creationTimestamp": null},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}]});
    if !group.is_empty() {
        item["metadata"]["name"] = json!(group);
    }
    item
}

/// The aggregated discovery version the `Accept` header asks for first (`v2`, `v2beta1`),
/// if any.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        if params.first() != Some(&"application/json") {
            if params.first().is_some_and(|m| *m == "*/*" || m.is_empty()) {
                return None;
            }
            continue;
        }
        let has = |p: &str| params.contains(&p);
        if !has("g=apidiscovery.k8s.io") || !has("as=APIGroupDiscoveryList") {
            // Plain JSON acceptable before any aggregated form: the legacy document.
            if params.len() == 1 {
                return None;
            }
            continue;
        }
        if has("v=v2") {
            return Some("v2");
        }
        if has("v=v2beta1") {
            return Some("v2beta1");
        }
    }
    None
}

/// The discovery document for `path`, if it is a discovery path.
pub fn answer(path: &str, accept: &str) -> Option<Answer> {
    let p = path.trim_end_matches('/');
    let json_answer = |body: Value| Answer {
        body,
        content_type: "application/json".into(),
    };
    if p == "/version" {
        return Some(json_answer(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-deployctl-standin",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": "linux/amd64"
        })));
    }
    if p == "/api" || p == "/apis" {
        if let Some(v) = aggregated_version(accept) {
            let items: Vec<Value> = if p == "/api" {
                vec![aggregated_group("", "v1")]
            } else {
                groups()
                    .into_iter()
                    .map(|(g, v)| aggregated_group(g, v))
                    .collect()
            };
            return Some(Answer {
                body: json!({"kind": "APIGroupDiscoveryList",
                    "apiVersion": format!("apidiscovery.k8s.io/{v}"),
                    "metadata": {}, "items": items}),
                content_type: format!(
                    "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                ),
            });
        }
        if p == "/api" {
            return Some(json_answer(
                json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ));
        }
        return Some(json_answer(
            json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": groups().iter().map(|(g, v)| json!({
                "name": g, "versions": [{"groupVersion": format!("{g}/{v}"), "version": v}],
                "preferredVersion": {"groupVersion": format!("{g}/{v}"), "version": v},
            })).collect::<Vec<_>>()}),
        ));
    }
    let gv = p
        .strip_prefix("/api/")
        .or_else(|| p.strip_prefix("/apis/"))?;
    legacy_resources(gv).map(json_answer)
}
