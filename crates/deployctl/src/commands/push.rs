//! `deployctl push`: build once, push, print the digest deploys use. Also where every command
//! that pushes decides the destination and the credential sources.

use async_trait::async_trait;
use deployctl_config::{Config, CredentialSource as Source};
use deployctl_core::{
    BuiltImage, Cancellation, CredentialSource, Event, EventKind, EventSink, ImagePusher, ImageRef,
    Pipeline, PushedImage, RegistryCredentials, RunRequest, Stage, StageError, StageOutcome,
};
use deployctl_registry::{
    Anonymous, ConfigCredentials, DockerConfigCredentials, DockerPusher, EcrCredentials,
    ensure_single_platform,
};
use serde_json::json;

use super::aws::{AwsContext, EcrViaEndpoint, lambda_repository, push_endpoint};
use super::build::build_spec;
use super::{image_repository, load_config};
use crate::cli::{BuildArgs, Cli, PushArgs};
use crate::output::{EventPrinter, Failure, Output};

pub fn run(cli: &Cli, args: &PushArgs, out: &Output) -> i32 {
    match push(cli, args, out) {
        Ok(code) => code,
        Err(f) => out.fail("push", &f),
    }
}

/// Whether pushing for `config` needs AWS (an ECR repository).
pub fn needs_aws(config: &Config) -> bool {
    config.lambda.enabled
        || ImageRef::parse(&image_repository(config)).is_ok_and(|r| r.is_ecr())
        || config
            .registry
            .as_ref()
            .is_some_and(|r| r.credentials == Source::Ecr)
}

/// Where an image goes and how to log in there.
pub struct Delivery {
    /// The reference pushed (repository and version tag).
    pub destination: ImageRef,
    /// Credential sources in the order they are asked.
    pub sources: Vec<Box<dyn CredentialSource>>,
    /// The ECR repository to ensure before pushing: client and repository name.
    pub ecr: Option<(aws_sdk_ecr::Client, String)>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("destination", &self.destination)
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The push destination and credential sources for `config`.
pub fn delivery(config: &Config, aws: Option<&AwsContext>) -> Result<Delivery, Failure> {
    let repo = match aws {
        Some(aws) if config.lambda.enabled => lambda_repository(config, aws)?,
        _ if config.registry.is_none() => {
            return Err(
                Failure::invalid("nothing to push to: deploy.yaml has no registry").hint(
                    "add `registry: { url: host[:port] }`, or enable lambda to push to Amazon ECR",
                ),
            );
        }
        _ => image_repository(config),
    };
    let canonical = ImageRef::parse(&format!("{repo}:{}", config.app.version))
        .map_err(|e| Failure::invalid(format!("cannot name the image `{repo}`")).caused_by(&e))?;
    let endpoint = push_endpoint(config).filter(|_| canonical.is_ecr());
    let destination = match &endpoint {
        Some(host) => ImageRef::parse(&format!(
            "{host}/{}:{}",
            canonical.repository, config.app.version
        ))
        .map_err(|e| {
            Failure::invalid(format!(
                "the ECR push endpoint `{host}` is not a registry address"
            ))
            .caused_by(&e)
            .hint("use host:port, e.g. 127.0.0.1:5000")
        })?,
        None => canonical.clone(),
    };

    let which = config
        .registry
        .as_ref()
        .map_or(Source::Auto, |r| r.credentials);
    let explicit = config
        .registry
        .as_ref()
        .and_then(|r| match (&r.username, &r.password) {
            (Some(u), Some(p)) => Some(Box::new(ConfigCredentials::new(
                &destination.registry,
                u.clone(),
                p.clone(),
            )) as Box<dyn CredentialSource>),
            _ => None,
        });
    let ecr: Option<Box<dyn CredentialSource>> = aws.filter(|_| canonical.is_ecr()).map(|aws| {
        let client = EcrCredentials::new(aws_sdk_ecr::Client::new(&aws.sdk));
        match &endpoint {
            Some(host) => Box::new(EcrViaEndpoint {
                ecr: client,
                ecr_registry: canonical.registry.clone(),
                endpoint: host.clone(),
            }) as Box<dyn CredentialSource>,
            None => Box::new(client),
        }
    });
    let docker: Box<dyn CredentialSource> = Box::new(DockerConfigCredentials::from_env());
    let sources = match which {
        Source::Config => vec![explicit.ok_or_else(|| {
            Failure::invalid(
                "registry.credentials is `config` but registry.username/password are not set",
            )
            .hint("set both, or use `credentials: auto`")
        })?],
        Source::Docker => vec![docker],
        Source::Ecr => vec![ecr.ok_or_else(|| {
            Failure::invalid("registry.credentials is `ecr` but the registry is not Amazon ECR",
            )
            .hint(
                "use an <account>.dkr.ecr.<region>.amazonaws.com registry, or `credentials: auto`",
            )
        })?],
        _ => explicit
            .into_iter()
            .chain(ecr)
            .chain([docker, Box::new(Anonymous) as Box<dyn CredentialSource>])
            .collect(),
    };
    let ecr = aws.filter(|_| canonical.is_ecr()).map(|aws| {
        (
            aws_sdk_ecr::Client::new(&aws.sdk),
            canonical.repository.clone(),
        )
    });
    Ok(Delivery {
        destination,
        sources,
        ecr,
    })
}

/// An [`ImagePusher`] that first creates the ECR repository if it is missing (after the
/// build succeeded, so a failed build creates nothing), then pushes with `inner`.
pub struct EnsuringPusher<'a> {
    pub inner: &'a dyn ImagePusher,
    pub ecr: Option<(aws_sdk_ecr::Client, String)>,
    pub config: &'a Config,
}

impl std::fmt::Debug for EnsuringPusher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnsuringPusher")
            .field("ecr", &self.ecr.as_ref().map(|(_, n)| n))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ImagePusher for EnsuringPusher<'_> {
    async fn push(
        &self,
        image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<PushedImage, StageError> {
        if let Some((client, name)) = &self.ecr {
            let settings = self
                .config
                .registry
                .as_ref()
                .map(|r| r.ecr.clone())
                .unwrap_or_default();
            let repo = deployctl_registry::ensure_repository(
                client,
                name,
                &self.config.app.name,
                settings.scan_on_push,
                settings.keep_images,
            )
            .await?;
            if repo.created {
                events.emit(Event::now(
                    Stage::Push,
                    EventKind::Message {
                        text: format!("created ECR repository {}", repo.uri),
                    },
                ));
            }
        }
        self.inner
            .push(image, destination, credentials, events, cancel)
            .await
    }
}

fn push(cli: &Cli, args: &PushArgs, out: &Output) -> Result<i32, Failure> {
    let config = load_config(cli)?;
    let build_args = BuildArgs {
        no_cache: args.no_cache,
        pull: false,
        tag: Vec::new(),
    };
    let spec = build_spec(&config, &build_args)?;
    if !needs_aws(&config) {
        // Input errors (no registry) before the engine is even contacted.
        delivery(&config, None)?;
    }
    let docker = crate::runtime::docker()?;
    let printer = EventPrinter::new(*out);
    let (builder, docker_pusher) = (
        super::build::image_builder(docker.clone()),
        DockerPusher::new(docker),
    );
    let config_ref = &config;
    let printer_ref = &printer;
    let report = crate::runtime::block_on(|cancel| async move {
        let aws = if needs_aws(config_ref) {
            Some(super::aws::context(config_ref).await?)
        } else {
            None
        };
        let delivery = delivery(config_ref, aws.as_ref())?;
        let pusher = EnsuringPusher {
            inner: &docker_pusher,
            ecr: delivery.ecr.clone(),
            config: config_ref,
        };
        let mut pipeline = Pipeline::new(printer_ref)
            .with_builder(&builder)
            .with_pusher(&pusher)
            .with_cancellation(cancel);
        for s in &delivery.sources {
            pipeline = pipeline.with_credentials(s.as_ref());
        }
        Ok::<_, Failure>(
            pipeline
                .run(RunRequest::build_and_push(
                    spec,
                    delivery.destination.clone(),
                ))
                .await,
        )
    })??;
    let StageOutcome::Done(pushed) = &report.push else {
        return Err(report.errors().first().map_or_else(
            || Failure::failed("the push did not run"),
            |e| Failure::from_stage(e),
        ));
    };
    if config.lambda.enabled {
        ensure_single_platform(pushed).map_err(|e| Failure::from_stage(&e))?;
    }
    out.text(format!("pushed {}", pushed.reference));
    out.result(
        "push",
        json!({
            "image": {
                "reference": pushed.reference.to_string(),
                "digest": pushed.digest(),
                "media_type": pushed.media_type,
            }
        }),
    );
    Ok(0)
}
