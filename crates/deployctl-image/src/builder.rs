//! [`DockerBuilder`]: `deployctl_core::ImageBuilder` over the Docker Engine API.
//!
//! BuildKit is used where the engine supports it (bollard opens the build session the engine
//! asks for; the context is still streamed as a tar). The classic builder is used when the
//! engine is too old, not Linux, refuses BuildKit, or when asked for (`DOCKER_BUILDKIT=0`),
//! and the choice is always announced as an event, never silent.
//!
//! A build with secret build args needs BuildKit: they are served to `RUN --mount=type=secret`
//! through the build session (see `secrets.rs`), never passed as ordinary build args; with
//! the classic builder such a build is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion, TagImageOptionsBuilder};
use deployctl_core::{
    BuildArg, BuildSpec, BuiltImage, Cancellation, Digest, Event, EventKind, EventSink,
    ImageBuilder, RegistryCredentials, Secret, Stage, StageError,
};
use futures::StreamExt;

use crate::context::{BuildContext, TarFailure, dockerfile_in_context};
use crate::error::ImageError;
use crate::filesync::{self, SessionTransfer, SyncedDirs};
use crate::progress::BuildLog;
use crate::secrets;
use crate::session::{self, EngineSocket, Session, SessionContent};

/// The build arg that makes BuildKit write its cache metadata into the image.
const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

/// The oldest engine API that runs BuildKit builds with a client session.
const BUILDKIT_MIN_API: (u32, u32) = (1, 39);

/// Which of the engine's builders to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BuilderChoice {
    /// BuildKit when the engine supports it, else the classic builder (announced).
    #[default]
    Auto,
    /// BuildKit; an engine without it is an error.
    BuildKit,
    /// The classic builder.
    Classic,
}

impl BuilderChoice {
    /// Docker's convention for the `DOCKER_BUILDKIT` variable: `0`/`false` asks for the
    /// classic builder, `1`/`true` for BuildKit; unset or anything else means [`Self::Auto`].
    pub fn from_docker_buildkit(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("0" | "false" | "no" | "off") => Self::Classic,
            Some("1" | "true" | "yes" | "on") => Self::BuildKit,
            _ => Self::Auto,
        }
    }
}

/// Builds images on a Docker engine. The client is passed in.
#[derive(Debug, Clone)]
pub struct DockerBuilder {
    docker: Docker,
    choice: BuilderChoice,
    /// Where to open the BuildKit session (see `session.rs`); `None` streams a tar instead.
    session_socket: Option<EngineSocket>,
    /// What the last build sent through the session.
    last_transfer: Arc<Mutex<Option<SessionTransfer>>>,
    /// Registry logins for pulling `cache_from` images.
    registries: Vec<RegistryCredentials>,
}

impl DockerBuilder {
    /// A builder using `docker`, choosing BuildKit where the engine supports it. Without
    /// [`Self::with_session_socket`] it opens no session of its own: the context is streamed
    /// as a tar.
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            choice: BuilderChoice::Auto,
            session_socket: None,
            last_transfer: Arc::default(),
            registries: Vec::new(),
        }
    }

    /// Logins the engine may use to pull the spec's `cache_from` images (served through the
    /// build session, or sent with the build request on the tar paths).
    #[must_use]
    pub fn with_registry_credentials(mut self, registries: Vec<RegistryCredentials>) -> Self {
        self.registries = registries;
        self
    }

    /// Open BuildKit sessions on `socket` (the engine `docker` talks to), or, with `None`,
    /// never: then the context is streamed to BuildKit as a tar.
    #[must_use]
    pub fn with_session_socket(mut self, socket: Option<EngineSocket>) -> Self {
        self.session_socket = socket;
        self
    }

    /// What the last finished build of this builder (or of a clone of it) sent through the
    /// BuildKit session; `None` when it did not use one.
    pub fn last_transfer(&self) -> Option<SessionTransfer> {
        self.last_transfer.lock().ok().and_then(|t| *t)
    }

    /// Use `choice` instead of deciding from the engine.
    #[must_use]
    pub fn with_builder(mut self, choice: BuilderChoice) -> Self {
        self.choice = choice;
        self
    }
}

/// Removes secret values from text bound for events and errors.
pub(crate) struct Scrub(pub(crate) Vec<Secret>);

impl Scrub {
    pub(crate) fn text(&self, s: &str) -> String {
        self.0
            .iter()
            .fold(s.to_owned(), |acc, secret| secret.redact_in(&acc))
    }
}

#[async_trait]
impl ImageBuilder for DockerBuilder {
    async fn build(
        &self,
        spec: &BuildSpec,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<BuiltImage, StageError> {
        let scrub = Scrub(
            spec.build_args
                .values()
                .filter_map(|a| match a {
                    BuildArg::Secret(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        );
        self.run(spec, events, cancel, &scrub).await.map_err(|e| {
            let mut err = StageError::from(e);
            err.message = scrub.text(&err.message);
            err.hint = err.hint.map(|h| scrub.text(&h));
            err
        })
    }
}

/// Why one build request ended without an image.
enum AttemptError {
    /// The engine refused a BuildKit build before it began (the reason it gave).
    BuildKitRefused(String),
    /// Any other failure.
    Failed(ImageError),
}

impl From<ImageError> for AttemptError {
    fn from(e: ImageError) -> Self {
        Self::Failed(e)
    }
}

impl AttemptError {
    fn into_image_error(self) -> ImageError {
        match self {
            Self::Failed(e) => e,
            Self::BuildKitRefused(message) => ImageError::Engine {
                message: format!("the engine refused a BuildKit build: {message}"),
                source: None,
            },
        }
    }
}

impl DockerBuilder {
    async fn run(
        &self,
        spec: &BuildSpec,
        events: &dyn EventSink,
        cancel: &Cancellation,
        scrub: &Scrub,
    ) -> Result<BuiltImage, ImageError> {
        let emit = |text: String| {
            events.emit(Event::now(Stage::Build, EventKind::Message { text }));
        };
        if cancel.is_cancelled() {
            return Err(ImageError::Cancelled);
        }
        let dockerfile = dockerfile_in_context(&spec.context, &spec.dockerfile)?;
        let context = BuildContext::collect(&spec.context, &dockerfile)?;
        emit(format!(
            "sending build context {} ({} entries after .dockerignore)",
            spec.context.display(),
            context.entries.len()
        ));
        // The session names files by UTF-8 paths; a context with other names is streamed.
        let session_socket = self
            .session_socket
            .clone()
            .filter(|_| filesync::all_utf8(&context.entries));
        let classic = match self.choice {
            BuilderChoice::Classic => Some("as asked (DOCKER_BUILDKIT=0)".to_owned()),
            BuilderChoice::BuildKit => None,
            // The engine needs these files, and only the classic builder keeps them out of
            // `COPY` when the context is streamed as a tar (BuildKit would copy them); the
            // session serves the Dockerfile apart from the context, so it needs no fallback.
            BuilderChoice::Auto
                if session_socket.is_none() && !context.excluded_build_files.is_empty() =>
            {
                Some(format!(
                    ".dockerignore excludes {}, which BuildKit would copy into the image from a streamed context",
                    context.excluded_build_files.join(" and ")
                ))
            }
            BuilderChoice::Auto => self.buildkit_unavailable().await,
        };
        let secret_args: Vec<String> = spec
            .build_args
            .iter()
            .filter(|(_, v)| matches!(v, BuildArg::Secret(_)))
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(reason) = classic {
            if !secret_args.is_empty() {
                // Never a plain build arg: the classic builder records those in the image.
                return Err(ImageError::SecretNeedsBuildKit {
                    args: secret_args,
                    reason,
                });
            }
            emit(format!("using the classic builder: {reason}"));
            let id = self
                .attempt(
                    spec,
                    &dockerfile,
                    Transport::Classic(context),
                    events,
                    cancel,
                    scrub,
                )
                .await
                .map_err(AttemptError::into_image_error)?;
            return self.finish(spec, id).await;
        }
        if let Some(socket) = &session_socket {
            emit(if secret_args.is_empty() {
                "using BuildKit, serving the context through the build session".to_owned()
            } else {
                format!(
                    "using BuildKit, serving the context and the secret build args {} through the build session",
                    secret_args.join(", ")
                )
            });
            let id = match self
                .session_build(spec, &dockerfile, context, socket, events, cancel, scrub)
                .await
            {
                Err(AttemptError::BuildKitRefused(why))
                    if self.choice == BuilderChoice::Auto && secret_args.is_empty() =>
                {
                    emit(format!(
                        "using the classic builder: the engine refused BuildKit ({why})"
                    ));
                    let context = BuildContext::collect(&spec.context, &dockerfile)?;
                    self.attempt(
                        spec,
                        &dockerfile,
                        Transport::Classic(context),
                        events,
                        cancel,
                        scrub,
                    )
                    .await
                }
                other => other,
            }
            .map_err(AttemptError::into_image_error)?;
            return self.finish(spec, id).await;
        }
        if !secret_args.is_empty() {
            emit(format!(
                "using BuildKit, serving the secret build args {} through the build session",
                secret_args.join(", ")
            ));
            let id = secrets::build(&self.docker, spec, &dockerfile, context, cancel).await?;
            return self.finish(spec, id).await;
        }
        emit("using BuildKit".to_owned());
        let id = match self
            .attempt(
                spec,
                &dockerfile,
                Transport::Tar(context),
                events,
                cancel,
                scrub,
            )
            .await
        {
            Err(AttemptError::BuildKitRefused(why)) if self.choice == BuilderChoice::Auto => {
                emit(format!(
                    "using the classic builder: the engine refused BuildKit ({why})"
                ));
                // The first attempt consumed the context stream: walk it again.
                let context = BuildContext::collect(&spec.context, &dockerfile)?;
                self.attempt(
                    spec,
                    &dockerfile,
                    Transport::Classic(context),
                    events,
                    cancel,
                    scrub,
                )
                .await
            }
            first => first,
        }
        .map_err(AttemptError::into_image_error)?;
        self.finish(spec, id).await
    }

    /// The built image `id` tagged with every tag of `spec`.
    async fn finish(&self, spec: &BuildSpec, id: String) -> Result<BuiltImage, ImageError> {
        let id = if id.contains(':') {
            id
        } else {
            format!("sha256:{id}")
        };
        let digest = Digest::parse(&id).map_err(|e| ImageError::Engine {
            message: e.to_string(),
            source: None,
        })?;
        let first_tagged = usize::from(!spec.tags.is_empty());
        for tag in spec.tags.iter().skip(first_tagged) {
            let opts = TagImageOptionsBuilder::new()
                .repo(&tag.name())
                .tag(tag.tag.as_deref().unwrap_or("latest"))
                .build();
            self.docker
                .tag_image(digest.as_str(), Some(opts))
                .await
                .map_err(|e| ImageError::Engine {
                    message: format!("cannot tag {tag}: {e}"),
                    source: Some(e),
                })?;
        }
        Ok(BuiltImage::new(
            digest,
            spec.tags.clone(),
            spec.platform.clone(),
        ))
    }

    /// Why BuildKit cannot be used on this engine, or `None` when it can. An engine that
    /// cannot be asked is left to the build request to report.
    async fn buildkit_unavailable(&self) -> Option<String> {
        let version = self.docker.version().await.ok()?;
        let os = version.os.unwrap_or_default();
        if !os.is_empty() && !os.eq_ignore_ascii_case("linux") {
            return Some(format!(
                "the engine runs {os} containers and BuildKit builds need a Linux engine"
            ));
        }
        let api = version.api_version.unwrap_or_default();
        match parse_api_version(&api) {
            Some(found) if found < BUILDKIT_MIN_API => Some(format!(
                "the engine's API {api} predates BuildKit build sessions ({}.{})",
                BUILDKIT_MIN_API.0, BUILDKIT_MIN_API.1
            )),
            _ => None,
        }
    }

    /// A BuildKit build whose context, Dockerfile and secrets are served through a session
    /// opened on `socket`; what it sent is kept for [`Self::last_transfer`] and announced.
    #[allow(clippy::too_many_arguments)]
    async fn session_build(
        &self,
        spec: &BuildSpec,
        dockerfile: &str,
        context: BuildContext,
        socket: &EngineSocket,
        events: &dyn EventSink,
        cancel: &Cancellation,
        scrub: &Scrub,
    ) -> Result<String, AttemptError> {
        let path = context.root.join(dockerfile);
        let (dockerfile_dir, dockerfile_name) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => (dir.to_owned(), name.to_string_lossy().into_owned()),
            _ => {
                return Err(ImageError::MissingDockerfile { path }.into());
            }
        };
        // Sent to the engine only as the Dockerfile and `.dockerignore` it reads, never into
        // the context `COPY` sees.
        let entries: Vec<_> = context
            .entries
            .into_iter()
            .filter(|e| {
                !context
                    .excluded_build_files
                    .iter()
                    .any(|x| e.as_os_str() == x.as_str())
            })
            .collect();
        let secrets = spec
            .build_args
            .iter()
            .filter_map(|(k, v)| match v {
                BuildArg::Secret(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect();
        let content = SessionContent {
            dirs: SyncedDirs {
                context: context.root.clone(),
                entries: Arc::new(entries),
                dockerfile_dir,
                dockerfile_name: dockerfile_name.clone(),
            },
            secrets,
            registries: self.registries.clone(),
        };
        let opened = session::open(
            socket,
            session_id(),
            &session::shared_key(&context.root),
            content,
        )
        .await?;
        let built = self
            .attempt(
                spec,
                &dockerfile_name,
                Transport::Session(&opened),
                events,
                cancel,
                scrub,
            )
            .await;
        let sent = opened.transfer.snapshot();
        drop(opened);
        if let Ok(mut last) = self.last_transfer.lock() {
            *last = Some(sent);
        }
        events.emit(Event::now(
            Stage::Build,
            EventKind::Message {
                text: format!(
                    "sent {} changed file(s), {} bytes, through the build session ({} bytes in all)",
                    sent.files, sent.file_bytes, sent.wire_bytes
                ),
            },
        ));
        built
    }

    /// One build request with the chosen builder; the image ID on success.
    async fn attempt(
        &self,
        spec: &BuildSpec,
        dockerfile: &str,
        transport: Transport<'_>,
        events: &dyn EventSink,
        cancel: &Cancellation,
        scrub: &Scrub,
    ) -> Result<String, AttemptError> {
        let buildkit = !matches!(transport, Transport::Classic(_));
        // Secret args never get here (see `run`); filtered again so that none ever could.
        let mut args: HashMap<String, String> = spec
            .build_args
            .iter()
            .filter_map(|(k, v)| match v {
                BuildArg::Plain(v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect();
        if spec.inline_cache && buildkit {
            args.insert(INLINE_CACHE_ARG.to_owned(), "1".to_owned());
        }
        let cache_from: Vec<String> = spec.cache_from.iter().map(ToString::to_string).collect();
        let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        let first_tag = spec.tags.first().map(ToString::to_string);
        let tar_session = matches!(transport, Transport::Tar(_)).then(session_id);
        let mut opts = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .buildargs(&args)
            .labels(&labels)
            .nocache(spec.no_cache)
            .rm(true)
            .forcerm(true);
        opts = match &tar_session {
            Some(session) => opts
                .version(BuilderVersion::BuilderBuildKit)
                .session(session),
            // A session build is marked as one by `session_request` (bollard would open a
            // session of its own for a BuildKit version).
            None => opts.version(BuilderVersion::BuilderV1),
        };
        if let Some(t) = &first_tag {
            opts = opts.t(t);
        }
        if spec.pull {
            opts = opts.pull("true");
        }
        if !cache_from.is_empty() {
            opts = opts.cachefrom(&cache_from);
        }
        if let Some(target) = &spec.target {
            opts = opts.target(target);
        }
        if let Some(platform) = &spec.platform {
            opts = opts.platform(&platform.0);
        }
        if let Some(network) = &spec.network {
            opts = opts.networkmode(network);
        }

        let (docker, body, tar_failure) = match transport {
            Transport::Classic(context) | Transport::Tar(context) => {
                let (rx, tar_failure) = context.stream_reporting(8);
                let body = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                (
                    self.docker.clone(),
                    bollard::body_try_stream(body),
                    tar_failure,
                )
            }
            Transport::Session(session) => {
                let id = session.id.clone();
                let docker = self
                    .docker
                    .clone()
                    .with_request_modifier(move |req| session_request(req, &id));
                (
                    docker,
                    bollard::body_full(bytes::Bytes::new()),
                    TarFailure::default(),
                )
            }
        };
        let credentials = (!self.registries.is_empty()).then(|| {
            self.registries
                .iter()
                .map(|c| {
                    (
                        c.registry.clone(),
                        bollard::auth::DockerCredentials {
                            username: Some(c.username.clone()),
                            password: Some(c.password.expose().to_owned()),
                            serveraddress: Some(c.registry.clone()),
                            ..Default::default()
                        },
                    )
                })
                .collect()
        });
        let mut stream = docker.build_image(opts.build(), credentials, Some(body));

        let mut log = BuildLog::new(events, scrub);
        let mut image_id: Option<String> = None;
        loop {
            let next = tokio::select! {
                item = stream.next() => item,
                () = cancel.cancelled() => return Err(ImageError::Cancelled.into()),
            };
            let Some(item) = next else { break };
            // A file the context could not send, named, rather than the engine's view of it.
            if item.is_err()
                && let Some(e) = tar_failure.take()
            {
                return Err(e.into());
            }
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(log.step_error(&error).into());
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                    if buildkit && !log.began && refuses_buildkit(&message) =>
                {
                    return Err(AttemptError::BuildKitRefused(message));
                }
                Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) if log.began => {
                    return Err(log.step_error(&e.to_string()).into());
                }
                Err(e) => {
                    return Err(ImageError::Engine {
                        message: scrub.text(&e.to_string()),
                        source: Some(e),
                    }
                    .into());
                }
            };
            log.began = true;
            if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(log.step_error(&detail).into());
            }
            match &info.aux {
                Some(BuildInfoAux::Default(id)) => {
                    if let Some(id) = &id.id {
                        image_id = Some(id.clone());
                    }
                }
                Some(BuildInfoAux::BuildKit(status)) => log.buildkit(status),
                None => {}
            }
            if let Some(id) = info.stream.as_deref().and_then(|text| log.classic(text)) {
                image_id.get_or_insert(id);
            }
        }
        image_id.ok_or(AttemptError::Failed(ImageError::NoImageId))
    }
}

/// How the build context reaches the engine.
enum Transport<'a> {
    /// A tar, to the classic builder.
    Classic(BuildContext),
    /// A tar, to BuildKit (with bollard's session for registry auth only).
    Tar(BuildContext),
    /// Through our session's file sync.
    Session(&'a Session),
}

/// Turns bollard's classic `/build` request into a BuildKit one whose context comes from the
/// session `id`: `version=2`, `session=<id>`, `remote=client-session` (as the docker CLI
/// sends), the body empty.
fn session_request(mut req: bollard::BollardRequest, id: &str) -> bollard::BollardRequest {
    if req.uri().path().ends_with("/build") {
        let query: Vec<&str> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| {
                !kv.is_empty()
                    && !["version=", "session=", "remote="]
                        .iter()
                        .any(|k| kv.starts_with(k))
            })
            .collect();
        let mut query = query.join("&");
        if !query.is_empty() {
            query.push('&');
        }
        // Session IDs are ours: letters, digits and dashes, nothing to escape.
        query.push_str(&format!("version=2&session={id}&remote=client-session"));
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = format!("{}?{query}", req.uri().path()).parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// A unique build session ID for this process.
pub(crate) fn session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "deployctl-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `1.43` → (1, 43).
fn parse_api_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Whether an engine error before any output says it cannot run BuildKit builds.
fn refuses_buildkit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("buildkit") || m.contains("session")
}

#[cfg(test)]
mod tests {
    use super::{BuilderChoice, parse_api_version, refuses_buildkit, session_request};

    #[test]
    fn session_builds_rewrite_only_the_build_request() {
        let req = |uri: &str| {
            http::Request::builder()
                .uri(uri)
                .body(bollard::body_full(bytes::Bytes::new()))
                .unwrap()
        };
        let out = session_request(
            req("http://localhost/v1.41/build?dockerfile=Dockerfile&version=1&t=a%3Ab&session=x"),
            "deployctl-1-2-3",
        );
        assert_eq!(
            out.uri().to_string(),
            "http://localhost/v1.41/build?dockerfile=Dockerfile&t=a%3Ab&version=2&session=deployctl-1-2-3&remote=client-session"
        );
        let other = session_request(req("http://localhost/v1.41/images/json?version=1"), "s");
        assert_eq!(
            other.uri().to_string(),
            "http://localhost/v1.41/images/json?version=1"
        );
    }

    #[test]
    fn docker_buildkit_variable() {
        assert_eq!(
            BuilderChoice::from_docker_buildkit(Some("0")),
            BuilderChoice::Classic
        );
        assert_eq!(
            BuilderChoice::from_docker_buildkit(Some("false")),
            BuilderChoice::Classic
        );
        assert_eq!(
            BuilderChoice::from_docker_buildkit(Some("1")),
            BuilderChoice::BuildKit
        );
        assert_eq!(
            BuilderChoice::from_docker_buildkit(Some(" TRUE ")),
            BuilderChoice::BuildKit
        );
        assert_eq!(
            BuilderChoice::from_docker_buildkit(None),
            BuilderChoice::Auto
        );
        assert_eq!(
            BuilderChoice::from_docker_buildkit(Some("")),
            BuilderChoice::Auto
        );
    }

    #[test]
    fn api_versions_and_refusals() {
        assert_eq!(parse_api_version("1.43"), Some((1, 43)));
        assert!(parse_api_version("1.38").unwrap() < (1, 39));
        assert_eq!(parse_api_version("garbage"), None);
        assert!(refuses_buildkit("buildkit not supported by daemon"));
        assert!(!refuses_buildkit("no such image"));
    }
}
