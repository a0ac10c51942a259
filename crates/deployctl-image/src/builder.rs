//! [`DockerBuilder`]: `deployctl_core::ImageBuilder` over the Docker Engine API.
//!
//! BuildKit is used where the engine supports it (bollard opens the build session the engine
//! asks for; the context is still streamed as a tar). The classic builder is used when the
//! engine is too old, not Linux, refuses BuildKit, or when asked for (`DOCKER_BUILDKIT=0`),
//! and the choice is always announced as an event, never silent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bollard::Docker;
use bollard::moby::buildkit::v1::StatusResponse;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion, TagImageOptionsBuilder};
use deployctl_core::{
    BuildArg, BuildSpec, BuiltImage, Cancellation, Digest, Event, EventKind, EventSink,
    ImageBuilder, Progress, Secret, Stage, StageError,
};
use futures::StreamExt;

use crate::context::{BuildContext, dockerfile_in_context};
use crate::error::ImageError;

/// How many lines of build output a failure quotes.
const TAIL_LINES: usize = 8;

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
}

impl DockerBuilder {
    /// A builder using `docker`, choosing BuildKit where the engine supports it.
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            choice: BuilderChoice::Auto,
        }
    }

    /// Use `choice` instead of deciding from the engine.
    #[must_use]
    pub fn with_builder(mut self, choice: BuilderChoice) -> Self {
        self.choice = choice;
        self
    }
}

struct Scrub(Vec<Secret>);

impl Scrub {
    fn text(&self, s: &str) -> String {
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
        let dockerfile = dockerfile_in_context(&spec.context, &spec.dockerfile)?;
        let context = BuildContext::collect(&spec.context, &dockerfile)?;
        emit(format!(
            "sending build context {} ({} entries after .dockerignore)",
            spec.context.display(),
            context.entries.len()
        ));
        let buildkit = match self.choice {
            BuilderChoice::Classic => {
                emit("using the classic builder, as asked (DOCKER_BUILDKIT=0)".to_owned());
                false
            }
            BuilderChoice::BuildKit => true,
            BuilderChoice::Auto if !context.excluded_build_files.is_empty() => {
                // The engine needs these files, and only the classic builder keeps them out
                // of `COPY` when the context is streamed as a tar (BuildKit would copy them).
                emit(format!(
                    "using the classic builder: .dockerignore excludes {}, which BuildKit would copy into the image from a streamed context",
                    context.excluded_build_files.join(" and ")
                ));
                false
            }
            BuilderChoice::Auto => match self.buildkit_unavailable().await {
                Some(why) => {
                    emit(format!("using the classic builder: {why}"));
                    false
                }
                None => true,
            },
        };
        if buildkit {
            emit("using BuildKit".to_owned());
        }
        let id = match self
            .attempt(spec, &dockerfile, context, buildkit, events, cancel, scrub)
            .await
        {
            Err(AttemptError::BuildKitRefused(why)) if self.choice == BuilderChoice::Auto => {
                emit(format!(
                    "using the classic builder: the engine refused BuildKit ({why})"
                ));
                // The first attempt consumed the context stream: walk it again.
                let context = BuildContext::collect(&spec.context, &dockerfile)?;
                self.attempt(spec, &dockerfile, context, false, events, cancel, scrub)
                    .await
            }
            first => first,
        }
        .map_err(AttemptError::into_image_error)?;
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

    /// One build request with the chosen builder; the image ID on success.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        spec: &BuildSpec,
        dockerfile: &str,
        context: BuildContext,
        buildkit: bool,
        events: &dyn EventSink,
        cancel: &Cancellation,
        scrub: &Scrub,
    ) -> Result<String, AttemptError> {
        let args: HashMap<String, String> = spec
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        let first_tag = spec.tags.first().map(ToString::to_string);
        let session = buildkit.then(session_id);
        let mut opts = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .buildargs(&args)
            .labels(&labels)
            .nocache(spec.no_cache)
            .rm(true)
            .forcerm(true);
        opts = match &session {
            Some(session) => opts
                .version(BuilderVersion::BuilderBuildKit)
                .session(session),
            None => opts.version(BuilderVersion::BuilderV1),
        };
        if let Some(t) = &first_tag {
            opts = opts.t(t);
        }
        if spec.pull {
            opts = opts.pull("true");
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

        let rx = context.stream(8);
        let body = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut stream =
            self.docker
                .build_image(opts.build(), None, Some(bollard::body_try_stream(body)));

        let mut log = BuildLog::new(events, scrub);
        let mut image_id: Option<String> = None;
        loop {
            let next = tokio::select! {
                item = stream.next() => item,
                () = cancel.cancelled() => {
                    return Err(ImageError::Engine { message: "interrupted".to_owned(), source: None }.into());
                }
            };
            let Some(item) = next else { break };
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

/// A unique build session ID for this process.
fn session_id() -> String {
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

/// Follows a build's output, classic or BuildKit, turning it into events and remembering
/// enough to name the failing step and quote its last lines.
struct BuildLog<'a> {
    events: &'a dyn EventSink,
    scrub: &'a Scrub,
    /// Whether the engine has answered with any output.
    began: bool,
    /// Steps by key (a BuildKit vertex digest; the classic builder's `Step n/m : …` line):
    /// key → name, the vertices seen starting, each step's last lines (output before any
    /// step under the empty key), the step running last, the first vertex that failed,
    /// bytes last reported per BuildKit status.
    names: HashMap<String, String>,
    started: HashSet<String>,
    tails: HashMap<String, VecDeque<String>>,
    current: Option<String>,
    failed: Option<String>,
    reported: HashMap<String, i64>,
}

impl<'a> BuildLog<'a> {
    fn new(events: &'a dyn EventSink, scrub: &'a Scrub) -> Self {
        Self {
            events,
            scrub,
            began: false,
            names: HashMap::new(),
            started: HashSet::new(),
            tails: HashMap::new(),
            current: None,
            failed: None,
            reported: HashMap::new(),
        }
    }

    fn emit(&self, kind: EventKind) {
        self.events.emit(Event::now(Stage::Build, kind));
    }

    /// An output line of the step `key`: kept among its last lines, and shown.
    fn output(&mut self, key: &str, line: String) {
        let tail = self.tails.entry(key.to_owned()).or_default();
        tail.push_back(line.clone());
        if tail.len() > TAIL_LINES {
            tail.pop_front();
        }
        self.emit(EventKind::Message { text: line });
    }

    /// Classic builder output; returns the image ID from `Successfully built …`.
    fn classic(&mut self, text: &str) -> Option<String> {
        let mut id = None;
        for line in text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
        {
            let line = self.scrub.text(line);
            if let Some((n, m)) = parse_step(&line) {
                self.names.insert(line.clone(), line.clone());
                self.current = Some(line.clone());
                self.emit(EventKind::Progress(Progress::counted(
                    line,
                    n,
                    Some(m),
                    "step",
                )));
            } else {
                if let Some(built) = line.strip_prefix("Successfully built ") {
                    id = Some(built.trim().to_owned());
                }
                let step = self.current.clone().unwrap_or_default();
                self.output(&step, line);
            }
        }
        id
    }

    /// One BuildKit status update: vertices starting or failing, their logs, byte counts.
    fn buildkit(&mut self, status: &StatusResponse) {
        for v in &status.vertexes {
            let name = self.scrub.text(&v.name);
            self.names.insert(v.digest.clone(), name.clone());
            if v.started.is_some() && self.started.insert(v.digest.clone()) {
                if let Some((n, m)) = parse_buildkit_step(&name) {
                    self.current = Some(v.digest.clone());
                    self.emit(EventKind::Progress(Progress::counted(
                        name.clone(),
                        n,
                        Some(m),
                        "step",
                    )));
                } else {
                    self.emit(EventKind::Message { text: name.clone() });
                }
            }
            if !v.error.is_empty() && self.failed.is_none() {
                self.failed = Some(v.digest.clone());
            }
        }
        for l in &status.logs {
            let text = String::from_utf8_lossy(&l.msg);
            for line in text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
            {
                let line = self.scrub.text(line);
                self.output(&l.vertex, line);
            }
        }
        for s in &status.statuses {
            if s.name.is_empty() || s.current <= 0 {
                continue;
            }
            let last = self.reported.get(&s.id).copied().unwrap_or(0);
            let done = s.completed.is_some();
            if done || s.current - last >= 1 << 20 {
                self.reported.insert(s.id.clone(), s.current);
                self.emit(EventKind::Progress(Progress::counted(
                    self.scrub.text(&s.name),
                    u64::try_from(s.current).unwrap_or(0),
                    u64::try_from(s.total).ok().filter(|t| *t > 0),
                    "bytes",
                )));
            }
        }
    }

    /// The failure as an error naming the step and quoting its last lines.
    fn step_error(&mut self, message: &str) -> ImageError {
        let key = self
            .failed
            .clone()
            .or_else(|| self.current.clone())
            .unwrap_or_default();
        let step = self
            .names
            .get(&key)
            .cloned()
            .unwrap_or_else(|| "the build".to_owned());
        let output = self.tails.remove(&key).unwrap_or_default();
        ImageError::Step {
            step,
            message: self.scrub.text(message),
            output: output.into(),
        }
    }
}

/// `Step 2/5 : COPY . /app` → (2, 5).
fn parse_step(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, _) = rest.split_once(" :")?;
    let (n, m) = frac.split_once('/')?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

/// BuildKit's vertex names: `[2/5] COPY . /app` or `[build 2/5] RUN make` → (2, 5);
/// `[internal] load build context` → none.
fn parse_buildkit_step(name: &str) -> Option<(u64, u64)> {
    let (inside, _) = name.strip_prefix('[')?.split_once(']')?;
    let frac = inside.rsplit(' ').next()?;
    let (n, m) = frac.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{
        BuildLog, BuilderChoice, Scrub, parse_api_version, parse_buildkit_step, parse_step,
        refuses_buildkit,
    };
    use crate::error::ImageError;
    use bollard::moby::buildkit::v1::{StatusResponse, Vertex, VertexLog};
    use deployctl_core::{EventKind, Secret, VecSink};

    fn vertex(digest: &str, name: &str, error: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(Default::default()),
            error: error.into(),
            ..Vertex::default()
        }
    }

    fn log(digest: &str, text: &str) -> VertexLog {
        VertexLog {
            vertex: digest.into(),
            msg: text.as_bytes().to_vec(),
            ..VertexLog::default()
        }
    }

    #[test]
    fn buildkit_failure_quotes_the_failing_vertex() {
        let events = VecSink::new();
        let scrub = Scrub(vec![Secret::new("hunter2")]);
        let mut bk = BuildLog::new(&events, &scrub);
        bk.buildkit(&StatusResponse {
            vertexes: vec![
                vertex("sha256:ctx", "[internal] load build context", ""),
                vertex("sha256:a", "[1/2] COPY app /app", ""),
            ],
            ..StatusResponse::default()
        });
        bk.buildkit(&StatusResponse {
            vertexes: vec![vertex("sha256:b", "[2/2] RUN make", "")],
            logs: (1..=12)
                .map(|i| log("sha256:b", &format!("make line {i} token=hunter2\n")))
                .chain([log("sha256:a", "copied\n")])
                .collect(),
            ..StatusResponse::default()
        });
        bk.buildkit(&StatusResponse {
            vertexes: vec![vertex("sha256:b", "[2/2] RUN make", "exit code: 2")],
            ..StatusResponse::default()
        });
        let ImageError::Step {
            step,
            message,
            output,
        } = bk
            .step_error("process \"/bin/sh -c make\" did not complete successfully: exit code: 2")
        else {
            panic!("a step error");
        };
        assert_eq!(step, "[2/2] RUN make");
        assert!(message.contains("exit code: 2"), "{message}");
        assert_eq!(output.len(), 8, "{output:?}");
        assert_eq!(output[0], "make line 5 token=***");
        assert_eq!(output[7], "make line 12 token=***");
        let steps: Vec<_> = events
            .events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Progress(p) => Some((p.item, p.current, p.total)),
                _ => None,
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("[1/2] COPY app /app".to_owned(), Some(1), Some(2)),
                ("[2/2] RUN make".to_owned(), Some(2), Some(2)),
            ]
        );
        let all = format!("{:?}", events.events());
        assert!(!all.contains("hunter2"), "a secret reached an event");
    }

    #[test]
    fn steps() {
        assert_eq!(parse_step("Step 2/5 : COPY . /app"), Some((2, 5)));
        assert_eq!(parse_step("Step 10/12 : RUN x"), Some((10, 12)));
        assert_eq!(parse_step("Steps are fun"), None);
        assert_eq!(parse_step(" ---> 1234"), None);
    }

    #[test]
    fn buildkit_steps() {
        assert_eq!(parse_buildkit_step("[2/5] COPY . /app"), Some((2, 5)));
        assert_eq!(parse_buildkit_step("[build 3/4] RUN make"), Some((3, 4)));
        assert_eq!(
            parse_buildkit_step("[stage-1 1/2] COPY --from=build /a /b"),
            Some((1, 2))
        );
        assert_eq!(parse_buildkit_step("[internal] load build context"), None);
        assert_eq!(parse_buildkit_step("exporting to image"), None);
        assert_eq!(parse_buildkit_step("[a/b] x"), None);
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
