//! `hooks:` steps around a deploy — `pre_deploy`, `post_deploy`, `pre_destroy` — as the
//! user writes them, their rules, and the core's [`deployctl_core::Hooks`] they become.
//!
//! A step is one of `{ run: "a shell line" }`, `{ command: [argv] }` (both local, in the
//! app's directory, with an optional `timeout:` in seconds) or `{ task: { command: [argv], event: …, timeout: 600, cleanup:
//! on_success } }` (in the target, from the image being deployed).

use serde::{Deserialize, Serialize};

use crate::TargetKind;
use crate::load::Diags;
use crate::model::Config;

/// `hooks:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Hooks {
    /// Before each target's apply.
    pub pre_deploy: Vec<HookStep>,
    /// After each target's apply and verification.
    pub post_deploy: Vec<HookStep>,
    /// Before each target's destroy (local steps only).
    pub pre_destroy: Vec<HookStep>,
}

/// One step: exactly one of `run`, `command`, `task`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HookStep {
    /// A shell line run with `sh -c` in the app's directory.
    pub run: Option<String>,
    /// An argument vector run in the app's directory, without a shell.
    pub command: Option<Vec<String>>,
    /// A task in the target from the new image.
    pub task: Option<HookTask>,
    /// Seconds a local step (`run`, `command`) may run, 1–86400; a task has its own
    /// `task.timeout`.
    pub timeout: Option<u32>,
}

/// `task:` of a hook step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HookTask {
    /// Kubernetes: the Job container's command.
    pub command: Vec<String>,
    /// Lambda: the event the new version is invoked with (any YAML value, sent as JSON).
    pub event: Option<serde_json::Value>,
    /// Seconds it may run, 1–86400.
    pub timeout: u32,
    /// `always`, `on_success` (keep a failed one to inspect) or `never`.
    pub cleanup: HookCleanup,
}

impl Default for HookTask {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            event: None,
            timeout: deployctl_core::DEFAULT_HOOK_TIMEOUT_SECONDS,
            cleanup: HookCleanup::OnSuccess,
        }
    }
}

/// `task.cleanup:`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookCleanup {
    /// Delete the task's resources however it ended.
    Always,
    /// Delete them when it succeeded.
    #[default]
    OnSuccess,
    /// Keep them.
    Never,
}

const PHASES: [(&str, deployctl_core::HookPhase); 3] = [
    ("pre_deploy", deployctl_core::HookPhase::PreDeploy),
    ("post_deploy", deployctl_core::HookPhase::PostDeploy),
    ("pre_destroy", deployctl_core::HookPhase::PreDestroy),
];

impl Hooks {
    fn phase(&self, phase: deployctl_core::HookPhase) -> &[HookStep] {
        match phase {
            deployctl_core::HookPhase::PostDeploy => &self.post_deploy,
            deployctl_core::HookPhase::PreDestroy => &self.pre_destroy,
            _ => &self.pre_deploy,
        }
    }

    /// The core's hooks (a valid config's steps each have exactly one kind).
    pub fn to_core(&self) -> deployctl_core::Hooks {
        let mut out = deployctl_core::Hooks::new();
        for (_, phase) in PHASES {
            let steps: Vec<_> = self
                .phase(phase)
                .iter()
                .filter_map(HookStep::to_core)
                .collect();
            match phase {
                deployctl_core::HookPhase::PostDeploy => out.post_deploy = steps,
                deployctl_core::HookPhase::PreDestroy => out.pre_destroy = steps,
                _ => out.pre_deploy = steps,
            }
        }
        out
    }
}

impl HookStep {
    fn to_core(&self) -> Option<deployctl_core::HookStep> {
        use deployctl_core::{HookStep as Step, LocalCommand, TargetTask, TaskCleanup};
        let local = |command| {
            let mut step = Step::local(command);
            if let (
                Step::Local {
                    timeout_seconds, ..
                },
                Some(t),
            ) = (&mut step, self.timeout)
            {
                *timeout_seconds = t;
            }
            step
        };
        if let Some(line) = &self.run {
            return Some(local(LocalCommand::Shell(line.clone())));
        }
        if let Some(argv) = &self.command {
            return Some(local(LocalCommand::Argv(argv.clone())));
        }
        let t = self.task.as_ref()?;
        let mut task = TargetTask::new(t.command.clone());
        task.event = t.event.as_ref().map(serde_json::Value::to_string);
        task.timeout_seconds = t.timeout;
        task.cleanup = match t.cleanup {
            HookCleanup::Always => TaskCleanup::Always,
            HookCleanup::OnSuccess => TaskCleanup::OnSuccess,
            HookCleanup::Never => TaskCleanup::Never,
        };
        Some(Step::Task(task))
    }
}

/// The rules serde cannot express: one kind per step, nothing empty, tasks only where the
/// targets can run them and with what each target needs.
pub(crate) fn check(c: &Config, d: &mut Diags<'_>) {
    let targets = c.enabled_targets();
    for (name, phase) in PHASES {
        for (i, step) in c.hooks.phase(phase).iter().enumerate() {
            let at = format!("hooks.{name}[{i}]");
            let kinds = [
                step.run.is_some(),
                step.command.is_some(),
                step.task.is_some(),
            ];
            match kinds.iter().filter(|k| **k).count() {
                0 => d.value(
                    &at,
                    "a hook step needs `run`, `command` or `task`",
                    Some(
                        "e.g. { run: \"./scripts/check.sh\" }, { command: [make, smoke] } or \
                         { task: { command: [./migrate, up] } }"
                            .to_owned(),
                    ),
                ),
                1 => {}
                _ => d.value(
                    &at,
                    "a hook step is one of `run`, `command` or `task`, not several",
                    Some("write each as its own step of the list".to_owned()),
                ),
            }
            if step.run.as_deref().is_some_and(|r| r.trim().is_empty()) {
                d.value(
                    &format!("{at}.run"),
                    "must not be empty",
                    Some("a shell line, e.g. ./scripts/check.sh".to_owned()),
                );
            }
            if let Some(argv) = &step.command {
                argv_rule(d, &format!("{at}.command"), argv, "e.g. [make, smoke]");
            }
            if let Some(task) = &step.task {
                task_rules(d, &at, phase, task, &targets);
                if step.timeout.is_some() {
                    d.value(
                        &format!("{at}.timeout"),
                        "a task's time limit is `task.timeout`",
                        Some("move it into the task: task: { timeout: 300, … }".to_owned()),
                    );
                }
            } else if let Some(t) = step.timeout {
                timeout_rule(d, &format!("{at}.timeout"), t, "seconds the step may run");
            }
        }
    }
}

fn argv_rule(d: &mut Diags<'_>, at: &str, argv: &[String], example: &str) {
    if argv.first().is_none_or(|p| p.trim().is_empty()) {
        d.value(
            at,
            "must name a program",
            Some(format!(
                "a list: the program, then its arguments, {example}"
            )),
        );
    }
}

fn task_rules(
    d: &mut Diags<'_>,
    at: &str,
    phase: deployctl_core::HookPhase,
    task: &HookTask,
    targets: &[TargetKind],
) {
    let at = format!("{at}.task");
    if phase == deployctl_core::HookPhase::PreDestroy {
        d.value(
            &at,
            "a `pre_destroy` step runs here, not in the target",
            Some(
                "use `run:` or `command:`; a task needs a new image, and a destroy has none".into(),
            ),
        );
        return;
    }
    if targets.contains(&TargetKind::Kubernetes) {
        argv_rule(
            d,
            &format!("{at}.command"),
            &task.command,
            "e.g. command: [./migrate, up] (Kubernetes runs it as a Job)",
        );
    }
    if targets.contains(&TargetKind::Lambda) && task.event.is_none() {
        d.value(
            &at,
            "on Lambda a task invokes the new version with an event, and none is given",
            Some("add `event:`, e.g. event: { action: migrate }".to_owned()),
        );
    }
    if targets.contains(&TargetKind::Local) {
        d.value(
            &at,
            "the local target runs no tasks",
            Some("use `run:` or `command:` for local deploys, or disable `local`".to_owned()),
        );
    }
    timeout_rule(
        d,
        &format!("{at}.timeout"),
        task.timeout,
        "seconds the task may run",
    );
}

/// A hook's time limit: 1 second to a day.
fn timeout_rule(d: &mut Diags<'_>, at: &str, seconds: u32, what: &str) {
    if !(1..=86_400).contains(&seconds) {
        d.value(
            at,
            format!("{seconds} seconds is outside 1 to 86400"),
            Some(format!(
                "{what}, e.g. {}",
                deployctl_core::DEFAULT_HOOK_TIMEOUT_SECONDS
            )),
        );
    }
}
