//! Docker's `config.json`: `auths`, `credHelpers`, `credsStore`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use async_trait::async_trait;
use base64::Engine;
use deployctl_core::{CredentialSource, RegistryCredentials, Secret, StageError};
use serde::Deserialize;

use crate::error::RegistryError;
use crate::{DOCKER_HUB_SERVER, normalize_registry};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// Credentials from Docker's `config.json` and its credential helpers.
#[derive(Debug, Clone)]
pub struct DockerConfigCredentials {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
}

impl DockerConfigCredentials {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map_or_else(|| PathBuf::from("."), PathBuf::from)
                    .join(".docker")
            });
        Self::from_path(dir.join("config.json"))
    }

    /// A specific config file.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// Looks for `docker-credential-*` helpers in `dir` instead of on PATH.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    fn read(&self) -> Result<Option<ConfigFile>, RegistryError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RegistryError::DockerConfig {
                    path: self.path.clone(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RegistryError::DockerConfig {
                path: self.path.clone(),
                // Only where: serde_json's messages can quote values, and values may be secrets.
                reason: format!(
                    "not valid JSON ({} error at line {} column {})",
                    format!("{:?}", e.classify()).to_lowercase(),
                    e.line(),
                    e.column()
                ),
            })
    }

    /// Looks `registry` up, blocking (runs helpers). Public for callers without a runtime.
    pub fn lookup(&self, registry: &str) -> Result<Option<RegistryCredentials>, RegistryError> {
        let Some(file) = self.read()? else {
            return Ok(None);
        };
        let wanted = normalize_registry(registry);
        let server = if wanted == "docker.io" {
            DOCKER_HUB_SERVER.to_owned()
        } else {
            wanted.clone()
        };
        // credHelpers for this registry, then auths, then credsStore (Docker's order).
        if let Some((_, helper)) = file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_registry(k) == wanted)
        {
            return self.run_helper(helper, &server, registry);
        }
        if let Some((_, entry)) = file
            .auths
            .iter()
            .find(|(k, _)| normalize_registry(k) == wanted)
            && let Some(creds) = from_entry(entry, registry, &self.path)?
        {
            return Ok(Some(creds));
        }
        match &file.creds_store {
            Some(store) if !store.is_empty() => self.run_helper(store, &server, registry),
            _ => Ok(None),
        }
    }

    fn run_helper(
        &self,
        helper: &str,
        server: &str,
        registry: &str,
    ) -> Result<Option<RegistryCredentials>, RegistryError> {
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(&program),
            None => PathBuf::from(program),
        };
        let fail = |reason: String| RegistryError::Helper {
            helper: helper.to_owned(),
            registry: registry.to_owned(),
            reason,
        };
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper may exit without reading (it failed early): its exit status and
            // output below say why, so a broken pipe here is not the error to report.
            match stdin.write_all(server.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(fail(format!("cannot write to it: {e}")));
                }
                _ => {}
            }
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            // The helper protocol's "not found" answer means: no credentials here.
            if said.contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(format!(
                "exited with {}: {}",
                out.status,
                first_line(&said)
            )));
        }
        let reply: HelperReply = serde_json::from_slice(&out.stdout)
            .map_err(|_| fail("its answer is not the helper protocol's JSON".to_owned()))?;
        Ok(Some(RegistryCredentials::new(
            registry,
            reply.username,
            Secret::new(reply.secret),
            format!("credential helper {helper}"),
        )))
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn from_entry(
    entry: &AuthEntry,
    registry: &str,
    path: &Path,
) -> Result<Option<RegistryCredentials>, RegistryError> {
    let source = format!("docker config auths ({})", path.display());
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(RegistryCredentials::new(
            registry,
            "<token>",
            Secret::new(token),
            source,
        )));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || RegistryError::DockerConfig {
            path: path.to_owned(),
            reason: format!("the `auth` entry for {registry} is not base64 of user:password"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(RegistryCredentials::new(
            registry,
            user,
            Secret::new(password),
            source,
        )));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(RegistryCredentials::new(
            registry,
            u.clone(),
            Secret::new(p.clone()),
            source,
        ))),
        _ => Ok(None),
    }
}

#[async_trait]
impl CredentialSource for DockerConfigCredentials {
    fn name(&self) -> &str {
        "docker config"
    }

    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError> {
        // Reading a small file and running a helper: quick and rare; done inline.
        self.lookup(registry).map_err(StageError::from)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(dir: &Path, json: &str) -> DockerConfigCredentials {
        std::fs::write(dir.join("config.json"), json).unwrap();
        DockerConfigCredentials::from_path(dir.join("config.json")).with_helper_dir(dir)
    }

    fn helper(dir: &Path, name: &str, script: &str) {
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn auths_with_base64_auth_and_docker_hub_aliases() {
        let tmp = tempfile::tempdir().unwrap();
        // "deployer:s3cret-pw" base64
        let c = config(
            tmp.path(),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"ZGVwbG95ZXI6czNjcmV0LXB3"},"127.0.0.1:5000":{"username":"u","password":"p"}}}"#,
        );
        for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            let got = c.lookup(name).unwrap().unwrap_or_else(|| panic!("{name}"));
            assert_eq!(
                (got.username.as_str(), got.password.expose()),
                ("deployer", "s3cret-pw")
            );
        }
        let got = c.lookup("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((got.username.as_str(), got.password.expose()), ("u", "p"));
        assert!(c.lookup("other.example").unwrap().is_none());
    }

    #[test]
    fn identity_tokens_use_the_token_user() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(
            tmp.path(),
            r#"{"auths":{"r.example":{"identitytoken":"tok-1"}}}"#,
        );
        let got = c.lookup("r.example").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.expose()),
            ("<token>", "tok-1")
        );
    }

    #[test]
    fn cred_helpers_follow_the_protocol_and_win_over_auths() {
        let tmp = tempfile::tempdir().unwrap();
        // The helper echoes the server URL it was given into the user name, proving stdin.
        helper(
            tmp.path(),
            "test",
            r#"read server; printf '{"ServerURL":"%s","Username":"via-%s","Secret":"helper-secret-77"}' "$server" "$server""#,
        );
        let c = config(
            tmp.path(),
            r#"{"auths":{"r.example":{"username":"u","password":"p"}},"credHelpers":{"r.example":"test","docker.io":"test"}}"#,
        );
        let got = c.lookup("r.example").unwrap().unwrap();
        assert_eq!(got.username, "via-r.example");
        assert_eq!(got.password.expose(), "helper-secret-77");
        assert_eq!(got.source, "credential helper test");
        let hub = c.lookup("docker.io").unwrap().unwrap();
        assert_eq!(hub.username, format!("via-{DOCKER_HUB_SERVER}"));
    }

    #[test]
    fn creds_store_is_the_fallback_and_not_found_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        helper(
            tmp.path(),
            "store",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        let c = config(tmp.path(), r#"{"credsStore":"store"}"#);
        assert!(c.lookup("r.example").unwrap().is_none());
    }

    #[test]
    fn helper_failures_and_bad_files_are_errors_without_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        helper(tmp.path(), "broken", "echo 'keychain locked'; exit 3");
        let c = config(tmp.path(), r#"{"credsStore":"broken"}"#);
        let err = c.lookup("r.example").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-broken") && err.contains("keychain locked"),
            "{err}"
        );
        let c = config(tmp.path(), r#"{"credsStore":"missing"}"#);
        assert!(
            c.lookup("r.example")
                .unwrap_err()
                .to_string()
                .contains("cannot run it")
        );
        let c = config(
            tmp.path(),
            r#"{"auths":{"r.example":{"auth":"bm90LWEtcGFpcg=="}}}"#,
        );
        assert!(
            c.lookup("r.example")
                .unwrap_err()
                .to_string()
                .contains("not base64 of user:password")
        );
        for json in [
            r#"{"auths": {"r.example": {"password": "hunter2-secret"}"#,
            r#"{"auths": "hunter2-secret"}"#,
        ] {
            let c = config(tmp.path(), json);
            let err = c.lookup("r.example").unwrap_err().to_string();
            assert!(
                err.contains("not valid JSON") && !err.contains("hunter2-secret"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_file_means_no_credentials() {
        let c = DockerConfigCredentials::from_path("/nonexistent/config.json");
        assert!(c.lookup("r.example").unwrap().is_none());
    }
}
