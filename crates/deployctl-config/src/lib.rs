//! # deployctl-config — the `deploy.yaml` model
//!
//! Loads one `deploy.yaml`, applies an `environments:` overlay (`--env staging`), expands
//! `${VAR}` / `${VAR:-default}` / `${VAR:?message}` (with `$${` as escape) and
//! `{{ app.name }}`-style references, deserialises the typed [`Config`] and validates it.
//! Every problem is reported at once as a [`Diagnostic`] carrying the file, line:column,
//! field path, a plain message and a hint (unknown keys get a did-you-mean).
//!
//! ## Boundary
//!
//! Reads exactly one file; no network. It never reads the process environment itself: the
//! caller passes a [`VarLookup`] ([`ProcessEnv`] in the binary, a map in tests). Values under
//! `secrets:`, secret build args and the registry password become
//! [`deployctl_core::Secret`] and never appear in diagnostics or `Debug` output.
//! The rest of the workspace sees only a validated [`Config`].
//!
//! ## Limits
//!
//! The file must be a regular file of at most [`MAX_CONFIG_BYTES`] (`read`); nesting and
//! total path length are bounded before serde_yaml parses (`positions`), and the repair
//! passes after type errors are bounded by the document's size (`repair`), so any input
//! fails fast. The real services' limits (Lambda's environment size, reserved names and
//! ranges; Kubernetes names, label values and annotation size) are checked offline
//! (`rules`). Commands that never use secret values can load with
//! [`SecretPolicy::Deferred`] and call [`Config::require_secrets`] later.

mod derived;
mod error;
mod expand;
mod hooks;
mod interpolate;
mod kong;
mod load;
mod model;
mod positions;
mod read;
mod repair;
mod rules;
mod secret_refs;
mod tenant;
mod workspace;

use std::path::Path;

pub use error::{ConfigError, Diagnostic};
pub use hooks::{HookCleanup, HookStep, HookTask, Hooks};
pub use interpolate::{ProcessEnv, VarLookup};
pub use kong::{
    Cors, Kong, KongAuth, KongConsumer, KongDatabase, KongMode, RateLimitPolicy, RateLimiting,
    RequestTransformer,
};
pub use model::*;
pub use read::MAX_CONFIG_BYTES;
pub use tenant::{Tenant, TenantAmounts, TenantLimits, TenantQuota};
pub use workspace::{
    WORKSPACE_FILE, Workspace, WorkspaceDefaults, WorkspaceService, find_workspace, load_workspace,
};

/// What loading does with a `${VAR}` it cannot resolve inside a secret position
/// (`secrets.*`, `registry.password`, `build.args.*.secret`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretPolicy {
    /// An unset variable is an error, like anywhere else (the default).
    #[default]
    Required,
    /// An unset (or, for `${VAR:?}`, empty) variable leaves an unresolved, empty
    /// [`deployctl_core::Secret`] placeholder, listed by [`Config::unresolved_secrets`];
    /// [`Config::require_secrets`] turns them into the errors a strict load reports.
    /// Every other rule still applies, including malformed `${…}` in secret positions.
    /// For commands that never use secret values (`status`, `logs`, `history`,
    /// `destroy --dry-run`).
    Deferred,
}

/// How to load a config.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct LoadOptions<'a> {
    /// The `environments:` overlay to apply (`--env`).
    pub environment: Option<&'a str>,
    /// Where `${VAR}` values come from.
    pub vars: &'a dyn VarLookup,
    /// Whether secret values must resolve ([`SecretPolicy::Required`], the default).
    pub secrets: SecretPolicy,
    /// A workspace's `defaults:`, merged under the file (the file's values win).
    pub defaults: Option<&'a WorkspaceDefaults>,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("environment", &self.environment)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl<'a> LoadOptions<'a> {
    /// Options reading variables from `vars`, with no overlay.
    pub fn new(vars: &'a dyn VarLookup) -> Self {
        Self {
            environment: None,
            vars,
            secrets: SecretPolicy::Required,
            defaults: None,
        }
    }

    /// Loads without requiring secret values: see [`SecretPolicy::Deferred`].
    pub fn with_deferred_secrets(mut self) -> Self {
        self.secrets = SecretPolicy::Deferred;
        self
    }

    /// Sets the [`SecretPolicy`].
    pub fn with_secret_policy(mut self, policy: SecretPolicy) -> Self {
        self.secrets = policy;
        self
    }

    /// Merges a workspace's `defaults:` under the file.
    pub fn with_defaults(mut self, defaults: &'a WorkspaceDefaults) -> Self {
        self.defaults = Some(defaults);
        self
    }

    /// Applies the overlay `name`.
    pub fn with_environment(mut self, name: Option<&'a str>) -> Self {
        self.environment = name;
        self
    }
}

/// Loads and validates the config at `path`.
///
/// Only a regular file (symlinks followed) of at most [`MAX_CONFIG_BYTES`] is read; a FIFO,
/// a device or a directory is refused without being opened for reading.
pub fn load(path: &Path, opts: &LoadOptions<'_>) -> Result<Config, ConfigError> {
    let bytes = read::read_config_bytes(path)?;
    match String::from_utf8(bytes) {
        Ok(text) => load::load_str(&text, path, opts, true),
        Err(e) => Err(ConfigError::Invalid {
            file: path.to_owned(),
            diagnostics: vec![Diagnostic {
                file: path.to_owned(),
                line: None,
                column: None,
                path: String::new(),
                message: format!(
                    "the file is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                hint: Some("save deploy.yaml as UTF-8".into()),
            }],
        }),
    }
}

/// Loads and validates `source` as if read from `file` (relative paths resolve against
/// `file`'s directory).
pub fn load_str(source: &str, file: &Path, opts: &LoadOptions<'_>) -> Result<Config, ConfigError> {
    load::load_str(source, file, opts, false)
}

/// A deploy target kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TargetKind {
    /// The local Docker engine.
    Local,
    /// AWS Lambda.
    Lambda,
    /// Kubernetes.
    Kubernetes,
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetKind::Local => "local",
            TargetKind::Lambda => "lambda",
            TargetKind::Kubernetes => "kubernetes",
        })
    }
}

impl Config {
    /// The enabled targets. The local target is on when `local.enabled` says so, or by
    /// default when no other target is enabled.
    pub fn enabled_targets(&self) -> Vec<TargetKind> {
        let mut out = Vec::new();
        let others = self.lambda.enabled || self.kubernetes.enabled;
        if self.local.enabled.unwrap_or(!others) {
            out.push(TargetKind::Local);
        }
        if self.lambda.enabled {
            out.push(TargetKind::Lambda);
        }
        if self.kubernetes.enabled {
            out.push(TargetKind::Kubernetes);
        }
        out
    }

    /// The Lambda function name (`lambda.function.name`, default `app.name`).
    pub fn function_name(&self) -> &str {
        self.lambda
            .function
            .name
            .as_deref()
            .unwrap_or(&self.app.name)
    }

    /// The resolved config as YAML, secrets shown as `***` (a secret kept in Secrets Manager
    /// or Parameter Store as its reference, which is no secret).
    pub fn to_redacted_yaml(&self) -> String {
        let mut value = match serde_yaml::to_value(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render: {e}\n"),
        };
        if let Some(serde_yaml::Value::Mapping(secrets)) = value.get_mut("secrets") {
            for (name, source) in &self.secret_sources {
                let mut m = serde_yaml::Mapping::new();
                match source {
                    deployctl_core::SecretSource::AwsSecret { id, key } => {
                        m.insert("aws_secret".into(), id.as_str().into());
                        if let Some(k) = key {
                            m.insert("key".into(), k.as_str().into());
                        }
                    }
                    deployctl_core::SecretSource::Ssm { name } => {
                        m.insert("ssm".into(), name.as_str().into());
                    }
                    _ => continue,
                }
                secrets.insert(name.as_str().into(), serde_yaml::Value::Mapping(m));
            }
        }
        serde_yaml::to_string(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Secret values left unresolved because the config was loaded with
    /// [`SecretPolicy::Deferred`]: one diagnostic each (file, line:column, field path, the
    /// unset variable, a hint), exactly as a strict load reports them. Empty otherwise.
    pub fn unresolved_secrets(&self) -> &[Diagnostic] {
        &self.unresolved_secrets
    }

    /// Fails with the diagnostics of [`Config::unresolved_secrets`] when any secret value
    /// is unresolved; call it before a command uses secret values.
    pub fn require_secrets(&self) -> Result<(), ConfigError> {
        if self.unresolved_secrets.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                file: self.file.clone(),
                diagnostics: self.unresolved_secrets.clone(),
            })
        }
    }

    /// Every secret value in the config (to scrub foreign text such as build logs).
    /// Empty values (and unresolved placeholders) are left out: there is nothing to scrub.
    pub fn secret_values(&self) -> Vec<&deployctl_core::Secret> {
        let mut out: Vec<&deployctl_core::Secret> = self.secrets.values().collect();
        if let Some(p) = self.registry.as_ref().and_then(|r| r.password.as_ref()) {
            out.push(p);
        }
        out.extend(self.build.args.values().filter_map(|a| match a {
            BuildArgValue::Secret { secret } => Some(secret),
            BuildArgValue::Plain(_) => None,
        }));
        if let Some(t) = self.kong.as_ref().and_then(|k| k.admin_token.as_ref()) {
            out.push(t);
        }
        out.retain(|s| !s.is_empty());
        out
    }
}
