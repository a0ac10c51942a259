//! Which kind of project a directory holds, and what its image needs to know.

use std::path::{Path, PathBuf};

use crate::error::ScaffoldError;

/// The manifests looked for, in priority order.
pub const LOOKED_FOR: &[&str] = &[
    "pyproject.toml",
    "requirements.txt",
    "package.json",
    "go.mod",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "Cargo.toml",
];

/// A project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProjectKind {
    /// Python (pyproject.toml or requirements.txt).
    Python,
    /// Node.js (package.json).
    Node,
    /// Go (go.mod).
    Go,
    /// Java (Maven or Gradle).
    Java,
    /// Rust (Cargo.toml with a package).
    Rust,
}

impl std::fmt::Display for ProjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProjectKind::Python => "python",
            ProjectKind::Node => "node",
            ProjectKind::Go => "go",
            ProjectKind::Java => "java",
            ProjectKind::Rust => "rust",
        })
    }
}

/// A detected project.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Project {
    /// The language.
    pub kind: ProjectKind,
    /// Its name as a DNS-1123 label (for `app.name`).
    pub name: String,
    /// The manifest it was detected from.
    pub manifest: PathBuf,
    /// Whether a Dockerfile already exists.
    pub has_dockerfile: bool,
    /// Command that starts the server (Python, Node).
    pub start_command: Vec<String>,
    /// Dependency file (Python: `requirements.txt` or `pyproject.toml`).
    pub deps_file: Option<String>,
    /// Package manager (Node: npm, yarn, pnpm).
    pub package_manager: Option<String>,
    /// Whether a lockfile exists (Node npm).
    pub has_lockfile: bool,
    /// Whether package.json has a build script.
    pub has_build_script: bool,
    /// Built binary name (Go, Rust).
    pub binary: Option<String>,
    /// Build tool (Java: maven, gradle).
    pub build_tool: Option<String>,
}

impl Project {
    fn new(kind: ProjectKind, name: String, manifest: PathBuf, dir: &Path) -> Self {
        Self {
            kind,
            name: dns_label(&name),
            manifest,
            has_dockerfile: dir.join("Dockerfile").is_file(),
            start_command: Vec::new(),
            deps_file: None,
            package_manager: None,
            has_lockfile: false,
            has_build_script: false,
            binary: None,
            build_tool: None,
        }
    }
}

/// Detects the project in `dir`.
pub fn detect(dir: &Path) -> Result<Project, ScaffoldError> {
    let exists = |f: &str| dir.join(f).is_file();
    if !dir.is_dir() {
        return Err(ScaffoldError::Io {
            action: "read",
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    if exists("pyproject.toml") || exists("requirements.txt") {
        return python(dir);
    }
    if exists("package.json") {
        return node(dir);
    }
    if exists("go.mod") {
        return go(dir);
    }
    if exists("pom.xml") || exists("build.gradle") || exists("build.gradle.kts") {
        return java(dir);
    }
    if exists("Cargo.toml") {
        return rust(dir);
    }
    Err(ScaffoldError::Unrecognised {
        dir: dir.to_owned(),
        looked_for: LOOKED_FOR.join(", "),
    })
}

fn read(path: &Path) -> Result<String, ScaffoldError> {
    std::fs::read_to_string(path).map_err(|source| ScaffoldError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".to_owned())
}

/// Lowercase letters, digits and `-`, at most 63, starting and ending alphanumeric.
pub fn dns_label(raw: &str) -> String {
    let raw = raw.rsplit('/').next().unwrap_or(raw);
    let mut out = String::new();
    for ch in raw.chars() {
        let c = ch.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "app".to_owned()
    } else {
        out
    }
}

fn toml_doc(path: &Path) -> Result<toml::Table, ScaffoldError> {
    let text = read(path)?;
    text.parse::<toml::Table>()
        .map_err(|e| ScaffoldError::Manifest {
            file: path.to_owned(),
            reason: e.message().to_owned(),
        })
}

fn python(dir: &Path) -> Result<Project, ScaffoldError> {
    let (manifest, deps_text, name) = if dir.join("pyproject.toml").is_file() {
        let path = dir.join("pyproject.toml");
        let doc = toml_doc(&path)?;
        let project = doc.get("project").and_then(|p| p.as_table());
        let name = project
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| dir_name(dir));
        let deps = project
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let deps = if dir.join("requirements.txt").is_file() {
            format!("{deps}\n{}", read(&dir.join("requirements.txt"))?)
        } else {
            deps
        };
        (path, deps, name)
    } else {
        let path = dir.join("requirements.txt");
        let deps = read(&path)?;
        (path, deps, dir_name(dir))
    };
    let mut p = Project::new(ProjectKind::Python, name, manifest.clone(), dir);
    p.deps_file = Some(
        if dir.join("requirements.txt").is_file() {
            "requirements.txt"
        } else {
            "pyproject.toml"
        }
        .to_owned(),
    );
    let deps = deps_text.to_ascii_lowercase();
    let has = |pkg: &str| {
        deps.lines().any(|l| {
            let l = l.trim();
            l.starts_with(pkg)
                && l[pkg.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
        })
    };
    let module = ["main", "app", "server", "wsgi", "asgi"]
        .into_iter()
        .find(|m| dir.join(format!("{m}.py")).is_file())
        .map(str::to_owned)
        .or_else(|| {
            dir.join("app/main.py")
                .is_file()
                .then(|| "app.main".to_owned())
        })
        .unwrap_or_else(|| "main".to_owned());
    p.start_command = if has("fastapi") || has("uvicorn") || has("starlette") {
        vec![
            "uvicorn".into(),
            format!("{module}:app"),
            "--host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            "{port}".into(),
        ]
    } else if has("django") {
        let project = std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.path().join("wsgi.py").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_else(|| "config".to_owned());
        vec![
            "gunicorn".into(),
            "--bind".into(),
            "0.0.0.0:{port}".into(),
            format!("{project}.wsgi"),
        ]
    } else if has("flask") || has("gunicorn") {
        vec![
            "gunicorn".into(),
            "--bind".into(),
            "0.0.0.0:{port}".into(),
            format!("{module}:app"),
        ]
    } else {
        vec!["python".into(), format!("{}.py", module.replace('.', "/"))]
    };
    Ok(p)
}

fn node(dir: &Path) -> Result<Project, ScaffoldError> {
    let path = dir.join("package.json");
    let text = read(&path)?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ScaffoldError::Manifest {
            file: path.clone(),
            reason: e.to_string(),
        })?;
    if !doc.is_object() {
        return Err(ScaffoldError::Manifest {
            file: path,
            reason: "the top level is not a JSON object".to_owned(),
        });
    }
    let name = doc
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| dir_name(dir));
    let mut p = Project::new(ProjectKind::Node, name, path, dir);
    let pm = if dir.join("pnpm-lock.yaml").is_file() {
        "pnpm"
    } else if dir.join("yarn.lock").is_file() {
        "yarn"
    } else {
        "npm"
    };
    p.package_manager = Some(pm.to_owned());
    p.has_lockfile = dir.join("package-lock.json").is_file() || pm != "npm";
    let scripts = doc.get("scripts");
    p.has_build_script = scripts.and_then(|s| s.get("build")).is_some();
    p.start_command = if scripts.and_then(|s| s.get("start")).is_some() {
        vec![pm.to_owned(), "start".to_owned()]
    } else {
        let main = doc
            .get("main")
            .and_then(|m| m.as_str())
            .unwrap_or("index.js");
        vec!["node".to_owned(), main.to_owned()]
    };
    Ok(p)
}

fn go(dir: &Path) -> Result<Project, ScaffoldError> {
    let path = dir.join("go.mod");
    let text = read(&path)?;
    let module = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("module "))
        .map(|m| m.trim().trim_matches('"').to_owned())
        .ok_or_else(|| ScaffoldError::Manifest {
            file: path.clone(),
            reason: "no `module` line".to_owned(),
        })?;
    let name = module.rsplit('/').next().unwrap_or(&module).to_owned();
    let mut p = Project::new(ProjectKind::Go, name, path, dir);
    p.binary = Some(p.name.clone());
    Ok(p)
}

fn java(dir: &Path) -> Result<Project, ScaffoldError> {
    if dir.join("pom.xml").is_file() {
        let path = dir.join("pom.xml");
        let text = read(&path)?;
        if !text.contains("<project") {
            return Err(ScaffoldError::Manifest {
                file: path,
                reason: "no <project> element".to_owned(),
            });
        }
        // The project's own artifactId: the first one outside <parent>.
        let without_parent = match (text.find("<parent>"), text.find("</parent>")) {
            (Some(a), Some(b)) if b > a => format!("{}{}", &text[..a], &text[b..]),
            _ => text.clone(),
        };
        let name = without_parent
            .split("<artifactId>")
            .nth(1)
            .and_then(|s| s.split("</artifactId>").next())
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| dir_name(dir));
        let mut p = Project::new(ProjectKind::Java, name, path, dir);
        p.build_tool = Some("maven".to_owned());
        return Ok(p);
    }
    let path = if dir.join("build.gradle").is_file() {
        dir.join("build.gradle")
    } else {
        dir.join("build.gradle.kts")
    };
    let settings = ["settings.gradle", "settings.gradle.kts"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    let name = settings
        .and_then(|s| std::fs::read_to_string(s).ok())
        .and_then(|t| {
            t.lines().find_map(|l| {
                let l = l.trim();
                l.strip_prefix("rootProject.name").map(|r| {
                    r.trim_start_matches([' ', '='])
                        .trim()
                        .trim_matches(['"', '\''])
                        .to_owned()
                })
            })
        })
        .unwrap_or_else(|| dir_name(dir));
    let mut p = Project::new(ProjectKind::Java, name, path, dir);
    p.build_tool = Some("gradle".to_owned());
    Ok(p)
}

fn rust(dir: &Path) -> Result<Project, ScaffoldError> {
    let path = dir.join("Cargo.toml");
    let doc = toml_doc(&path)?;
    let Some(package) = doc.get("package").and_then(|p| p.as_table()) else {
        return Err(ScaffoldError::Manifest {
            file: path,
            reason: if doc.contains_key("workspace") {
                "it is a workspace root without [package]; run `deployctl init` in the directory of the binary crate".to_owned()
            } else {
                "no [package] table".to_owned()
            },
        });
    };
    let pkg_name = package
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| ScaffoldError::Manifest {
            file: path.clone(),
            reason: "[package] has no name".to_owned(),
        })?;
    let binary = doc
        .get("bin")
        .and_then(|b| b.as_array())
        .and_then(|bins| bins.first())
        .and_then(|b| b.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| pkg_name.clone(), str::to_owned);
    let mut p = Project::new(ProjectKind::Rust, pkg_name, path, dir);
    p.binary = Some(binary);
    Ok(p)
}
