//! Deploy locks and conditional updates of the Lambda target, against moto_server from
//! `cargo xtask services up`.
//!
//! Each test deploys its own app (a unique name), so tests run in parallel against one moto.
//! Concurrency is ordered by events (the first deploy has started applying before the second
//! one starts), never by sleeping.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use common::{ACCOUNT, REGION, sdk, unique};
use deployctl_aws::{AwsClients, CallLog, LambdaSpec, LambdaTarget};
use deployctl_core::{
    Acquire, Cancellation, Digest, ErrorKind, Event, EventKind, EventSink, ImageRef, LockOwner,
    LockPolicy, NullSink, Pipeline, PushedImage, RunMode, RunReport, RunRequest, Stage,
    StageOutcome, Target, Timer, break_lock,
};

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

struct NoVars;
impl deployctl_config::VarLookup for NoVars {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

fn spec(app: &str, lambda: &str) -> LambdaSpec {
    let yaml = format!(
        "version: '1'\napp:\n  name: {app}\n  port: 8080\n  health_check_path: /health\nlambda:\n  enabled: true\n  region: {REGION}\n{lambda}"
    );
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&NoVars),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    LambdaSpec::from_config(
        &config,
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

fn uri(app: &str, img: &PushedImage) -> String {
    format!(
        "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app}@{}",
        img.digest()
    )
}

/// Sleeps on tokio, as the binary does.
struct TokioTimer;
impl Timer for TokioTimer {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Records events and says when the apply stage has started (the lock is held by then).
#[derive(Default)]
struct Events {
    all: Mutex<Vec<Event>>,
    applying: tokio::sync::Notify,
}

impl EventSink for Events {
    fn emit(&self, event: Event) {
        if matches!(
            (&event.stage, &event.kind),
            (Stage::Apply(_), EventKind::Started)
        ) {
            self.applying.notify_one();
        }
        self.all.lock().unwrap().push(event);
    }
}

impl Events {
    fn messages(&self) -> Vec<String> {
        self.all
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Message { text } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

async fn run(
    target: &LambdaTarget,
    img: &PushedImage,
    events: &dyn EventSink,
    owner: LockOwner,
    wait: Duration,
) -> RunReport {
    let mut request = RunRequest::deploy_image(RunMode::Apply, img.clone());
    request.verify = false;
    Pipeline::new(events)
        .with_target(target)
        .with_locks(
            LockPolicy::new(owner, wait).ttl(Duration::from_secs(6)),
            &TokioTimer,
        )
        .run(request)
        .await
}

fn errors(report: &RunReport) -> Vec<String> {
    report.errors().iter().flat_map(|e| e.chain()).collect()
}

/// The lock's parameters, by hand: `(name, value)`.
async fn lock_parameters(ssm: &aws_sdk_ssm::Client, path: &str) -> Vec<(String, String)> {
    let got = ssm
        .get_parameters_by_path()
        .path(path)
        .send()
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = got
        .parameters()
        .iter()
        .map(|p| {
            (
                p.name().unwrap_or_default().to_owned(),
                p.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn write_lock(ssm: &aws_sdk_ssm::Client, name: &str, who: &str, expires_ms: u64) {
    ssm.put_parameter()
        .name(name)
        .value(
            serde_json::json!({
                "id": format!("{who}-run"),
                "who": who,
                "acquired_ms": now_ms() - 120_000,
                "expires_ms": expires_ms,
            })
            .to_string(),
        )
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_deploys_take_turns_and_the_second_one_is_live_fully() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("lk");
    let spec = spec(&app, "");
    let (log_a, log_b) = (CallLog::new(), CallLog::new());
    let a = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log_a), spec.clone());
    let b = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log_b), spec.clone());
    let (img_a, img_b) = (image(0xa1), image(0xb2));
    let (events_a, events_b) = (Events::default(), Events::default());
    let owner_a = LockOwner::new("run-a", "alice@ci (pid 1)");
    let owner_b = LockOwner::new("run-b", "bob@laptop (pid 2)");

    let first = run(&a, &img_a, &events_a, owner_a, Duration::from_secs(40));
    let second = async {
        // Start once the first deploy holds the lock and is applying.
        events_a.applying.notified().await;
        run(&b, &img_b, &events_b, owner_b, Duration::from_secs(40)).await
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(55), async {
        tokio::join!(first, second)
    })
    .await
    .expect("both deploys finish within 55 s");
    assert!(first.is_success(), "{:?}", errors(&first));
    assert!(second.is_success(), "{:?}", errors(&second));
    let waited = events_b.messages();
    assert!(
        waited
            .iter()
            .any(|m| m.contains("waiting for the deploy lock") && m.contains("alice@ci (pid 1)")),
        "the second deploy waits, naming the holder: {waited:?}"
    );
    assert!(
        !events_a
            .messages()
            .iter()
            .any(|m| m.contains("waiting for the deploy lock")),
        "the first deploy never waited"
    );

    // Exactly the second image, fully: function, alias, versions in order.
    let raw = AwsClients::new(&sdk);
    let f = raw
        .lambda
        .get_function()
        .function_name(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.code().unwrap().image_uri(),
        Some(uri(&app, &img_b).as_str())
    );
    let alias = raw
        .lambda
        .get_alias()
        .function_name(&app)
        .name("live")
        .send()
        .await
        .unwrap();
    assert_eq!(alias.function_version(), Some("2"));
    let history = b.history().await.unwrap();
    let images: Vec<(String, Option<String>, bool)> = history
        .iter()
        .map(|r| (r.version.clone(), r.image.clone(), r.live))
        .collect();
    assert_eq!(
        images,
        [
            ("1".to_owned(), Some(uri(&app, &img_a)), false),
            ("2".to_owned(), Some(uri(&app, &img_b)), true),
        ],
        "both deploys are in the history, in order"
    );

    // No duplicates: one HTTP API, one permission statement.
    let apis = raw.apigateway.get_apis().send().await.unwrap();
    let ours: Vec<_> = apis
        .items()
        .iter()
        .filter(|api| {
            api.tags()
                .is_some_and(|t| t.get("deployctl:app") == Some(&app))
        })
        .collect();
    assert_eq!(ours.len(), 1, "one HTTP API: {ours:#?}");
    let policy = raw
        .lambda
        .get_policy()
        .function_name(&app)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let sids: Vec<&str> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    assert_eq!(sids, ["deployctl-apigateway"]);

    // Released: no lock parameter is left.
    let lock = b.lock().unwrap();
    assert_eq!(lock.holder().await.unwrap(), None);

    // An unchanged redeploy under the lock: the lock's SSM writes are recorded but are not
    // changes to the app.
    log_b.clear();
    let again = run(
        &b,
        &img_b,
        &NullSink,
        LockOwner::new("run-c", "carol@ci (pid 3)"),
        Duration::ZERO,
    )
    .await;
    assert!(again.is_success(), "{:?}", errors(&again));
    let calls = log_b.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.service == "SSM" && c.operation == "PutParameter" && c.lock),
        "{calls:?}"
    );
    assert_eq!(log_b.mutating(), Vec::new(), "{calls:?}");
}

#[tokio::test]
async fn an_expired_lock_is_taken_over_and_break_removes_the_lock() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("lk");
    let target = LambdaTarget::new(AwsClients::new(&sdk), spec(&app, ""));
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let path = format!("/deployctl/locks/{app}/lambda");
    // A run that died a minute ago.
    write_lock(
        &ssm,
        &format!("{path}/1"),
        "ghost@gone (pid 9)",
        now_ms() - 60_000,
    )
    .await;
    let lock = target.lock().unwrap();
    let ghost = lock.holder().await.unwrap().unwrap();
    assert_eq!(ghost.who, "ghost@gone (pid 9)");
    assert!(ghost.expired(now_ms()));

    let me = LockOwner::new("run-me", "me@here (pid 5)");
    let got = lock
        .try_acquire(&me, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got, Acquire::Taken);
    let params = lock_parameters(&ssm, &path).await;
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [format!("{path}/2").as_str()],
        "the next epoch is ours, the expired one deleted"
    );
    assert!(params[0].1.contains("\"id\":\"run-me\""), "{params:?}");

    // Somebody else now waits: held by us, not expired.
    let other = LockOwner::new("run-other", "other@box (pid 6)");
    match lock
        .try_acquire(&other, Duration::from_secs(30))
        .await
        .unwrap()
    {
        Acquire::Held(h) => assert_eq!(h.who, "me@here (pid 5)"),
        other => panic!("a live lock must not be taken: {other:?}"),
    }
    // Renewing works for us and not for them.
    lock.renew(&me, Duration::from_secs(30)).await.unwrap();
    assert!(lock.renew(&other, Duration::from_secs(30)).await.is_err());

    let said = break_lock(lock).await.unwrap();
    assert!(said.contains("me@here (pid 5)"), "{said}");
    assert!(lock_parameters(&ssm, &path).await.is_empty());
    assert_eq!(lock.holder().await.unwrap(), None);
    let said = break_lock(lock).await.unwrap();
    assert!(said.contains("was not held"), "{said}");
}

#[tokio::test]
async fn a_held_lock_with_no_wait_fails_naming_the_holder_and_changes_nothing() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("lk");
    let log = CallLog::new();
    let target = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log), spec(&app, ""));
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let path = format!("/deployctl/locks/{app}/lambda");
    write_lock(
        &ssm,
        &format!("{path}/1"),
        "alice@laptop (pid 42)",
        now_ms() + 600_000,
    )
    .await;

    let report = run(
        &target,
        &image(1),
        &NullSink,
        LockOwner::new("run-late", "late@ci (pid 7)"),
        Duration::ZERO,
    )
    .await;
    assert_eq!(report.exit_code(), 1);
    let err = match &report.targets[0].apply {
        StageOutcome::Failed(e) => e,
        other => panic!("the apply must fail: {other:?}"),
    };
    assert_eq!(err.kind, ErrorKind::Failed);
    assert!(
        err.message.contains("alice@laptop (pid 42)") && err.message.contains(&path),
        "{}",
        err.message
    );
    assert!(log.mutating().is_empty(), "{:?}", log.mutating());
    // The holder's lock is untouched.
    assert_eq!(lock_parameters(&ssm, &path).await.len(), 1);
    break_lock(target.lock().unwrap()).await.unwrap();
}

/// Before the first `AddPermission` it sees, adds a statement of its own through another
/// client: somebody else changed the policy between the target's read and its write.
#[derive(Debug, Clone)]
struct ChangeThePolicyFirst {
    sdk: aws_types::SdkConfig,
    function: String,
    armed: Arc<AtomicBool>,
}

impl Intercept for ChangeThePolicyFirst {
    fn name(&self) -> &'static str {
        "change-the-policy-first"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let adding = cfg
            .load::<Metadata>()
            .is_some_and(|m| m.name() == "AddPermission");
        if adding && self.armed.swap(false, Ordering::SeqCst) {
            let (sdk, function) = (self.sdk.clone(), self.function.clone());
            // Interceptors are synchronous: the other writer runs on its own runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    aws_sdk_lambda::Client::new(&sdk)
                        .add_permission()
                        .function_name(&function)
                        .qualifier("live")
                        .statement_id("someone-else")
                        .action("lambda:InvokeFunction")
                        .principal("events.amazonaws.com")
                        .send()
                        .await
                        .unwrap();
                });
            })
            .join()
            .unwrap();
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_between_read_and_write_fails_the_deploy_instead_of_overwriting() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("lk");
    let first = LambdaTarget::new(AwsClients::new(&sdk), spec(&app, ""));
    first
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));

    // The next deploy adds the function URL's statement to the existing policy.
    let armed = Arc::new(AtomicBool::new(true));
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .interceptor(ChangeThePolicyFirst {
                sdk: sdk.clone(),
                function: app.clone(),
                armed: armed.clone(),
            })
            .build(),
    );
    let clients = AwsClients::from_clients(
        lambda,
        aws_sdk_iam::Client::new(&sdk),
        aws_sdk_apigatewayv2::Client::new(&sdk),
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
        aws_sdk_ssm::Client::new(&sdk),
    );
    let second = LambdaTarget::new(
        clients,
        spec(
            &app,
            "  function_url:\n    enabled: true\n    auth_type: NONE\n",
        ),
    );
    let err = second
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .expect_err("the stale RevisionId must be refused");
    assert!(!armed.load(Ordering::SeqCst), "the other writer ran");
    assert_eq!(err.kind, ErrorKind::Failed, "{:?}", err.chain());
    assert_eq!(err.kind.exit_code(), 1);
    assert!(
        err.message
            .contains("changed since it was read (another deploy?) — re-run"),
        "{}",
        err.message
    );
    // Nothing was overwritten: the other writer's statement is there, ours is not.
    let policy = AwsClients::new(&sdk)
        .lambda
        .get_policy()
        .function_name(&app)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    let text = policy.policy().unwrap();
    assert!(text.contains("someone-else"), "{text}");
    assert!(!text.contains("deployctl-function-url"), "{text}");
}

#[tokio::test]
async fn duplicates_left_by_older_versions_are_removed_by_the_next_deploy_and_by_destroy() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("lk");
    let log = CallLog::new();
    let target = LambdaTarget::new(AwsClients::with_call_log(&sdk, &log), spec(&app, ""));
    target
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let raw = AwsClients::new(&sdk);
    let ours = |apis: &aws_sdk_apigatewayv2::operation::get_apis::GetApisOutput| -> Vec<String> {
        apis.items()
            .iter()
            .filter(|a| {
                a.tags()
                    .is_some_and(|t| t.get("deployctl:app") == Some(&app))
            })
            .filter_map(|a| a.api_id().map(str::to_owned))
            .collect()
    };
    let kept = ours(&raw.apigateway.get_apis().send().await.unwrap());
    assert_eq!(kept.len(), 1);

    // What two racing deploys of an older deployctl left: a second API with the same name
    // and tags.
    let dup = raw
        .apigateway
        .create_api()
        .name(&app)
        .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Http)
        .tags("deployctl:app", &app)
        .tags("deployctl:managed-by", "deployctl")
        .send()
        .await
        .unwrap();
    let dup = dup.api_id().unwrap().to_owned();
    let plan = target.plan(Some(&image(1))).await.unwrap();
    let deletes: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == deployctl_core::Action::Delete)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(deletes, [dup.as_str()], "the oldest API is kept: {plan:#?}");
    log.clear();
    target
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let ops: Vec<String> = log.mutating().into_iter().map(|c| c.operation).collect();
    assert_eq!(ops, ["DeleteApi"]);
    assert_eq!(ours(&raw.apigateway.get_apis().send().await.unwrap()), kept);

    // The API's statement twice (moto, unlike AWS, accepts a repeated statement id): the
    // next deploy leaves exactly one.
    let statements = || async {
        let p = raw
            .lambda
            .get_policy()
            .function_name(&app)
            .qualifier("live")
            .send()
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(p.policy().unwrap()).unwrap();
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["Sid"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    raw.lambda
        .add_permission()
        .function_name(&app)
        .qualifier("live")
        .statement_id("deployctl-apigateway")
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .send()
        .await
        .unwrap();
    assert_eq!(statements().await.len(), 2);
    target
        .apply(&image(1), &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    assert_eq!(statements().await, ["deployctl-apigateway"]);

    // Again, and destroy removes both APIs.
    raw.apigateway
        .create_api()
        .name(&app)
        .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Http)
        .tags("deployctl:app", &app)
        .tags("deployctl:managed-by", "deployctl")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ours(&raw.apigateway.get_apis().send().await.unwrap()).len(),
        2
    );
    target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    assert!(ours(&raw.apigateway.get_apis().send().await.unwrap()).is_empty());
    assert!(
        raw.lambda
            .get_function()
            .function_name(&app)
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_racing_takers_exactly_one_gets_a_free_or_an_expired_lock() {
    let Some(sdk) = sdk().await else { return };
    let app = unique("lk");
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let path = format!("/deployctl/locks/{app}/lambda");
    // Each taker is its own run with its own clients, as separate processes would be.
    let targets: Vec<LambdaTarget> = (0..6)
        .map(|_| LambdaTarget::new(AwsClients::new(&sdk), spec(&app, "")))
        .collect();
    let race = |round: &'static str| {
        let targets = &targets;
        async move {
            let barrier = tokio::sync::Barrier::new(targets.len());
            let barrier = &barrier;
            let got =
                futures::future::join_all(targets.iter().enumerate().map(|(i, t)| async move {
                    let me = LockOwner::new(format!("{round}-{i}"), format!("taker {i}"));
                    barrier.wait().await;
                    let got = t
                        .lock()
                        .unwrap()
                        .try_acquire(&me, Duration::from_secs(30))
                        .await
                        .unwrap();
                    (me.id, got)
                }))
                .await;
            got.into_iter()
                .filter(|(_, g)| *g == Acquire::Taken)
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        }
    };

    let winners = race("free").await;
    assert_eq!(winners.len(), 1, "{winners:?}");
    let params = lock_parameters(&ssm, &path).await;
    assert_eq!(params.len(), 1, "{params:?}");
    assert!(params[0].1.contains(&winners[0]), "{params:?}");

    // The winner dies: its lease is over.
    break_lock(targets[0].lock().unwrap()).await.unwrap();
    write_lock(&ssm, &format!("{path}/4"), "dead@box (pid 1)", now_ms() - 1).await;
    let winners = race("expired").await;
    assert_eq!(winners.len(), 1, "{winners:?}");
    let params = lock_parameters(&ssm, &path).await;
    assert_eq!(params.len(), 1, "only the new epoch is left: {params:?}");
    assert_eq!(params[0].0, format!("{path}/5"));
    assert!(params[0].1.contains(&winners[0]), "{params:?}");
    break_lock(targets[0].lock().unwrap()).await.unwrap();
}
