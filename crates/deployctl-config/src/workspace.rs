//! `deployctl-workspace.yaml`: the services of a repository, their dependencies and the
//! defaults every service's `deploy.yaml` inherits.
//!
//! ```yaml
//! defaults:                 # a deploy.yaml fragment under every service's file
//!   registry: { url: registry.example.com/team }
//!   lambda: { region: eu-west-1 }
//! services:
//!   db:  { path: services/db }
//!   api: { path: services/api, depends_on: [db] }
//! ```
//!
//! Found by walking up from a directory ([`find_workspace`]), as cargo finds its workspace.
//! Loading checks every service: its directory and `deploy.yaml` exist, its `depends_on`
//! names are services, and the graph has no cycle (named). Each problem is a
//! [`Diagnostic`] with the workspace file, line:column, field path and hint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{ConfigError, Diagnostic};
use crate::positions::{self, PositionIndex};

/// The workspace file's name.
pub const WORKSPACE_FILE: &str = "deployctl-workspace.yaml";

/// The `deploy.yaml` sections `defaults:` may set (`app` and `version` are each service's).
const DEFAULT_SECTIONS: &[&str] = &[
    "build",
    "registry",
    "env",
    "secrets",
    "lambda",
    "kubernetes",
    "local",
    "environments",
];

/// The `defaults:` of a workspace: a `deploy.yaml` fragment merged under each service's file
/// (mappings merge key by key, the service's value wins; lists and scalars are replaced).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkspaceDefaults(pub(crate) Mapping);

impl WorkspaceDefaults {
    /// Whether there are no defaults.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One service of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkspaceService {
    /// Its name (the key under `services:`).
    pub name: String,
    /// Its directory (absolute: resolved against the workspace file's directory).
    pub dir: PathBuf,
    /// Its `deploy.yaml`.
    pub config_file: PathBuf,
    /// The services it depends on.
    pub depends_on: Vec<String>,
}

/// A loaded, checked workspace.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Workspace {
    /// The workspace file.
    pub file: PathBuf,
    /// The services by name.
    pub services: BTreeMap<String, WorkspaceService>,
    /// What every service inherits.
    pub defaults: WorkspaceDefaults,
}

impl Workspace {
    /// Service name → its dependencies (for `deployctl_core::plan_waves`).
    pub fn graph(&self) -> deployctl_core::ServiceGraph {
        self.services
            .iter()
            .map(|(k, s)| (k.clone(), s.depends_on.clone()))
            .collect()
    }

    /// Loads service `name`'s `deploy.yaml` with the workspace defaults under it.
    pub fn load_service(
        &self,
        name: &str,
        opts: &crate::LoadOptions<'_>,
    ) -> Result<crate::Config, ConfigError> {
        let service = self
            .services
            .get(name)
            .ok_or_else(|| ConfigError::Invalid {
                file: self.file.clone(),
                diagnostics: vec![Diagnostic {
                    file: self.file.clone(),
                    line: None,
                    column: None,
                    path: "services".into(),
                    message: format!("`{name}` is not a service"),
                    hint: Some(format!(
                        "the services are: {}",
                        self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                }],
            })?;
        let mut opts = *opts;
        opts.defaults = Some(&self.defaults);
        crate::load(&service.config_file, &opts)
    }
}

/// The nearest `deployctl-workspace.yaml` in `start` or one of its ancestors.
pub fn find_workspace(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(WORKSPACE_FILE))
        .find(|f| f.is_file())
}

/// Loads and checks the workspace file at `path`.
pub fn load_workspace(path: &Path) -> Result<Workspace, ConfigError> {
    let bytes = crate::read::read_config_bytes(path)?;
    let source = String::from_utf8_lossy(&bytes);
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&source, path, base)
}

struct Checker<'a> {
    file: &'a Path,
    index: PositionIndex,
    list: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, path: &str, key: bool, message: String, hint: impl Into<Option<String>>) {
        let pos = if key {
            self.index.key(path)
        } else {
            self.index.value(path)
        };
        self.list.push(Diagnostic {
            file: self.file.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: path.to_owned(),
            message,
            hint: hint.into(),
        });
    }
}

fn parse(source: &str, file: &Path, base: &Path) -> Result<Workspace, ConfigError> {
    let index = positions::scan(source).map(|s| s.index).unwrap_or_default();
    let mut c = Checker {
        file,
        index,
        list: Vec::new(),
    };
    let root: Value = match serde_yaml::from_str(source) {
        Ok(v) => v,
        Err(e) => {
            let loc = e.location();
            c.list.push(Diagnostic {
                file: file.to_owned(),
                line: loc.as_ref().and_then(|l| u32::try_from(l.line()).ok()),
                column: loc.as_ref().and_then(|l| u32::try_from(l.column()).ok()),
                path: String::new(),
                message: format!("not valid YAML: {e}"),
                hint: Some(
                    "check indentation and that every `key:` has a space after the colon".into(),
                ),
            });
            return Err(invalid(file, c.list));
        }
    };
    let Some(root) = root.as_mapping() else {
        c.at(
            "",
            false,
            "the top level must be a mapping with `services:`".into(),
            Some("e.g. services: { api: { path: services/api } }".to_owned()),
        );
        return Err(invalid(file, c.list));
    };
    for key in root.keys() {
        let k = key.as_str().unwrap_or_default();
        if k != "services" && k != "defaults" {
            let hint = crate::load::did_you_mean(k, ["services", "defaults"].into_iter())
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| "the keys are `services` and `defaults`".into());
            c.at(k, true, "unknown field".into(), hint);
        }
    }
    let defaults = parse_defaults(root.get("defaults"), &mut c);
    let services = parse_services(root.get("services"), base, &mut c);
    if c.list.is_empty() {
        let graph: deployctl_core::ServiceGraph = services
            .iter()
            .map(|(k, s)| (k.clone(), s.depends_on.clone()))
            .collect();
        if let Err(problem) = deployctl_core::plan_waves(&graph) {
            graph_problem(&problem, &services, &mut c);
        }
    }
    if !c.list.is_empty() {
        c.list.sort_by_key(|x| (x.line.is_none(), x.line, x.column));
        return Err(invalid(file, c.list));
    }
    Ok(Workspace {
        file: file.to_owned(),
        services,
        defaults,
    })
}

fn parse_defaults(v: Option<&Value>, c: &mut Checker<'_>) -> WorkspaceDefaults {
    match v {
        None | Some(Value::Null) => WorkspaceDefaults::default(),
        Some(Value::Mapping(m)) => {
            for key in m.keys() {
                let k = key.as_str().unwrap_or_default();
                if !DEFAULT_SECTIONS.contains(&k) {
                    let hint = crate::load::did_you_mean(k, DEFAULT_SECTIONS.iter().copied())
                        .map(|m| format!("did you mean `{m}`?"))
                        .unwrap_or_else(|| {
                            format!(
                                "defaults may set the deploy.yaml sections {}",
                                DEFAULT_SECTIONS.join(", ")
                            )
                        });
                    c.at(&format!("defaults.{k}"), true, "unknown field".into(), hint);
                }
            }
            WorkspaceDefaults(m.clone())
        }
        Some(_) => {
            c.at(
                "defaults",
                false,
                "must be a mapping of deploy.yaml sections".into(),
                Some("e.g. defaults: { lambda: { region: eu-west-1 } }".to_owned()),
            );
            WorkspaceDefaults::default()
        }
    }
}

fn parse_services(
    v: Option<&Value>,
    base: &Path,
    c: &mut Checker<'_>,
) -> BTreeMap<String, WorkspaceService> {
    let mut out = BTreeMap::new();
    let Some(Value::Mapping(services)) = v else {
        c.at(
            if v.is_some() { "services" } else { "" },
            false,
            "`services` must be a mapping of service name to `{ path, depends_on }`".into(),
            Some("e.g. services: { api: { path: services/api, depends_on: [db] } }".to_owned()),
        );
        return out;
    };
    for (key, body) in services {
        let name = key.as_str().unwrap_or_default().to_owned();
        let at = format!("services.{name}");
        let Some(body) = body.as_mapping() else {
            c.at(
                &at,
                false,
                "must be a mapping with `path` (and `depends_on`)".into(),
                Some(format!("e.g. {name}: {{ path: services/{name} }}")),
            );
            continue;
        };
        for k in body.keys() {
            let k = k.as_str().unwrap_or_default();
            if k != "path" && k != "depends_on" {
                let hint = crate::load::did_you_mean(k, ["path", "depends_on"].into_iter())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| "a service has `path` and `depends_on`".into());
                c.at(&format!("{at}.{k}"), true, "unknown field".into(), hint);
            }
        }
        let dir = match body.get("path").and_then(Value::as_str) {
            Some(p) if !p.is_empty() => base.join(p),
            _ => {
                c.at(
                    &format!("{at}.path"),
                    false,
                    "is required: the service's directory, relative to the workspace file".into(),
                    Some(format!("e.g. path: services/{name}")),
                );
                continue;
            }
        };
        let config_file = dir.join("deploy.yaml");
        if !dir.is_dir() {
            c.at(
                &format!("{at}.path"),
                false,
                format!("the directory {} does not exist", dir.display()),
                Some("the path is relative to the workspace file's directory".to_owned()),
            );
        } else if !config_file.is_file() {
            c.at(
                &format!("{at}.path"),
                false,
                format!("{} has no deploy.yaml", dir.display()),
                Some(format!("run `deployctl init {}`", dir.display())),
            );
        }
        let mut depends_on = Vec::new();
        match body.get("depends_on") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(d) => depends_on.push(d.to_owned()),
                        None => c.at(
                            &format!("{at}.depends_on[{i}]"),
                            false,
                            "must be a service name".into(),
                            None,
                        ),
                    }
                }
            }
            Some(_) => c.at(
                &format!("{at}.depends_on"),
                false,
                "must be a list of service names".into(),
                Some("e.g. depends_on: [db]".to_owned()),
            ),
        }
        out.insert(
            name.clone(),
            WorkspaceService {
                name,
                dir,
                config_file,
                depends_on,
            },
        );
    }
    for (name, s) in &out {
        for (i, d) in s.depends_on.iter().enumerate() {
            if !out.contains_key(d) {
                let hint = crate::load::did_you_mean(d, out.keys().map(String::as_str))
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "the services are: {}",
                            out.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    });
                c.at(
                    &format!("services.{name}.depends_on[{i}]"),
                    false,
                    format!("`{d}` is not a service"),
                    hint,
                );
            }
        }
    }
    out
}

fn graph_problem(
    problem: &deployctl_core::GraphProblem,
    services: &BTreeMap<String, WorkspaceService>,
    c: &mut Checker<'_>,
) {
    match problem {
        deployctl_core::GraphProblem::Cycle(names) => {
            let first = names.first().cloned().unwrap_or_default();
            let next = names.get(1).unwrap_or(&first);
            let i = services
                .get(&first)
                .and_then(|s| s.depends_on.iter().position(|d| d == next))
                .unwrap_or(0);
            c.at(
                &format!("services.{first}.depends_on[{i}]"),
                false,
                problem.to_string(),
                Some("a service cannot depend, directly or not, on itself; remove one of these dependencies".to_owned()),
            );
        }
        other => c.at("services", false, other.to_string(), None),
    }
}

fn invalid(file: &Path, diagnostics: Vec<Diagnostic>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        diagnostics,
    }
}

#[cfg(test)]
mod tests;
