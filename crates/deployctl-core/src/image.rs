//! Image references, build specifications and the images the pipeline passes along.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::secret::Secret;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";

/// A content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    /// Parses `algorithm:hex`. Only `sha256` (64 hex) and `sha512` (128 hex) are accepted.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let bad = || ImageRefError::new(s, "a digest is `sha256:` followed by 64 hex digits");
        let (algo, hex) = s.split_once(':').ok_or_else(bad)?;
        let len = match algo {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest as written, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as Docker shows image IDs.
    pub fn short(&self) -> &str {
        let hex = self.0.split_once(':').map_or(self.0.as_str(), |(_, h)| h);
        &hex[..hex.len().min(12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An invalid image reference or digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
#[non_exhaustive]
pub struct ImageRefError {
    /// What was given.
    pub input: String,
    /// Why it is invalid, and what a valid one looks like.
    pub reason: String,
}

impl ImageRefError {
    fn new(input: &str, reason: &str) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// A container image reference: `registry/repository[:tag][@digest]`, following Docker's
/// naming rules (the first path component is a registry when it contains `.` or `:` or is
/// `localhost`; otherwise the registry is Docker Hub, where a one-component repository
/// lives under `library/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct ImageRef {
    /// Registry host, with port if any (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path inside the registry (`library/nginx`, `team/app`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any. Deploys always use a digest.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// A reference from parts; the repository is validated.
    pub fn new(
        registry: impl Into<String>,
        repository: impl Into<String>,
    ) -> Result<Self, ImageRefError> {
        let registry = registry.into();
        let repository = repository.into();
        let full = format!("{registry}/{repository}");
        validate_registry(&registry, &full)?;
        validate_repository(&repository, &full)?;
        Ok(Self {
            registry: normalize_registry(&registry),
            repository,
            tag: None,
            digest: None,
        })
    }

    /// Parses a reference such as `nginx`, `127.0.0.1:5000/hello:1.0`,
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:…`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::new(s, "it is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag, s)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_registry(first, s)?;
                (normalize_registry(first), remainder.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository, s)?;
        Ok(Self {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The same reference with `tag`.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Result<Self, ImageRefError> {
        let tag = tag.into();
        validate_tag(&tag, &tag)?;
        self.tag = Some(tag);
        Ok(self)
    }

    /// The same reference pinned to `digest` (the tag is kept for readability).
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether this reference names Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// Whether the registry is Amazon ECR (`<account>.dkr.ecr.<region>.amazonaws.com`).
    pub fn is_ecr(&self) -> bool {
        let host = self.registry.split(':').next().unwrap_or_default();
        host.contains(".dkr.ecr.")
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn normalize_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        other => other.to_owned(),
    }
}

fn validate_registry(registry: &str, input: &str) -> Result<(), ImageRefError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ImageRefError::new(
            input,
            "the registry must be a host name or address with an optional :port",
        ))
    }
}

fn validate_repository(repository: &str, input: &str) -> Result<(), ImageRefError> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if repository.len() <= 255 && repository.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(ImageRefError::new(
            input,
            "repository components are lowercase letters, digits and `._-`, separated by `/`, \
             starting and ending with a letter or digit",
        ))
    }
}

fn validate_tag(tag: &str, input: &str) -> Result<(), ImageRefError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ImageRefError::new(
            input,
            "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
        ))
    }
}

/// A target platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Platform(pub String);

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Self("linux/amd64".into())
    }
    /// `linux/arm64`.
    pub fn linux_arm64() -> Self {
        Self("linux/arm64".into())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A build argument. A secret build argument's value is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum BuildArg {
    /// A plain value.
    Plain(String),
    /// A value that must not be printed.
    Secret(Secret),
}

impl BuildArg {
    /// The value, for the one call that needs it.
    pub fn expose(&self) -> &str {
        match self {
            BuildArg::Plain(v) => v,
            BuildArg::Secret(s) => s.expose(),
        }
    }
}

/// Everything an [`ImageBuilder`](crate::ImageBuilder) needs to build one image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BuildSpec {
    /// Build context directory.
    pub context: PathBuf,
    /// Dockerfile, relative to the context.
    pub dockerfile: PathBuf,
    /// Build arguments by name.
    pub build_args: BTreeMap<String, BuildArg>,
    /// Target stage of a multi-stage Dockerfile.
    pub target: Option<String>,
    /// Target platform.
    pub platform: Option<Platform>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Tags to apply to the built image.
    pub tags: Vec<ImageRef>,
    /// Do not use the build cache.
    pub no_cache: bool,
    /// Always attempt to pull newer base images.
    pub pull: bool,
    /// Network for `RUN` steps (`default`, `none`, `host`); `None` is the engine's default.
    pub network: Option<String>,
    /// Images whose build cache the build may reuse (`--cache-from`): pushed earlier with
    /// inline cache, e.g. by another CI run.
    pub cache_from: Vec<ImageRef>,
    /// Write the build cache's metadata into the image (`BUILDKIT_INLINE_CACHE=1`), so that a
    /// build elsewhere can name it in `cache_from` once it is pushed.
    pub inline_cache: bool,
}

impl BuildSpec {
    /// A spec for `context` with `dockerfile` and no options.
    pub fn new(context: impl Into<PathBuf>, dockerfile: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            dockerfile: dockerfile.into(),
            build_args: BTreeMap::new(),
            target: None,
            platform: None,
            labels: BTreeMap::new(),
            tags: Vec::new(),
            no_cache: false,
            pull: false,
            network: None,
            cache_from: Vec::new(),
            inline_cache: false,
        }
    }
}

/// An image that exists in the local engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BuiltImage {
    /// The image ID (config digest).
    pub id: Digest,
    /// The tags it carries.
    pub tags: Vec<ImageRef>,
    /// The platform it was built for.
    pub platform: Option<Platform>,
}

impl BuiltImage {
    /// A built image.
    pub fn new(id: Digest, tags: Vec<ImageRef>, platform: Option<Platform>) -> Self {
        Self { id, tags, platform }
    }
}

/// An image in a registry, pinned by manifest digest. This is what deploys use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PushedImage {
    /// The reference, always with its digest.
    pub reference: ImageRef,
    /// The manifest digest (also in `reference`).
    pub digest: Digest,
    /// The manifest media type the registry reported.
    pub media_type: Option<String>,
}

impl PushedImage {
    /// A pushed image; `reference` gets `digest`.
    pub fn new(reference: ImageRef, digest: Digest, media_type: Option<String>) -> Self {
        Self {
            reference: reference.with_digest(digest.clone()),
            digest,
            media_type,
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether the manifest is an image index / manifest list (Lambda rejects those).
    pub fn is_index(&self) -> bool {
        self.media_type.as_deref().is_some_and(|m| {
            m == "application/vnd.oci.image.index.v1+json"
                || m == "application/vnd.docker.distribution.manifest.list.v2+json"
        })
    }
}

/// Credentials for one registry. The password never prints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryCredentials {
    /// Registry host these are for.
    pub registry: String,
    /// User name (`AWS` for ECR, `<token>` for identity tokens).
    pub username: String,
    /// Password or token.
    pub password: Secret,
    /// Where they came from (`config`, `ecr`, `docker config auths`, `credential helper <name>`).
    pub source: String,
}

impl RegistryCredentials {
    /// Credentials for `registry`.
    pub fn new(
        registry: impl Into<String>,
        username: impl Into<String>,
        password: Secret,
        source: impl Into<String>,
    ) -> Self {
        Self {
            registry: registry.into(),
            username: username.into(),
            password,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_docker_hub_short_names() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(r.tag, None);
        let r = ImageRef::parse("index.docker.io/team/app:1.2").unwrap();
        assert_eq!(r.to_string(), "docker.io/team/app:1.2");
        assert!(r.is_docker_hub());
    }

    #[test]
    fn parses_registry_with_port_tag_and_digest() {
        let r = ImageRef::parse(&format!("127.0.0.1:5000/hello:1.0@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "hello");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest.as_ref().unwrap().as_str(), D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/hello:1.0@{D}"));
        let r = ImageRef::parse("localhost/a/b").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "a/b")
        );
    }

    #[test]
    fn recognises_ecr() {
        let r = ImageRef::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1").unwrap();
        assert!(r.is_ecr());
        assert!(!ImageRef::parse("127.0.0.1:5000/app").unwrap().is_ecr());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "app:",
            "app:-tag",
            "a//b",
            "host:99999/app",
            "app@sha256:123",
            "app@md5:0123",
            "-app",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn digest_short_and_index_detection() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(d.short(), "0123456789ab");
        let img = PushedImage::new(
            ImageRef::parse("r.example/app").unwrap(),
            d,
            Some("application/vnd.oci.image.index.v1+json".into()),
        );
        assert!(img.is_index());
        assert_eq!(img.digest().as_str(), D);
    }
}
