//! What can go wrong rendering Kubernetes manifests.

use std::fmt;
use std::path::PathBuf;

/// Where a template came from: deployctl itself, or the user's `kubernetes.templates_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateOrigin {
    /// Embedded in deployctl.
    BuiltIn {
        /// Template name, e.g. `deployment.yaml.tera`.
        name: &'static str,
    },
    /// A file in `kubernetes.templates_dir` replacing the built-in template of that name.
    User {
        /// Template name, e.g. `deployment.yaml.tera`.
        name: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl TemplateOrigin {
    /// The template name, e.g. `deployment.yaml.tera`.
    pub fn name(&self) -> &'static str {
        match self {
            TemplateOrigin::BuiltIn { name } | TemplateOrigin::User { name, .. } => name,
        }
    }

    /// What the user can do about a failure in this template.
    pub fn hint(&self) -> String {
        match self {
            TemplateOrigin::BuiltIn { .. } => {
                "this is a bug in deployctl: please report it with your deploy.yaml \
                 (secrets removed)"
                    .to_owned()
            }
            TemplateOrigin::User { .. } => {
                "fix the file, or delete it to use the built-in template".to_owned()
            }
        }
    }
}

impl fmt::Display for TemplateOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateOrigin::BuiltIn { name } => write!(f, "built-in template `{name}`"),
            TemplateOrigin::User { name, path } => {
                write!(f, "user template `{name}` ({})", path.display())
            }
        }
    }
}

fn rendered_from(t: Option<&TemplateOrigin>) -> String {
    t.map(|t| format!(" rendered by the {t}"))
        .unwrap_or_default()
}

fn hint_for(t: Option<&TemplateOrigin>) -> String {
    t.map_or_else(|| "fix the document".to_owned(), |t| t.hint())
}

/// A failure rendering, checking or writing Kubernetes manifests.
///
/// Messages never contain secret values: they name the template, file, resource and field
/// path, never the data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `kubernetes.templates_dir` cannot be listed.
    #[error(
        "cannot read the Kubernetes templates directory {} (kubernetes.templates_dir); \
         create it, or remove templates_dir to use the built-in templates",
        dir.display()
    )]
    TemplatesDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A user template file cannot be read.
    #[error("cannot read the Kubernetes template {}; check its permissions and that it is UTF-8 text", path.display())]
    ReadTemplate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// `kubernetes.templates_dir` holds files that do not replace any built-in template.
    #[error(
        "{} in the Kubernetes templates directory {} {} not replace any built-in template: {}; \
         name a file after the template it replaces ({}), or move it out of the directory",
        if files.len() == 1 { "a file" } else { "files" },
        dir.display(),
        if files.len() == 1 { "does" } else { "do" },
        files.join(", "),
        crate::TEMPLATE_NAMES.join(", ")
    )]
    UnknownTemplates {
        /// The directory.
        dir: PathBuf,
        /// The unknown file names.
        files: Vec<String>,
    },

    /// A template does not parse or fails to render.
    #[error("cannot render the {template}; {}", template.hint())]
    Template {
        /// The template.
        template: TemplateOrigin,
        /// What tera reported.
        #[source]
        source: tera::Error,
    },

    /// A template rendered text that is not YAML.
    #[error("the {template} did not render valid YAML; {}", template.hint())]
    Yaml {
        /// The template.
        template: TemplateOrigin,
        /// What the YAML parser reported.
        #[source]
        source: serde_yaml::Error,
    },

    /// A template rendered something other than one resource of the kind it stands for.
    #[error("the {template} rendered an unusable document: {reason}; {}", template.hint())]
    Document {
        /// The template.
        template: TemplateOrigin,
        /// What is wrong (no `metadata.name`, two documents, the wrong kind, …).
        reason: String,
    },

    /// A document's `apiVersion`/`kind` is not one deployctl renders.
    #[error(
        "`{api_version}` `{kind}`{} is not a resource deployctl renders; \
         deployctl checks Deployment, Service, ConfigMap, Secret, PersistentVolumeClaim, \
         ServiceAccount, Ingress, HorizontalPodAutoscaler (autoscaling/v2), \
         PodDisruptionBudget and NetworkPolicy",
        rendered_from(template.as_ref())
    )]
    UnsupportedKind {
        /// `apiVersion` as written.
        api_version: String,
        /// `kind` as written.
        kind: String,
        /// The template that rendered it, when known.
        template: Option<TemplateOrigin>,
    },

    /// A document does not match its Kubernetes API type: a field is misspelt, unknown, null
    /// or of the wrong type. The Kubernetes API server would reject or silently drop it.
    #[error(
        "{kind} `{name}`{} does not match the Kubernetes {} API{}; {}",
        rendered_from(template.as_ref()),
        crate::KUBERNETES_API_VERSION,
        if problems.is_empty() { String::new() } else { format!(": {}", problems.join("; ")) },
        hint_for(template.as_ref())
    )]
    Schema {
        /// Resource kind.
        kind: String,
        /// Resource name.
        name: String,
        /// The template that rendered it, when known.
        template: Option<TemplateOrigin>,
        /// Fields the type does not know (field paths, never values).
        problems: Vec<String>,
        /// Why it does not deserialize, when it does not.
        #[source]
        source: Option<Box<serde_path_to_error::Error<serde_json::Error>>>,
    },

    /// A document another library rendered for the app ([`crate::Extra`]) cannot be used.
    #[error("{kind} `{name}` (rendered by {source_name}) cannot be applied with the app: {reason}")]
    Extra {
        /// Who rendered it (`deployctl-kong`).
        source_name: &'static str,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong (no name, another namespace, a kind deployctl does not manage, …).
        reason: String,
    },

    /// The cluster does not serve a custom resource kind deployctl applies.
    #[error("the cluster does not serve {api_version} {kind}, needed for {kind}/{name}")]
    KindNotServed {
        /// `apiVersion`.
        api_version: String,
        /// Kind.
        kind: String,
        /// The object.
        name: String,
    },

    /// Two templates rendered the same resource.
    #[error(
        "two templates ({first} and {second}) render {kind} `{name}`; give one of them another \
         name in your user template"
    )]
    Duplicate {
        /// Resource kind.
        kind: String,
        /// Resource name.
        name: String,
        /// The first template.
        first: &'static str,
        /// The second template.
        second: &'static str,
    },

    /// Writing a manifest file failed.
    #[error("cannot write the Kubernetes manifest {}; check that the directory is writable", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A call to the Kubernetes API failed.
    #[error("Kubernetes {operation} failed for {resource}: {message}")]
    Api {
        /// What was attempted (`apply`, `get`, `delete`, `watch`).
        operation: &'static str,
        /// `Kind/name` or the collection.
        resource: String,
        /// The API server's message (or the transport failure).
        message: String,
        /// HTTP status, when the server answered.
        code: Option<u16>,
        /// The request never reached the server (refused, unresolvable, no connection in
        /// time); a call that timed out or broke mid-answer may have been carried out.
        unreachable: bool,
    },

    /// Server-side apply found fields owned by another manager.
    #[error("applying {resource} conflicts with another field manager: {message}")]
    Conflict {
        /// `Kind/name`.
        resource: String,
        /// The server's message, naming the manager and fields.
        message: String,
    },

    /// The rollout failed (and was perhaps rolled back).
    #[error("rollout of Deployment {deployment} failed: {reason}{}", rolled_back.as_ref().map(|r| format!("; rolled back to revision {r}")).unwrap_or_default())]
    Rollout {
        /// The Deployment.
        deployment: String,
        /// Why, e.g. `pod web-abc: ImagePullBackOff (Back-off pulling image …)`.
        reason: String,
        /// Related pod events, newest last.
        events: Vec<String>,
        /// The revision restored, when an automatic rollback ran.
        rolled_back: Option<String>,
    },

    /// The app did not answer its health path with a success status before the deadline
    /// (and was perhaps rolled back).
    #[error("verification of {url} through the API server's {method} failed: {detail}{}", rolled_back.as_ref().map(|r| format!("; rolled back to revision {r}")).unwrap_or_default())]
    Unhealthy {
        /// What was requested (the API server proxy path).
        url: String,
        /// `service proxy` or `pod proxy`.
        method: &'static str,
        /// The last answer or failure, e.g. `HTTP 500 after 30 s`.
        detail: String,
        /// The revision restored, when an automatic rollback ran.
        rolled_back: Option<String>,
    },

    /// The rollout's pods at its peak do not fit the namespace's ResourceQuota: found
    /// before anything is applied.
    #[error(
        "the rollout of Deployment {deployment} cannot fit the quota in {namespace}: {}",
        shortfalls.join("; ")
    )]
    QuotaExceeded {
        /// The Deployment.
        deployment: String,
        /// Its namespace.
        namespace: String,
        /// One line per resource that does not fit, with the numbers.
        shortfalls: Vec<String>,
    },

    /// `destroy --tenant` for an app whose config has no `kubernetes.tenant`.
    #[error(
        "--tenant: {app} has no kubernetes.tenant in deploy.yaml, so there is no tenant to remove"
    )]
    NoTenant {
        /// The app.
        app: String,
    },

    /// `destroy --tenant` while other deployctl apps still live in the tenant's namespace.
    #[error(
        "the tenant namespace {namespace} still holds other deployctl apps ({}); its tenant objects are kept",
        apps.join(", ")
    )]
    TenantInUse {
        /// The tenant's namespace.
        namespace: String,
        /// The other apps' instance labels.
        apps: Vec<String>,
    },

    /// A hook task's Job failed (or did not finish in time).
    #[error("task Job {job} failed: {reason}{}{}", exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default(), if last_lines.is_empty() { String::new() } else { format!("; last lines:\n  {}", last_lines.join("\n  ")) })]
    Task {
        /// The Job.
        job: String,
        /// Why, e.g. the Job's `Failed` condition message.
        reason: String,
        /// The container's exit code, when it terminated.
        exit_code: Option<i32>,
        /// Its last log lines.
        last_lines: Vec<String>,
        /// Whether the Job was kept (cleanup `never` / `on_success`).
        kept: bool,
    },

    /// Something needed is not there (nothing deployed, no such revision).
    #[error("{0}")]
    Missing(String),

    /// The deploy records in the history ConfigMap are not what deployctl writes.
    #[error("the deploy records (key `{key}`) in ConfigMap {config_map} do not parse")]
    Records {
        /// The history ConfigMap.
        config_map: String,
        /// The key.
        key: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },

    /// Ctrl-C.
    #[error("interrupted before {0}")]
    Cancelled(String),
}

impl From<Error> for deployctl_core::StageError {
    fn from(e: Error) -> Self {
        use deployctl_core::{ErrorKind, StageError};
        let (kind, hint): (ErrorKind, String) = match &e {
            Error::Cancelled(what) => return StageError::cancelled(what),
            Error::Api { code: Some(401 | 403), .. } => (
                ErrorKind::Environment,
                "the cluster refused the credentials: check KUBECONFIG / the context and that the user may apply these kinds (docs/KUBERNETES.md lists the RBAC rules)".into(),
            ),
            Error::Api { code: None, unreachable: true, .. } => (
                ErrorKind::Environment,
                "check that the cluster is reachable: KUBECONFIG, the context (kubernetes.context) and the network".into(),
            ),
            Error::Api { code: None, .. } => (
                ErrorKind::Failed,
                "the call timed out (DEPLOYCTL_CALL_TIMEOUT) or its connection broke; deploy again: server-side apply converges from any partial state".into(),
            ),
            Error::Api { .. } => (
                ErrorKind::Failed,
                "fix the cause above and deploy again; server-side apply converges from any partial state".into(),
            ),
            Error::Task { job, kept, .. } => (
                ErrorKind::Failed,
                if *kept {
                    format!("the Job is kept: `kubectl logs job/{job}`, `kubectl describe job/{job}`; fix the task and deploy again")
                } else {
                    "fix the task and deploy again (cleanup: on_success keeps a failed Job to inspect)".into()
                },
            ),
            Error::Conflict { .. } => (
                ErrorKind::Failed,
                "another tool manages these fields; run with --force-conflicts to take them over, or stop changing them elsewhere".into(),
            ),
            Error::Rollout { events, .. } => (
                ErrorKind::Failed,
                if events.is_empty() {
                    "look at `deployctl logs k8s` and `deployctl status k8s`".into()
                } else {
                    format!("pod events: {}", events.join(" | "))
                },
            ),
            Error::Unhealthy { .. } => (
                ErrorKind::Failed,
                "the app's health path (app.health_check_path) must answer 2xx or 3xx: look at `deployctl logs k8s`".into(),
            ),
            Error::QuotaExceeded { .. } => (
                ErrorKind::Failed,
                "nothing was applied: lower kubernetes.deployment.replicas, strategy.max_surge or the requests, or raise kubernetes.tenant.quota (or free room in the namespace)".into(),
            ),
            Error::NoTenant { .. } => (
                ErrorKind::InvalidInput,
                "run `destroy k8s` without --tenant, or add kubernetes.tenant: { org, project } to deploy.yaml".into(),
            ),
            Error::TenantInUse { .. } => (
                ErrorKind::Failed,
                "destroy those apps first (`deployctl destroy k8s` in each), then run `destroy k8s --tenant` again; without --tenant only this app is removed".into(),
            ),
            Error::KindNotServed { .. } => (
                ErrorKind::Environment,
                "install the kind's CustomResourceDefinition in the cluster (for KongPlugin and KongConsumer: the Kong Ingress Controller's CRDs), or use kong.mode: admin-api".into(),
            ),
            Error::Missing(_) => (
                ErrorKind::Failed,
                "run `deployctl status k8s` to see what is deployed".into(),
            ),
            Error::Write { .. } => (ErrorKind::Environment, "check the directory".into()),
            Error::Records { config_map, key, .. } => (
                ErrorKind::Failed,
                format!("remove the key with `kubectl edit configmap {config_map}` (delete `{key}`); the next deploy starts the records again"),
            ),
            _ => (
                ErrorKind::InvalidInput,
                "fix deploy.yaml or the templates and run again".into(),
            ),
        };
        StageError::new(kind, e.to_string())
            .with_hint(hint)
            .with_source(e)
    }
}

/// A failed call, as an [`Error`]: a 409 on `apply` is a [`Error::Conflict`].
pub(crate) fn api_err(
    operation: &'static str,
    resource: impl Into<String>,
    e: kube::Error,
) -> Error {
    let resource = resource.into();
    match e {
        kube::Error::Api(s) if s.code == 409 && operation == "apply" => Error::Conflict {
            resource,
            message: s.message.clone(),
        },
        kube::Error::Api(s) => Error::Api {
            operation,
            resource,
            message: s.message.clone(),
            code: Some(s.code),
            unreachable: false,
        },
        other => Error::Api {
            operation,
            resource,
            message: other.to_string(),
            code: None,
            unreachable: deployctl_core::never_connected(&other),
        },
    }
}

/// Whether the server answered 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Error {
    /// The same error, attributed to `template` when it concerns a rendered document.
    pub(crate) fn in_template(self, template: TemplateOrigin) -> Self {
        match self {
            Error::Schema {
                kind,
                name,
                problems,
                source,
                ..
            } => Error::Schema {
                kind,
                name,
                template: Some(template),
                problems,
                source,
            },
            Error::UnsupportedKind {
                api_version, kind, ..
            } => Error::UnsupportedKind {
                api_version,
                kind,
                template: Some(template),
            },
            other => other,
        }
    }
}
