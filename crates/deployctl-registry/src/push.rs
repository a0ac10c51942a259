//! [`DockerPusher`]: `deployctl_core::ImagePusher` through the Docker engine.

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use deployctl_core::{
    BuiltImage, Cancellation, Digest, ErrorKind, Event, EventKind, EventSink, ImagePusher,
    ImageRef, Progress, PushedImage, RegistryCredentials, Stage, StageError,
};
use futures::StreamExt;

/// How long a push may go without a word from the engine (a progress or status line)
/// before it counts as stalled and fails. The engine reports progress while any layer
/// uploads, so silence this long means the registry stopped answering; the engine itself
/// waits for ever.
pub const PUSH_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Pushes images with the engine it is given (the client is passed in).
#[derive(Debug, Clone)]
pub struct DockerPusher {
    docker: Docker,
    stall_timeout: std::time::Duration,
}

impl DockerPusher {
    /// A pusher using `docker`; a push silent for [`PUSH_STALL_TIMEOUT`] fails.
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            stall_timeout: PUSH_STALL_TIMEOUT,
        }
    }

    /// A push silent for `timeout` fails (exit 1, naming the push).
    #[must_use]
    pub fn with_stall_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
}

/// Lambda runs single-platform images only: refuse an image index / manifest list.
pub fn ensure_single_platform(image: &PushedImage) -> Result<(), StageError> {
    if image.is_index() {
        return Err(StageError::new(
            ErrorKind::InvalidInput,
            format!("{} is a multi-platform image index; Lambda accepts only a single-platform image manifest", image.reference),
        )
        .with_hint("build for one platform (build.platform or lambda.function.architecture) without a multi-platform builder"));
    }
    Ok(())
}

fn auth(creds: Option<&RegistryCredentials>) -> Option<DockerCredentials> {
    creds.map(|c| {
        if c.username == "<token>" {
            DockerCredentials {
                identitytoken: Some(c.password.expose().to_owned()),
                serveraddress: Some(c.registry.clone()),
                ..Default::default()
            }
        } else {
            DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.expose().to_owned()),
                serveraddress: Some(c.registry.clone()),
                ..Default::default()
            }
        }
    })
}

/// Turns an error the engine reported during a push into what the user can act on.
fn classify(registry: &str, message: &str, creds: Option<&RegistryCredentials>) -> StageError {
    let message = creds.map_or_else(|| message.to_owned(), |c| c.password.redact_in(message));
    let lower = message.to_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth")
        || lower.contains("denied")
    {
        StageError::new(ErrorKind::Environment, format!("the registry {registry} refused the push: {message}")).with_hint(
            if creds.is_some() {
                "the credentials were rejected: check registry.username/password, `docker login`, or the credential helper"
            } else {
                "no credentials were found for this registry: set registry.username/password or run `docker login`"
            },
        )
    } else if [
        "connection refused",
        "dial tcp",
        "no such host",
        "i/o timeout",
        "connection reset",
        "no route to host",
    ]
    .iter()
    .any(|s| lower.contains(s))
    {
        StageError::new(
            ErrorKind::Environment,
            format!("the registry {registry} is unreachable: {message}"),
        )
        .with_hint(
            "check registry.url and that the registry is up and reachable from the Docker engine",
        )
    } else {
        StageError::new(
            ErrorKind::Failed,
            format!("pushing to {registry} failed: {message}"),
        )
    }
}

/// `1.0: digest: sha256:… size: 528` → the digest.
fn digest_in_status(status: &str) -> Option<Digest> {
    let rest = status.split("digest: ").nth(1)?;
    Digest::parse(rest.split_whitespace().next()?).ok()
}

#[async_trait]
impl ImagePusher for DockerPusher {
    /// Asked through the engine's distribution endpoint, which asks the registry with the
    /// same credentials a push uses: what `deploy --update` / `--apply` deploy, and how a
    /// `deploy --image REPOSITORY@sha256:…` is confirmed to exist.
    async fn resolve(
        &self,
        reference: &ImageRef,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<PushedImage, StageError> {
        let shown = reference.to_string();
        let inspect = self
            .docker
            .inspect_registry_image(&shown, auth(credentials))
            .await
            .map_err(|e| match &e {
                // The engine answered: the registry has no such manifest (or refused us).
                bollard::errors::Error::DockerResponseServerError { status_code, message }
                    if (400..500).contains(status_code) || message.contains("not found") || message.contains("manifest unknown") =>
                {
                    StageError::new(
                        ErrorKind::InvalidInput,
                        format!("the registry has no image {shown}: {message}"),
                    )
                    .with_hint("push it first (`deployctl push`, or deploy without --update/--apply), or pass --image REPOSITORY@sha256:… of an image the registry holds")
                }
                _ => StageError::new(
                    ErrorKind::Environment,
                    format!("cannot ask the registry for {shown} through the Docker engine"),
                )
                .with_hint("the image is looked up through the Docker engine: start it, or point DOCKER_HOST at it")
                .with_source(e),
            })?;
        let digest = inspect
            .descriptor
            .digest
            .as_deref()
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| {
                StageError::new(
                    ErrorKind::Failed,
                    format!("the registry returned no digest for {shown}"),
                )
            })?;
        if let Some(want) = &reference.digest
            && want != &digest
        {
            return Err(StageError::new(
                ErrorKind::Failed,
                format!("the registry serves {digest} for {shown}"),
            ));
        }
        Ok(PushedImage::new(
            reference.clone(),
            digest,
            inspect.descriptor.media_type,
        ))
    }

    async fn push(
        &self,
        image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<PushedImage, StageError> {
        let emit = |kind: EventKind| events.emit(Event::now(Stage::Push, kind));
        let name = destination.name();
        let tag = destination
            .tag
            .clone()
            .unwrap_or_else(|| "latest".to_owned());
        let engine = |what: &str, e: bollard::errors::Error| {
            StageError::new(ErrorKind::Environment, format!("{what}: {e}"))
                .with_hint("is the Docker engine running? check DOCKER_HOST")
        };
        self.docker
            .tag_image(
                image.id.as_str(),
                Some(TagImageOptionsBuilder::new().repo(&name).tag(&tag).build()),
            )
            .await
            .map_err(|e| {
                engine(
                    &format!("cannot tag {} as {name}:{tag}", image.id.short()),
                    e,
                )
            })?;
        emit(EventKind::Message {
            text: format!(
                "pushing {name}:{tag} ({})",
                credentials.map_or_else(
                    || "anonymous".to_owned(),
                    |c| format!("credentials from {}", c.source)
                )
            ),
        });
        let mut stream = self.docker.push_image(
            &name,
            Some(PushImageOptionsBuilder::new().tag(&tag).build()),
            auth(credentials),
        );
        let mut digest = None;
        loop {
            let next = tokio::select! {
                item = tokio::time::timeout(self.stall_timeout, stream.next()) => match item {
                    Ok(item) => item,
                    Err(_) => return Err(StageError::new(
                        ErrorKind::Failed,
                        format!(
                            "pushing to {} stalled: no progress from the Docker engine for {} s",
                            destination.registry,
                            self.stall_timeout.as_secs()
                        ),
                    )
                    .with_hint("the registry stopped answering; check it and push again (layers already sent are not sent twice)")),
                },
                () = cancel.cancelled() => return Err(StageError::cancelled("the push finished")),
            };
            let Some(item) = next else { break };
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(classify(&destination.registry, &error, credentials));
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return Err(classify(&destination.registry, &message, credentials));
                }
                Err(e) => return Err(engine("the push stream broke", e)),
            };
            if let Some(msg) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(classify(&destination.registry, &msg, credentials));
            }
            let status = info.status.unwrap_or_default();
            if let Some(d) = digest_in_status(&status) {
                digest = Some(d);
            }
            match info
                .progress_detail
                .as_ref()
                .and_then(|p| p.current.map(|c| (c, p.total)))
            {
                Some((current, total)) => emit(EventKind::Progress(Progress::counted(
                    format!("{status} layer"),
                    u64::try_from(current).unwrap_or(0),
                    total.and_then(|t| u64::try_from(t).ok()),
                    "bytes",
                ))),
                None if !status.is_empty() => emit(EventKind::Message { text: status }),
                None => {}
            }
        }
        let digest = digest.ok_or_else(|| {
            StageError::new(
                ErrorKind::Failed,
                format!("the engine finished pushing {name}:{tag} without reporting a digest"),
            )
            .with_hint("retry; the registry may not have accepted the manifest")
        })?;
        // Confirm through the engine: it asks the registry for this exact manifest.
        let pinned = format!("{name}@{digest}");
        let inspect = self
            .docker
            .inspect_registry_image(&pinned, auth(credentials))
            .await
            .map_err(|e| {
                StageError::new(
                    ErrorKind::Failed,
                    format!("pushed, but the registry does not return the manifest {pinned}"),
                )
                .with_source(e)
                .with_hint("the registry may have rejected or garbage-collected it; push again")
            })?;
        if inspect.descriptor.digest.as_deref() != Some(digest.as_str()) {
            return Err(StageError::new(
                ErrorKind::Failed,
                format!(
                    "the registry returned digest {} for {pinned}",
                    inspect.descriptor.digest.as_deref().unwrap_or("(none)")
                ),
            ));
        }
        emit(EventKind::Message {
            text: format!("verified {pinned} in the registry"),
        });
        Ok(PushedImage::new(
            destination.clone(),
            digest,
            inspect.descriptor.media_type,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_from_the_final_status() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            digest_in_status(&format!("1.0: digest: {d} size: 528"))
                .unwrap()
                .as_str(),
            d
        );
        assert!(digest_in_status("Pushed").is_none());
    }

    #[test]
    fn errors_are_classified_and_scrubbed() {
        let creds = RegistryCredentials::new(
            "r:5000",
            "u",
            deployctl_core::Secret::new("pw-in-message"),
            "test",
        );
        let e = classify(
            "r:5000",
            "unauthorized: authentication required (pw-in-message)",
            Some(&creds),
        );
        assert_eq!(e.kind, ErrorKind::Environment);
        assert!(!e.message.contains("pw-in-message"), "{}", e.message);
        let e = classify(
            "r:5000",
            "Get \"http://r:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
            None,
        );
        assert!(e.message.contains("unreachable"), "{}", e.message);
        assert_eq!(
            classify("r", "manifest invalid", None).kind,
            ErrorKind::Failed
        );
    }

    #[test]
    fn lambda_refuses_an_index() {
        let img = PushedImage::new(
            ImageRef::parse("r.example/app:1").unwrap(),
            Digest::parse(
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            )
            .unwrap(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json".into()),
        );
        assert_eq!(
            ensure_single_platform(&img).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
    }
}
