//! A `pre_deploy` hook task on Lambda against moto_server: the apply invokes the version it
//! published before the `live` alias moves, and a function error stops it there.
//!
//! What this proves and what it does not: moto stores container-image functions but cannot
//! run them; its invoke of one answers HTTP 500 (not a `FunctionError` with a 200, as AWS
//! answers a function that raised). Either way the apply stops before the alias moves: the
//! test asserts the invoke targets the new version (`name:2`) after `PublishVersion`, no
//! `UpdateAlias` is made, the alias stays on version 1, and the error names the invoke. The
//! `FunctionError` path itself (`AwsError::Task`) and a task that succeeds cannot be shown on
//! moto (the emulator would have to run the image).

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::path::Path;
use std::sync::Mutex;

use common::{ACCOUNT, REGION, sdk, unique};
use deployctl_aws::{AwsClients, CallLog, LambdaSpec, LambdaTarget};
use deployctl_core::{
    Cancellation, Digest, HookOutput, HookPhase, ImageRef, NullSink, PushedImage, Target,
    TargetTask,
};

struct Env;
impl deployctl_config::VarLookup for Env {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

fn image(n: u8) -> PushedImage {
    let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
    PushedImage::new(
        ImageRef::parse(&format!("127.0.0.1:5000/app@{digest}")).unwrap(),
        Digest::parse(&digest).unwrap(),
        Some("application/vnd.docker.distribution.manifest.v2+json".into()),
    )
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);
impl HookOutput for Lines {
    fn line(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

#[tokio::test]
async fn a_pre_deploy_invoke_failure_leaves_the_alias_where_it_was() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("hook");
    let yaml = format!(
        "version: '1'\napp:\n  name: {app}\nlambda:\n  enabled: true\n  region: {REGION}\n"
    );
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&Env),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let log = CallLog::new();
    let spec = LambdaSpec::from_config(
        &config,
        ACCOUNT,
        REGION,
        &format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}"),
    )
    .emulated(true);
    let target = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log), spec);
    let raw = AwsClients::new(&sdk);
    target
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain().join(": ")));
    let alias = |raw: AwsClients, app: String| async move {
        raw.lambda
            .get_alias()
            .function_name(&app)
            .name("live")
            .send()
            .await
            .unwrap()
            .function_version()
            .unwrap()
            .to_owned()
    };
    assert_eq!(alias(raw.clone(), app.clone()).await, "1");

    let mut task = TargetTask::new(Vec::new());
    task.event = Some(r#"{"action":"migrate"}"#.into());
    let lines = Lines::default();
    target
        .run_task(
            HookPhase::PreDeploy,
            &task,
            &image(2),
            &lines,
            &Cancellation::new(),
        )
        .await
        .unwrap();
    let before = log.calls().len();
    let result = target
        .apply(&image(2), &NullSink, &Cancellation::new())
        .await;
    let calls: Vec<String> = log.calls()[before..]
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    let invoke = calls.iter().position(|c| c == "Invoke");
    assert!(invoke.is_some(), "no Invoke: {calls:?}");
    assert!(
        calls.iter().position(|c| c == "PublishVersion") < invoke,
        "the new version is published first: {calls:?}"
    );
    let err = result.expect_err("moto cannot run the image: its invoke fails");
    assert!(err.message.contains(&format!("{app}:2")), "{}", err.message);
    assert!(
        err.message.contains("Invoke failed") || err.message.contains("function error"),
        "{}",
        err.message
    );
    assert!(!calls.iter().any(|c| c == "UpdateAlias"), "{calls:?}");
    assert_eq!(alias(raw, app).await, "1", "the alias stays on version 1");
}
