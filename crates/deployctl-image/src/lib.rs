//! # deployctl-image — build the image once
//!
//! Implements [`deployctl_core::ImageBuilder`] over the Docker Engine API (crate bollard;
//! see docs/decisions/0001): the build context is walked with Docker's exact
//! `.dockerignore` semantics ([`DockerIgnore`]) and streamed to the engine as a tar through
//! a bounded channel, never held whole in memory. Build args (secret ones never echoed),
//! target stage, platform, labels, no-cache and pull come from the [`BuildSpec`]; progress
//! is reported as core events (step n/m, output lines); a failing step ends with an error
//! quoting the instruction and its last output lines.
//!
//! [`default_tags`] and [`oci_labels`] derive the tags and `org.opencontainers.image.*`
//! labels a build gets from the version and the git work tree.
//!
//! ## Boundary
//!
//! Reads the build context and runs `git` in it; talks only to the Docker engine it is
//! given (`bollard::Docker`, built by the caller). Pushing is `deployctl-registry`'s job.
//!
//! [`BuildSpec`]: deployctl_core::BuildSpec

mod builder;
mod context;
mod dockerignore;
mod error;
mod filesync;
mod progress;
mod secrets;
mod session;
mod upload;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use deployctl_core::ImageRef;

pub use builder::{BuilderChoice, DockerBuilder};
pub use context::{BuildContext, dockerfile_in_context};
pub use dockerignore::DockerIgnore;
pub use error::ImageError;
pub use filesync::SessionTransfer;
pub use session::{EngineSocket, open_sessions};
pub use upload::{PackedApp, UPLOAD_CONFIG, pack_app};

/// What git says about the work tree holding the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GitInfo {
    /// Full commit hash.
    pub revision: String,
    /// Short hash (12 characters).
    pub short: String,
    /// Uncommitted changes exist.
    pub dirty: bool,
    /// `origin`'s URL, if any.
    pub source: Option<String>,
    /// Commit time (RFC 3339), used as the image's `created` label so that rebuilding the
    /// same commit gives the same image.
    pub committed_at: Option<String>,
}

/// Reads [`GitInfo`] for `dir`; `None` outside a git work tree or without `git`.
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let revision = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let source = git(&["remote", "get-url", "origin"]).filter(|s| !s.is_empty());
    let committed_at = git(&["log", "-1", "--format=%cI"]).filter(|s| !s.is_empty());
    Some(GitInfo {
        committed_at,
        short: revision.chars().take(12).collect(),
        revision,
        dirty,
        source,
    })
}

/// The tags a build gets: the configured version, and the short git SHA (with `-dirty`
/// when the tree has uncommitted changes) when in a git work tree.
pub fn default_tags(repo: &ImageRef, version: &str, git: Option<&GitInfo>) -> Vec<ImageRef> {
    let mut tags = Vec::new();
    let mut push = |t: &str| {
        if let Ok(r) = repo.clone().with_tag(t)
            && !tags.contains(&r)
        {
            tags.push(r);
        }
    };
    push(version);
    if let Some(g) = git {
        push(&if g.dirty {
            format!("{}-dirty", g.short)
        } else {
            g.short.clone()
        });
    }
    tags
}

/// `org.opencontainers.image.*` labels: version, created (the commit time in a git work
/// tree, so a rebuild of the same commit is identical), revision and source.
///
/// Outside a git work tree there is no `created` label: a wall-clock time would make every
/// rebuild of unchanged sources a new image, and so every redeploy a change.
pub fn oci_labels(version: &str, git: Option<&GitInfo>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(
        "org.opencontainers.image.version".to_owned(),
        version.to_owned(),
    );
    if let Some(created) = git.and_then(|g| g.committed_at.clone()) {
        l.insert("org.opencontainers.image.created".to_owned(), created);
    }
    if let Some(g) = git {
        l.insert(
            "org.opencontainers.image.revision".to_owned(),
            g.revision.clone(),
        );
        if let Some(s) = &g.source {
            l.insert("org.opencontainers.image.source".to_owned(), s.clone());
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_from_version_and_git() {
        let repo = ImageRef::parse("127.0.0.1:5000/app").unwrap();
        let g = GitInfo {
            revision: "0123456789abcdef0123".into(),
            short: "0123456789ab".into(),
            dirty: true,
            source: None,
            committed_at: Some("2026-01-02T03:04:05+00:00".into()),
        };
        assert_eq!(
            oci_labels("1", Some(&g))["org.opencontainers.image.created"],
            "2026-01-02T03:04:05+00:00"
        );
        let tags: Vec<String> = default_tags(&repo, "1.2.0", Some(&g))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            tags,
            [
                "127.0.0.1:5000/app:1.2.0",
                "127.0.0.1:5000/app:0123456789ab-dirty"
            ]
        );
        assert_eq!(default_tags(&repo, "1.2.0", None).len(), 1);
    }
}
