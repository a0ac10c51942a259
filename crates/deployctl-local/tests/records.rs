//! Deploy records (issue 18 §4) of the local target, against the real dockerd from
//! `cargo xtask services up`, through the core pipeline with its lock: two deploys and a
//! failing one are recorded with their stages, and destroy removes them.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use deployctl_core::{
    BuildSpec, Cancellation, DeployResult, ErrorKind, HookContext, HookOutput, HookRunner,
    ImageBuilder, ImageRef, LocalCommand, LockOwner, LockPolicy, NullSink, Pipeline, PushedImage,
    RunMode, RunRequest, StageError, Target, Timer, deploy_stats,
};
use deployctl_local::{LocalSpec, LocalTarget};

struct NoVars;
impl deployctl_config::VarLookup for NoVars {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

struct TokioTimer;
impl Timer for TokioTimer {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The local hook step: fails while `fail` is set.
#[derive(Default)]
struct Check {
    fail: AtomicBool,
}
#[async_trait]
impl HookRunner for Check {
    async fn run(
        &self,
        _c: &LocalCommand,
        _t: std::time::Duration,
        _x: &HookContext,
        _o: &dyn HookOutput,
        _k: &Cancellation,
    ) -> Result<(), StageError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StageError::new(ErrorKind::Failed, "check.sh exited with 1"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn deploys_are_recorded_and_destroy_removes_them() {
    let Some(d) = deployctl_testsupport::docker() else {
        return;
    };
    let docker = Docker::connect_with_unix(
        d.host.trim_start_matches("unix://"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let port = deployctl_testsupport::free_port();
    let name = format!("records-{port}");
    let yaml = format!(
        "version: '1'\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  port: {port}\n  restart: 'no'\nhooks:\n  pre_deploy:\n    - run: ./check.sh\n"
    );
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&NoVars),
    )
    .unwrap();
    let mut spec = LocalSpec::from_config(&config);
    spec.health_timeout = Duration::from_secs(10);
    let t = LocalTarget::new(docker.clone(), spec);

    let app = deployctl_testsupport::hello_app();
    let mut build = BuildSpec::new(&app, "Dockerfile");
    build.tags = vec![ImageRef::parse(&format!("deployctl-test/local-hello:{port}-r")).unwrap()];
    let built = deployctl_image::DockerBuilder::new(docker.clone())
        .build(&build, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let image = PushedImage::new(build.tags[0].clone(), built.id.clone(), None);

    let hooks = config.hooks.to_core();
    let check = Check::default();
    let timer = TokioTimer;
    let pipeline = Pipeline::new(&NullSink)
        .with_service(name.clone())
        .with_target(&t)
        .with_locks(
            LockPolicy::new(LockOwner::new("run", "test"), Duration::from_secs(10)),
            &timer,
        )
        .with_hooks(&hooks, &check, HookContext::new(&name, "1", ""));
    let run = || {
        let mut request = RunRequest::deploy_image(RunMode::Apply, image.clone());
        request.verify = false;
        pipeline.run(request)
    };

    assert_eq!(t.deploy_records().await.unwrap(), Some(Vec::new()));
    let first = run().await;
    assert!(first.is_success(), "{:?}", first.errors());
    // Unchanged: nothing to do on the engine, still a deploy that is recorded.
    assert!(run().await.is_success());
    check.fail.store(true, Ordering::SeqCst);
    assert!(!run().await.is_success());

    let records = t.deploy_records().await.unwrap().unwrap();
    let results: Vec<DeployResult> = records.iter().map(|r| r.result).collect();
    assert_eq!(
        results,
        [
            DeployResult::Succeeded,
            DeployResult::Succeeded,
            DeployResult::Failed
        ]
    );
    let stages: Vec<&str> = records[0].stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(stages, ["plan", "pre_deploy", "apply"]);
    assert!(
        records
            .iter()
            .all(|r| r.service == name && r.target == "local")
    );
    let stats = deploy_stats(&records);
    assert_eq!((stats[0].deploys, stats[0].succeeded), (3, 2));

    t.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert_eq!(t.deploy_records().await.unwrap(), Some(Vec::new()));
}
