//! The hook rules, with in-memory adapters that write one journal of what ran in order.

use std::sync::Mutex;

use async_trait::async_trait;

use super::super::{Pipeline, RunMode, RunReport, RunRequest, StageOutcome};
use crate::cancel::Cancellation;
use crate::error::{ErrorKind, StageError};
use crate::event::{EventKind, EventSink, Stage, VecSink};
use crate::hooks::{
    HookContext, HookOutput, HookPhase, HookRunner, HookStep, Hooks, LocalCommand, TargetTask,
    TaskInput, TaskRunner,
};
use crate::image::{Digest, ImageRef, PushedImage};
use crate::plan::{Action, Plan, ResourceChange};
use crate::target::{
    ApplyOutcome, LogQuery, LogSink, RollbackOutcome, Target, TargetStatus, Verification,
};

const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[derive(Default)]
struct Journal(Mutex<Vec<String>>);

impl Journal {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Runs a local step by writing it down; `fail` fails with exit 3, printing a line first.
struct Runner<'j>(&'j Journal);

#[async_trait]
impl HookRunner for Runner<'_> {
    async fn run(
        &self,
        command: &LocalCommand,
        _timeout: std::time::Duration,
        context: &HookContext,
        output: &dyn HookOutput,
        _cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let LocalCommand::Shell(line) = command else {
            unreachable!("tests use run:")
        };
        let vars: Vec<String> = context
            .vars()
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        self.0.push(format!("local {line} [{}]", vars.join(" ")));
        output.line(&format!("out of {line}"));
        if line == "fail" {
            return Err(StageError::new(ErrorKind::Failed, "`fail` exited with 3"));
        }
        Ok(())
    }
}

struct Fake<'j> {
    journal: &'j Journal,
    /// Whether the deploy changes something.
    changes: bool,
    rolls_back: bool,
    fail_task: bool,
}

#[async_trait]
impl Target for Fake<'_> {
    fn name(&self) -> &str {
        "k8s"
    }
    async fn plan(&self, _image: Option<&PushedImage>) -> Result<Plan, StageError> {
        self.journal.push("plan");
        let mut plan = Plan::new("k8s");
        let action = if self.changes {
            Action::Create
        } else {
            Action::Unchanged
        };
        plan.push(ResourceChange::new("Deployment", "app", action, "test"));
        Ok(plan)
    }
    async fn apply(
        &self,
        _image: &PushedImage,
        _events: &dyn EventSink,
        _cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError> {
        self.journal.push("apply");
        Ok(ApplyOutcome::new(self.plan(None).await?, None, Vec::new()))
    }
    async fn verify(
        &self,
        _outcome: &ApplyOutcome,
        _cancel: &Cancellation,
    ) -> Result<Vec<Verification>, StageError> {
        self.journal.push("verify");
        Ok(vec![Verification::Skipped])
    }
    async fn status(&self) -> Result<TargetStatus, StageError> {
        Ok(TargetStatus::new("k8s"))
    }
    async fn logs(
        &self,
        _q: &LogQuery,
        _s: &dyn LogSink,
        _c: &Cancellation,
    ) -> Result<(), StageError> {
        Ok(())
    }
    async fn destroy_plan(&self) -> Result<Plan, StageError> {
        Ok(Plan::new("k8s"))
    }
    async fn destroy(&self, _e: &dyn EventSink, _c: &Cancellation) -> Result<Plan, StageError> {
        self.journal.push("destroy");
        Ok(Plan::new("k8s"))
    }
    async fn rollback(
        &self,
        _to: Option<&str>,
        _e: &dyn EventSink,
        _c: &Cancellation,
    ) -> Result<RollbackOutcome, StageError> {
        self.journal.push("rollback");
        Ok(RollbackOutcome::new(Some("2".into()), "1"))
    }
    async fn run_task(
        &self,
        phase: HookPhase,
        task: &TargetTask,
        image: &PushedImage,
        output: &dyn HookOutput,
        _cancel: &Cancellation,
    ) -> Result<(), StageError> {
        self.journal.push(format!(
            "task {phase} {} from {}",
            task.command.join(" "),
            image.digest().as_str()
        ));
        output.line("migrated 3 tables");
        if self.fail_task {
            return Err(StageError::new(ErrorKind::Failed, "job exited with 3"));
        }
        Ok(())
    }
    fn task_runner(&self) -> Option<TaskRunner> {
        Some(TaskRunner::new("Kubernetes Job", TaskInput::Command))
    }

    fn rolls_back_on_failed_hook(&self) -> bool {
        self.rolls_back
    }
}

fn image() -> PushedImage {
    PushedImage::new(
        ImageRef::parse("127.0.0.1:5000/app:1.0").unwrap(),
        Digest::parse(DIGEST).unwrap(),
        None,
    )
}

fn local(line: &str) -> HookStep {
    HookStep::local(LocalCommand::Shell(line.into()))
}

fn task(cmd: &str) -> HookStep {
    HookStep::Task(TargetTask::new(vec![cmd.into()]))
}

fn fake(journal: &Journal) -> Fake<'_> {
    Fake {
        journal,
        changes: true,
        rolls_back: true,
        fail_task: false,
    }
}

fn deploy(target: &Fake<'_>, hooks: Option<&Hooks>, mode: RunMode) -> (RunReport, VecSink) {
    let events = VecSink::new();
    let runner = Runner(target.journal);
    let mut p = Pipeline::new(&events).with_target(target);
    if let Some(h) = hooks {
        p = p.with_hooks(h, &runner, HookContext::new("shop", "1.2.0", "prod"));
    }
    let report = futures::executor::block_on(p.run(RunRequest::deploy_image(mode, image())));
    (report, events)
}

#[test]
fn pre_deploy_runs_before_apply_and_post_deploy_after_verify_in_order() {
    let journal = Journal::default();
    let hooks = Hooks {
        pre_deploy: vec![local("check"), task("migrate")],
        post_deploy: vec![local("notify")],
        pre_destroy: vec![],
    };
    let (report, events) = deploy(&fake(&journal), Some(&hooks), RunMode::Apply);
    assert!(report.is_success(), "{:?}", report.errors());
    let ran: Vec<String> = journal
        .list()
        .into_iter()
        .map(|l| l.split(" [").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        ran,
        [
            "plan",
            "local check",
            &format!("task pre_deploy migrate from {DIGEST}"),
            "apply",
            "plan",
            "verify",
            "local notify"
        ]
    );
    let t = &report.targets[0];
    assert!(matches!(t.pre_deploy, StageOutcome::Done(2)));
    assert!(matches!(t.post_deploy, StageOutcome::Done(1)));
    // Output lines are messages of the hook's stage (what `--output json` prints).
    let lines: Vec<(Stage, String)> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Message { text } => Some((e.stage, text)),
            _ => None,
        })
        .collect();
    assert!(lines.contains(&(Stage::PreDeploy("k8s".into()), "migrated 3 tables".into())));
    assert!(lines.contains(&(Stage::PostDeploy("k8s".into()), "out of notify".into())));
}

#[test]
fn local_steps_get_the_deploy_variables() {
    let journal = Journal::default();
    let hooks = Hooks {
        pre_deploy: vec![local("env")],
        ..Hooks::new()
    };
    deploy(&fake(&journal), Some(&hooks), RunMode::Apply);
    let line = journal
        .list()
        .into_iter()
        .find(|l| l.starts_with("local env"))
        .unwrap();
    assert_eq!(
        line,
        format!(
            "local env [DEPLOYCTL_APP=shop DEPLOYCTL_VERSION=1.2.0 DEPLOYCTL_TARGET=k8s \
             DEPLOYCTL_IMAGE=127.0.0.1:5000/app:1.0@{DIGEST} DEPLOYCTL_ENV=prod]"
        )
    );
}

#[test]
fn a_failing_pre_deploy_step_aborts_the_target_with_nothing_applied() {
    for hooks in [
        Hooks {
            pre_deploy: vec![local("fail"), local("never")],
            ..Hooks::new()
        },
        Hooks {
            pre_deploy: vec![task("migrate"), local("never")],
            ..Hooks::new()
        },
    ] {
        let journal = Journal::default();
        let target = Fake {
            fail_task: true,
            ..fake(&journal)
        };
        let (report, _) = deploy(&target, Some(&hooks), RunMode::Apply);
        let list = journal.list();
        assert!(!list.iter().any(|l| l == "apply"), "{list:?}");
        assert!(!list.iter().any(|l| l.contains("never")), "{list:?}");
        let t = &report.targets[0];
        assert!(matches!(t.pre_deploy, StageOutcome::Failed(_)));
        assert!(matches!(t.apply, StageOutcome::NotReached));
        assert_eq!(report.exit_code(), 1);
    }
}

#[test]
fn a_failing_post_deploy_step_fails_the_target_and_rolls_back_what_changed() {
    let hooks = Hooks {
        post_deploy: vec![local("fail")],
        ..Hooks::new()
    };
    // A target that rolls back, after a deploy that changed something: rolled back.
    let journal = Journal::default();
    let (report, _) = deploy(&fake(&journal), Some(&hooks), RunMode::Apply);
    assert_eq!(journal.list().last().map(String::as_str), Some("rollback"));
    assert!(matches!(report.targets[0].rollback, StageOutcome::Done(_)));
    assert_eq!(report.exit_code(), 1);
    // An unchanged deploy: the version live before is live now, no rollback.
    let journal = Journal::default();
    let target = Fake {
        changes: false,
        ..fake(&journal)
    };
    let (report, _) = deploy(&target, Some(&hooks), RunMode::Apply);
    assert!(!journal.list().contains(&"rollback".to_owned()));
    assert_eq!(report.exit_code(), 1);
    // A target that does not roll back after a hook: failed, not rolled back.
    let journal = Journal::default();
    let target = Fake {
        rolls_back: false,
        ..fake(&journal)
    };
    let (report, _) = deploy(&target, Some(&hooks), RunMode::Apply);
    assert!(!journal.list().contains(&"rollback".to_owned()));
    assert!(matches!(
        report.targets[0].post_deploy,
        StageOutcome::Failed(_)
    ));
}

#[test]
fn skip_hooks_runs_none_and_plans_list_none() {
    let journal = Journal::default();
    let (report, _) = deploy(&fake(&journal), None, RunMode::Apply);
    assert_eq!(journal.list(), ["plan", "apply", "plan", "verify"]);
    let plan = report.targets[0].plan.done().unwrap();
    assert!(plan.hooks.is_empty());
}

#[test]
fn a_dry_run_lists_the_hooks_in_the_plan_and_runs_none() {
    let journal = Journal::default();
    let hooks = Hooks {
        pre_deploy: vec![task("migrate")],
        post_deploy: vec![local("notify")],
        pre_destroy: vec![local("backup")],
    };
    let (report, _) = deploy(&fake(&journal), Some(&hooks), RunMode::DryRun);
    assert_eq!(journal.list(), ["plan"]);
    let plan = report.targets[0].plan.done().unwrap();
    let listed: Vec<String> = plan.hooks.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "pre_deploy: Kubernetes Job `migrate` (timeout 600s)",
            "post_deploy: local command `notify` (timeout 600s)"
        ]
    );
    assert!(
        plan.to_string()
            .contains("> hook      pre_deploy: Kubernetes Job `migrate` (timeout 600s)"),
        "{plan}"
    );
}

#[test]
fn pre_destroy_runs_through_run_hooks() {
    let journal = Journal::default();
    let target = fake(&journal);
    let hooks = Hooks {
        pre_destroy: vec![local("fail")],
        ..Hooks::new()
    };
    let events = VecSink::new();
    let runner = Runner(&journal);
    let p = Pipeline::new(&events).with_hooks(&hooks, &runner, HookContext::default());
    let out = futures::executor::block_on(p.run_hooks(
        HookPhase::PreDestroy,
        &target,
        None,
        &Cancellation::new(),
    ));
    assert!(matches!(out, StageOutcome::Failed(_)));
    assert!(
        events
            .events()
            .iter()
            .any(|e| e.stage == Stage::PreDestroy("k8s".into())
                && matches!(e.kind, EventKind::Failed { .. }))
    );
}
