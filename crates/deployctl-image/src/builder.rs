//! [`DockerBuilder`]: `deployctl_core::ImageBuilder` over the Docker Engine API.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use bollard::Docker;
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

/// Builds images on a Docker engine. The client is passed in.
#[derive(Debug, Clone)]
pub struct DockerBuilder {
    docker: Docker,
}

impl DockerBuilder {
    /// A builder using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
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

impl DockerBuilder {
    async fn run(
        &self,
        spec: &BuildSpec,
        events: &dyn EventSink,
        cancel: &Cancellation,
        scrub: &Scrub,
    ) -> Result<BuiltImage, ImageError> {
        let emit = |kind: EventKind| events.emit(Event::now(Stage::Build, kind));
        let dockerfile = dockerfile_in_context(&spec.context, &spec.dockerfile)?;
        let context = BuildContext::collect(&spec.context, &dockerfile)?;
        emit(EventKind::Message {
            text: format!(
                "sending build context {} ({} entries after .dockerignore)",
                spec.context.display(),
                context.entries.len()
            ),
        });
        emit(EventKind::Message {
            text: "using the classic builder: BuildKit needs a build session that deployctl does not open yet"
                .to_owned(),
        });

        let args: HashMap<String, String> = spec
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        let first_tag = spec.tags.first().map(ToString::to_string);
        let mut opts = BuildImageOptionsBuilder::new()
            .dockerfile(&dockerfile)
            .buildargs(&args)
            .labels(&labels)
            .nocache(spec.no_cache)
            .rm(true)
            .forcerm(true)
            .version(BuilderVersion::BuilderV1);
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

        let rx = context.stream(8);
        let body = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut stream =
            self.docker
                .build_image(opts.build(), None, Some(bollard::body_try_stream(body)));

        let mut step = String::from("the build");
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut image_id: Option<String> = None;
        loop {
            let next = tokio::select! {
                item = stream.next() => item,
                () = cancel.cancelled() => {
                    return Err(ImageError::Engine { message: "interrupted".to_owned(), source: None });
                }
            };
            let Some(item) = next else { break };
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(ImageError::Step {
                        step,
                        message: scrub.text(&error),
                        output: tail.into(),
                    });
                }
                Err(e @ bollard::errors::Error::DockerResponseServerError { .. })
                    if step != "the build" =>
                {
                    return Err(ImageError::Step {
                        step,
                        message: scrub.text(&e.to_string()),
                        output: tail.into(),
                    });
                }
                Err(e) => {
                    return Err(ImageError::Engine {
                        message: scrub.text(&e.to_string()),
                        source: Some(e),
                    });
                }
            };
            if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(ImageError::Step {
                    step,
                    message: scrub.text(&detail),
                    output: tail.into(),
                });
            }
            if let Some(id) = info.aux.as_ref().and_then(|a| a.id.clone()) {
                image_id = Some(id);
            }
            if let Some(text) = &info.stream {
                for line in text
                    .lines()
                    .map(str::trim_end)
                    .filter(|l| !l.trim().is_empty())
                {
                    let line = scrub.text(line);
                    if let Some((n, m)) = parse_step(&line) {
                        step = line.clone();
                        tail.clear();
                        emit(EventKind::Progress(Progress::counted(
                            line.clone(),
                            n,
                            Some(m),
                            "step",
                        )));
                    } else {
                        if let Some(id) = line.strip_prefix("Successfully built ") {
                            image_id.get_or_insert_with(|| id.trim().to_owned());
                        }
                        tail.push_back(line.clone());
                        if tail.len() > TAIL_LINES {
                            tail.pop_front();
                        }
                        emit(EventKind::Message { text: line });
                    }
                }
            }
        }
        let id = image_id.ok_or(ImageError::NoImageId)?;
        let id = if id.contains(':') {
            id
        } else {
            format!("sha256:{id}")
        };
        let digest = Digest::parse(&id).map_err(|e| ImageError::Engine {
            message: e.to_string(),
            source: None,
        })?;
        for tag in spec.tags.iter().skip(usize::from(first_tag.is_some())) {
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
}

/// `Step 2/5 : COPY . /app` → (2, 5).
fn parse_step(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, _) = rest.split_once(" :")?;
    let (n, m) = frac.split_once('/')?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_step;

    #[test]
    fn steps() {
        assert_eq!(parse_step("Step 2/5 : COPY . /app"), Some((2, 5)));
        assert_eq!(parse_step("Step 10/12 : RUN x"), Some((10, 12)));
        assert_eq!(parse_step("Steps are fun"), None);
        assert_eq!(parse_step(" ---> 1234"), None);
    }
}
