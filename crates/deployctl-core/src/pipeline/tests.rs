//! Orchestration tests with in-memory adapters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use async_trait::async_trait;

use super::*;
use crate::event::VecSink;
use crate::image::Digest;
use crate::plan::{Action, FieldChange, ResourceChange};
use crate::secret::Secret;
use crate::target::{LogQuery, LogSink, RollbackOutcome, TargetStatus};

const ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Builder {
    fail: bool,
    calls: AtomicUsize,
}

#[async_trait]
impl ImageBuilder for Builder {
    async fn build(
        &self,
        spec: &BuildSpec,
        _events: &dyn EventSink,
        _cancel: &Cancellation,
    ) -> Result<BuiltImage, StageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(StageError::new(
                ErrorKind::InvalidInput,
                "step 2/3 RUN false failed",
            ));
        }
        Ok(BuiltImage::new(
            Digest::parse(ID).unwrap(),
            spec.tags.clone(),
            None,
        ))
    }
}

#[derive(Default)]
struct Pusher {
    seen_credentials: Mutex<Vec<Option<String>>>,
}

#[async_trait]
impl ImagePusher for Pusher {
    async fn push(
        &self,
        _image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        _events: &dyn EventSink,
        _cancel: &Cancellation,
    ) -> Result<PushedImage, StageError> {
        self.seen_credentials
            .lock()
            .unwrap()
            .push(credentials.map(|c| c.source.clone()));
        Ok(PushedImage::new(
            destination.clone(),
            Digest::parse(DIGEST).unwrap(),
            None,
        ))
    }

    /// The registry holds `127.0.0.1:5000/app:1.0` as DIGEST, and nothing else.
    async fn resolve(
        &self,
        reference: &ImageRef,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<PushedImage, StageError> {
        self.seen_credentials
            .lock()
            .unwrap()
            .push(credentials.map(|c| c.source.clone()));
        let held = reference.repository == "app"
            && (reference.tag.as_deref() == Some("1.0")
                || reference
                    .digest
                    .as_ref()
                    .is_some_and(|d| d.as_str() == DIGEST));
        if !held {
            return Err(StageError::new(
                ErrorKind::InvalidInput,
                format!("the registry has no image {reference}"),
            ));
        }
        Ok(PushedImage::new(
            reference.clone(),
            Digest::parse(DIGEST).unwrap(),
            None,
        ))
    }
}

/// [`Pusher`] whose lookups wait on a barrier first.
struct WaitingPusher<'b> {
    inner: Pusher,
    barrier: &'b Barrier,
    parties: usize,
}

#[async_trait]
impl ImagePusher for WaitingPusher<'_> {
    async fn push(
        &self,
        image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<PushedImage, StageError> {
        self.inner
            .push(image, destination, credentials, events, cancel)
            .await
    }

    async fn resolve(
        &self,
        reference: &ImageRef,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<PushedImage, StageError> {
        self.barrier.wait(self.parties).await;
        self.inner.resolve(reference, credentials).await
    }
}

struct Creds {
    name: &'static str,
    registry: &'static str,
}

#[async_trait]
impl CredentialSource for Creds {
    fn name(&self) -> &str {
        self.name
    }
    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError> {
        Ok((registry == self.registry)
            .then(|| RegistryCredentials::new(registry, "u", Secret::new("pw"), self.name)))
    }
}

/// Completes once `n` parties have arrived: proves that targets run concurrently, since a
/// sequential run would never let the first party through.
#[derive(Default)]
struct Barrier {
    arrived: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl Barrier {
    async fn wait(&self, n: usize) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        std::future::poll_fn(|cx| {
            if self.arrived.load(Ordering::SeqCst) >= n {
                for w in self.wakers.lock().unwrap().drain(..) {
                    w.wake();
                }
                Poll::Ready(())
            } else {
                self.wakers.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

struct FakeTarget<'b> {
    name: &'static str,
    existing: bool,
    fail_apply: bool,
    barrier: Option<(&'b Barrier, usize)>,
    /// Waited on by `plan`.
    plan_barrier: Option<(&'b Barrier, usize)>,
    applied: Mutex<Vec<String>>,
    cancel_on_apply: Option<Cancellation>,
}

impl<'b> FakeTarget<'b> {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            existing: false,
            fail_apply: false,
            barrier: None,
            plan_barrier: None,
            applied: Mutex::new(Vec::new()),
            cancel_on_apply: None,
        }
    }
}

#[async_trait]
impl Target for FakeTarget<'_> {
    fn name(&self) -> &str {
        self.name
    }

    async fn plan(&self, image: Option<&PushedImage>) -> Result<Plan, StageError> {
        if let Some((barrier, n)) = self.plan_barrier {
            barrier.wait(n).await;
        }
        let mut plan = Plan::new(self.name);
        let action = match (self.existing, image) {
            (false, _) => Action::Create,
            (true, Some(i)) if i.digest().as_str() == DIGEST => Action::Unchanged,
            (true, _) => Action::Update {
                fields: vec![FieldChange::new(
                    "image",
                    None,
                    image.map(|i| i.reference.to_string()),
                )],
            },
        };
        plan.push(ResourceChange::new("function", "app", action, "test"));
        Ok(plan)
    }

    async fn apply(
        &self,
        image: &PushedImage,
        _events: &dyn EventSink,
        _cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError> {
        if let Some(c) = &self.cancel_on_apply {
            c.cancel();
        }
        if let Some((barrier, n)) = self.barrier {
            barrier.wait(n).await;
        }
        if self.fail_apply {
            return Err(StageError::new(
                ErrorKind::Failed,
                format!("{} apply failed", self.name),
            ));
        }
        self.applied
            .lock()
            .unwrap()
            .push(image.reference.to_string());
        // As a real target does: the plan is made again from the state now.
        Ok(ApplyOutcome::new(
            self.plan(Some(image)).await?,
            Some("1".into()),
            Vec::new(),
        ))
    }

    async fn status(&self) -> Result<TargetStatus, StageError> {
        Ok(TargetStatus::new(self.name))
    }

    async fn logs(
        &self,
        _query: &LogQuery,
        _sink: &dyn LogSink,
        _cancel: &Cancellation,
    ) -> Result<(), StageError> {
        Ok(())
    }

    async fn destroy_plan(&self) -> Result<Plan, StageError> {
        Ok(Plan::new(self.name))
    }

    async fn destroy(
        &self,
        _events: &dyn EventSink,
        _cancel: &Cancellation,
    ) -> Result<Plan, StageError> {
        Ok(Plan::new(self.name))
    }

    async fn rollback(
        &self,
        _to: Option<&str>,
        _events: &dyn EventSink,
        _cancel: &Cancellation,
    ) -> Result<RollbackOutcome, StageError> {
        Ok(RollbackOutcome::new(None, "1"))
    }
}

fn builder() -> Builder {
    Builder {
        fail: false,
        calls: AtomicUsize::new(0),
    }
}

fn spec() -> BuildSpec {
    BuildSpec::new("/app", "Dockerfile")
}

fn dest() -> ImageRef {
    ImageRef::parse("127.0.0.1:5000/app:1.0").unwrap()
}

fn run(p: &Pipeline<'_>, req: RunRequest) -> RunReport {
    futures::executor::block_on(p.run(req))
}

fn stages(events: &VecSink) -> Vec<String> {
    events
        .events()
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                EventKind::Started => "started",
                EventKind::Finished { .. } => "finished",
                EventKind::Failed { .. } => "failed",
                EventKind::Skipped { .. } => "skipped",
                _ => "other",
            };
            format!("{} {kind}", e.stage)
        })
        .collect()
}

#[test]
fn full_run_builds_pushes_and_deploys_the_digest_everywhere() {
    let events = VecSink::new();
    let (b, p) = (builder(), Pusher::default());
    let (lambda, k8s) = (FakeTarget::new("lambda"), FakeTarget::new("k8s"));
    let creds = Creds {
        name: "config",
        registry: "127.0.0.1:5000",
    };
    let pipeline = Pipeline::new(&events)
        .with_builder(&b)
        .with_pusher(&p)
        .with_credentials(&creds)
        .with_target(&lambda)
        .with_target(&k8s);
    let report = run(&pipeline, RunRequest::full(RunMode::Apply, spec(), dest()));
    assert!(report.is_success(), "{:?}", report.errors());
    assert_eq!(report.exit_code(), 0);
    let want = format!("127.0.0.1:5000/app:1.0@{DIGEST}");
    assert_eq!(*lambda.applied.lock().unwrap(), vec![want.clone()]);
    assert_eq!(*k8s.applied.lock().unwrap(), vec![want]);
    assert_eq!(
        *p.seen_credentials.lock().unwrap(),
        vec![Some("config".to_owned())]
    );
    let s = stages(&events);
    assert_eq!(
        &s[..4],
        [
            "build started",
            "build finished",
            "push started",
            "push finished"
        ]
    );
    for t in ["lambda", "k8s"] {
        for st in ["plan", "apply", "verify"] {
            assert!(s.contains(&format!("{st} {t} finished")), "{st} {t}: {s:?}");
        }
    }
}

#[test]
fn credentials_are_asked_in_order_and_may_be_absent() {
    let events = VecSink::new();
    let (b, p) = (builder(), Pusher::default());
    let other = Creds {
        name: "ecr",
        registry: "elsewhere",
    };
    let pipeline = Pipeline::new(&events)
        .with_builder(&b)
        .with_pusher(&p)
        .with_credentials(&other);
    let report = run(&pipeline, RunRequest::full(RunMode::Apply, spec(), dest()));
    assert!(report.is_success());
    assert_eq!(*p.seen_credentials.lock().unwrap(), vec![None]);
}

#[test]
fn dry_run_plans_every_target_and_changes_nothing() {
    let events = VecSink::new();
    let (b, p) = (builder(), Pusher::default());
    let lambda = FakeTarget::new("lambda");
    let pipeline = Pipeline::new(&events)
        .with_builder(&b)
        .with_pusher(&p)
        .with_target(&lambda);
    let report = run(&pipeline, RunRequest::full(RunMode::DryRun, spec(), dest()));
    assert!(report.is_success());
    assert_eq!(
        b.calls.load(Ordering::SeqCst),
        0,
        "a dry run must not build"
    );
    assert!(p.seen_credentials.lock().unwrap().is_empty(), "nor push");
    assert!(lambda.applied.lock().unwrap().is_empty(), "nor apply");
    let plan = report.targets[0].plan.done().unwrap();
    assert_eq!(plan.changes[0].action, Action::Create);
    assert!(matches!(report.targets[0].apply, StageOutcome::Skipped(_)));
}

#[test]
fn build_failure_stops_the_run_before_any_target() {
    let events = VecSink::new();
    let b = Builder {
        fail: true,
        calls: AtomicUsize::new(0),
    };
    let p = Pusher::default();
    let lambda = FakeTarget::new("lambda");
    let pipeline = Pipeline::new(&events)
        .with_builder(&b)
        .with_pusher(&p)
        .with_target(&lambda);
    let report = run(&pipeline, RunRequest::full(RunMode::Apply, spec(), dest()));
    assert_eq!(report.exit_code(), 2);
    assert!(matches!(report.push, StageOutcome::NotReached));
    assert!(matches!(report.targets[0].plan, StageOutcome::NotReached));
    assert!(lambda.applied.lock().unwrap().is_empty());
    let failed = events
        .events()
        .into_iter()
        .find(|e| matches!(e.kind, EventKind::Failed { .. }))
        .unwrap();
    assert_eq!(failed.stage, Stage::Build);
}

#[test]
fn one_target_failing_does_not_hide_the_other() {
    let events = VecSink::new();
    let mut lambda = FakeTarget::new("lambda");
    lambda.fail_apply = true;
    let k8s = FakeTarget::new("k8s");
    let image = PushedImage::new(dest(), Digest::parse(DIGEST).unwrap(), None);
    let pipeline = Pipeline::new(&events)
        .with_target(&lambda)
        .with_target(&k8s);
    let report = run(&pipeline, RunRequest::deploy_image(RunMode::Apply, image));
    assert_eq!(report.exit_code(), 1);
    assert!(report.targets[0].apply.error().is_some());
    assert!(report.targets[1].apply.done().is_some());
    assert!(matches!(report.targets[0].verify, StageOutcome::NotReached));
    assert_eq!(k8s.applied.lock().unwrap().len(), 1);
}

#[test]
fn targets_apply_in_parallel() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let barrier = Barrier::default();
        let events = VecSink::new();
        let mut a = FakeTarget::new("lambda");
        a.barrier = Some((&barrier, 2));
        let mut b = FakeTarget::new("k8s");
        b.barrier = Some((&barrier, 2));
        let image = PushedImage::new(dest(), Digest::parse(DIGEST).unwrap(), None);
        let pipeline = Pipeline::new(&events).with_target(&a).with_target(&b);
        let report = run(&pipeline, RunRequest::deploy_image(RunMode::Apply, image));
        let _ = tx.send(report.is_success());
    });
    // A sequential pipeline would wait on the barrier forever.
    let ok = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("targets did not apply concurrently");
    assert!(ok);
}

#[test]
fn unchanged_deploy_plans_unchanged() {
    let events = VecSink::new();
    let mut lambda = FakeTarget::new("lambda");
    lambda.existing = true;
    let image = PushedImage::new(dest(), Digest::parse(DIGEST).unwrap(), None);
    let pipeline = Pipeline::new(&events).with_target(&lambda);
    let report = run(&pipeline, RunRequest::deploy_image(RunMode::Apply, image));
    let outcome = report.targets[0].apply.done().unwrap();
    assert!(outcome.plan.is_noop());
}

#[test]
fn cancellation_stops_between_stages_with_exit_130() {
    let events = VecSink::new();
    let cancel = Cancellation::new();
    let (b, p) = (builder(), Pusher::default());
    let pipeline = Pipeline::new(&events)
        .with_builder(&b)
        .with_pusher(&p)
        .with_cancellation(cancel.clone());
    cancel.cancel();
    let report = run(&pipeline, RunRequest::full(RunMode::Apply, spec(), dest()));
    assert_eq!(report.exit_code(), 130);
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);
    assert!(matches!(report.push, StageOutcome::NotReached));
}

#[test]
fn cancel_during_apply_skips_verification_of_later_stages() {
    let events = VecSink::new();
    let cancel = Cancellation::new();
    let mut lambda = FakeTarget::new("lambda");
    lambda.cancel_on_apply = Some(cancel.clone());
    let image = PushedImage::new(dest(), Digest::parse(DIGEST).unwrap(), None);
    let pipeline = Pipeline::new(&events)
        .with_target(&lambda)
        .with_cancellation(cancel);
    let report = run(&pipeline, RunRequest::deploy_image(RunMode::Apply, image));
    // The apply that was running finishes; the verify after it does not start.
    assert!(report.targets[0].apply.done().is_some());
    assert_eq!(
        report.targets[0].verify.error().map(|e| e.kind),
        Some(ErrorKind::Cancelled)
    );
    assert_eq!(report.exit_code(), 130);
}

#[test]
fn deploy_without_image_is_invalid_input() {
    let events = VecSink::new();
    let lambda = FakeTarget::new("lambda");
    let pipeline = Pipeline::new(&events).with_target(&lambda);
    let mut req = RunRequest::deploy_image(
        RunMode::Apply,
        PushedImage::new(dest(), Digest::parse(DIGEST).unwrap(), None),
    );
    req.image = None;
    let report = run(&pipeline, req);
    assert_eq!(report.exit_code(), 2);
    assert!(lambda.applied.lock().unwrap().is_empty());
}

#[test]
fn missing_builder_is_reported_not_panicked() {
    let events = VecSink::new();
    let pipeline = Pipeline::new(&events);
    let report = run(&pipeline, RunRequest::full(RunMode::Apply, spec(), dest()));
    assert_eq!(report.exit_code(), 2);
    assert!(report.errors()[0].message.contains("image builder"));
}

#[test]
fn an_image_pushed_earlier_is_looked_up_then_deployed_by_digest() {
    let events = VecSink::new();
    let p = Pusher::default();
    let lambda = FakeTarget::new("lambda");
    let pipeline = Pipeline::new(&events).with_pusher(&p).with_target(&lambda);
    let report = run(
        &pipeline,
        RunRequest::deploy_registry_image(RunMode::Apply, dest()),
    );
    assert!(report.is_success(), "{:?}", report.errors());
    assert_eq!(
        report.push.done().map(|i| i.digest().as_str().to_owned()),
        Some(DIGEST.to_owned())
    );
    assert_eq!(
        *lambda.applied.lock().unwrap(),
        vec![format!("127.0.0.1:5000/app:1.0@{DIGEST}")]
    );
    let s = stages(&events);
    assert_eq!(&s[1..3], ["push started", "push finished"], "{s:?}");
}

#[test]
fn a_digest_the_registry_does_not_hold_changes_no_target() {
    let events = VecSink::new();
    let p = Pusher::default();
    let lambda = FakeTarget::new("lambda");
    let pipeline = Pipeline::new(&events).with_pusher(&p).with_target(&lambda);
    let missing = ImageRef::parse(&format!("127.0.0.1:5000/other@{DIGEST}")).unwrap();
    let report = run(
        &pipeline,
        RunRequest::deploy_registry_image(RunMode::Apply, missing),
    );
    assert_eq!(report.exit_code(), 2);
    assert!(lambda.applied.lock().unwrap().is_empty());
    assert!(matches!(report.targets[0].plan, StageOutcome::NotReached));
}

#[test]
fn a_digest_is_looked_up_while_the_targets_plan_and_applied_only_after() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let barrier = Barrier::default();
        let events = VecSink::new();
        let p = WaitingPusher {
            inner: Pusher::default(),
            barrier: &barrier,
            parties: 3,
        };
        let mut a = FakeTarget::new("lambda");
        a.plan_barrier = Some((&barrier, 3));
        let mut b = FakeTarget::new("k8s");
        b.plan_barrier = Some((&barrier, 3));
        let pipeline = Pipeline::new(&events)
            .with_pusher(&p)
            .with_target(&a)
            .with_target(&b);
        let pinned = ImageRef::parse(&format!("127.0.0.1:5000/app@{DIGEST}")).unwrap();
        let report = run(
            &pipeline,
            RunRequest::deploy_registry_image(RunMode::Apply, pinned),
        );
        let applied = a.applied.lock().unwrap().clone();
        let _ = tx.send((report.is_success(), applied, stages(&events)));
    });
    // Plans made only after the lookup would wait on the barrier forever.
    let (ok, applied, s) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the lookup and the plans did not run side by side");
    assert!(ok);
    assert_eq!(applied, vec![format!("127.0.0.1:5000/app@{DIGEST}")]);
    let pos = |what: &str| s.iter().position(|x| x == what).unwrap();
    assert!(pos("push finished") < pos("apply lambda started"), "{s:?}");
}

#[test]
fn a_deploy_that_cannot_be_recorded_is_a_warning_and_still_succeeds() {
    let events = VecSink::new();
    let (b, p) = (builder(), Pusher::default());
    // The fake keeps no records: the default `record_deploy` says so.
    let lambda = FakeTarget::new("lambda");
    let pipeline = Pipeline::new(&events)
        .with_service("app")
        .with_builder(&b)
        .with_pusher(&p)
        .with_target(&lambda);
    let warnings = |events: &VecSink| -> Vec<String> {
        events
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Message { text } if text.starts_with("warning:") => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let report = run(&pipeline, RunRequest::full(RunMode::DryRun, spec(), dest()));
    assert!(report.is_success());
    assert!(warnings(&events).is_empty(), "a dry run records nothing");

    let report = run(&pipeline, RunRequest::full(RunMode::Apply, spec(), dest()));
    assert!(report.is_success(), "{:?}", report.errors());
    let stages: Vec<&str> = report.targets[0]
        .stage_ms
        .iter()
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(stages, ["plan", "apply", "verify"]);
    let w = warnings(&events);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("target lambda does not record deploys"),
        "{w:?}"
    );
}
