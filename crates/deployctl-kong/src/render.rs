//! `mode: ingress-controller`: the Kong Ingress Controller's resources instead of Admin
//! API calls — a `KongPlugin` per plugin, a `KongConsumer` with its key-auth credential
//! Secret (`konghq.com/credential: key-auth`), and the `konghq.com/plugins` annotation to
//! put on the app's Service (the controller makes Kong's Service and Routes from the
//! Service and Ingress). The Kubernetes target applies them with the app's manifests.
//!
//! The controller attaches plugins per Service or per Ingress, not per path and method:
//! authentication must therefore be the same on every operation here; a spec that leaves
//! some operations open is refused with the operations named (the Admin API mode handles it).

use std::collections::BTreeMap;

use deployctl_core::Secret;
use serde_json::{Value, json};

use crate::desired::{Desired, Kind};
use crate::error::KongError;

/// The annotation listing a Service's plugins.
pub const PLUGINS_ANNOTATION: &str = "konghq.com/plugins";

/// The resources for the Kong Ingress Controller. `Debug` names the objects only (the
/// credential Secret holds the key).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Rendered {
    /// KongPlugins, the KongConsumer and its credential Secret, as Kubernetes objects.
    pub manifests: Vec<Value>,
    /// Annotations to add to the app's Service and Ingress (`konghq.com/plugins`).
    pub service_annotations: BTreeMap<String, String>,
    /// Secret name → its keys whose values were generated once (the consumer's key): the
    /// Kubernetes target keeps their live values, so a redeploy does not rotate the key.
    pub generated: BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let objects: Vec<String> = self
            .manifests
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["kind"].as_str().unwrap_or_default(),
                    m["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        f.debug_struct("Rendered")
            .field("manifests", &objects)
            .field("service_annotations", &self.service_annotations)
            .field("generated", &self.generated)
            .finish()
    }
}

/// The resources for `config`'s `kong:` section in `mode: ingress-controller` (`None` in
/// any other mode): reads the spec, makes the desired state and renders it, with a newly
/// generated consumer key — which the Kubernetes target replaces by the live one when the
/// credential Secret exists ([`Rendered::generated`]).
pub fn for_config(config: &deployctl_config::Config) -> Result<Option<Rendered>, KongError> {
    let Some(kong) = config.kong.as_ref() else {
        return Ok(None);
    };
    if kong.mode != deployctl_config::KongMode::IngressController {
        return Ok(None);
    }
    let spec = crate::openapi::load(&kong.openapi)?;
    let desired = crate::desired::desired(config, &spec)?;
    let key = match desired.key {
        Some(_) => Some(crate::apply::generate_key()?),
        None => None,
    };
    render(&desired, &config.kubernetes.namespace, key.as_ref()).map(Some)
}

/// Renders `desired` for `namespace`; `key` is the consumer's key (the binary keeps the
/// existing one and generates one only when none exists).
pub fn render(
    desired: &Desired,
    namespace: &str,
    key: Option<&Secret>,
) -> Result<Rendered, KongError> {
    let app = desired.app.as_str();
    let labels = json!({
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": app,
        "app.kubernetes.io/managed-by": "deployctl",
    });
    // Authentication per operation route (the OPTIONS routes added for CORS carry none).
    let mut per_route: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
    let mut route_names: BTreeMap<&str, &str> = BTreeMap::new();
    for r in desired.of(Kind::Route) {
        route_names.insert(r.id.as_str(), r.name.as_str());
    }
    let mut operation_routes: Vec<&str> = Vec::new();
    for r in desired.of(Kind::Route) {
        let cors_preflight = r.body["methods"] == json!(["OPTIONS"])
            && !desired
                .of(Kind::Plugin)
                .any(|p| p.body["route"]["id"] == r.id.as_str());
        if !cors_preflight {
            operation_routes.push(r.id.as_str());
            per_route.entry(r.id.as_str()).or_default();
        }
    }
    let mut service_plugins: Vec<(&str, &Value)> = Vec::new();
    for p in desired.of(Kind::Plugin) {
        let name = p.body["name"].as_str().unwrap_or_default();
        if let Some(route) = p.body["route"]["id"].as_str() {
            per_route
                .entry(route)
                .or_default()
                .push((name, &p.body["config"]));
        } else {
            service_plugins.push((name, &p.body["config"]));
        }
    }
    let mut sets = per_route.values();
    let first = sets.next().cloned().unwrap_or_default();
    if per_route.values().any(|s| *s != first) {
        let open: Vec<&str> = per_route
            .iter()
            .filter(|(_, s)| s.is_empty())
            .filter_map(|(id, _)| route_names.get(id).copied())
            .collect();
        return Err(KongError::Invalid {
            field: "kong.mode".into(),
            message: format!(
                "the Kong Ingress Controller attaches plugins per Service, and the spec's operations differ in authentication (open: {})",
                if open.is_empty() {
                    "none, but the schemes differ".to_owned()
                } else {
                    open.join(", ")
                }
            ),
        });
    }
    let mut manifests = Vec::new();
    let mut names = Vec::new();
    let mut generated = BTreeMap::new();
    for (plugin, config) in first.iter().chain(service_plugins.iter()) {
        let name = format!("{app}-{plugin}");
        names.push(name.clone());
        manifests.push(json!({
            "apiVersion": "configuration.konghq.com/v1",
            "kind": "KongPlugin",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "plugin": plugin,
            "config": config,
        }));
    }
    if let Some(consumer) = desired.of(Kind::Consumer).next() {
        let username = consumer.name.as_str();
        let object_name = dns_name(&format!("{app}-{username}"));
        let mut credentials = Vec::new();
        if desired.key.is_some() {
            let secret_name = format!("{object_name}-key");
            credentials.push(secret_name.clone());
            generated.insert(secret_name.clone(), vec!["key".to_owned()]);
            let key = key.ok_or_else(|| KongError::Invalid {
                field: "kong.consumer.create_key".into(),
                message: "no key was given to render the credential Secret with".into(),
            })?;
            let mut secret_labels = labels.clone();
            secret_labels["konghq.com/credential"] = json!("key-auth");
            manifests.push(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": secret_name, "namespace": namespace, "labels": secret_labels },
                "type": "Opaque",
                "stringData": { "key": key.expose() },
            }));
        }
        manifests.push(json!({
            "apiVersion": "configuration.konghq.com/v1",
            "kind": "KongConsumer",
            "metadata": {
                "name": object_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": { "kubernetes.io/ingress.class": "kong" },
            },
            "username": username,
            "credentials": credentials,
        }));
    }
    let mut service_annotations = BTreeMap::new();
    if !names.is_empty() {
        service_annotations.insert(PLUGINS_ANNOTATION.to_owned(), names.join(","));
    }
    Ok(Rendered {
        manifests,
        service_annotations,
        generated,
    })
}

/// A DNS-1123 subdomain from a username: lower-case, other characters as `-`.
fn dns_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(240);
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn operations_with_different_auth_are_refused_naming_the_open_ones() {
        let vars = std::collections::HashMap::<String, String>::new();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("o.yaml"),
            "openapi: 3.0.3\nsecurity: [{ k: [] }]\npaths:\n  /health: { get: { security: [] } }\n  /a: { get: {} }\ncomponents: { securitySchemes: { k: { type: apiKey, name: K, in: header } } }\n",
        )
        .expect("write");
        let config = deployctl_config::load_str(
            "version: \"1.0\"\napp: { name: x }\nkubernetes: { enabled: true }\nkong: { openapi: o.yaml, mode: ingress-controller }\n",
            &dir.path().join("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&vars),
        )
        .expect("config");
        let spec = crate::openapi::load(Path::new(&config.kong.as_ref().expect("kong").openapi))
            .expect("spec");
        let desired = crate::desired::desired(&config, &spec).expect("desired");
        let e = super::render(&desired, "default", None).expect_err("mixed auth");
        assert!(e.to_string().contains("open: x-get-health"), "{e}");
    }
}
