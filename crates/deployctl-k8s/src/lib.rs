//! # deployctl-k8s — the Kubernetes target
//!
//! Turns a validated `deploy.yaml` ([`deployctl_config::Config`]) and a pushed image
//! ([`deployctl_core::PushedImage`], always pinned by digest) into Kubernetes resources.
//! Today that is **rendering**: [`render`] produces one [`Manifest`] per resource (Deployment,
//! Service, ConfigMap, Secret, PersistentVolumeClaim, Ingress, HorizontalPodAutoscaler,
//! NetworkPolicy, ServiceAccount, PodDisruptionBudget and an image-pull Secret, each when the
//! config asks for it), which [`to_multi_document`] prints for `kubectl apply -f -` and
//! [`write_dir`] writes as one file per resource for GitOps. Applying them, watching the
//! rollout and rolling back will follow in this crate as the `deployctl_core::Target`
//! implementation.
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
//! talks to no cluster. Secret values appear in the Secret manifests only — the templates
//! of other resources never see them, and [`Manifest`]'s `Debug` hides a Secret's contents.

mod apply;
mod cluster;
mod compute;
mod diff;
mod error;
mod history;
mod logs;
mod observe;
mod render;
mod resources;
mod rollout;
mod schema;
mod target;
mod verify;
mod yaml;

pub use apply::FIELD_MANAGER;
pub use error::{Error, TemplateOrigin};
pub use render::{
    CONFIG_CHECKSUM_ANNOTATION, MANAGED_BY, Manifest, RenderInput, TEMPLATE_NAMES, render,
    to_multi_document, write_dir,
};
pub use resources::{ManagedResource, managed_resources};
pub use schema::check_strict;
pub use target::{K8sOptions, K8sTarget};

/// The Kubernetes API version manifests are checked against (the `k8s-openapi` feature).
pub const KUBERNETES_API_VERSION: &str = "v1.33";
