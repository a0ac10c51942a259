//! `deployctl push`: build once, push, print the digest deploys use.

use deployctl_config::{Config, CredentialSource as Source};
use deployctl_core::{CredentialSource, ImageRef, Pipeline, RunRequest, StageOutcome};
use deployctl_image::DockerBuilder;
use deployctl_registry::{
    Anonymous, ConfigCredentials, DockerConfigCredentials, DockerPusher, ensure_single_platform,
};
use serde_json::json;

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

fn push(cli: &Cli, args: &PushArgs, out: &Output) -> Result<i32, Failure> {
    let config = load_config(cli)?;
    let Some(registry) = &config.registry else {
        return Err(Failure::new(2, "nothing to push to: deploy.yaml has no registry")
            .hint("add `registry: { url: host[:port] }` (Lambda's ECR default lands with the AWS target)"));
    };
    let build_args = BuildArgs {
        no_cache: args.no_cache,
        pull: false,
        tag: Vec::new(),
    };
    let spec = build_spec(&config, &build_args)?;
    let repo = image_repository(&config);
    let destination = ImageRef::parse(&format!("{repo}:{}", config.app.version))
        .map_err(|e| Failure::new(2, format!("cannot name the image `{repo}`")).caused_by(&e))?;
    let sources = credential_sources(&config, registry.credentials, &destination)?;
    let docker = crate::runtime::docker()?;
    let printer = EventPrinter::new(*out);
    let (builder, pusher) = (
        DockerBuilder::new(docker.clone()),
        DockerPusher::new(docker),
    );
    let report = crate::runtime::block_on(|cancel| async move {
        let mut pipeline = Pipeline::new(&printer)
            .with_builder(&builder)
            .with_pusher(&pusher)
            .with_cancellation(cancel);
        for s in &sources {
            pipeline = pipeline.with_credentials(s.as_ref());
        }
        pipeline
            .run(RunRequest::build_and_push(spec, destination))
            .await
    })?;
    let StageOutcome::Done(pushed) = &report.push else {
        return Err(report.errors().first().map_or_else(
            || Failure::new(1, "the push did not run"),
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

fn credential_sources(
    config: &Config,
    which: Source,
    destination: &ImageRef,
) -> Result<Vec<Box<dyn CredentialSource>>, Failure> {
    let registry = config.registry.as_ref();
    let explicit = registry.and_then(|r| match (&r.username, &r.password) {
        (Some(u), Some(p)) => Some(Box::new(ConfigCredentials::new(
            &destination.registry,
            u.clone(),
            p.clone(),
        )) as Box<dyn CredentialSource>),
        _ => None,
    });
    let docker: Box<dyn CredentialSource> = Box::new(DockerConfigCredentials::from_env());
    Ok(match which {
        Source::Config => vec![explicit.ok_or_else(|| {
            Failure::new(
                2,
                "registry.credentials is `config` but registry.username/password are not set",
            )
            .hint("set both, or use `credentials: auto`")
        })?],
        Source::Docker => vec![docker],
        Source::Ecr => {
            return Err(Failure::new(2, "ECR credentials are not available in this build yet")
                .hint("use registry.username/password (e.g. from `aws ecr get-login-password`) or `docker login`, with credentials: auto"));
        }
        _ => {
            if destination.is_ecr() && explicit.is_none() {
                eprintln!(
                    "note: ECR credentials are not fetched automatically yet; trying Docker's config"
                );
            }
            explicit
                .into_iter()
                .chain([docker, Box::new(Anonymous) as Box<dyn CredentialSource>])
                .collect()
        }
    })
}
