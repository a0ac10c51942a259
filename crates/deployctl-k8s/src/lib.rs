//! # deployctl-k8s — the Kubernetes target
//!
//! Turns a validated `deploy.yaml` ([`deployctl_config::Config`]) and a pushed image
//! ([`deployctl_core::PushedImage`], always pinned by digest) into Kubernetes resources.
//! [`render`] produces one [`Manifest`] per resource (Deployment, Service, ConfigMap, Secret,
//! PersistentVolumeClaim, Ingress, HorizontalPodAutoscaler, NetworkPolicy, ServiceAccount,
//! PodDisruptionBudget and an image-pull Secret, each when the config asks for it), which
//! [`to_multi_document`] prints for `kubectl apply -f -` and [`write_dir`] writes as one file
//! per resource for GitOps; [`managed_resources`] lists the same kinds and names offline.
//! [`K8sTarget`] is the `deployctl_core::Target`: it deploys them to a cluster.
//!
//! ## Layout
//!
//! Rendering: `render` (the built-in table, each template with its own predicate),
//! `templates` (loading, parsing, checking one document), `context` (what templates see),
//! `compute` (default requests and limits), `yaml`, `schema`. The target, in the shape of
//! `deployctl-aws`: `observe` (reads only) → `diff` (pure: desired vs observed, the plan) →
//! `apply` (the only mutating calls to the app's objects) → `rollout` (watch, fast failure, automatic rollback)
//! → `verify` (the health path through the API server's service or pod proxy); `history`
//! (typed revisions, each recorded `pending` before it is applied and `good` or `failed`
//! after), `lock` (the deploy lock: a `coordination.k8s.io/v1` Lease per app), `logs`,
//! `cluster` (the client, kinds, selectors), `task` (hook tasks as Jobs, applied after the
//! ConfigMap and Secret and before the Deployment), and `target` wiring them into the
//! `Target` impl.
//!
//! Manifests come from tera templates embedded in the crate; a file of the same name in
//! `kubernetes.templates_dir` replaces a built-in one ([`TEMPLATE_NAMES`] lists them). Every
//! value reaches the YAML through a quoting filter, so no user string can change the
//! document's structure, and every rendered document is checked against its `k8s-openapi`
//! type for the Kubernetes API version in [`KUBERNETES_API_VERSION`] with unknown fields
//! rejected ([`check_strict`]). `docs/KUBERNETES.md` lists what each setting renders.
//!
//! ## Boundary
//!
//! Depends on `deployctl-core` and the `deployctl-config` model only: no Docker, no
//! registry, no AWS. Rendering reads the user templates directory and nothing else; it
//! talks to no cluster. The target talks to the cluster only through the `kube::Client` it
//! is given. Secret values appear in the Secret manifests only — the templates
//! of other resources never see them, and [`Manifest`]'s `Debug` hides a Secret's contents.

mod apply;
mod cluster;
mod compute;
mod context;
mod diff;
mod error;
mod history;
mod lock;
mod logs;
mod observe;
mod quantity;
mod quota;
mod render;
mod resources;
mod rollout;
mod schema;
mod target;
mod task;
mod templates;
mod tenant;
mod tenant_destroy;
mod verify;
mod yaml;

pub use apply::FIELD_MANAGER;
pub use error::{Error, TemplateOrigin};
pub use render::{
    CONFIG_CHECKSUM_ANNOTATION, Extra, GENERATED_KEYS_ANNOTATION, MANAGED_BY, Manifest,
    RenderInput, TEMPLATE_NAMES, keep_generated_in_dir, render, to_multi_document, write_dir,
};
pub use resources::{ManagedResource, first_deploy_plan, managed_resources};
pub use schema::check_strict;
pub use target::{K8sOptions, K8sTarget};
pub use task::{HOOK_OF_LABEL, TASK_LABEL, TASK_RUNNER, job_name, task_job};
pub use tenant::{
    LIMIT_RANGE_NAME, ORG_LABEL, PROJECT_LABEL, QUOTA_NAME, TENANT_LABEL, render_tenant,
};

/// The template value filters `q` and `yaml`, for the fuzz targets (`crates/deployctl-fuzz`)
/// and their regression tests. Not part of the API.
#[doc(hidden)]
pub mod filters {
    pub use crate::yaml::{q_filter, yaml_filter};
}

/// The Kubernetes API version manifests are checked against (the `k8s-openapi` feature).
pub const KUBERNETES_API_VERSION: &str = "v1.33";
