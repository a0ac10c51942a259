//! The orchestration: build → push → (per target, in parallel) plan → apply → verify.

use std::future::Future;
use std::time::Instant;

use crate::cancel::Cancellation;
use crate::error::{ErrorKind, StageError};
use crate::event::{Event, EventKind, EventSink, Stage, duration_ms};
use crate::hooks::HookPhase;
use crate::image::{BuildSpec, BuiltImage, ImageRef, PushedImage, RegistryCredentials};
use crate::lock::{LockPolicy, Timer, holding};
use crate::plan::Plan;
use crate::target::{
    ApplyOutcome, CredentialSource, ImageBuilder, ImagePusher, RollbackOutcome, Target,
    Verification,
};

/// Whether a run changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Plan every target; build, push and apply nothing.
    DryRun,
    /// Carry the run out.
    Apply,
}

/// What one run should do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunRequest {
    /// Dry run or apply.
    pub mode: RunMode,
    /// Build this image first (`None`: no build).
    pub build: Option<BuildSpec>,
    /// Push the built image here (`None`: no push).
    pub push_to: Option<ImageRef>,
    /// The image to deploy when this run neither builds nor pushes (a digest from an
    /// earlier push).
    pub image: Option<PushedImage>,
    /// Deploy what the registry holds as this reference (a tag, or a digest to confirm):
    /// looked up with the pusher before any target is touched.
    pub resolve: Option<ImageRef>,
    /// Apply to the targets (false for a build- or push-only run).
    pub apply: bool,
    /// Verify endpoints after applying.
    pub verify: bool,
}

impl RunRequest {
    /// A request that builds `build`, pushes to `push_to`, applies every target and verifies.
    pub fn full(mode: RunMode, build: BuildSpec, push_to: ImageRef) -> Self {
        Self {
            mode,
            build: Some(build),
            push_to: Some(push_to),
            image: None,
            resolve: None,
            apply: true,
            verify: true,
        }
    }

    /// A request that only builds (`deployctl build`).
    pub fn build_only(build: BuildSpec) -> Self {
        Self {
            mode: RunMode::Apply,
            build: Some(build),
            push_to: None,
            image: None,
            resolve: None,
            apply: false,
            verify: false,
        }
    }

    /// A request that builds and pushes, deploying nothing (`deployctl push`).
    pub fn build_and_push(build: BuildSpec, push_to: ImageRef) -> Self {
        Self {
            mode: RunMode::Apply,
            build: Some(build),
            push_to: Some(push_to),
            image: None,
            resolve: None,
            apply: false,
            verify: false,
        }
    }

    /// A request that builds and deploys without pushing: for targets on the engine that
    /// built the image (the local target), which receive it pinned by its image ID.
    pub fn build_and_deploy_locally(mode: RunMode, build: BuildSpec) -> Self {
        Self {
            mode,
            build: Some(build),
            push_to: None,
            image: None,
            resolve: None,
            apply: true,
            verify: true,
        }
    }

    /// A request that deploys an already pushed image.
    pub fn deploy_image(mode: RunMode, image: PushedImage) -> Self {
        Self {
            mode,
            build: None,
            push_to: None,
            image: Some(image),
            resolve: None,
            apply: true,
            verify: true,
        }
    }

    /// A request that deploys the image the registry holds as `reference` — a tag pushed
    /// earlier (`deploy --update`), or `repository@digest` (`deploy --image`), which is
    /// confirmed to exist before any target changes.
    pub fn deploy_registry_image(mode: RunMode, reference: ImageRef) -> Self {
        Self {
            mode,
            build: None,
            push_to: None,
            image: None,
            resolve: Some(reference),
            apply: true,
            verify: true,
        }
    }
}

/// How one stage ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum StageOutcome<T> {
    /// It ran and produced `T`.
    Done(T),
    /// It was not asked for, or a dry run skipped it.
    Skipped(String),
    /// It failed.
    Failed(StageError),
    /// An earlier stage failed or the run was cancelled first.
    NotReached,
}

impl<T> StageOutcome<T> {
    /// The value, if the stage ran.
    pub fn done(&self) -> Option<&T> {
        match self {
            StageOutcome::Done(t) => Some(t),
            _ => None,
        }
    }

    /// The error, if the stage failed.
    pub fn error(&self) -> Option<&StageError> {
        match self {
            StageOutcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// What happened on one target.
#[derive(Debug)]
#[non_exhaustive]
pub struct TargetReport {
    /// Target name.
    pub target: String,
    /// The plan it made.
    pub plan: StageOutcome<Plan>,
    /// The `pre_deploy` hook steps (the number that ran).
    pub pre_deploy: StageOutcome<usize>,
    /// The apply.
    pub apply: StageOutcome<ApplyOutcome>,
    /// The verification of each endpoint.
    pub verify: StageOutcome<Vec<Verification>>,
    /// The `post_deploy` hook steps (the number that ran).
    pub post_deploy: StageOutcome<usize>,
    /// The rollback a failed `post_deploy` hook triggered.
    pub rollback: StageOutcome<RollbackOutcome>,
    /// Wall time spent on this target, in milliseconds.
    pub duration_ms: u64,
    /// Each stage that ran on this target and how long it took, in milliseconds, in order
    /// (what the deploy's [`DeployRecord`] holds).
    pub stage_ms: Vec<(String, u64)>,
}

impl TargetReport {
    /// A report with nothing reached yet.
    fn empty(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            plan: StageOutcome::NotReached,
            pre_deploy: StageOutcome::NotReached,
            apply: StageOutcome::NotReached,
            verify: StageOutcome::NotReached,
            post_deploy: StageOutcome::NotReached,
            rollback: StageOutcome::NotReached,
            duration_ms: 0,
            stage_ms: Vec::new(),
        }
    }

    /// The errors of its stages, in stage order (plan, pre-deploy hooks, apply, verify,
    /// post-deploy hooks, rollback).
    pub fn errors(&self) -> impl Iterator<Item = &StageError> {
        [
            self.plan.error(),
            self.pre_deploy.error(),
            self.apply.error(),
            self.verify.error(),
            self.post_deploy.error(),
            self.rollback.error(),
        ]
        .into_iter()
        .flatten()
    }
}

/// What a run did, stage by stage.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunReport {
    /// The build.
    pub build: StageOutcome<BuiltImage>,
    /// The push.
    pub push: StageOutcome<PushedImage>,
    /// Each target, in the order given to the pipeline.
    pub targets: Vec<TargetReport>,
}

impl RunReport {
    /// Every error of the run.
    pub fn errors(&self) -> Vec<&StageError> {
        let mut out: Vec<&StageError> = [self.build.error(), self.push.error()]
            .into_iter()
            .flatten()
            .collect();
        out.extend(self.targets.iter().flat_map(TargetReport::errors));
        out
    }

    /// Whether every stage that ran succeeded.
    pub fn is_success(&self) -> bool {
        self.errors().is_empty()
    }

    /// The worst failure: interrupted over environment over invalid input over failed;
    /// the first of equal rank. `None` when all succeeded.
    pub fn worst_error(&self) -> Option<&StageError> {
        let rank = |k: ErrorKind| match k {
            ErrorKind::Cancelled => 4,
            ErrorKind::Environment => 3,
            ErrorKind::InvalidInput => 2,
            _ => 1,
        };
        self.errors().into_iter().rev().max_by_key(|e| rank(e.kind))
    }

    /// The exit code of the worst failure (see [`RunReport::worst_error`]); 0 when all
    /// succeeded.
    pub fn exit_code(&self) -> i32 {
        self.worst_error().map_or(0, |e| e.kind.exit_code())
    }
}

/// Runs the stages over the adapters it is given.
///
/// ```
/// # use deployctl_core::*;
/// # fn f(target: &dyn Target, image: PushedImage) -> RunReport {
/// let events = VecSink::new();
/// let pipeline = Pipeline::new(&events).with_target(target);
/// futures::executor::block_on(pipeline.run(RunRequest::deploy_image(RunMode::DryRun, image)))
/// # }
/// ```
#[non_exhaustive]
pub struct Pipeline<'a> {
    builder: Option<&'a dyn ImageBuilder>,
    pusher: Option<&'a dyn ImagePusher>,
    credentials: Vec<&'a dyn CredentialSource>,
    targets: Vec<&'a dyn Target>,
    events: &'a dyn EventSink,
    cancel: Cancellation,
    locking: Option<(LockPolicy, &'a dyn Timer)>,
    hooks: Option<hook_stage::HookSetup<'a>>,
    service: Option<String>,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("builder", &self.builder.is_some())
            .field("pusher", &self.pusher.is_some())
            .field(
                "credentials",
                &self
                    .credentials
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "targets",
                &self.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'a> Pipeline<'a> {
    /// A pipeline with no adapters that reports to `events`.
    pub fn new(events: &'a dyn EventSink) -> Self {
        Self {
            builder: None,
            pusher: None,
            credentials: Vec::new(),
            targets: Vec::new(),
            events,
            cancel: Cancellation::new(),
            locking: None,
            hooks: None,
            service: None,
        }
    }

    /// Uses `builder` for the build stage.
    pub fn with_builder(mut self, builder: &'a dyn ImageBuilder) -> Self {
        self.builder = Some(builder);
        self
    }

    /// Uses `pusher` for the push stage.
    pub fn with_pusher(mut self, pusher: &'a dyn ImagePusher) -> Self {
        self.pusher = Some(pusher);
        self
    }

    /// Adds a credential source; sources are asked in the order added.
    pub fn with_credentials(mut self, source: &'a dyn CredentialSource) -> Self {
        self.credentials.push(source);
        self
    }

    /// Records every deploy (not dry runs) of `service` in each target's own history
    /// ([`Target::record_deploy`]), best effort: a record that cannot be written is a
    /// warning, never a failed deploy. Without it nothing is recorded.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Adds a deploy target.
    pub fn with_target(mut self, target: &'a dyn Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Uses `cancel` (the binary cancels it on Ctrl-C).
    pub fn with_cancellation(mut self, cancel: Cancellation) -> Self {
        self.cancel = cancel;
        self
    }

    /// Holds each target's [`DeployLock`](crate::DeployLock) around its apply and verify,
    /// as `policy` says, sleeping on `timer`. Without it no lock is taken: an embedder that
    /// never runs two deploys of one app at once may leave it off.
    pub fn with_locks(mut self, policy: LockPolicy, timer: &'a dyn Timer) -> Self {
        self.locking = Some((policy, timer));
        self
    }

    fn emit(&self, stage: &Stage, kind: EventKind) {
        self.events.emit(Event::now(stage.clone(), kind));
    }

    /// Runs `work` as `stage`: emits started, then finished or failed with its duration.
    async fn stage<T, F, S>(&self, stage: Stage, summary: S, work: F) -> Result<T, StageError>
    where
        F: Future<Output = Result<T, StageError>>,
        S: FnOnce(&T) -> String,
    {
        if self.cancel.is_cancelled() {
            let err = StageError::cancelled(&stage.to_string());
            self.emit(&stage, failed(0, &err));
            return Err(err);
        }
        self.emit(&stage, EventKind::Started);
        let start = Instant::now();
        let result = work.await;
        let ms = duration_ms(start.elapsed());
        match &result {
            Ok(value) => self.emit(
                &stage,
                EventKind::Finished {
                    duration_ms: ms,
                    summary: summary(value),
                },
            ),
            Err(err) => self.emit(&stage, failed(ms, err)),
        }
        result
    }

    fn skip<T>(&self, stage: Stage, reason: &str) -> StageOutcome<T> {
        self.emit(
            &stage,
            EventKind::Skipped {
                reason: reason.to_owned(),
            },
        );
        StageOutcome::Skipped(reason.to_owned())
    }

    /// Carries out `request`. Never panics; every failure is in the report.
    pub async fn run(&self, request: RunRequest) -> RunReport {
        let dry = request.mode == RunMode::DryRun;
        let mut report = RunReport {
            build: StageOutcome::NotReached,
            push: StageOutcome::NotReached,
            targets: Vec::new(),
        };

        // Build.
        report.build = match (&request.build, dry) {
            (None, _) => self.skip(Stage::Build, "not requested"),
            (Some(_), true) => self.skip(Stage::Build, "dry run"),
            (Some(spec), false) => match self.builder {
                None => StageOutcome::Failed(missing("build", "image builder")),
                Some(builder) => to_outcome(
                    self.stage(
                        Stage::Build,
                        |img: &BuiltImage| format!("built {}", img.id.short()),
                        builder.build(spec, self.events, &self.cancel),
                    )
                    .await,
                ),
            },
        };
        if report.build.error().is_some() {
            report.targets = self.not_reached();
            return report;
        }

        // Push (or, for an image pushed earlier, the lookup that confirms it: a read, so a
        // dry run makes it too).
        report.push = match (&request.push_to, &request.resolve, dry) {
            (None, Some(reference), _) => {
                // A digest is known before the lookup: the targets plan meanwhile, and
                // change nothing until the registry has confirmed it.
                if let (Some(digest), true) = (&reference.digest, request.apply) {
                    let provisional = PushedImage::new(reference.clone(), digest.clone(), None);
                    return self
                        .plan_while_looking_up(report, reference, &provisional, dry, request.verify)
                        .await;
                }
                self.lookup(reference).await
            }
            (None, None, _) => self.skip(Stage::Push, "not requested"),
            (Some(_), _, true) => self.skip(Stage::Push, "dry run"),
            (Some(dest), _, false) => {
                let built = match (&report.build, &request.image) {
                    (StageOutcome::Done(b), _) => Some(b.clone()),
                    _ => None,
                };
                match (built, self.pusher) {
                    (None, _) => StageOutcome::Failed(
                        StageError::new(
                            ErrorKind::InvalidInput,
                            format!("nothing to push to {dest}: this run built no image"),
                        )
                        .with_hint(
                            "build and push in one run (`deploy --all`), or push after `build`",
                        ),
                    ),
                    (_, None) => StageOutcome::Failed(missing("push", "image pusher")),
                    (Some(built), Some(pusher)) => to_outcome(
                        self.stage(
                            Stage::Push,
                            |p: &PushedImage| format!("pushed {}", p.reference),
                            async {
                                let creds = self.find_credentials(&dest.registry).await?;
                                pusher
                                    .push(&built, dest, creds.as_ref(), self.events, &self.cancel)
                                    .await
                            },
                        )
                        .await,
                    ),
                }
            }
        };
        if report.push.error().is_some() {
            report.targets = self.not_reached();
            return report;
        }

        if !request.apply {
            report.targets = self
                .targets
                .iter()
                .map(|t| TargetReport {
                    plan: StageOutcome::Skipped("not requested".into()),
                    apply: StageOutcome::Skipped("not requested".into()),
                    verify: StageOutcome::Skipped("not requested".into()),
                    ..TargetReport::empty(t.name())
                })
                .collect();
            return report;
        }

        // Without a push, a built image can still be deployed to targets on the same engine
        // (the local target): it is pinned by its image ID.
        let local = match (&report.build, &request.push_to) {
            (StageOutcome::Done(b), None) => b
                .tags
                .first()
                .map(|t| PushedImage::new(t.clone(), b.id.clone(), None)),
            _ => None,
        };
        let image = report
            .push
            .done()
            .cloned()
            .or(request.image.clone())
            .or(local);
        if image.is_none() && !dry && !self.targets.is_empty() {
            let err = StageError::new(
                ErrorKind::InvalidInput,
                "no image to deploy: this run neither pushed an image nor was given one",
            )
            .with_hint("run with `--all` (build, push, deploy) or `--push`");
            report.targets = self
                .targets
                .iter()
                .map(|t| TargetReport {
                    apply: StageOutcome::Failed(clone_error(&err)),
                    ..TargetReport::empty(t.name())
                })
                .collect();
            return report;
        }

        let runs = self
            .targets
            .iter()
            .map(|target| self.run_target(*target, image.as_ref(), dry, request.verify));
        report.targets = futures::future::join_all(runs).await;
        report
    }

    /// The lookup that confirms an image pushed earlier (a read).
    async fn lookup(&self, reference: &ImageRef) -> StageOutcome<PushedImage> {
        let Some(pusher) = self.pusher else {
            return StageOutcome::Failed(missing("image lookup", "image pusher"));
        };
        to_outcome(
            self.stage(
                Stage::Push,
                |p: &PushedImage| {
                    format!(
                        "found {}@{} in the registry",
                        p.reference.name(),
                        p.digest()
                    )
                },
                async {
                    let creds = self.find_credentials(&reference.registry).await?;
                    pusher.resolve(reference, creds.as_ref()).await
                },
            )
            .await,
        )
    }

    /// The lookup of `reference` (which names its digest) side by side with every target's
    /// plan for that digest; the targets go on to apply only once the registry confirmed it.
    async fn plan_while_looking_up(
        &self,
        mut report: RunReport,
        reference: &ImageRef,
        provisional: &PushedImage,
        dry: bool,
        verify: bool,
    ) -> RunReport {
        let start = Instant::now();
        let plans = self
            .targets
            .iter()
            .map(|t| self.plan_target(*t, Some(provisional)));
        let (push, plans) =
            futures::join!(self.lookup(reference), futures::future::join_all(plans));
        report.push = push;
        let Some(image) = report.push.done() else {
            report.targets = self.not_reached();
            return report;
        };
        let runs = self
            .targets
            .iter()
            .zip(plans)
            .map(|(t, r)| self.finish_target(*t, r, Some(image), dry, verify, start));
        report.targets = futures::future::join_all(runs).await;
        report
    }

    async fn run_target(
        &self,
        target: &dyn Target,
        image: Option<&PushedImage>,
        dry: bool,
        verify: bool,
    ) -> TargetReport {
        let start = Instant::now();
        let report = self.plan_target(target, image).await;
        self.finish_target(target, report, image, dry, verify, start)
            .await
    }

    /// A target's report with its plan made (or failed).
    async fn plan_target(&self, target: &dyn Target, image: Option<&PushedImage>) -> TargetReport {
        let name = target.name().to_owned();
        let planned = self.hooks.as_ref().map(|h| {
            h.hooks.planned(
                &[HookPhase::PreDeploy, HookPhase::PostDeploy],
                target.task_runner(),
            )
        });
        let start = Instant::now();
        let plan = self
            .stage(Stage::Plan(name.clone()), plan_summary, async {
                let mut plan = target.plan(image).await?;
                plan.hooks = planned.unwrap_or_default();
                Ok(plan)
            })
            .await;
        TargetReport {
            plan: to_outcome(plan),
            stage_ms: vec![("plan".to_owned(), duration_ms(start.elapsed()))],
            ..TargetReport::empty(&name)
        }
    }

    /// After a plan that succeeded (and not in a dry run): apply and verify under the
    /// target's lock.
    async fn finish_target(
        &self,
        target: &dyn Target,
        mut report: TargetReport,
        image: Option<&PushedImage>,
        dry: bool,
        verify: bool,
        start: Instant,
    ) -> TargetReport {
        let name = target.name().to_owned();
        let (StageOutcome::Done(_), Some(image), false) = (&report.plan, image, dry) else {
            if dry {
                report.apply = StageOutcome::Skipped("dry run".into());
                report.verify = StageOutcome::Skipped("dry run".into());
            }
            report.duration_ms = duration_ms(start.elapsed());
            return report;
        };
        let started = std::sync::atomic::AtomicBool::new(false);
        let plan_ms = report.stage_ms.clone();
        let work = |cancel: Cancellation| {
            let started = &started;
            let name = name.clone();
            let mut timings = Timings(plan_ms);
            async move {
                started.store(true, std::sync::atomic::Ordering::SeqCst);
                let at = Instant::now();
                let pre = self
                    .run_hooks(HookPhase::PreDeploy, target, Some(image), &cancel)
                    .await;
                timings.ran("pre_deploy", &pre, at);
                if matches!(pre, StageOutcome::Failed(_)) {
                    // Nothing is switched: the apply is not reached.
                    let after = AfterPlan {
                        pre_deploy: pre,
                        stage_ms: timings.0,
                        ..AfterPlan::default()
                    };
                    self.record(target, &after).await;
                    return Ok::<_, StageError>(after);
                }
                let at = Instant::now();
                let apply = to_outcome(
                    self.stage(
                        Stage::Apply(name.clone()),
                        |o: &ApplyOutcome| plan_summary(&o.plan),
                        target.apply(image, self.events, &cancel),
                    )
                    .await,
                );
                timings.ran("apply", &apply, at);
                let at = Instant::now();
                let verify = match (&apply, verify) {
                    (StageOutcome::Done(_), false) => {
                        self.skip(Stage::Verify(name.clone()), "verification switched off")
                    }
                    (StageOutcome::Done(outcome), true) => to_outcome(
                        self.stage(
                            Stage::Verify(name.clone()),
                            |v: &Vec<Verification>| verification_summary(v),
                            target.verify(outcome, &cancel),
                        )
                        .await,
                    ),
                    _ => StageOutcome::NotReached,
                };
                timings.ran("verify", &verify, at);
                let healthy = matches!(apply, StageOutcome::Done(_))
                    && !matches!(verify, StageOutcome::Failed(_) | StageOutcome::NotReached);
                let at = Instant::now();
                let post = if healthy {
                    self.run_hooks(HookPhase::PostDeploy, target, Some(image), &cancel)
                        .await
                } else {
                    StageOutcome::NotReached
                };
                timings.ran("post_deploy", &post, at);
                let at = Instant::now();
                let rollback = match (&post, &apply) {
                    (StageOutcome::Failed(_), StageOutcome::Done(outcome))
                        if hook_stage::rolls_back_after_hook(target, &outcome.plan) =>
                    {
                        to_outcome(
                            self.stage(
                                Stage::Rollback(name.clone()),
                                |r: &RollbackOutcome| {
                                    format!(
                                        "rolled back to {} after the failed post_deploy hook",
                                        r.to
                                    )
                                },
                                target.rollback(None, self.events, &cancel),
                            )
                            .await,
                        )
                    }
                    _ => StageOutcome::NotReached,
                };
                timings.ran("rollback", &rollback, at);
                let after = AfterPlan {
                    pre_deploy: pre,
                    apply,
                    verify,
                    post_deploy: post,
                    rollback,
                    stage_ms: timings.0,
                };
                self.record(target, &after).await;
                Ok(after)
            }
        };
        let locking = self.locking.as_ref().map(|(p, t)| (p, *t));
        let stage = Stage::Apply(name.clone());
        let ran = holding(
            target.lock(),
            locking,
            self.events,
            &stage,
            &self.cancel,
            work,
        )
        .await;
        match ran {
            Ok(after) => {
                report.pre_deploy = after.pre_deploy;
                report.apply = after.apply;
                report.verify = after.verify;
                report.post_deploy = after.post_deploy;
                report.rollback = after.rollback;
                report.stage_ms = after.stage_ms;
            }
            Err(err) => {
                // The lock could not be taken (nothing was applied), or was lost while
                // working: the target failed either way.
                if !started.load(std::sync::atomic::Ordering::SeqCst) {
                    self.emit(&Stage::Apply(name.clone()), failed(0, &err));
                }
                report.apply = StageOutcome::Failed(err);
            }
        }
        report.duration_ms = duration_ms(start.elapsed());
        report
    }

    /// Credentials for `registry` from the first source (in the order they were added)
    /// that has some, or `None`: what a push uses, and what a caller reading the registry
    /// outside a run (resolving an already pushed tag) should use too.
    pub async fn find_credentials(
        &self,
        registry: &str,
    ) -> Result<Option<RegistryCredentials>, StageError> {
        for source in &self.credentials {
            if let Some(creds) = source.credentials(registry).await? {
                return Ok(Some(creds));
            }
        }
        Ok(None)
    }

    fn not_reached(&self) -> Vec<TargetReport> {
        self.targets
            .iter()
            .map(|t| TargetReport::empty(t.name()))
            .collect()
    }
}

/// The stages after a target's plan, as they ended.
struct AfterPlan {
    pre_deploy: StageOutcome<usize>,
    apply: StageOutcome<ApplyOutcome>,
    verify: StageOutcome<Vec<Verification>>,
    post_deploy: StageOutcome<usize>,
    rollback: StageOutcome<RollbackOutcome>,
    stage_ms: Vec<(String, u64)>,
}

impl Default for AfterPlan {
    fn default() -> Self {
        Self {
            pre_deploy: StageOutcome::NotReached,
            apply: StageOutcome::NotReached,
            verify: StageOutcome::NotReached,
            post_deploy: StageOutcome::NotReached,
            rollback: StageOutcome::NotReached,
            stage_ms: Vec::new(),
        }
    }
}

fn to_outcome<T>(result: Result<T, StageError>) -> StageOutcome<T> {
    match result {
        Ok(t) => StageOutcome::Done(t),
        Err(e) => StageOutcome::Failed(e),
    }
}

fn failed(ms: u64, err: &StageError) -> EventKind {
    EventKind::Failed {
        duration_ms: ms,
        kind: err.kind,
        error: err.chain(),
        hint: err.hint.clone(),
    }
}

fn missing(stage: &str, what: &str) -> StageError {
    StageError::new(
        ErrorKind::InvalidInput,
        format!("cannot {stage}: the pipeline was given no {what}"),
    )
    .with_hint("this is a wiring error in the program that embeds deployctl-core")
}

fn clone_error(err: &StageError) -> StageError {
    let mut e = StageError::new(err.kind, err.message.clone());
    e.hint = err.hint.clone();
    e
}

fn plan_summary(plan: &Plan) -> String {
    let (c, u, n, d) = plan.counts();
    format!("{c} to create, {u} to update, {n} unchanged, {d} to delete")
}

fn verification_summary(v: &[Verification]) -> String {
    v.iter()
        .map(|v| match v {
            Verification::Healthy {
                url,
                method,
                status,
                latency_ms,
            } => format!("{url} answered {status} in {latency_ms} ms ({method})"),
            Verification::NotVerifiable { reason } => format!("not verifiable here: {reason}"),
            Verification::Skipped => "skipped".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

mod hook_stage;
mod record;
use record::Timings;
#[cfg(test)]
mod tests;
