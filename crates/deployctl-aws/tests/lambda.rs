//! The Lambda target against moto_server from `cargo xtask services up`.
//!
//! Each test deploys its own app (a unique name), so tests run in parallel against one moto.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use common::{ACCOUNT, REGION, sdk, unique};
use deployctl_aws::{AwsClients, CallLog, LambdaSpec, LambdaTarget};
use deployctl_core::{
    Action, Cancellation, Digest, ImageRef, LogLine, LogQuery, LogSink, NullSink, PushedImage,
    Target, Verification,
};

struct Env(BTreeMap<String, String>);
impl deployctl_config::VarLookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn config(app: &str, lambda: &str) -> deployctl_config::Config {
    let yaml = format!(
        "version: '1'\napp:\n  name: {app}\n  port: 8080\n  health_check_path: /health\nenv:\n  GREETING: hello\nsecrets:\n  API_KEY: ${{API_KEY}}\nlambda:\n  enabled: true\n  region: {REGION}\n{lambda}"
    );
    let vars = Env(BTreeMap::from([(
        "API_KEY".to_owned(),
        "s3cr3t-value-123".to_owned(),
    )]));
    deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&vars),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"))
}

fn image(n: u8) -> PushedImage {
    let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
    PushedImage::new(
        ImageRef::parse(&format!("127.0.0.1:5000/app@{digest}")).unwrap(),
        Digest::parse(&digest).unwrap(),
        Some("application/vnd.docker.distribution.manifest.v2+json".into()),
    )
}

struct Setup {
    target: LambdaTarget,
    log: CallLog,
    raw: AwsClients,
    app: String,
}

async fn setup(lambda: &str) -> Option<Setup> {
    let sdk = sdk().await?;
    let app = unique("t");
    let log = CallLog::new();
    let clients = AwsClients::with_call_log(&sdk, &log);
    let spec = LambdaSpec::from_config(
        &config(&app, lambda),
        ACCOUNT,
        REGION,
        &format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}"),
    )
    .emulated(true);
    Some(Setup {
        target: LambdaTarget::new(clients, spec),
        log,
        raw: AwsClients::new(&sdk),
        app,
    })
}

async fn deploy(s: &Setup, img: &PushedImage) -> deployctl_core::ApplyOutcome {
    s.target
        .apply(img, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain().join(": ")))
}

fn mutating(log: &CallLog) -> Vec<String> {
    log.mutating().into_iter().map(|c| c.operation).collect()
}

const FULL: &str = "  function:
    memory: 256
    timeout: 20
    architecture: arm64
    ephemeral_storage: 1024
    reserved_concurrency: 3
    env:
      MODE: lambda
  iam:
    policies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]
    inline_policies:
      read-table:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Action: ['dynamodb:GetItem']
            Resource: '*'
  vpc:
    subnet_ids: [subnet-0a1b2c3d]
    security_group_ids: [sg-0a1b2c3d]
  api_gateway:
    cors:
      enabled: true
      origins: ['https://shop.example.com']
      methods: [GET, POST]
      headers: [content-type]
      max_age: 600
    throttling:
      rate_limit: 100
      burst_limit: 200
  function_url:
    enabled: true
    auth_type: NONE
";

#[tokio::test]
async fn full_deploy_creates_every_resource_and_an_unchanged_redeploy_makes_no_mutating_call() {
    let Some(s) = setup(FULL).await else { return };
    let app = &s.app;
    let first = image(1);
    let plan = s.target.plan(Some(&first)).await.unwrap();
    assert!(
        plan.changes.iter().all(|c| c.action == Action::Create),
        "a first deploy creates everything: {plan:#?}"
    );
    assert!(
        s.log.mutating().is_empty(),
        "plan must not mutate: {:?}",
        s.log.mutating()
    );

    let out = deploy(&s, &first).await;
    assert_eq!(out.version.as_deref(), Some("1"));
    let kinds: Vec<&str> = out.endpoints.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["api gateway", "function url"]);
    assert!(out.endpoints.iter().all(|e| !e.verifiable));

    // Every resource, read back through the AWS APIs.
    let c = &s.raw;
    let f = c
        .lambda
        .get_function()
        .function_name(app)
        .send()
        .await
        .unwrap();
    let conf = f.configuration().unwrap();
    assert_eq!(
        f.code().unwrap().image_uri(),
        Some(
            format!(
                "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}@{}",
                first.digest()
            )
            .as_str()
        )
    );
    assert_eq!(conf.memory_size(), Some(256));
    assert_eq!(conf.timeout(), Some(20));
    assert_eq!(conf.architectures()[0].as_str(), "arm64");
    assert_eq!(conf.ephemeral_storage().unwrap().size(), 1024);
    let env = conf.environment().unwrap().variables().unwrap();
    assert_eq!(env["AWS_LWA_PORT"], "8080");
    assert_eq!(env["PORT"], "8080");
    assert_eq!(env["AWS_LWA_READINESS_CHECK_PATH"], "/health");
    assert_eq!(env["GREETING"], "hello");
    assert_eq!(env["MODE"], "lambda");
    assert_eq!(env["API_KEY"], "s3cr3t-value-123");
    let vpc = conf.vpc_config().unwrap();
    assert_eq!(vpc.subnet_ids(), ["subnet-0a1b2c3d"]);
    assert_eq!(vpc.security_group_ids(), ["sg-0a1b2c3d"]);
    let tags = f.tags().unwrap();
    assert_eq!(tags["deployctl:app"], *app);
    assert_eq!(tags["deployctl:managed-by"], "deployctl");
    let concurrency = c
        .lambda
        .get_function_concurrency()
        .function_name(app)
        .send()
        .await
        .unwrap();
    assert_eq!(concurrency.reserved_concurrent_executions(), Some(3));

    let alias = c
        .lambda
        .get_alias()
        .function_name(app)
        .name("live")
        .send()
        .await
        .unwrap();
    assert_eq!(alias.function_version(), Some("1"));

    let role = format!("{app}-deployctl");
    let attached = c
        .iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    let mut arns: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    arns.sort_unstable();
    assert_eq!(
        arns,
        [
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        ]
    );
    let inline = c
        .iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names(), ["read-table"]);

    let apis = c.apigateway.get_apis().send().await.unwrap();
    let api = apis
        .items()
        .iter()
        .find(|a| {
            a.tags()
                .is_some_and(|t| t.get("deployctl:app") == Some(app))
        })
        .expect("the HTTP API");
    let cors = api.cors_configuration().unwrap();
    assert_eq!(cors.allow_origins(), ["https://shop.example.com"]);
    assert_eq!(cors.allow_methods(), ["GET", "POST"]);
    assert_eq!(cors.max_age(), Some(600));
    let id = api.api_id().unwrap();
    let stages = c.apigateway.get_stages().api_id(id).send().await.unwrap();
    let stage = &stages.items()[0];
    assert_eq!(stage.stage_name(), Some("$default"));
    assert_eq!(stage.auto_deploy(), Some(true));
    let throttle = stage.default_route_settings().unwrap();
    assert_eq!(throttle.throttling_rate_limit(), Some(100.0));
    assert_eq!(throttle.throttling_burst_limit(), Some(200));
    let integrations = c
        .apigateway
        .get_integrations()
        .api_id(id)
        .send()
        .await
        .unwrap();
    let integration = &integrations.items()[0];
    assert_eq!(
        integration.integration_uri(),
        Some(format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{app}:live").as_str())
    );
    assert_eq!(integration.payload_format_version(), Some("2.0"));
    let routes = c.apigateway.get_routes().api_id(id).send().await.unwrap();
    assert_eq!(routes.items()[0].route_key(), Some("$default"));
    let policy = c
        .lambda
        .get_policy()
        .function_name(app)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    let policy = policy.policy().unwrap();
    assert!(
        policy.contains(&format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{id}/*")),
        "{policy}"
    );
    assert!(policy.contains("lambda:InvokeFunctionUrl"), "{policy}");
    let url = c
        .lambda
        .get_function_url_config()
        .function_name(app)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    assert_eq!(url.auth_type().as_str(), "NONE");
    let groups = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/aws/lambda/{app}"))
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups().len(), 1);

    // Unchanged redeploy: reads only.
    s.log.clear();
    let plan = s.target.plan(Some(&first)).await.unwrap();
    assert!(plan.is_noop(), "nothing changed: {plan:#?}");
    let again = deploy(&s, &first).await;
    assert!(again.plan.is_noop());
    assert_eq!(again.version.as_deref(), Some("1"));
    assert_eq!(mutating(&s.log), Vec::<String>::new());
    assert!(!s.log.calls().is_empty(), "the call log records reads too");
}

#[tokio::test]
async fn memory_change_updates_configuration_only_and_image_change_updates_code() {
    let Some(s) = setup("  api_gateway:\n    enabled: false\n").await else {
        return;
    };
    deploy(&s, &image(1)).await;

    // Memory only.
    let sdk = sdk().await.unwrap();
    let spec = LambdaSpec::from_config(
        &config(
            &s.app,
            "  function:\n    memory: 1024\n  api_gateway:\n    enabled: false\n",
        ),
        ACCOUNT,
        REGION,
        &s.target.spec().image_repository,
    );
    let log = CallLog::new();
    let bigger = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log), spec);
    let plan = bigger.plan(Some(&image(1))).await.unwrap();
    let function = plan
        .changes
        .iter()
        .find(|c| c.kind == "lambda function")
        .unwrap();
    match &function.action {
        Action::Update { fields } => {
            let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
            assert_eq!(names, ["memory"]);
        }
        other => panic!("expected an update, got {other:?}"),
    }
    let out = bigger
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(
        mutating(&log),
        [
            "UpdateFunctionConfiguration",
            "PublishVersion",
            "UpdateAlias"
        ],
        "{:?}",
        log.calls()
    );
    assert_eq!(out.version.as_deref(), Some("2"));

    // New image: code update and a new version, no configuration update.
    log.clear();
    let out = bigger
        .apply(&image(2), &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(
        mutating(&log),
        ["UpdateFunctionCode", "PublishVersion", "UpdateAlias"]
    );
    assert_eq!(out.version.as_deref(), Some("3"));
    let status = bigger.status().await.unwrap();
    assert!(status.deployed);
    assert_eq!(status.version.as_deref(), Some("3"));
    assert!(status.image.unwrap().ends_with(image(2).digest().as_str()));

    let history = bigger.history().await.unwrap();
    let versions: Vec<(&str, bool)> = history
        .iter()
        .map(|r| (r.version.as_str(), r.live))
        .collect();
    assert_eq!(versions, [("1", false), ("2", false), ("3", true)]);
    assert!(
        history[2]
            .image
            .as_deref()
            .unwrap()
            .ends_with(image(2).digest().as_str())
    );

    // Rollback: to the previous version, then to an explicit one.
    let back = bigger
        .rollback(None, &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!((back.from.as_deref(), back.to.as_str()), (Some("3"), "2"));
    let back = bigger
        .rollback(Some("1"), &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(back.to, "1");
    let alias = s
        .raw
        .lambda
        .get_alias()
        .function_name(&s.app)
        .name("live")
        .send()
        .await
        .unwrap();
    assert_eq!(alias.function_version(), Some("1"));
    let err = bigger
        .rollback(Some("42"), &NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no version 42"), "{err}");
    let err = bigger
        .rollback(None, &NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing to roll back to"), "{err}");
}

#[tokio::test]
async fn destroy_removes_everything_tagged_and_a_second_destroy_changes_nothing() {
    let Some(s) = setup(FULL).await else { return };
    deploy(&s, &image(7)).await;
    let plan = s.target.destroy_plan().await.unwrap();
    let kinds: Vec<&str> = plan.changes.iter().map(|c| c.kind.as_str()).collect();
    for k in [
        "http api",
        "lambda function",
        "lambda alias",
        "iam role",
        "log group",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    s.log.clear();
    s.target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert!(mutating(&s.log).contains(&"DeleteFunction".to_owned()));

    let c = &s.raw;
    let app = &s.app;
    assert!(
        c.lambda
            .get_function()
            .function_name(app)
            .send()
            .await
            .is_err()
    );
    let apis = c.apigateway.get_apis().send().await.unwrap();
    assert!(
        !apis.items().iter().any(|a| a
            .tags()
            .is_some_and(|t| t.get("deployctl:app") == Some(app))),
        "an API with the app's tag is left"
    );
    assert!(
        c.iam
            .get_role()
            .role_name(format!("{app}-deployctl"))
            .send()
            .await
            .is_err()
    );
    let groups = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/aws/lambda/{app}"))
        .send()
        .await
        .unwrap();
    assert!(groups.log_groups().is_empty());

    s.log.clear();
    let second = s
        .target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert!(second.changes.is_empty(), "{second:#?}");
    assert_eq!(mutating(&s.log), Vec::<String>::new());
}

#[tokio::test]
async fn a_named_role_without_lambda_trust_fails_before_any_mutating_call() {
    let Some(sdk) = sdk().await else { return };
    let raw = AwsClients::new(&sdk);
    let role = unique("ec2-only");
    raw.iam
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let app = unique("t");
    let log = CallLog::new();
    let spec = LambdaSpec::from_config(
        &config(&app, &format!("  iam:\n    role: {role}\n")),
        ACCOUNT,
        REGION,
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/x",
    );
    let target = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log), spec);
    let err = target.plan(Some(&image(1))).await.unwrap_err();
    assert_eq!(err.kind.exit_code(), 2);
    assert!(err.to_string().contains("lambda.amazonaws.com"), "{err}");
    let err = target
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&role), "{err}");
    assert_eq!(mutating(&log), Vec::<String>::new());

    // A named role is used as is and never deleted.
    let missing = LambdaTarget::new(
        AwsClients::new(&sdk),
        LambdaSpec::from_config(
            &config(&unique("t"), "  iam:\n    role: no-such-role\n"),
            ACCOUNT,
            REGION,
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/x",
        ),
    );
    let err = missing.plan(None).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[derive(Default)]
struct Lines(Mutex<Vec<LogLine>>);
impl LogSink for Lines {
    fn line(&self, line: LogLine) {
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test]
async fn logs_read_the_function_log_group_with_filter_and_follow() {
    let Some(s) = setup("  api_gateway:\n    enabled: false\n").await else {
        return;
    };
    deploy(&s, &image(3)).await;
    let group = format!("/aws/lambda/{}", s.app);
    let logs = &s.raw.logs;
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/11/24/[$LATEST]abc")
        .send()
        .await
        .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let event = |t: i64, m: &str| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(t)
            .message(m)
            .build()
            .unwrap()
    };
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/11/24/[$LATEST]abc")
        .log_events(event(now - 2000, "START RequestId: 1"))
        .log_events(event(now - 1000, "GET /health 200"))
        .send()
        .await
        .unwrap();

    let all = Lines::default();
    s.target
        .logs(&LogQuery::default(), &all, &Cancellation::new())
        .await
        .unwrap();
    let texts: Vec<String> = all
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(texts, ["START RequestId: 1", "GET /health 200"]);

    let filtered = Lines::default();
    let mut q = LogQuery::default();
    q.filter = Some("health".into());
    s.target
        .logs(&q, &filtered, &Cancellation::new())
        .await
        .unwrap();
    let texts: Vec<String> = filtered
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(texts, ["GET /health 200"]);

    // Follow: a line written later arrives once; cancelling ends the follow.
    let target = s
        .target
        .clone()
        .with_log_poll_interval(Duration::from_millis(200));
    let followed = std::sync::Arc::new(Lines::default());
    let cancel = Cancellation::new();
    let mut q = LogQuery::default();
    q.follow = true;
    let task = {
        let (followed, cancel) = (followed.clone(), cancel.clone());
        tokio::spawn(async move { target.logs(&q, followed.as_ref(), &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/11/24/[$LATEST]abc")
        .log_events(event(now, "late line"))
        .send()
        .await
        .unwrap();
    for _ in 0..50 {
        if followed
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.text == "late line")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
    let texts: Vec<String> = followed
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(
        texts,
        ["START RequestId: 1", "GET /health 200", "late line"]
    );
}

/// Records the body of every Lambda request (moto does not store EFS settings, so the
/// request itself is the evidence that they reach the function).
#[derive(Debug, Clone, Default)]
struct Bodies(std::sync::Arc<Mutex<Vec<String>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for Bodies {
    fn name(&self) -> &'static str {
        "bodies"
    }
    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(b) = context.request().body().bytes() {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(b).into_owned());
        }
        Ok(())
    }
}

#[tokio::test]
async fn efs_and_vpc_settings_are_sent_with_the_function_and_the_role_gets_efs_access() {
    let Some(sdk) = sdk().await else { return };
    let bodies = Bodies::default();
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .interceptor(bodies.clone())
            .build(),
    );
    let clients = AwsClients::from_clients(
        lambda,
        aws_sdk_iam::Client::new(&sdk),
        aws_sdk_apigatewayv2::Client::new(&sdk),
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
        aws_sdk_ssm::Client::new(&sdk),
    );
    let app = unique("t");
    let spec = LambdaSpec::from_config(
        &config(
            &app,
            "  vpc:\n    subnet_ids: [subnet-1]\n    security_group_ids: [sg-1]\n  efs:\n    access_point_arn: arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-0123456789abcdef0\n    mount_path: /mnt/files\n  api_gateway:\n    enabled: false\n",
        ),
        ACCOUNT,
        REGION,
        &format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}"),
    );
    let target = LambdaTarget::new(clients, spec);
    let img = image(4);
    target
        .apply(&img, &NullSink, &Cancellation::new())
        .await
        .unwrap();
    let create = bodies
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|b| b.contains("\"PackageType\":\"Image\""))
        .cloned()
        .expect("a CreateFunction request");
    let body: serde_json::Value = serde_json::from_str(&create).unwrap();
    assert_eq!(
        body["FileSystemConfigs"][0]["Arn"],
        "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-0123456789abcdef0"
    );
    assert_eq!(body["FileSystemConfigs"][0]["LocalMountPath"], "/mnt/files");
    assert_eq!(body["VpcConfig"]["SubnetIds"][0], "subnet-1");
    let iam = aws_sdk_iam::Client::new(&sdk);
    let attached = iam
        .list_attached_role_policies()
        .role_name(format!("{app}-deployctl"))
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert!(
        arns.contains(&"arn:aws:iam::aws:policy/AmazonElasticFileSystemClientReadWriteAccess"),
        "{arns:?}"
    );
    assert!(
        arns.contains(&"arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"),
        "{arns:?}"
    );
}

fn outcome_with(endpoints: Vec<deployctl_core::Endpoint>) -> deployctl_core::ApplyOutcome {
    deployctl_core::ApplyOutcome::new(
        deployctl_core::Plan::new("lambda"),
        Some("1".into()),
        endpoints,
    )
}

#[tokio::test]
async fn verify_gets_the_health_path_over_http_when_the_endpoint_answers() {
    let Some(s) = setup("").await else { return };
    let server = deployctl_testsupport::http_server(200).await;
    let url = server.url.clone();
    let outcome = outcome_with(vec![deployctl_core::Endpoint::new(
        "api gateway",
        &url,
        true,
    )]);
    let checks = s
        .target
        .verify(&outcome, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    match &checks[0] {
        Verification::Healthy {
            url: checked,
            method,
            status,
            ..
        } => {
            assert_eq!(checked, &format!("{url}/health"));
            assert_eq!(method, "http");
            assert_eq!(*status, 200);
        }
        other => panic!("not healthy: {other:?}"),
    }
    assert!(
        server.hits("/health") >= 1,
        "the health path was not requested"
    );
    assert!(
        !s.log.calls().iter().any(|c| c.operation == "Invoke"),
        "an answering endpoint needs no invoke"
    );
}

#[tokio::test]
async fn an_endpoint_answering_500_fails_the_verification() {
    let Some(s) = setup("").await else { return };
    let target = s
        .target
        .clone()
        .with_verify_deadline(Duration::from_secs(1));
    let url = deployctl_testsupport::http_server(500).await.url;
    let outcome = outcome_with(vec![deployctl_core::Endpoint::new(
        "api gateway",
        &url,
        true,
    )]);
    let err = target
        .verify(&outcome, &Cancellation::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, deployctl_core::ErrorKind::Failed);
    assert!(err.message.contains("HTTP 500"), "{}", err.message);
    assert!(err.message.contains("/health"), "{}", err.message);
}

#[tokio::test]
async fn without_a_reachable_endpoint_verify_invokes_the_alias_and_reports_what_moto_says() {
    let Some(s) = setup("").await else { return };
    let outcome = deploy(&s, &image(7)).await;
    assert!(
        !outcome.endpoints.is_empty(),
        "the HTTP API endpoint is reported"
    );
    let checks = s
        .target
        .verify(&outcome, &Cancellation::new())
        .await
        .unwrap();
    let invokes: Vec<_> = s
        .log
        .calls()
        .into_iter()
        .filter(|c| c.operation == "Invoke")
        .collect();
    assert!(!invokes.is_empty(), "no lambda:Invoke was made");
    // moto stores container functions but cannot run them: its answer is reported as is,
    // never as healthy.
    assert_eq!(checks.len(), 1, "{checks:?}");
    match &checks[0] {
        Verification::NotVerifiable { reason } => {
            assert!(
                reason.contains(&format!("lambda:Invoke {}:live", s.app)),
                "{reason}"
            );
            assert!(
                reason.contains("made up"),
                "the HTTP endpoints are accounted for: {reason}"
            );
            assert!(
                !reason.contains("ServiceError"),
                "no SDK debug dump: {reason}"
            );
        }
        Verification::Healthy { method, .. } => assert_eq!(method, "invoke"),
        other => panic!("unexpected: {other:?}"),
    }
}

#[tokio::test]
async fn verify_invoke_is_used_even_when_the_endpoint_answers() {
    let Some(s) = setup("").await else { return };
    let outcome = deploy(&s, &image(8)).await;
    let target = s
        .target
        .clone()
        .with_verify_method(deployctl_aws::VerifyMethod::Invoke);
    let server = deployctl_testsupport::http_server(200).await;
    let url = server.url.clone();
    let outcome = outcome_with(
        outcome
            .endpoints
            .into_iter()
            .chain([deployctl_core::Endpoint::new("function url", &url, true)])
            .collect(),
    );
    let _ = target.verify(&outcome, &Cancellation::new()).await.unwrap();
    assert_eq!(
        server.hits("/health"),
        0,
        "--verify=invoke made an HTTP request"
    );
    assert!(s.log.calls().iter().any(|c| c.operation == "Invoke"));
}
