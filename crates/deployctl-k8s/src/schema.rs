//! The strict check: a document must be exactly what its `k8s-openapi` type can express.
//!
//! `k8s-openapi` types ignore unknown fields when they deserialize, like the API server does
//! with a misspelt field (`contianerPort` is dropped without a word, and the Pod runs without
//! it). So the check deserializes the document into its type, serializes it back, and
//! compares: any field the type dropped — unknown, misspelt or `null` — is a failure, and so
//! is any value that does not survive the trip.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;

/// Checks `document` against the `k8s-openapi` type named by its `apiVersion` and `kind`,
/// rejecting unknown fields (see the module docs).
///
/// Every document [`render`](crate::render) returns has passed this check; it is public so
/// manifests from elsewhere (a GitOps directory, a test) can be held to the same standard.
pub fn check_strict(document: &Value) -> Result<(), Error> {
    let text = |field: &str| {
        document
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let api_version = text("apiVersion");
    let kind = text("kind");
    let back = match (api_version.as_str(), kind.as_str()) {
        ("apps/v1", "Deployment") => round_trip::<Deployment>(document),
        ("v1", "Service") => round_trip::<Service>(document),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(document),
        ("v1", "Secret") => round_trip::<Secret>(document),
        ("v1", "PersistentVolumeClaim") => round_trip::<PersistentVolumeClaim>(document),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(document),
        ("v1", "Namespace") => round_trip::<Namespace>(document),
        ("v1", "ResourceQuota") => round_trip::<ResourceQuota>(document),
        ("v1", "LimitRange") => round_trip::<LimitRange>(document),
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(document),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(document),
        ("networking.k8s.io/v1", "Ingress") => round_trip::<Ingress>(document),
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<NetworkPolicy>(document),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            round_trip::<HorizontalPodAutoscaler>(document)
        }
        ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(document),
        _ => {
            return Err(Error::UnsupportedKind {
                api_version,
                kind,
                template: None,
            });
        }
    };
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<no name>")
        .to_owned();
    let schema = |problems, source| Error::Schema {
        kind: kind.clone(),
        name: name.clone(),
        template: None,
        problems,
        source,
    };
    match back {
        // A Secret's deserialization error may quote the offending value (an invalid
        // base64 string is printed whole): keep only the path.
        Err(RoundTrip::Deserialize(e)) if kind == "Secret" => Err(schema(
            vec![format!(
                "`{}` has a value of the wrong type or format (not shown: this is a Secret)",
                e.path()
            )],
            None,
        )),
        Err(RoundTrip::Deserialize(e)) => Err(schema(Vec::new(), Some(Box::new(e)))),
        Err(RoundTrip::Serialize(e)) => Err(schema(
            vec![format!("the typed value does not serialize back: {e}")],
            None,
        )),
        Ok(back) => {
            let mut problems = Vec::new();
            differences(document, &back, &mut String::new(), &mut problems);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(schema(problems, None))
            }
        }
    }
}

enum RoundTrip {
    Deserialize(serde_path_to_error::Error<serde_json::Error>),
    Serialize(serde_json::Error),
}

fn round_trip<T: DeserializeOwned + Serialize>(document: &Value) -> Result<Value, RoundTrip> {
    let typed: T =
        serde_path_to_error::deserialize(document.clone()).map_err(RoundTrip::Deserialize)?;
    serde_json::to_value(&typed).map_err(RoundTrip::Serialize)
}

/// Appends a description of every place where `back` differs from `original`. Field paths
/// only: documents may be Secrets, so values are never quoted.
fn differences(original: &Value, back: &Value, path: &mut String, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match b.get(key) {
                    Some(vb) => differences(va, vb, path, out),
                    None if va.is_null() => {
                        out.push(format!("`{path}` is null (remove it)"));
                    }
                    None => out.push(format!("`{path}` is not a known field (misspelt?)")),
                }
                path.truncate(len);
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                let sep = if path.is_empty() { "" } else { "." };
                out.push(format!(
                    "`{path}{sep}{key}` is missing (the Kubernetes type requires it)"
                ));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                differences(va, vb, path, out);
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(format!(
            "`{path}` does not keep its value as the Kubernetes type (wrong type or format?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configmap() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "ns", "labels": {"a": "b"}},
            "data": {"K": "v"}
        })
    }

    #[test]
    fn accepts_an_exact_document() {
        check_strict(&configmap()).unwrap();
    }

    #[test]
    fn rejects_unknown_and_null_fields_by_path() {
        let mut doc = configmap();
        doc["metadata"]["lables"] = json!({"a": "b"});
        doc["metadata"]["annotations"] = Value::Null;
        let err = check_strict(&doc).unwrap_err().to_string();
        assert!(
            err.contains("`metadata.lables` is not a known field"),
            "{err}"
        );
        assert!(err.contains("`metadata.annotations` is null"), "{err}");
        assert!(err.contains("ConfigMap `x`"), "{err}");
    }

    #[test]
    fn rejects_wrong_types_with_the_path() {
        let mut doc = configmap();
        doc["data"]["K"] = json!(3);
        let err = check_strict(&doc).unwrap_err();
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            source.as_deref().unwrap_or_default().contains("data.K"),
            "{source:?}"
        );
    }

    #[test]
    fn never_quotes_a_secret_value() {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"K": "not base64: hunter22!"}
        });
        let err = check_strict(&doc).unwrap_err();
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&s.to_string());
            source = s.source();
        }
        assert!(text.contains("`data.K`"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
    }

    #[test]
    fn rejects_unknown_kinds() {
        let doc =
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"}});
        assert!(matches!(
            check_strict(&doc),
            Err(Error::UnsupportedKind { .. })
        ));
    }
}
