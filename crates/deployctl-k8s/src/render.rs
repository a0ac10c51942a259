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
use serde::Serialize;
use serde_json::Value;
use sha2::Digest as _;

use crate::error::{Error, TemplateOrigin};
use crate::schema::check_strict;
use crate::yaml;

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
struct Builtin {
    name: &'static str,
    source: &'static str,
    api_version: &'static str,
    kind: &'static str,
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
const BUILTINS: [Builtin; 11] = [
    builtin!(
        "serviceaccount.yaml.tera",
        "v1",
        "ServiceAccount",
        Referenced,
        |c| c.kubernetes.service_account.create
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
fn has_config_data(config: &Config) -> bool {
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
}

impl<'a> RenderInput<'a> {
    /// Input for rendering `config` with `image`.
    pub fn new(config: &'a Config, image: &'a PushedImage) -> Self {
        Self { config, image }
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
    let mut out: Vec<Manifest> = Vec::new();
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

/// Built-in templates with the user's replacements, parsed.
///
/// Parsing is most of a render's cost, so only the templates a config renders are parsed,
/// split across two threads, each group into its own `Tera` (built-in templates stand
/// alone: none includes another). A templates directory may hold templates that include
/// each other, so with one, every template goes into one `Tera` as before.
struct Templates {
    groups: Vec<tera::Tera>,
    /// Template name → index into `groups`.
    group_of: BTreeMap<&'static str, usize>,
    origins: BTreeMap<&'static str, TemplateOrigin>,
}

/// The templates in a user's templates directory, by built-in name: (path, source).
fn read_overrides(dir: &Path) -> Result<BTreeMap<&'static str, (PathBuf, String)>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::TemplatesDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut unknown = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::TemplatesDir {
            dir: dir.to_owned(),
            source,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        // Hidden files (.gitkeep, editor swap files) are not templates.
        if file_name.starts_with('.') {
            continue;
        }
        match TEMPLATE_NAMES.iter().find(|n| **n == file_name) {
            Some(name) if entry.path().is_file() => files.push((*name, entry.path())),
            _ => unknown.push(file_name),
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(Error::UnknownTemplates {
            dir: dir.to_owned(),
            files: unknown,
        });
    }
    let mut overrides = BTreeMap::new();
    for (name, path) in files {
        let source = std::fs::read_to_string(&path).map_err(|source| Error::ReadTemplate {
            path: path.clone(),
            source,
        })?;
        overrides.insert(name, (path, source));
    }
    Ok(overrides)
}

/// A `Tera` with deployctl's filters and no HTML escaping.
fn new_tera() -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.register_filter("q", yaml::q_filter);
    tera.register_filter("yaml", yaml::yaml_filter);
    tera
}

/// Parses `sources` (name, origin, text) into one `Tera`.
fn parse_group(sources: Vec<(&'static str, TemplateOrigin, &str)>) -> Result<tera::Tera, Error> {
    let mut tera = new_tera();
    for (name, origin, source) in sources {
        if let Err(source) = tera.add_raw_template(name, source) {
            return Err(Error::Template {
                template: origin,
                source,
            });
        }
    }
    Ok(tera)
}

impl Templates {
    /// The built-in templates named in `wanted`, or every template (built-in or from
    /// `user_dir`) when a templates directory is set.
    fn load(user_dir: Option<&Path>, wanted: &[&'static str]) -> Result<Self, Error> {
        let Some(dir) = user_dir else {
            return Self::builtins(wanted);
        };
        let mut overrides = read_overrides(dir)?;
        let mut sources = Vec::new();
        for b in &BUILTINS {
            let (origin, source) = match overrides.remove(b.name) {
                Some((path, source)) => (TemplateOrigin::User { name: b.name, path }, source),
                None => (
                    TemplateOrigin::BuiltIn { name: b.name },
                    b.source.to_owned(),
                ),
            };
            sources.push((b.name, origin, source));
        }
        let tera = parse_group(
            sources
                .iter()
                .map(|(n, o, s)| (*n, o.clone(), s.as_str()))
                .collect(),
        )?;
        Ok(Self {
            groups: vec![tera],
            group_of: BUILTINS.iter().map(|b| (b.name, 0)).collect(),
            origins: sources.into_iter().map(|(n, o, _)| (n, o)).collect(),
        })
    }

    fn builtins(wanted: &[&'static str]) -> Result<Self, Error> {
        let mut chosen: Vec<&Builtin> = BUILTINS
            .iter()
            .filter(|b| wanted.contains(&b.name))
            .collect();
        // Largest first, each to the lighter of two groups.
        chosen.sort_by_key(|b| std::cmp::Reverse(b.source.len()));
        let mut split: [(usize, Vec<&Builtin>); 2] = [(0, Vec::new()), (0, Vec::new())];
        for b in chosen {
            let lighter = usize::from(split[1].0 < split[0].0);
            split[lighter].0 += b.source.len();
            split[lighter].1.push(b);
        }
        let [(_, first), (_, second)] = split;
        let sources = |group: &[&Builtin]| -> Vec<(&'static str, TemplateOrigin, &'static str)> {
            group
                .iter()
                .map(|b| (b.name, TemplateOrigin::BuiltIn { name: b.name }, b.source))
                .collect()
        };
        let (a, b) = if second.is_empty() {
            (parse_group(sources(&first)), Ok(new_tera()))
        } else {
            std::thread::scope(|scope| {
                let other = scope.spawn(|| parse_group(sources(&second)));
                let mine = parse_group(sources(&first));
                // A panic there is a panic here, as if both groups were parsed on this thread.
                let other = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (mine, other)
            })
        };
        let mut group_of = BTreeMap::new();
        for b in &first {
            group_of.insert(b.name, 0);
        }
        for b in &second {
            group_of.insert(b.name, 1);
        }
        Ok(Self {
            groups: vec![a?, b?],
            group_of,
            origins: BTreeMap::new(),
        })
    }

    /// Renders `b`: `None` when the template renders nothing but blank lines and comments
    /// (a user template can drop a resource that way).
    fn render(
        &self,
        b: &Builtin,
        ctx: &tera::Context,
        namespace: &str,
    ) -> Result<Option<Manifest>, Error> {
        let origin = self
            .origins
            .get(b.name)
            .cloned()
            .unwrap_or(TemplateOrigin::BuiltIn { name: b.name });
        let tera = self
            .group_of
            .get(b.name)
            .and_then(|i| self.groups.get(*i))
            .ok_or_else(|| Error::Document {
                template: origin.clone(),
                reason: "the template was not loaded for this render".to_owned(),
            })?;
        let text = tera.render(b.name, ctx).map_err(|source| Error::Template {
            template: origin.clone(),
            source,
        })?;
        let yaml = normalize(&text);
        if yaml.is_empty() {
            return Ok(None);
        }
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&yaml) {
            let value =
                <Value as serde::Deserialize>::deserialize(doc).map_err(|source| Error::Yaml {
                    template: origin.clone(),
                    source,
                })?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        let bad = |reason: String| Error::Document {
            template: origin.clone(),
            reason,
        };
        let value = match docs.len() {
            0 => return Ok(None),
            1 => docs.remove(0),
            n => {
                return Err(bad(format!(
                    "{n} documents; a template renders exactly one resource"
                )));
            }
        };
        let field = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        let api_version = field("/apiVersion").unwrap_or_default().to_owned();
        let kind = field("/kind").unwrap_or_default().to_owned();
        if api_version != b.api_version || kind != b.kind {
            return Err(bad(format!(
                "it is `{api_version}` `{kind}`, but this template renders `{}` `{}`",
                b.api_version, b.kind
            )));
        }
        let name = match field("/metadata/name") {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => return Err(bad("metadata.name is missing or empty".to_owned())),
        };
        match field("/metadata/namespace") {
            Some(n) if n == namespace => {}
            Some(n) => {
                return Err(bad(format!(
                    "metadata.namespace is `{n}`, not the configured namespace `{namespace}`"
                )));
            }
            None => {
                return Err(bad(format!(
                    "metadata.namespace is missing (expected `{namespace}`)"
                )));
            }
        }
        check_strict(&value).map_err(|e| e.in_template(origin.clone()))?;
        Ok(Some(Manifest {
            api_version,
            kind,
            name,
            namespace: namespace.to_owned(),
            template: b.name,
            yaml,
            value,
        }))
    }
}

/// Trims blank lines and a leading `---` / trailing `---` or `...` marker; the result is
/// empty when nothing but blank lines and comments remain, else ends in one newline.
fn normalize(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    while lines
        .first()
        .is_some_and(|l| l.trim().is_empty() || l.trim_end() == "---")
    {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| {
        let l = l.trim_end();
        l.is_empty() || l == "---" || l == "..."
    }) {
        lines.pop();
    }
    if lines
        .iter()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return String::new();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Resource names. The optional ones are `None` when the resource is neither rendered nor
/// referenced.
#[derive(Debug, Clone, Serialize)]
struct Names {
    deployment: String,
    service: String,
    ingress: String,
    hpa: String,
    pdb: String,
    network_policy: String,
    configmap: Option<String>,
    secret: Option<String>,
    pvc: Option<String>,
    service_account: Option<String>,
    image_pull_secret: Option<String>,
}

impl Names {
    fn new(config: &Config) -> Self {
        let app = config.app.name.as_str();
        let k = &config.kubernetes;
        let service_account = if k.service_account.create {
            Some(
                k.service_account
                    .name
                    .clone()
                    .unwrap_or_else(|| app.to_owned()),
            )
        } else {
            k.service_account.name.clone()
        };
        let image_pull_secret = match &k.image_pull_secret {
            Some(name) => Some(name.clone()),
            None if creates_pull_secret(config).is_some() => Some(format!("{app}-registry")),
            None => None,
        };
        Self {
            deployment: app.to_owned(),
            service: app.to_owned(),
            ingress: app.to_owned(),
            hpa: app.to_owned(),
            pdb: app.to_owned(),
            network_policy: app.to_owned(),
            configmap: has_config_data(config).then(|| format!("{app}-config")),
            secret: (!config.secrets.is_empty()).then(|| format!("{app}-secrets")),
            pvc: k.persistence.enabled.then(|| format!("{app}-data")),
            service_account,
            image_pull_secret,
        }
    }
}

/// The registry whose credentials become an image-pull Secret: explicit
/// `registry.username`/`password` that deployctl itself would push with, and no
/// `kubernetes.image_pull_secret` naming an existing one.
fn creates_pull_secret(config: &Config) -> Option<&Registry> {
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

/// A label value from arbitrary text: at most 63 of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric; other characters become `_`.
pub(crate) fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut out: String = trimmed.chars().take(63).collect();
    while out.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        out.pop();
    }
    out
}

fn base_context(input: RenderInput<'_>, names: &Names) -> tera::Context {
    let config = input.config;
    let k = &config.kubernetes;
    let mut selector = BTreeMap::new();
    selector.insert("app.kubernetes.io/name", config.app.name.clone());
    selector.insert("app.kubernetes.io/instance", config.app.name.clone());
    let mut labels = selector.clone();
    let version = label_value(&config.app.version);
    if !version.is_empty() {
        labels.insert("app.kubernetes.io/version", version);
    }
    labels.insert("app.kubernetes.io/managed-by", MANAGED_BY.to_owned());
    let mut config_data = config.env.clone();
    config_data.extend(k.configmap.iter().map(|(k, v)| (k.clone(), v.clone())));
    let secret_keys: Vec<&str> = config.secrets.keys().map(String::as_str).collect();

    let mut ctx = tera::Context::new();
    ctx.insert("app", &config.app);
    ctx.insert("namespace", &k.namespace);
    ctx.insert(
        "image",
        &format!("{}@{}", input.image.reference.name(), input.image.digest),
    );
    ctx.insert("labels", &labels);
    ctx.insert("selector_labels", &selector);
    ctx.insert("names", names);
    ctx.insert("kubernetes", k);
    ctx.insert("config_data", &config_data);
    ctx.insert("secret_keys", &secret_keys);
    ctx.insert("deployment", &deployment_context(config));
    ctx
}

#[derive(Debug, Clone, Serialize)]
struct DeploymentContext {
    replicas: Option<i64>,
    resources: crate::compute::ResourceMap,
    probes: BTreeMap<&'static str, ProbeContext>,
    config_checksum: String,
}

#[derive(Debug, Clone, Serialize)]
struct ProbeContext {
    path: String,
    initial_delay_seconds: u32,
    period_seconds: u32,
    timeout_seconds: u32,
    failure_threshold: u32,
}

fn deployment_context(config: &Config) -> DeploymentContext {
    let d = &config.kubernetes.deployment;
    let resources = crate::compute::container_resources(&d.resources);
    let probe = |p: &deployctl_config::Probe| ProbeContext {
        path: p
            .path
            .clone()
            .unwrap_or_else(|| config.app.health_check_path.clone()),
        initial_delay_seconds: p.initial_delay_seconds,
        period_seconds: p.period_seconds,
        timeout_seconds: p.timeout_seconds,
        failure_threshold: p.failure_threshold,
    };
    let mut probes = BTreeMap::new();
    probes.insert("liveness", probe(&d.probes.liveness));
    probes.insert("readiness", probe(&d.probes.readiness));
    DeploymentContext {
        replicas: (!config.kubernetes.hpa.enabled).then_some(d.replicas),
        resources,
        probes,
        config_checksum: String::new(),
    }
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
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
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
    fn every_builtin_template_parses_in_either_group() {
        let t = Templates::builtins(TEMPLATE_NAMES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.group_of.len(), BUILTINS.len());
        // Both groups hold templates: the parse is split.
        assert!(t.group_of.values().any(|g| *g == 0) && t.group_of.values().any(|g| *g == 1));
        let one = Templates::builtins(&["service.yaml.tera"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            one.group_of.keys().copied().collect::<Vec<_>>(),
            ["service.yaml.tera"]
        );
    }

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
    fn template_names_match_the_files() {
        assert_eq!(TEMPLATE_NAMES.len(), BUILTINS.len());
        for (name, b) in TEMPLATE_NAMES.iter().zip(&BUILTINS) {
            assert_eq!(*name, b.name);
            assert!(!b.source.is_empty());
        }
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("2.3.1"), "2.3.1");
        assert_eq!(label_value("1.0+build.5"), "1.0_build.5");
        assert_eq!(label_value("-v1-"), "v1");
        assert_eq!(label_value("+++"), "");
        let long = "a".repeat(62) + "-b";
        assert_eq!(label_value(&long), "a".repeat(62));
    }

    #[test]
    fn normalize_drops_markers_and_comment_only_text() {
        assert_eq!(normalize("\n---\na: 1\n\n---\n"), "a: 1\n");
        assert_eq!(normalize("# nothing here\n\n  # really\n"), "");
        assert_eq!(
            normalize("a: |\n  x  \n"),
            "a: |\n  x  \n",
            "content is kept"
        );
    }
}
