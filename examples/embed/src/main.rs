//! Embedding deployctl in another Rust program: load a `deploy.yaml`, build the image once on
//! the Docker engine, deploy it to the local target through the core `Pipeline`, and consume
//! the event stream as it happens — here, counting events per stage and printing one line per
//! event. The same `Pipeline` takes the Lambda (`deployctl-aws`) and Kubernetes
//! (`deployctl-k8s`) targets; the `deployctl` binary is this wiring plus argument parsing.
//!
//! Usage: `deployctl-example-embed <app-dir>` (uses `DOCKER_HOST` or the default socket).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use deployctl_config::{LoadOptions, ProcessEnv};
use deployctl_core::{
    BuildSpec, Event, EventKind, EventSink, Pipeline, RunMode, RunRequest, StageOutcome,
};
use deployctl_image::DockerBuilder;
use deployctl_local::{LocalSpec, LocalTarget};

/// An event sink of our own: prints and counts.
#[derive(Default)]
struct Counter(Mutex<BTreeMap<String, usize>>);

impl EventSink for Counter {
    fn emit(&self, event: Event) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(event.stage.to_string()).or_default() += 1;
        }
        match &event.kind {
            EventKind::Finished { summary, .. } => println!("[{}] done: {summary}", event.stage),
            EventKind::Failed { error, .. } => {
                println!("[{}] failed: {}", event.stage, error.join(": "))
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: deployctl-example-embed <app-dir>");
        return ExitCode::from(2);
    };
    let config =
        match deployctl_config::load(&dir.join("deploy.yaml"), &LoadOptions::new(&ProcessEnv)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
    let docker = match bollard::Docker::connect_with_defaults() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot connect to the Docker engine: {e}");
            return ExitCode::from(3);
        }
    };
    let mut build = BuildSpec::new(dir.join(&config.build.context), &config.build.dockerfile);
    match deployctl_core::ImageRef::parse(&format!("{}:{}", config.app.name, config.app.version)) {
        Ok(tag) => build.tags = vec![tag],
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }

    let events = Counter::default();
    let builder = DockerBuilder::new(docker.clone());
    let local = LocalTarget::new(docker, LocalSpec::from_config(&config));
    let report = Pipeline::new(&events)
        .with_builder(&builder)
        .with_target(&local)
        .run(RunRequest::build_and_deploy_locally(RunMode::Apply, build))
        .await;

    for t in &report.targets {
        if let StageOutcome::Done(outcome) = &t.apply {
            for e in &outcome.endpoints {
                println!("{} serves {}", t.target, e.url);
            }
        }
    }
    if let Ok(counts) = events.0.lock() {
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("events: {}", parts.join(" "));
    }
    ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(1))
}
