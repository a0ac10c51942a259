//! Deploy records (issue 18 §4) of the Lambda target, in SSM next to the deploy lock,
//! against moto_server from `cargo xtask services up`, through the core pipeline with its
//! lock: two deploys and a failing one are recorded, an unchanged redeploy makes no
//! mutating call but still writes its record (bookkeeping, like the lock's writes), and
//! destroy removes the records.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{ACCOUNT, REGION, sdk, unique};
use deployctl_aws::{AwsClients, CallLog, LambdaSpec, LambdaTarget};
use deployctl_core::{
    Cancellation, DeployResult, Digest, ErrorKind, HookContext, HookOutput, HookRunner, ImageRef,
    LocalCommand, LockOwner, LockPolicy, NullSink, Pipeline, PushedImage, RunMode, RunRequest,
    StageError, Target, Timer, deploy_stats,
};

struct NoVars;
impl deployctl_config::VarLookup for NoVars {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

const HOOKED: &str = "hooks:\n  pre_deploy:\n    - run: ./check.sh\n";

fn config(app: &str) -> deployctl_config::Config {
    let yaml = format!(
        "version: '1'\napp:\n  name: {app}\n  port: 8080\n  health_check_path: /health\nlambda:\n  enabled: true\n  region: {REGION}\n{HOOKED}"
    );
    deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&NoVars),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"))
}

fn spec(config: &deployctl_config::Config, app: &str) -> LambdaSpec {
    LambdaSpec::from_config(
        config,
        ACCOUNT,
        REGION,
        &format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}"),
    )
    .emulated(true)
}

fn image(n: u8) -> PushedImage {
    let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
    PushedImage::new(
        ImageRef::parse(&format!("127.0.0.1:5000/app@{digest}")).unwrap(),
        Digest::parse(&digest).unwrap(),
        Some("application/vnd.docker.distribution.manifest.v2+json".into()),
    )
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
async fn deploys_are_recorded_in_ssm_and_destroy_removes_them() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("rec");
    let config = config(&app);
    let log = CallLog::new();
    let t = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log), spec(&config, &app));
    let hooks = config.hooks.to_core();
    let check = Check::default();
    let timer = TokioTimer;
    let pipeline = Pipeline::new(&NullSink)
        .with_service(app.clone())
        .with_target(&t)
        .with_locks(
            LockPolicy::new(LockOwner::new("run", "test"), Duration::from_secs(10)),
            &timer,
        )
        .with_hooks(&hooks, &check, HookContext::new(&app, "1", ""));
    let run = |n: u8| {
        let mut request = RunRequest::deploy_image(RunMode::Apply, image(n));
        request.verify = false;
        pipeline.run(request)
    };

    assert_eq!(t.deploy_records().await.unwrap(), Some(Vec::new()));
    let first = run(1).await;
    assert!(first.is_success(), "{:?}", first.errors());
    assert!(run(2).await.is_success());
    check.fail.store(true, Ordering::SeqCst);
    assert!(!run(3).await.is_success());

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
    let stages: Vec<&str> = records[1].stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(stages, ["plan", "pre_deploy", "apply"]);
    assert!(
        records
            .iter()
            .all(|r| r.service == app && r.target == "lambda")
    );
    let stats = deploy_stats(&records);
    assert_eq!((stats[0].deploys, stats[0].succeeded), (3, 2));

    // The parameter sits next to the lock's and is plain JSON.
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let raw = ssm
        .get_parameter()
        .name(format!("/deployctl/deploys/{app}/lambda"))
        .send()
        .await
        .unwrap();
    let value = raw.parameter().unwrap().value().unwrap();
    assert!(value.len() <= 4096 && value.starts_with('['), "{value}");

    // An unchanged redeploy: no mutating call, but its record was written (4 now).
    check.fail.store(false, Ordering::SeqCst);
    log.clear();
    assert!(run(2).await.is_success());
    let mutating: Vec<String> = log.mutating().into_iter().map(|c| c.operation).collect();
    assert_eq!(mutating, Vec::<String>::new());
    assert!(
        log.calls()
            .iter()
            .any(|c| c.operation == "PutParameter" && c.lock)
    );
    assert_eq!(t.deploy_records().await.unwrap().unwrap().len(), 4);

    t.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert_eq!(t.deploy_records().await.unwrap(), Some(Vec::new()));
}
