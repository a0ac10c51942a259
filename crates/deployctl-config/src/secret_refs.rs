//! `secrets:` values kept elsewhere: `{ aws_secret: <name-or-arn>, key: <field> }` (AWS
//! Secrets Manager) and `{ ssm: /path/name }` (SSM Parameter Store).
//!
//! Loading checks the reference's shape and leaves an empty, unresolved [`Secret`] in its
//! place; the config crate does no network. A caller that needs the values resolves
//! [`Config::secret_sources`] (the binary, with a [`deployctl_core::SecretResolver`]) and
//! hands them back with [`Config::set_resolved_secrets`], which runs the checks that depend
//! on the values (Lambda's 4 KB environment) again.

use std::collections::BTreeMap;
use std::sync::Arc;

use deployctl_core::{Secret, SecretSource};
use serde_yaml::Value;

use crate::error::{ConfigError, Diagnostic};
use crate::load::{Diags, did_you_mean};
use crate::model::Config;
use crate::positions::PositionIndex;

/// The keys a reference may have.
const KEYS: &[&str] = &["aws_secret", "key", "ssm"];

/// What [`Config::set_resolved_secrets`] needs to place diagnostics as loading does.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    pub(crate) index: PositionIndex,
    pub(crate) overlay: Option<String>,
}

/// Takes every mapping-valued entry out of `secrets:` (leaving an empty string for the
/// typed model), checks its shape and returns the valid ones.
pub(crate) fn extract(root: &mut Value, d: &mut Diags<'_>) -> BTreeMap<String, SecretSource> {
    let mut out = BTreeMap::new();
    let Some(Value::Mapping(secrets)) = root.get_mut("secrets") else {
        return out;
    };
    for (k, v) in secrets.iter_mut() {
        let Value::Mapping(m) = v else { continue };
        let name = match k {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let path = format!("secrets.{name}");
        if let Some(source) = check(&path, m, d) {
            out.insert(name, source);
        }
        *v = Value::String(String::new());
    }
    out
}

pub(crate) fn check(
    path: &str,
    m: &serde_yaml::Mapping,
    d: &mut Diags<'_>,
) -> Option<SecretSource> {
    // A `${VAR}` left unset under `SecretPolicy::Deferred` (reported by `require_secrets`):
    // a command that never reads values does not need this reference.
    if d.unresolved
        .iter()
        .any(|u| u.path.starts_with(&format!("{path}.")))
    {
        return None;
    }
    let mut ok = true;
    let field = |d: &mut Diags<'_>, key: &str| -> Option<String> {
        let v = m.get(key)?;
        let p = format!("{path}.{key}");
        match v {
            Value::String(s) if s.trim().is_empty() => {
                d.value(&p, "must not be empty", Some(hint_for(key).to_owned()));
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                d.value(&p, "must be a string", Some(hint_for(key).to_owned()));
                None
            }
        }
    };
    for k in m.keys() {
        let key = k.as_str().unwrap_or("?");
        if !KEYS.contains(&key) {
            ok = false;
            let hint = match did_you_mean(key, KEYS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => {
                    "a secret reference has `aws_secret` (and optionally `key`) or `ssm`".to_owned()
                }
            };
            d.key(&format!("{path}.{key}"), "unknown field", Some(hint));
        }
    }
    let aws = field(d, "aws_secret");
    let key = field(d, "key");
    let ssm = field(d, "ssm");
    let present = |k: &str| m.contains_key(k);
    if present("aws_secret") && present("ssm") {
        d.value(
            path,
            "a secret reference names either `aws_secret` or `ssm`, not both",
            Some("keep one of them".to_owned()),
        );
        return None;
    }
    if !present("aws_secret") && !present("ssm") {
        d.value(
            path,
            "a secret reference needs `aws_secret` or `ssm`",
            Some(
                "e.g. { aws_secret: prod/db, key: password } or { ssm: /prod/api/token }; a plain value is a string (`${VAR}`)"
                    .to_owned(),
            ),
        );
        return None;
    }
    if present("key") && present("ssm") {
        d.value(
            &format!("{path}.key"),
            "`key` selects a JSON field of an `aws_secret`; an SSM parameter has none",
            Some("remove `key`, or store the value in its own parameter".to_owned()),
        );
        return None;
    }
    if let Some(id) = &aws
        && let Some(problem) = bad_secret_id(id)
    {
        d.value(
            &format!("{path}.aws_secret"),
            problem,
            Some(hint_for("aws_secret").to_owned()),
        );
        return None;
    }
    if let Some(name) = &ssm
        && let Some(problem) = bad_parameter_name(name)
    {
        d.value(
            &format!("{path}.ssm"),
            problem,
            Some(hint_for("ssm").to_owned()),
        );
        return None;
    }
    if !ok {
        return None;
    }
    match (aws, ssm) {
        (Some(id), None) if !present("key") || key.is_some() => {
            Some(SecretSource::AwsSecret { id, key })
        }
        (None, Some(name)) => Some(SecretSource::Ssm { name }),
        _ => None,
    }
}

fn hint_for(key: &str) -> &'static str {
    match key {
        "aws_secret" => {
            "the secret's name (letters, digits and /_+=.@-) or its ARN (arn:aws:secretsmanager:…)"
        }
        "key" => "the field of the secret's JSON object, e.g. `password`",
        _ => "a parameter name: `/path/name` (letters, digits and _.-/), or one name without `/`",
    }
}

/// Secrets Manager: a name of at most 512 of `[A-Za-z0-9/_+=.@-]`, or an ARN.
fn bad_secret_id(id: &str) -> Option<String> {
    if id.starts_with("arn:") {
        let parts: Vec<&str> = id.splitn(7, ':').collect();
        if parts.len() < 7 || parts[2] != "secretsmanager" || parts[5] != "secret" {
            return Some(format!(
                "`{id}` is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            ));
        }
        return None;
    }
    if id.len() > 512 {
        return Some(format!(
            "the secret name is {} characters, above Secrets Manager's 512",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Some(format!("`{c}` cannot appear in a Secrets Manager name"));
    }
    None
}

/// Parameter Store: `[A-Za-z0-9_.-/]`, at most 2048; a name with `/` starts with one, has
/// no empty level and does not end with one; `aws` and `ssm` prefixes are reserved.
fn bad_parameter_name(name: &str) -> Option<String> {
    if name.len() > 2048 {
        return Some(format!(
            "the parameter name is {} characters, above Parameter Store's 2048",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Some(format!("`{c}` cannot appear in an SSM parameter name"));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Some(format!("`{name}` has a path but does not start with `/`"));
    }
    if name.ends_with('/') || name.contains("//") {
        return Some(format!("`{name}` is not a parameter path (an empty level)"));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Some(format!(
            "`{name}`: names starting with `aws` or `ssm` are reserved by Parameter Store"
        ));
    }
    None
}

impl Config {
    /// The `secrets:` entries whose value is kept in AWS Secrets Manager or SSM Parameter
    /// Store, by variable name. Until [`Config::set_resolved_secrets`] fills them, their
    /// [`Config::secrets`](crate::Config) entries are empty placeholders. Commands that
    /// never use values (`validate`, `plan`, `status`) leave them unresolved.
    pub fn secret_sources(&self) -> &BTreeMap<String, SecretSource> {
        &self.secret_sources
    }

    /// Whether a run on `kinds` uses the values of [`Config::secret_sources`]: every target
    /// does, except Lambda under `lambda.secrets: reference` (it gets the references).
    pub fn uses_secret_values(&self, kinds: &[crate::TargetKind]) -> bool {
        !self.secret_sources.is_empty()
            && kinds.iter().any(|k| {
                *k != crate::TargetKind::Lambda
                    || self.lambda.secrets != crate::LambdaSecrets::Reference
            })
    }

    /// Whether every [`Config::secret_sources`] entry has its value.
    pub fn secret_sources_resolved(&self) -> bool {
        self.secret_sources.is_empty() || self.sources_resolved
    }

    /// Puts the values of [`Config::secret_sources`] into `secrets` and checks again what
    /// depends on them (Lambda's environment size and names), with diagnostics placed as at
    /// load. A value for a name that is not a reference is ignored; a reference without a
    /// value is an error.
    pub fn set_resolved_secrets(
        &mut self,
        mut values: BTreeMap<String, Secret>,
    ) -> Result<(), ConfigError> {
        let missing: Vec<&String> = self
            .secret_sources
            .keys()
            .filter(|k| !values.contains_key(*k))
            .collect();
        let positions = self.positions.clone().unwrap_or_default();
        let file = self.file.clone();
        let mut d = Diags::detached(&file, positions.index.clone(), positions.overlay.clone());
        for name in missing {
            d.value(
                &format!("secrets.{name}"),
                format!("{} was not resolved", self.secret_sources[name]),
                Some("resolve every reference before using the values".to_owned()),
            );
        }
        for name in self.secret_sources.keys() {
            if let Some(v) = values.remove(name) {
                self.secrets.insert(name.clone(), v);
            }
        }
        if self.lambda.enabled {
            crate::rules::lambda_environment(self, &mut d);
        }
        let list: Vec<Diagnostic> = std::mem::take(&mut d.list);
        if list.is_empty() {
            self.sources_resolved = true;
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                file: self.file.clone(),
                diagnostics: list,
            })
        }
    }
}

/// Shared so a cloned config keeps its positions cheaply.
pub(crate) type SharedPositions = Arc<Positions>;
