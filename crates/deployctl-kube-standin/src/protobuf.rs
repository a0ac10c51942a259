//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! read into the JSON the rest of the stand-in works on.
//!
//! client-go's typed clientsets (1.35 and later) send built-in objects as protobuf; helm 4
//! writes its release Secrets and the DeleteOptions of their deletes that way (its chart
//! objects go through the dynamic client, as JSON). A real API server decodes every built-in
//! kind; this decodes the ones such clients are seen to send — Secret, ConfigMap and
//! DeleteOptions — and answers any other protobuf body with 415, as a server answers a media
//! type it cannot decode. Responses are never protobuf: those clients accept JSON too
//! (`Accept: application/vnd.kubernetes.protobuf,application/json`).
//!
//! The wire format: the magic `k8s\0`, then a `runtime.Unknown` whose `raw` is the object's
//! message (field numbers from `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`). Fields not listed here are
//! skipped, as protobuf readers skip unknown fields.

use std::collections::BTreeMap;

use base64::Engine as _;
use prost::Message;
use serde_json::{Map, Value, json};

/// The four bytes that open every Kubernetes protobuf object.
const MAGIC: &[u8] = b"k8s\0";

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Not a Kubernetes protobuf envelope, or a malformed message: a 400.
    Malformed(String),
    /// A well-formed object of a kind this does not decode: a 415.
    Unsupported(String),
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Time {
    #[prost(int64, optional, tag = "1")]
    seconds: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerReference {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
    #[prost(string, optional, tag = "5")]
    api_version: Option<String>,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "5")]
    uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(int64, optional, tag = "7")]
    generation: Option<i64>,
    #[prost(message, optional, tag = "8")]
    creation_timestamp: Option<Time>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Preconditions {
    #[prost(string, optional, tag = "1")]
    uid: Option<String>,
    #[prost(string, optional, tag = "2")]
    resource_version: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct DeleteOptions {
    #[prost(int64, optional, tag = "1")]
    grace_period_seconds: Option<i64>,
    #[prost(message, optional, tag = "2")]
    preconditions: Option<Preconditions>,
    #[prost(bool, optional, tag = "3")]
    orphan_dependents: Option<bool>,
    #[prost(string, optional, tag = "4")]
    propagation_policy: Option<String>,
    #[prost(string, repeated, tag = "5")]
    dry_run: Vec<String>,
}

/// Whether a `Content-Type` names the protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// The object a protobuf body carries, as the JSON a client would have sent.
pub fn decode(body: &[u8]) -> Result<Value, Unreadable> {
    let malformed = |e: &dyn std::fmt::Display| {
        Unreadable::Malformed(format!("cannot decode the protobuf body: {e}"))
    };
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed(&"it does not start with the magic bytes k8s\\0"))?;
    let unknown = Unknown::decode(envelope).map_err(|e| malformed(&e))?;
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(malformed(&"a content encoding is set"));
    }
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut v = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(&Secret::decode(raw.as_slice()).map_err(|e| malformed(&e))?),
        ("v1", "ConfigMap") => {
            config_map(&ConfigMap::decode(raw.as_slice()).map_err(|e| malformed(&e))?)
        }
        (_, "DeleteOptions") => {
            delete_options(&DeleteOptions::decode(raw.as_slice()).map_err(|e| malformed(&e))?)
        }
        _ => {
            return Err(Unreadable::Unsupported(format!(
                "the stand-in decodes protobuf bodies of v1 Secret, v1 ConfigMap and DeleteOptions only, not {api_version} {kind}; send JSON"
            )));
        }
    };
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

fn b64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Inserts `v` under `k` unless it is empty (protobuf has no null; JSON omits the field).
fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        m.insert(k.to_owned(), v);
    }
}

fn metadata(m: Option<&ObjectMeta>) -> Value {
    let Some(m) = m else { return json!({}) };
    let mut o = Map::new();
    put(&mut o, "name", json!(m.name));
    put(&mut o, "generateName", json!(m.generate_name));
    put(&mut o, "namespace", json!(m.namespace));
    put(&mut o, "uid", json!(m.uid));
    put(&mut o, "resourceVersion", json!(m.resource_version));
    if let Some(g) = m.generation.filter(|g| *g != 0) {
        o.insert("generation".into(), json!(g));
    }
    put(&mut o, "labels", json!(m.labels));
    put(&mut o, "annotations", json!(m.annotations));
    let owners: Vec<Value> = m
        .owner_references
        .iter()
        .map(|r| {
            let mut x = Map::new();
            put(&mut x, "apiVersion", json!(r.api_version));
            put(&mut x, "kind", json!(r.kind));
            put(&mut x, "name", json!(r.name));
            put(&mut x, "uid", json!(r.uid));
            put(&mut x, "controller", json!(r.controller));
            put(&mut x, "blockOwnerDeletion", json!(r.block_owner_deletion));
            Value::Object(x)
        })
        .collect();
    put(&mut o, "ownerReferences", json!(owners));
    put(&mut o, "finalizers", json!(m.finalizers));
    Value::Object(o)
}

fn secret(s: &Secret) -> Value {
    let mut o = Map::new();
    o.insert("metadata".into(), metadata(s.metadata.as_ref()));
    let data: Map<String, Value> = s.data.iter().map(|(k, v)| (k.clone(), b64(v))).collect();
    put(&mut o, "data", Value::Object(data));
    put(&mut o, "stringData", json!(s.string_data));
    put(&mut o, "type", json!(s.r#type));
    put(&mut o, "immutable", json!(s.immutable));
    Value::Object(o)
}

fn config_map(c: &ConfigMap) -> Value {
    let mut o = Map::new();
    o.insert("metadata".into(), metadata(c.metadata.as_ref()));
    put(&mut o, "data", json!(c.data));
    let binary: Map<String, Value> = c
        .binary_data
        .iter()
        .map(|(k, v)| (k.clone(), b64(v)))
        .collect();
    put(&mut o, "binaryData", Value::Object(binary));
    put(&mut o, "immutable", json!(c.immutable));
    Value::Object(o)
}

fn delete_options(d: &DeleteOptions) -> Value {
    let mut o = Map::new();
    put(&mut o, "gracePeriodSeconds", json!(d.grace_period_seconds));
    if let Some(p) = &d.preconditions {
        let mut x = Map::new();
        put(&mut x, "uid", json!(p.uid));
        put(&mut x, "resourceVersion", json!(p.resource_version));
        put(&mut o, "preconditions", Value::Object(x));
    }
    put(&mut o, "orphanDependents", json!(d.orphan_dependents));
    put(&mut o, "propagationPolicy", json!(d.propagation_policy));
    put(&mut o, "dryRun", json!(d.dry_run));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
        }
        .encode(&mut out)
        .unwrap();
        out
    }

    #[test]
    fn a_secret_reads_as_its_json() {
        let s = Secret {
            metadata: Some(ObjectMeta {
                name: Some("sh.helm.release.v1.hello.v1".into()),
                labels: [("owner".to_owned(), "helm".to_owned())].into(),
                ..ObjectMeta::default()
            }),
            data: [("release".to_owned(), b"H4sI".to_vec())].into(),
            r#type: Some("helm.sh/release.v1".into()),
            ..Secret::default()
        };
        let v = decode(&envelope("v1", "Secret", s.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "sh.helm.release.v1.hello.v1", "labels": {"owner": "helm"}},
                "data": {"release": "SDRzSQ=="}, "type": "helm.sh/release.v1"})
        );
    }

    #[test]
    fn delete_options_keep_policy_and_preconditions() {
        let d = DeleteOptions {
            propagation_policy: Some("Background".into()),
            preconditions: Some(Preconditions {
                uid: None,
                resource_version: Some("7".into()),
            }),
            ..DeleteOptions::default()
        };
        let v = decode(&envelope(
            "meta.k8s.io/v1",
            "DeleteOptions",
            d.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(v["propagationPolicy"], "Background");
        assert_eq!(v["preconditions"], json!({"resourceVersion": "7"}));
    }

    #[test]
    fn other_kinds_are_unsupported_and_garbage_is_malformed() {
        let e = decode(&envelope("apps/v1", "Deployment", vec![])).unwrap_err();
        assert!(matches!(e, Unreadable::Unsupported(m) if m.contains("apps/v1 Deployment")));
        assert!(matches!(
            decode(b"{\"kind\": \"Secret\"}"),
            Err(Unreadable::Malformed(_))
        ));
        assert!(is_protobuf(
            "application/vnd.kubernetes.protobuf; charset=x"
        ));
        assert!(!is_protobuf("application/json"));
    }
}
