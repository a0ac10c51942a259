//! # deployctl-scaffold — what `deployctl init` writes
//!
//! Detects the project in a directory (Python, Node.js, Go, Java, Rust — see
//! [`LOOKED_FOR`] for the order) and renders a commented `deploy.yaml`, a `.dockerignore`
//! and a **unified Dockerfile**: one image that runs on AWS Lambda (through the AWS Lambda
//! Web Adapter, pinned to [`LAMBDA_ADAPTER_VERSION`]) and unchanged on Kubernetes and the
//! local engine. Dockerfiles install dependencies before copying sources (layer cache) and
//! run as a non-root user.
//!
//! ## Boundary
//!
//! Reads the project's manifests; writes only the generated files, and only through
//! [`write`], which never overwrites without `force`. No network, no process.

mod detect;
mod error;

use std::path::{Path, PathBuf};

pub use detect::{LOOKED_FOR, Project, ProjectKind, detect, dns_label};
pub use error::ScaffoldError;

/// The AWS Lambda Web Adapter image tag the generated Dockerfiles copy from.
pub const LAMBDA_ADAPTER_VERSION: &str = "1.1.0";

/// Options for rendering (construct with a struct literal over `Default`).
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// App name (default: from the manifest, as a DNS-1123 label).
    pub app_name: Option<String>,
    /// Port the app listens on.
    pub port: u16,
    /// Health check path.
    pub health_path: String,
    /// AWS region for the Lambda section.
    pub region: String,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            app_name: None,
            port: 8080,
            health_path: "/health".to_owned(),
            region: "us-east-1".to_owned(),
        }
    }
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GeneratedFile {
    /// Path relative to the project directory.
    pub path: PathBuf,
    /// Contents.
    pub contents: String,
}

/// What [`write`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// Written (it did not exist).
    Created(PathBuf),
    /// Overwritten (`force`).
    Overwritten(PathBuf),
    /// An existing file was kept (a Dockerfile or .dockerignore the project already has).
    KeptExisting(PathBuf),
}

impl std::fmt::Display for WriteOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteOutcome::Created(p) => write!(f, "created {}", p.display()),
            WriteOutcome::Overwritten(p) => write!(f, "overwrote {}", p.display()),
            WriteOutcome::KeptExisting(p) => write!(f, "kept existing {}", p.display()),
        }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("_adapter.tera", include_str!("../templates/_adapter.tera")),
    (
        "deploy.yaml.tera",
        include_str!("../templates/deploy.yaml.tera"),
    ),
    (
        "dockerignore.tera",
        include_str!("../templates/dockerignore.tera"),
    ),
    (
        "Dockerfile.python.tera",
        include_str!("../templates/Dockerfile.python.tera"),
    ),
    (
        "Dockerfile.node.tera",
        include_str!("../templates/Dockerfile.node.tera"),
    ),
    (
        "Dockerfile.go.tera",
        include_str!("../templates/Dockerfile.go.tera"),
    ),
    (
        "Dockerfile.java.tera",
        include_str!("../templates/Dockerfile.java.tera"),
    ),
    (
        "Dockerfile.rust.tera",
        include_str!("../templates/Dockerfile.rust.tera"),
    ),
];

fn engine() -> Result<tera::Tera, ScaffoldError> {
    let mut t = tera::Tera::default();
    t.autoescape_on(vec![]);
    t.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| ScaffoldError::Template {
            template: "built-in templates".to_owned(),
            reason: e.to_string(),
        })?;
    Ok(t)
}

/// Renders `deploy.yaml`, `Dockerfile` and `.dockerignore` for `project`.
pub fn render(project: &Project, opts: &InitOptions) -> Result<Vec<GeneratedFile>, ScaffoldError> {
    let t = engine()?;
    let name = opts
        .app_name
        .as_deref()
        .map_or_else(|| project.name.clone(), dns_label);
    let port = opts.port.to_string();
    let start: Vec<String> = project
        .start_command
        .iter()
        .map(|a| a.replace("{port}", &port))
        .collect();
    let ignore: &[&str] = match project.kind {
        ProjectKind::Python => &["__pycache__", "*.pyc", ".venv", "venv", ".pytest_cache"],
        ProjectKind::Node => &["node_modules", "npm-debug.log", "dist", "coverage"],
        ProjectKind::Go => &["bin", "*.test"],
        ProjectKind::Java => &["target", "build", ".gradle"],
        ProjectKind::Rust => &["target"],
    };
    let mut ctx = tera::Context::new();
    ctx.insert("kind", &project.kind.to_string());
    ctx.insert("name", &name);
    ctx.insert("port", &opts.port);
    ctx.insert("health_path", &opts.health_path);
    ctx.insert("region", &opts.region);
    ctx.insert("adapter_version", LAMBDA_ADAPTER_VERSION);
    ctx.insert("start_command", &start);
    ctx.insert("deps_file", &project.deps_file);
    ctx.insert("package_manager", &project.package_manager);
    ctx.insert("has_lockfile", &project.has_lockfile);
    ctx.insert("has_build_script", &project.has_build_script);
    ctx.insert("binary", &project.binary);
    ctx.insert("build_tool", &project.build_tool);
    ctx.insert("ignore", ignore);
    let one = |template: &str| {
        t.render(template, &ctx)
            .map_err(|e| ScaffoldError::Template {
                template: template.to_owned(),
                reason: {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg = format!("{msg}: {s}");
                        src = s.source();
                    }
                    msg
                },
            })
    };
    Ok(vec![
        GeneratedFile {
            path: PathBuf::from("deploy.yaml"),
            contents: one("deploy.yaml.tera")?,
        },
        GeneratedFile {
            path: PathBuf::from("Dockerfile"),
            contents: one(&format!("Dockerfile.{}.tera", project.kind))?,
        },
        GeneratedFile {
            path: PathBuf::from(".dockerignore"),
            contents: one("dockerignore.tera")?,
        },
    ])
}

/// Writes `files` under `dir`.
///
/// `deploy.yaml` is never overwritten without `force`: when it exists, nothing at all is
/// written and the error lists it. An existing Dockerfile or .dockerignore is kept (the
/// project's own is likely tuned) unless `force`.
pub fn write(
    dir: &Path,
    files: &[GeneratedFile],
    force: bool,
) -> Result<Vec<WriteOutcome>, ScaffoldError> {
    let existing: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.path == Path::new("deploy.yaml") && dir.join(&f.path).exists())
        .map(|f| dir.join(&f.path))
        .collect();
    if !force && !existing.is_empty() {
        return Err(ScaffoldError::Exists { files: existing });
    }
    let mut out = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        let exists = path.exists();
        if exists && !force {
            out.push(WriteOutcome::KeptExisting(f.path.clone()));
            continue;
        }
        std::fs::write(&path, &f.contents).map_err(|source| ScaffoldError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
        out.push(if exists {
            WriteOutcome::Overwritten(f.path.clone())
        } else {
            WriteOutcome::Created(f.path.clone())
        });
    }
    Ok(out)
}
