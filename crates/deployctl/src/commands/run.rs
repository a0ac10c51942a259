//! `deployctl run --lambda`: build the image (or take `--image`) and run it the way AWS
//! Lambda does, on the local engine (`deployctl-lambda-emulator`), with the function's
//! settings from deploy.yaml — the environment `deploy lambda` gives the function, its memory
//! and timeout —; deliver one event (an API Gateway HTTP API v2.0 `GET <health path>` unless
//! `--event FILE`) and print the function's response, as `sam local invoke` does.

use std::time::Duration;

use deployctl_aws::LambdaSpec;
use deployctl_core::{Pipeline, RunRequest, StageOutcome};
use deployctl_lambda_emulator::{EmulatorError, FunctionSpec, Outcome, Sandbox};
use serde_json::{Value, json};

use super::build::{build_spec, image_builder};
use super::load_config;
use crate::cli::{BuildArgs, Cli, RunArgs};
use crate::output::{EventPrinter, Failure, Output, err_line};

pub fn run(cli: &Cli, args: &RunArgs, out: &Output) -> i32 {
    if !args.lambda {
        return out.fail(
            "run",
            &Failure::invalid("`deployctl run` needs a mode")
                .hint("`deployctl run --lambda` runs the image as AWS Lambda would"),
        );
    }
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(f) => return out.fail("run", &f),
    };
    let payload = match &args.event {
        Some(file) => match std::fs::read(file) {
            Ok(b) if serde_json::from_slice::<Value>(&b).is_ok() => b,
            Ok(_) => {
                return out.fail(
                    "run",
                    &Failure::invalid(format!("{} is not a JSON document", file.display()))
                        .hint("a Lambda event is JSON, e.g. an API Gateway HTTP API v2.0 event"),
                );
            }
            Err(e) => {
                return out.fail(
                    "run",
                    &Failure::invalid(format!("cannot read {}", file.display())).caused_by(&e),
                );
            }
        },
        None => {
            let path = args
                .path
                .clone()
                .unwrap_or_else(|| config.app.health_check_path.clone());
            deployctl_aws::http_api_event(&path)
                .to_string()
                .into_bytes()
        }
    };
    // The function gets the values Lambda would: references read once the input is good
    // (none under `lambda.secrets: reference`, where it gets the references).
    let config = if config.uses_secret_values(&[deployctl_config::TargetKind::Lambda]) {
        match crate::runtime::block_on(|_| super::secrets::resolved(&config, None)) {
            Ok(Ok(c)) => c,
            Ok(Err(f)) | Err(f) => return out.fail("run", &f),
        }
    } else {
        config
    };
    let docker = match crate::runtime::docker() {
        Ok(d) => d,
        Err(f) => return out.fail("run", &f),
    };
    let image = match &args.image {
        Some(i) => i.clone(),
        None => match build(&config, &docker, out) {
            Ok(id) => id,
            Err(f) => return out.fail("run", &f),
        },
    };

    // The function as `deploy lambda` configures it.
    let region = config
        .lambda
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".into());
    let lambda = LambdaSpec::from_config(&config, "000000000000", &region, "");
    let mut function = FunctionSpec::new(image, lambda.function_name.clone());
    function.env = lambda
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    if let Some(port) = args.port {
        function.env.insert("PORT".into(), port.to_string());
        function.env.insert("AWS_LWA_PORT".into(), port.to_string());
    }
    function.memory_mb = u32::try_from(lambda.memory).unwrap_or(512);
    function.timeout = Duration::from_secs(u64::try_from(lambda.timeout).unwrap_or(30));
    function.region = region;

    let ran = crate::runtime::block_on(|cancel| async move {
        let sandbox = Sandbox::start(&docker, &function).await?;
        let init = sandbox.init_duration();
        let invoked = tokio::select! {
            r = sandbox.invoke(&payload) => Some(r),
            () = cancel.cancelled() => None,
        };
        let output = sandbox.shutdown().await;
        let invoked = invoked.map(|r| {
            r.map_err(|mut e| {
                e.replace_output(output.clone());
                e
            })
        });
        Ok::<_, EmulatorError>((init, invoked, output))
    });
    let (init, invoked, output) = match ran {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return out.fail("run", &emulator_failure(&e)),
        Err(f) => return out.fail("run", &f),
    };
    let Some(invoked) = invoked else {
        return out.fail(
            "run",
            &Failure::new(
                deployctl_core::ErrorKind::Cancelled,
                "interrupted; the sandbox was removed",
            ),
        );
    };
    let invocation = match invoked {
        Ok(i) => i,
        Err(e) => return out.fail("run", &emulator_failure(&e)),
    };
    if !out.is_json() {
        for line in &output {
            err_line(line);
        }
        err_line(format!(
            "init {:.2} s, invoke {} ms, request {}",
            init.as_secs_f64(),
            invocation.duration.as_millis(),
            invocation.request_id
        ));
    }
    match &invocation.outcome {
        Outcome::Response(body) => {
            let response = serde_json::from_slice::<Value>(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            out.text(match &response {
                Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            });
            out.result(
                "run",
                json!({
                    "request_id": invocation.request_id,
                    "init_ms": init.as_millis(),
                    "duration_ms": invocation.duration.as_millis(),
                    "response": response,
                    "output": output,
                }),
            );
            0
        }
        Outcome::Error { error_type, body } => out.fail(
            "run",
            &Failure::failed(format!("the function failed: {error_type}: {body}")),
        ),
    }
}

/// Builds the image as `deployctl build` does (the engine's cache makes it cheap); its ID.
fn build(
    config: &deployctl_config::Config,
    docker: &bollard::Docker,
    out: &Output,
) -> Result<String, Failure> {
    let spec = build_spec(
        config,
        &BuildArgs {
            no_cache: false,
            pull: false,
            tag: Vec::new(),
        },
    )?;
    let printer = EventPrinter::new(*out);
    let builder = image_builder(docker.clone(), config);
    let report = crate::runtime::block_on(|cancel| async move {
        let pipeline = Pipeline::new(&printer)
            .with_builder(&builder)
            .with_cancellation(cancel);
        pipeline.run(RunRequest::build_only(spec)).await
    })?;
    match &report.build {
        StageOutcome::Done(img) => Ok(img.id.to_string()),
        _ => Err(report.errors().first().map_or_else(
            || Failure::failed("the build did not run"),
            |e| Failure::from_stage(e),
        )),
    }
}

fn emulator_failure(e: &EmulatorError) -> Failure {
    let f = match e {
        EmulatorError::Listen(_) => Failure::environment(e.to_string()),
        EmulatorError::Engine { .. } => Failure::environment(e.to_string()).hint(
            "start Docker, or point DOCKER_HOST at its socket; the image must be on the engine",
        ),
        _ => Failure::failed(e.to_string()),
    };
    match std::error::Error::source(e) {
        Some(src) => f.caused_by(src),
        None => f,
    }
}
