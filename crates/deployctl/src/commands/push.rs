//! `deployctl push`: build once, push, print the digest deploys use. Also where every command
//! that pushes decides the destination and the credential sources.

use deployctl_config::Config;
use deployctl_core::{Pipeline, RunRequest, StageOutcome};
use deployctl_registry::{
    Delivery, DockerPusher, EnsuringPusher, ensure_single_platform, uses_ecr,
};
use serde_json::json;

use super::aws::{AwsContext, push_endpoint};
use super::build::build_spec;
use super::load_config;
use crate::cli::{BuildArgs, Cli, PushArgs};
use crate::output::{EventPrinter, Failure, Output};

pub fn run(cli: &Cli, args: &PushArgs, out: &Output) -> i32 {
    match push(cli, args, out) {
        Ok(code) => code,
        Err(f) => out.fail("push", &f),
    }
}

/// The push destination and credential sources for `config` (the policy is
/// `deployctl_registry::delivery`; this passes it the AWS context and the push-endpoint
/// setting).
pub fn delivery(config: &Config, aws: Option<&AwsContext>) -> Result<Delivery, Failure> {
    let ecr = aws.map(AwsContext::ecr_account);
    deployctl_registry::delivery(config, ecr.as_ref(), push_endpoint(config).as_deref())
        .map_err(|e| Failure::from_stage(&e.into()))
}

fn push(cli: &Cli, args: &PushArgs, out: &Output) -> Result<i32, Failure> {
    let config = load_config(cli)?;
    let build_args = BuildArgs {
        no_cache: args.no_cache,
        pull: false,
        tag: Vec::new(),
    };
    let spec = build_spec(&config, &build_args)?;
    if !uses_ecr(&config) {
        // Input errors (no registry) before the engine is even contacted.
        delivery(&config, None)?;
    }
    let docker = crate::runtime::docker()?;
    let printer = EventPrinter::new(*out);
    let (builder, docker_pusher) = (
        super::build::image_builder(docker.clone(), &config),
        DockerPusher::new(docker),
    );
    let config_ref = &config;
    let printer_ref = &printer;
    let report = crate::runtime::block_on(|cancel| async move {
        let aws = if uses_ecr(config_ref) {
            Some(super::aws::context(config_ref).await?)
        } else {
            None
        };
        let delivery = delivery(config_ref, aws.as_ref())?;
        let pusher = EnsuringPusher::new(&docker_pusher, &delivery, config_ref);
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
