//! Amazon ECR: registry credentials from `GetAuthorizationToken` and repository ensure.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ecr::Client;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ecr::types::{ImageScanningConfiguration, Tag};
use base64::Engine;
use deployctl_core::{
    Action, CredentialSource, ImageRef, RegistryCredentials, ResourceChange, Secret, StageError,
};

use crate::error::RegistryError;

/// Tokens are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// ECR credentials, fetched once and reused until shortly before the token expires.
#[derive(Debug)]
pub struct EcrCredentials {
    client: Client,
    cache: Mutex<Option<(RegistryCredentials, SystemTime)>>,
}

impl EcrCredentials {
    /// Credentials through `client` (its region and account decide the registry).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(None),
        }
    }

    fn cached(&self, registry: &str) -> Option<RegistryCredentials> {
        let guard = self.cache.lock().ok()?;
        let (creds, expires) = guard.as_ref()?;
        (creds.registry == registry && SystemTime::now() + RENEW_BEFORE < *expires)
            .then(|| creds.clone())
    }

    /// Fetches a token for `registry` (an ECR host), or returns the cached one.
    pub async fn token(&self, registry: &str) -> Result<RegistryCredentials, RegistryError> {
        if let Some(c) = self.cached(registry) {
            return Ok(c);
        }
        let fail = |reason: String| RegistryError::Ecr {
            operation: "GetAuthorizationToken",
            target: registry.to_owned(),
            reason,
        };
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| fail(sdk_message(&e)))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| fail("the response has no authorization data".to_owned()))?;
        let token = data
            .authorization_token()
            .ok_or_else(|| fail("the response has no token".to_owned()))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| fail("the token is not base64 text".to_owned()))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| fail("the token is not user:password".to_owned()))?;
        // ECR tokens last 12 hours. An expiry that is missing or not in the future (clock
        // skew, or an emulator such as moto reporting a fixed date) is not trusted: the token
        // is then reused for a conservative hour.
        let now = SystemTime::now();
        let expires = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .filter(|t| *t > now + RENEW_BEFORE)
            .unwrap_or_else(|| now + RENEW_BEFORE + Duration::from_secs(3600));
        let creds = RegistryCredentials::new(registry, user, Secret::new(password), "amazon ecr");
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((creds.clone(), expires));
        }
        Ok(creds)
    }
}

#[async_trait]
impl CredentialSource for EcrCredentials {
    fn name(&self) -> &str {
        "ecr"
    }

    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError> {
        let is_ecr = ImageRef::new(registry, "probe").is_ok_and(|r| r.is_ecr());
        if !is_ecr {
            return Ok(None);
        }
        self.token(registry)
            .await
            .map(Some)
            .map_err(StageError::from)
    }
}

/// What [`ensure_repository`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EcrRepository {
    /// Repository name.
    pub name: String,
    /// Its URI (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`).
    pub uri: String,
    /// Whether this call created it.
    pub created: bool,
}

/// Makes sure repository `name` exists. An existing repository is left untouched (no
/// mutating call); a missing one is created with scan-on-push as configured, tagged as
/// deployctl's, with a lifecycle policy that keeps the last `keep_images` images.
pub async fn ensure_repository(
    client: &Client,
    name: &str,
    app: &str,
    scan_on_push: bool,
    keep_images: u32,
) -> Result<EcrRepository, RegistryError> {
    let fail = |operation: &'static str, reason: String| RegistryError::Ecr {
        operation,
        target: name.to_owned(),
        reason,
    };
    match client
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(out) => {
            if let Some(repo) = out.repositories().first() {
                return Ok(EcrRepository {
                    name: name.to_owned(),
                    uri: repo.repository_uri().unwrap_or_default().to_owned(),
                    created: false,
                });
            }
        }
        Err(e) if e.code() == Some("RepositoryNotFoundException") => {}
        Err(e) => {
            return Err(fail("DescribeRepositories", sdk_message(&e)));
        }
    }
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let created = client
        .create_repository()
        .repository_name(name)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(scan_on_push)
                .build(),
        )
        .tags(tag("deployctl:app", app).map_err(|e| fail("CreateRepository", e.to_string()))?)
        .tags(
            tag("deployctl:managed-by", "deployctl")
                .map_err(|e| fail("CreateRepository", e.to_string()))?,
        )
        .send()
        .await;
    let created = match created {
        Ok(c) => c,
        // Another deploy of the app created it between our read and our create: found.
        Err(e) if e.code() == Some("RepositoryAlreadyExistsException") => {
            let uri = client
                .describe_repositories()
                .repository_names(name)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.repositories()
                        .first()
                        .and_then(|r| r.repository_uri())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            return Ok(EcrRepository {
                name: name.to_owned(),
                uri,
                created: false,
            });
        }
        Err(e) => {
            return Err(fail("CreateRepository", sdk_message(&e)));
        }
    };
    let policy = format!(
        r#"{{"rules":[{{"rulePriority":1,"description":"keep the last {keep_images} images (deployctl)","selection":{{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":{keep_images}}},"action":{{"type":"expire"}}}}]}}"#
    );
    client
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(policy)
        .send()
        .await
        .map_err(|e| fail("PutLifecyclePolicy", sdk_message(&e)))?;
    Ok(EcrRepository {
        name: name.to_owned(),
        uri: created
            .repository()
            .and_then(|r| r.repository_uri())
            .unwrap_or_default()
            .to_owned(),
        created: true,
    })
}

/// Deletes repository `name` and its images — only when deployctl created it (its
/// `deployctl:managed-by` tag). Returns whether it was deleted; a missing repository is
/// `Ok(false)`, as is one deployctl did not create.
pub async fn delete_repository(client: &Client, name: &str) -> Result<bool, RegistryError> {
    let fail = |operation: &'static str, reason: String| RegistryError::Ecr {
        operation,
        target: name.to_owned(),
        reason,
    };
    let described = match client
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("RepositoryNotFoundException") => return Ok(false),
        Err(e) => {
            return Err(fail("DescribeRepositories", sdk_message(&e)));
        }
    };
    let Some(arn) = described
        .repositories()
        .first()
        .and_then(|r| r.repository_arn())
    else {
        return Ok(false);
    };
    let tags = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| fail("ListTagsForResource", sdk_message(&e)))?;
    let ours = tags
        .tags()
        .iter()
        .any(|t| t.key() == "deployctl:managed-by" && t.value() == "deployctl");
    if !ours {
        return Ok(false);
    }
    client
        .delete_repository()
        .repository_name(name)
        .force(true)
        .send()
        .await
        .map_err(|e| fail("DeleteRepository", sdk_message(&e)))?;
    Ok(true)
}

/// The repositories deployctl created for `app` (tagged `deployctl:app=<app>` and
/// `deployctl:managed-by=deployctl`), by name, whatever they are called: a repository a push
/// created before its deploy failed is found too.
pub async fn app_repositories(client: &Client, app: &str) -> Result<Vec<String>, RegistryError> {
    let fail = |operation: &'static str, reason: String| RegistryError::Ecr {
        operation,
        target: format!("the repositories of {app}"),
        reason,
    };
    let mut out = Vec::new();
    let mut pages = client.describe_repositories().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| fail("DescribeRepositories", sdk_message(&e)))?;
        for repo in page.repositories() {
            let (Some(arn), Some(name)) = (repo.repository_arn(), repo.repository_name()) else {
                continue;
            };
            let tags = match client
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
            {
                Ok(t) => t,
                // Deleted since the listing (another app's destroy): not ours to report.
                Err(e) if e.code() == Some("RepositoryNotFoundException") => continue,
                Err(e) => return Err(fail("ListTagsForResource", sdk_message(&e))),
            };
            let has = |k: &str, v: &str| tags.tags().iter().any(|t| t.key() == k && t.value() == v);
            if has("deployctl:app", app) && has("deployctl:managed-by", "deployctl") {
                out.push(name.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What `destroy` does with `app`'s ECR repositories: with `purge`, deletes them (with every
/// image; a dry run only says so); without, keeps them and says why. Never touches a
/// repository deployctl did not create.
pub async fn destroy_app_repositories(
    client: &Client,
    app: &str,
    purge: bool,
    dry_run: bool,
) -> Result<Vec<ResourceChange>, RegistryError> {
    let mut changes = Vec::new();
    for name in app_repositories(client, app).await? {
        let change = if !purge {
            ResourceChange::new(
                "ecr repository",
                &name,
                Action::Unchanged,
                "kept: it holds the app's images (`destroy --purge-images` deletes it)",
            )
        } else if dry_run || delete_repository(client, &name).await? {
            ResourceChange::new(
                "ecr repository",
                &name,
                Action::Delete,
                "--purge-images: with every image",
            )
        } else {
            ResourceChange::new(
                "ecr repository",
                &name,
                Action::Unchanged,
                "already gone, or not created by deployctl; left alone",
            )
        };
        changes.push(change);
    }
    Ok(changes)
}

/// An SDK error as a person reads it: the service's code and message when it sent them,
/// else the error chain — never the SDK's debug dump of the response.
fn sdk_message<E, R>(e: &aws_sdk_ecr::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    }
}
