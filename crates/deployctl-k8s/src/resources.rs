//! The resources a config makes, known offline: what `deployctl plan` lists for
//! Kubernetes. Derived from [`render`] itself (with a placeholder image), so the names can
//! never drift from what a deploy applies.

use deployctl_config::Config;
use deployctl_core::{Action, Digest, ImageRef, Plan, PushedImage, ResourceChange};

use crate::error::Error;
use crate::render::{RenderInput, render};

/// One Kubernetes resource deployctl renders (and so applies and manages) for a config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ManagedResource {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
}

/// The resources `config` renders, in apply order, without a cluster or an image: the
/// renderer runs with a placeholder image, so the kinds and names are exactly those of a
/// deploy. Reads `kubernetes.templates_dir` when set (a user template may rename or drop
/// a resource); the errors are [`render`]'s.
pub fn managed_resources(config: &Config) -> Result<Vec<ManagedResource>, Error> {
    let image = placeholder_image(config)?;
    Ok(render(RenderInput::new(config, &image))?
        .into_iter()
        .map(|m| ManagedResource {
            api_version: m.api_version,
            kind: m.kind,
            name: m.name,
            namespace: m.namespace,
        })
        .collect())
}

/// The plan of a first deploy of `config`, for when the cluster cannot be read: every
/// resource of [`managed_resources`] created, each with its API version and where it lives
/// (a cluster-scoped one, such as a tenant's Namespace, says so).
pub fn first_deploy_plan(config: &Config) -> Result<Plan, Error> {
    let mut plan = Plan::new("k8s");
    for r in managed_resources(config)? {
        let reason = if r.namespace.is_empty() {
            format!("{}, cluster-scoped", r.api_version)
        } else {
            format!("{} in namespace {}", r.api_version, r.namespace)
        };
        plan.push(ResourceChange::new(r.kind, r.name, Action::Create, reason));
    }
    Ok(plan)
}

/// The image a plan renders with before the image is built: the repository a push of this
/// config targets, pinned to an all-zero digest. The repository matters: the image-pull
/// Secret is keyed by its registry, and the plan compares it with the live image's.
pub(crate) fn placeholder_image(config: &Config) -> Result<PushedImage, Error> {
    let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64)))
        .map_err(|e| Error::Missing(e.to_string()))?;
    let repository = config.image_repository();
    let reference = ImageRef::parse(&format!("{repository}@{digest}"))
        .or_else(|_| ImageRef::parse(&format!("{}@{digest}", config.app.name)))
        .map_err(|e| Error::Missing(e.to_string()))?;
    Ok(PushedImage::new(reference, digest, None))
}
