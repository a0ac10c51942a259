//! Rendering `deploy.yaml` into Kubernetes manifests.
//!
//! One tera template per resource kind, embedded in the crate (`templates/*.yaml.tera`), any
//! of which a file of the same name in `kubernetes.templates_dir` replaces. Which templates
//! run is decided here from the config (an Ingress only when `ingress.enabled`, …); what a
//! resource looks like is decided by its template. Every value reaches the output through
//! the YAML-safe `q` and `yaml` filters (see [`crate::yaml`]), and every rendered document
//! must parse as exactly one resource of the template's kind, in the configured namespace,
//! and pass [`check_strict`].
//!
//! The variables templates see are listed in `docs/KUBERNETES.md` ("User templates").
//! Secret values are in the context of the two Secret templates only
//! (`secret.yaml.tera`, `imagepullsecret.yaml.tera`), so no other template, built-in or
//! user, can leak them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use deployctl_config::{Config, CredentialSource, Registry};
use deployctl_core::PushedImage;
use serde_json::Value;
use sha2::Digest as _;

use crate::context::{Names, base_context, deployment_context};
use crate::error::Error;
use crate::templates::Templates;

/// What a built-in template's resource is to the others, which decides when it renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Referenced by the Deployment by name, rendered before it (ServiceAccount).
    Referenced,
    /// The image-pull Secret: its context carries the registry credentials.
    ImagePullSecret,
    /// The app's ConfigMap: referenced, and part of the config checksum.
    ConfigMap,
    /// The app's Secret: its context alone carries the secret values.
    AppSecret,
    /// The PersistentVolumeClaim: referenced by the Deployment's volume.
    Volume,
    /// The Deployment: rendered once everything it references is known.
    Workload,
    /// Rendered after the Deployment (Service, Ingress, HPA, PDB, NetworkPolicy).
    Dependent,
}

/// One built-in template, the resource it stands for, and when a config renders it.
pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    pub(crate) source: &'static str,
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    role: Role,
    /// Whether `config` renders this template.
    wanted: fn(&Config) -> bool,
}

macro_rules! builtin {
    ($file:literal, $api_version:literal, $kind:literal, $role:ident, $wanted:expr) => {
        Builtin {
            name: $file,
            source: include_str!(concat!("../templates/", $file)),
            api_version: $api_version,
            kind: $kind,
            role: Role::$role,
            wanted: $wanted,
        }
    };
}

/// The built-in templates, in the order their resources are listed and applied. Each
/// entry says itself when it renders; nothing depends on its position.
pub(crate) const BUILTINS: [Builtin; 11] = [
    builtin!(
        "serviceaccount.yaml.tera",
        "v1",
        "ServiceAccount",
        Referenced,
        // Under a tenant, the ServiceAccount is a tenant object (`tenant.rs`).
        |c| c.kubernetes.service_account.create && c.kubernetes.tenant.is_none()
    ),
    builtin!(
        "imagepullsecret.yaml.tera",
        "v1",
        "Secret",
        ImagePullSecret,
        |c| creates_pull_secret(c).is_some()
    ),
    builtin!(
        "configmap.yaml.tera",
        "v1",
        "ConfigMap",
        ConfigMap,
        has_config_data
    ),
    builtin!("secret.yaml.tera", "v1", "Secret", AppSecret, |c| !c
        .secrets
        .is_empty()),
    builtin!(
        "pvc.yaml.tera",
        "v1",
        "PersistentVolumeClaim",
        Volume,
        |c| c.kubernetes.persistence.enabled
    ),
    builtin!(
        "deployment.yaml.tera",
        "apps/v1",
        "Deployment",
        Workload,
        |_| true
    ),
    builtin!("service.yaml.tera", "v1", "Service", Dependent, |_| true),
    builtin!(
        "ingress.yaml.tera",
        "networking.k8s.io/v1",
        "Ingress",
        Dependent,
        |c| c.kubernetes.ingress.enabled
    ),
    builtin!(
        "hpa.yaml.tera",
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        Dependent,
        |c| c.kubernetes.hpa.enabled
    ),
    builtin!(
        "poddisruptionbudget.yaml.tera",
        "policy/v1",
        "PodDisruptionBudget",
        Dependent,
        |c| min_replicas(c) > 1
    ),
    builtin!(
        "networkpolicy.yaml.tera",
        "networking.k8s.io/v1",
        "NetworkPolicy",
        Dependent,
        |c| c.kubernetes.network_policy.enabled
    ),
];

/// Whether the config has data for the app's ConfigMap (`env` or `kubernetes.configmap`).
pub(crate) fn has_config_data(config: &Config) -> bool {
    !config.env.is_empty() || !config.kubernetes.configmap.is_empty()
}

/// The fewest replicas the Deployment runs (the HPA's minimum when autoscaled).
fn min_replicas(config: &Config) -> i64 {
    let k = &config.kubernetes;
    if k.hpa.enabled {
        i64::from(k.hpa.min_replicas)
    } else {
        k.deployment.replicas
    }
}

const NAMES: [&str; BUILTINS.len()] = {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < BUILTINS.len() {
        names[i] = BUILTINS[i].name;
        i += 1;
    }
    names
};

/// The names of the built-in templates, in output order. A file in
/// `kubernetes.templates_dir` must have one of these names.
pub const TEMPLATE_NAMES: &[&str] = &NAMES;

/// The value of the `app.kubernetes.io/managed-by` label.
pub const MANAGED_BY: &str = "deployctl";

/// The pod-template annotation holding the checksum of the ConfigMap and Secret data.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "deployctl/config-checksum";

/// What [`render`] needs: the validated config and the image to run.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RenderInput<'a> {
    /// The validated `deploy.yaml` (`kubernetes.templates_dir` already resolved against the
    /// config file's directory, as [`deployctl_config::load`] does).
    pub config: &'a Config,
    /// The pushed image; the Deployment references it by digest.
    pub image: &'a PushedImage,
    /// Resources another library rendered for the app, applied with it.
    pub extra: Option<&'a Extra>,
}

impl<'a> RenderInput<'a> {
    /// Input for rendering `config` with `image`.
    pub fn new(config: &'a Config, image: &'a PushedImage) -> Self {
        Self {
            config,
            image,
            extra: None,
        }
    }

    /// With the resources another library rendered for the app.
    #[must_use]
    pub fn with_extra(mut self, extra: &'a Extra) -> Self {
        self.extra = Some(extra);
        self
    }
}

/// The annotation on a Secret naming the keys whose values were generated once (a consumer's
/// API key): a deploy keeps the live value of such a key, and `render --out` the value in the
/// file it wrote before, so a value is never replaced by a newly generated one.
pub const GENERATED_KEYS_ANNOTATION: &str = "deployctl/generated-keys";

/// Resources another library renders for the app — the Kong Ingress Controller's
/// `KongPlugin`s, `KongConsumer` and credential Secret (`deployctl-kong`) — which the binary
/// hands over so they are rendered, applied, pruned and destroyed with the app's own:
/// [`render`] gives each document the app's labels and namespace, and puts `annotations` on
/// the app's Service and Ingress (`konghq.com/plugins`). The kinds must be ones deployctl
/// manages (the core kinds, or the custom kinds it knows: KongPlugin, KongConsumer).
///
/// `Debug` does not print the documents (a Secret may be among them).
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Extra {
    /// Who rendered them, for messages (`deployctl-kong`).
    pub source: &'static str,
    /// The objects, each with `apiVersion`, `kind` and `metadata.name`.
    pub documents: Vec<Value>,
    /// Annotations for the app's Service and Ingress.
    pub annotations: BTreeMap<String, String>,
    /// Secret name → keys among `documents` whose values were generated once: annotated
    /// [`GENERATED_KEYS_ANNOTATION`], so the live (or earlier written) value is kept.
    pub generated: BTreeMap<String, Vec<String>>,
}

impl Extra {
    /// `documents` and `annotations` rendered by `source`.
    pub fn new(
        source: &'static str,
        documents: Vec<Value>,
        annotations: BTreeMap<String, String>,
    ) -> Self {
        Self {
            source,
            documents,
            annotations,
            generated: BTreeMap::new(),
        }
    }

    /// With Secret keys whose values were generated once (see [`Extra::generated`]).
    #[must_use]
    pub fn with_generated(mut self, generated: BTreeMap<String, Vec<String>>) -> Self {
        self.generated = generated;
        self
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let objects: Vec<String> = self
            .documents
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or_default(),
                    d.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )
            })
            .collect();
        f.debug_struct("Extra")
            .field("source", &self.source)
            .field("documents", &objects)
            .field("annotations", &self.annotations)
            .field("generated", &self.generated)
            .finish()
    }
}

/// One rendered Kubernetes resource.
///
/// `Debug` does not print a Secret's contents.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Manifest {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The template that rendered it, e.g. `deployment.yaml.tera`.
    pub template: &'static str,
    /// The document as rendered: one YAML document, no `---` marker, ending in a newline.
    pub yaml: String,
    /// The same document, parsed.
    pub value: Value,
}

impl Manifest {
    /// Whether the document carries secret data (a `Secret`).
    pub fn is_secret(&self) -> bool {
        self.api_version == "v1" && self.kind == "Secret"
    }

    /// The file [`write_dir`] writes it to: `<kind>-<name>.yaml`, kind in lowercase.
    pub fn file_name(&self) -> String {
        format!("{}-{}.yaml", self.kind.to_ascii_lowercase(), self.name)
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Manifest");
        d.field("api_version", &self.api_version)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("template", &self.template);
        if self.is_secret() {
            d.field("yaml", &deployctl_core::Secret::new(String::new()))
                .field("value", &deployctl_core::Secret::new(String::new()));
        } else {
            d.field("yaml", &self.yaml).field("value", &self.value);
        }
        d.finish()
    }
}

/// Renders every Kubernetes resource `input.config` asks for, in apply order:
/// ServiceAccount, image-pull Secret, ConfigMap, Secret, PersistentVolumeClaim, Deployment,
/// Service, Ingress, HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy — each only
/// when configured (see `docs/KUBERNETES.md`).
///
/// Reads `kubernetes.templates_dir` when set; no other IO. Renders whether or not
/// `kubernetes.enabled` is set (that flag selects the deploy target, not the output).
pub fn render(input: RenderInput<'_>) -> Result<Vec<Manifest>, Error> {
    let config = input.config;
    let k = &config.kubernetes;
    let mut names = Names::new(config);
    let wanted: Vec<&'static str> = BUILTINS
        .iter()
        .filter(|b| (b.wanted)(config))
        .map(|b| b.name)
        .collect();
    let templates = Templates::load(k.templates_dir.as_deref(), &wanted)?;
    let mut ctx = base_context(input, &names);
    // The tenant's objects (none without `kubernetes.tenant`) come before the app's.
    let mut out: Vec<Manifest> = crate::tenant::render_tenant(config)?;
    let ns = k.namespace.as_str();

    // Resources the Deployment references come first: their names (a user template may
    // drop one) and data (the config checksum) go into its context.
    for b in BUILTINS.iter().filter(|b| (b.wanted)(config)) {
        match b.role {
            Role::ImagePullSecret => {
                let Some(registry) = creates_pull_secret(config) else {
                    continue;
                };
                let mut secret_ctx = ctx.clone();
                secret_ctx.insert("dockerconfigjson", &dockerconfigjson(registry, input.image));
                out.extend(templates.render(b, &secret_ctx, ns)?);
            }
            Role::AppSecret => {
                let data: BTreeMap<&str, String> = config
                    .secrets
                    .iter()
                    .map(|(k, v)| (k.as_str(), BASE64.encode(v.expose())))
                    .collect();
                let mut secret_ctx = ctx.clone();
                secret_ctx.insert("secret_data", &data);
                let secret = templates.render(b, &secret_ctx, ns)?;
                if secret.is_none() {
                    names.secret = None;
                }
                out.extend(secret);
            }
            Role::ConfigMap => {
                let cm = templates.render(b, &ctx, ns)?;
                if cm.is_none() {
                    names.configmap = None;
                }
                out.extend(cm);
            }
            Role::Volume => {
                let pvc = templates.render(b, &ctx, ns)?;
                if pvc.is_none() {
                    names.pvc = None;
                }
                out.extend(pvc);
            }
            Role::Referenced => out.extend(templates.render(b, &ctx, ns)?),
            Role::Workload | Role::Dependent => {}
        }
    }

    ctx.insert("names", &names);
    let mut deployment = deployment_context(config);
    deployment.config_checksum = config_checksum(&out);
    ctx.insert("deployment", &deployment);
    for role in [Role::Workload, Role::Dependent] {
        for b in BUILTINS
            .iter()
            .filter(|b| b.role == role && (b.wanted)(config))
        {
            out.extend(templates.render(b, &ctx, ns)?);
        }
    }

    if let Some(extra) = input.extra {
        add_extra(&mut out, extra, &ctx, ns)?;
    }

    for (i, a) in out.iter().enumerate() {
        if let Some(b) = out[..i]
            .iter()
            .find(|b| b.kind == a.kind && b.name == a.name)
        {
            return Err(Error::Duplicate {
                kind: a.kind.clone(),
                name: a.name.clone(),
                first: b.template,
                second: a.template,
            });
        }
    }
    Ok(out)
}

/// Puts `extra`'s annotations on the app's Service and Ingress and appends its documents,
/// each with the app's labels and in its namespace.
fn add_extra(
    out: &mut Vec<Manifest>,
    extra: &Extra,
    ctx: &tera::Context,
    ns: &str,
) -> Result<(), Error> {
    let invalid = |kind: &str, name: &str, reason: String| Error::Extra {
        source_name: extra.source,
        kind: kind.to_owned(),
        name: name.to_owned(),
        reason,
    };
    if !extra.annotations.is_empty() {
        for m in out
            .iter_mut()
            .filter(|m| matches!(m.template, "service.yaml.tera" | "ingress.yaml.tera"))
        {
            let meta = &mut m.value["metadata"];
            if !meta["annotations"].is_object() {
                meta["annotations"] = Value::Object(serde_json::Map::new());
            }
            for (k, v) in &extra.annotations {
                meta["annotations"][k] = Value::String(v.clone());
            }
            m.yaml = crate::yaml::to_yaml(&m.value);
        }
    }
    let labels = ctx.get("labels").cloned().unwrap_or(Value::Null);
    for doc in &extra.documents {
        let text = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind, name) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"));
        if name.is_empty() {
            return Err(invalid(kind, name, "it has no metadata.name".into()));
        }
        if crate::cluster::managed_kind(api_version, kind).is_none() {
            return Err(invalid(
                kind,
                name,
                format!("`{api_version}` `{kind}` is not a kind deployctl manages"),
            ));
        }
        match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
            None => {}
            Some(n) if n == ns => {}
            Some(other) => {
                return Err(invalid(
                    kind,
                    name,
                    format!("it is in namespace {other}, the app in {ns}"),
                ));
            }
        }
        let mut value = doc.clone();
        value["metadata"]["namespace"] = Value::String(ns.to_owned());
        if !value["metadata"]["labels"].is_object() {
            value["metadata"]["labels"] = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(app_labels) = &labels {
            for (k, v) in app_labels {
                value["metadata"]["labels"][k] = v.clone();
            }
        }
        if let Some(keys) = extra.generated.get(name).filter(|_| kind == "Secret") {
            if !value["metadata"]["annotations"].is_object() {
                value["metadata"]["annotations"] = Value::Object(serde_json::Map::new());
            }
            value["metadata"]["annotations"][GENERATED_KEYS_ANNOTATION] =
                Value::String(keys.join(","));
        }
        if !crate::cluster::managed_kind(api_version, kind).is_some_and(|k| k.custom) {
            crate::schema::check_strict(&value)?;
        }
        out.push(Manifest {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: ns.to_owned(),
            template: extra.source,
            yaml: crate::yaml::to_yaml(&value),
            value,
        });
    }
    Ok(())
}

/// When `m` is a Secret annotated [`GENERATED_KEYS_ANNOTATION`], the value of each named
/// key in `existing` (the live object, or the file written before) replaces the newly
/// generated one. Pure.
pub(crate) fn keep_generated(m: &mut Manifest, existing: Option<&Value>) {
    let (Some(have), true) = (existing, m.is_secret()) else {
        return;
    };
    let Some(keys) = m
        .value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(GENERATED_KEYS_ANNOTATION))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let mut changed = false;
    for key in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let kept = have
            .get("stringData")
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                have.get("data")
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .and_then(|b| BASE64.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok())
            });
        if let Some(v) = kept
            && m.value["stringData"].get(key).is_some()
        {
            m.value["stringData"][key] = Value::String(v);
            changed = true;
        }
    }
    if changed {
        m.yaml = crate::yaml::to_yaml(&m.value);
    }
}

/// Keeps generated Secret values (see [`GENERATED_KEYS_ANNOTATION`]) from the files an
/// earlier `render --out` wrote into `dir`, so a re-render does not replace them.
pub fn keep_generated_in_dir(manifests: &mut [Manifest], dir: &Path) {
    for m in manifests {
        let existing: Option<Value> = std::fs::read_to_string(dir.join(m.file_name()))
            .ok()
            .and_then(|text| serde_yaml::from_str(&text).ok());
        keep_generated(m, existing.as_ref());
    }
}

/// The manifests as one multi-document YAML stream, each document introduced by `---`
/// (what `kubectl apply -f -` reads).
pub fn to_multi_document(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&m.yaml);
    }
    out
}

/// Writes one file per manifest into `dir` (created if missing), named by
/// [`Manifest::file_name`], and returns the paths in the order of `manifests`.
///
/// Files of resources no longer rendered are not removed. Secret files are created
/// readable by the owner only (on Unix); they hold secret values, base64-encoded — keep
/// them out of version control or encrypt them.
pub fn write_dir(manifests: &[Manifest], dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = Vec::with_capacity(manifests.len());
    for (i, m) in manifests.iter().enumerate() {
        let path = dir.join(m.file_name());
        if let Some(earlier) = manifests[..i]
            .iter()
            .find(|e| e.file_name() == m.file_name())
        {
            return Err(Error::Duplicate {
                kind: m.kind.clone(),
                name: m.name.clone(),
                first: earlier.template,
                second: m.template,
            });
        }
        write_file(&path, m.yaml.as_bytes(), m.is_secret()).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(path)?;
    #[cfg(unix)]
    if private {
        // The mode above applies only to a new file; tighten an existing one too.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

/// The registry whose credentials become an image-pull Secret: explicit
/// `registry.username`/`password` that deployctl itself would push with, and no
/// `kubernetes.image_pull_secret` naming an existing one.
pub(crate) fn creates_pull_secret(config: &Config) -> Option<&Registry> {
    if config.kubernetes.image_pull_secret.is_some() {
        return None;
    }
    config.registry.as_ref().filter(|r| {
        r.username.is_some()
            && r.password.is_some()
            && matches!(
                r.credentials,
                CredentialSource::Auto | CredentialSource::Config
            )
    })
}

/// The base64 `.dockerconfigjson` for pulling `image` with `registry`'s credentials.
fn dockerconfigjson(registry: &Registry, image: &PushedImage) -> String {
    let user = registry.username.as_deref().unwrap_or_default();
    let password = registry
        .password
        .as_ref()
        .map(deployctl_core::Secret::expose)
        .unwrap_or_default();
    let server = if image.reference.is_docker_hub() {
        // What Docker and the kubelet use as Docker Hub's key.
        "https://index.docker.io/v1/".to_owned()
    } else {
        image.reference.registry.clone()
    };
    let auth = BASE64.encode(format!("{user}:{password}"));
    let json = serde_json::json!({
        "auths": { server: { "username": user, "password": password, "auth": auth } }
    });
    BASE64.encode(json.to_string())
}

/// SHA-256 (hex) over the data of the rendered ConfigMap and Secret (not the image-pull
/// Secret), so that changing a value changes the pod template and rolls the Deployment.
fn config_checksum(rendered: &[Manifest]) -> String {
    let mut hasher = sha2::Sha256::new();
    for m in rendered
        .iter()
        .filter(|m| matches!(m.template, "configmap.yaml.tera" | "secret.yaml.tera"))
    {
        hasher.update(m.kind.as_bytes());
        hasher.update(b"\n");
        for field in ["data", "stringData", "binaryData"] {
            hasher.update(field.as_bytes());
            hasher.update(b"=");
            let v = m.value.get(field).unwrap_or(&Value::Null);
            hasher.update(v.to_string().as_bytes());
            hasher.update(b"\n");
        }
    }
    crate::history::hex(&hasher.finalize())
}

/// A manifest from a document, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_manifest(value: Value) -> Manifest {
    let field = |p: &str| {
        value
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Manifest {
        api_version: field("/apiVersion"),
        kind: field("/kind"),
        name: field("/metadata/name"),
        namespace: field("/metadata/namespace"),
        template: "test",
        yaml: serde_yaml::to_string(&value).unwrap_or_default(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_builtin_renders_the_kind_it_declares() {
        for b in &BUILTINS {
            assert!(
                b.source.contains(&format!("kind: {}\n", b.kind))
                    && b.source
                        .contains(&format!("apiVersion: {}\n", b.api_version)),
                "{} does not render {} {}",
                b.name,
                b.api_version,
                b.kind
            );
        }
    }

    #[test]
    fn each_builtin_decides_for_itself_whether_it_renders() {
        let yaml =
            "app:\n  name: web\n  port: 8080\nkubernetes:\n  enabled: true\n  namespace: shop\n";
        let config = deployctl_config::load_str(
            yaml,
            Path::new("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&BTreeMap::<String, String>::new()),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let wanted = |c: &Config| -> Vec<&str> {
            BUILTINS
                .iter()
                .filter(|b| (b.wanted)(c))
                .map(|b| b.kind)
                .collect()
        };
        assert_eq!(wanted(&config), ["Deployment", "Service"]);
        let mut more = config.clone();
        more.kubernetes.ingress.enabled = true;
        more.kubernetes.network_policy.enabled = true;
        assert_eq!(
            wanted(&more),
            ["Deployment", "Service", "Ingress", "NetworkPolicy"]
        );
    }

    #[test]
    fn extra_documents_get_the_app_labels_and_a_generated_key_keeps_its_value() {
        let yaml =
            "app:\n  name: web\n  port: 8080\nkubernetes:\n  enabled: true\n  namespace: shop\n";
        let config = deployctl_config::load_str(
            yaml,
            Path::new("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&BTreeMap::<String, String>::new()),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let image = PushedImage::new(
            deployctl_core::ImageRef::parse("r.example/web").unwrap_or_else(|e| panic!("{e}")),
            deployctl_core::Digest::parse(&format!("sha256:{}", "a".repeat(64)))
                .unwrap_or_else(|e| panic!("{e}")),
            None,
        );
        let extra = Extra::new(
            "test",
            vec![
                serde_json::json!({"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin",
                    "metadata": {"name": "web-cors"}, "plugin": "cors", "config": {}}),
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "web-key"}, "type": "Opaque", "stringData": {"key": "new"}}),
            ],
            BTreeMap::from([("konghq.com/plugins".to_owned(), "web-cors".to_owned())]),
        )
        .with_generated(BTreeMap::from([(
            "web-key".to_owned(),
            vec!["key".to_owned()],
        )]));
        let out = render(RenderInput::new(&config, &image).with_extra(&extra))
            .unwrap_or_else(|e| panic!("{e}"));
        let find = |kind: &str| {
            out.iter()
                .find(|m| m.kind == kind)
                .unwrap_or_else(|| panic!("no {kind}"))
        };
        let plugin = find("KongPlugin");
        assert_eq!(plugin.namespace, "shop");
        assert_eq!(
            plugin.value["metadata"]["labels"]["app.kubernetes.io/instance"],
            "web"
        );
        assert_eq!(
            find("Service").value["metadata"]["annotations"]["konghq.com/plugins"],
            "web-cors"
        );
        let mut secret = find("Secret").clone();
        // The live value (base64 in `data`) wins over the newly generated one.
        keep_generated(
            &mut secret,
            Some(&serde_json::json!({"data": {"key": BASE64.encode("kept")}})),
        );
        assert_eq!(secret.value["stringData"]["key"], "kept");
        assert!(secret.yaml.contains("key: kept"), "{}", secret.yaml);
        // Without the annotation nothing is kept.
        let mut plain = crate::render::test_manifest(serde_json::json!({"apiVersion": "v1",
            "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"key": "new"}}));
        keep_generated(
            &mut plain,
            Some(&serde_json::json!({"stringData": {"key": "old"}})),
        );
        assert_eq!(plain.value["stringData"]["key"], "new");
        // A kind deployctl does not manage is refused, naming who rendered it.
        let bad = Extra::new(
            "test",
            vec![serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})],
            BTreeMap::new(),
        );
        let e = render(RenderInput::new(&config, &image).with_extra(&bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("Pod `p` (rendered by test)"), "{e}");
    }

    #[test]
    fn template_names_match_the_files() {
        assert_eq!(TEMPLATE_NAMES.len(), BUILTINS.len());
        for (name, b) in TEMPLATE_NAMES.iter().zip(&BUILTINS) {
            assert_eq!(*name, b.name);
            assert!(!b.source.is_empty());
        }
    }
}
