//! Hooks: steps that run around a target's deploy or destroy — local commands, and tasks
//! run in the target from the new image (how database migrations run).
//!
//! This module holds the domain types and the rules; running a process is IO, so it is
//! behind [`HookRunner`] (local commands) and [`Target::run_task`](crate::Target::run_task)
//! (tasks in the target). The rules, which [`Pipeline`](crate::Pipeline) carries out:
//!
//! * `pre_deploy` runs after the target's plan and before its apply, under the target's
//!   deploy lock; the first failing step aborts that target with nothing switched (its
//!   apply is not reached).
//! * `post_deploy` runs after the target verified healthy; a failing step fails the target
//!   and, on a target that [rolls back after a failed hook](crate::Target::rolls_back_on_failed_hook)
//!   (Kubernetes), rolls it back to the version live before.
//! * `pre_destroy` runs before the target's resources are deleted; a failure deletes
//!   nothing.
//! * Steps of a phase run one after another in the order written; `--skip-hooks` runs none.
//! * A dry run runs none and lists them in each target's plan ([`Plan::hooks`](crate::Plan)).

use std::time::Duration;

use async_trait::async_trait;

use crate::cancel::Cancellation;
use crate::error::StageError;
use crate::image::PushedImage;

/// How long a hook step may run when its `timeout` is not given, in seconds (local steps
/// and tasks alike).
pub const DEFAULT_HOOK_TIMEOUT_SECONDS: u32 = 600;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookPhase {
    /// Before a target's apply.
    PreDeploy,
    /// After a target's apply and verification.
    PostDeploy,
    /// Before a target's destroy.
    PreDestroy,
}

impl HookPhase {
    /// The phase as written in `deploy.yaml` (`pre_deploy`, …).
    pub fn name(self) -> &'static str {
        match self {
            HookPhase::PreDeploy => "pre_deploy",
            HookPhase::PostDeploy => "post_deploy",
            HookPhase::PreDestroy => "pre_destroy",
        }
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to a finished task's resources (a Kubernetes Job and its pod).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskCleanup {
    /// Delete it however it ended.
    Always,
    /// Delete it when it succeeded; keep a failed one to inspect.
    #[default]
    OnSuccess,
    /// Keep it.
    Never,
}

impl TaskCleanup {
    /// Whether a task that ended so (`succeeded`) is deleted.
    pub fn deletes(self, succeeded: bool) -> bool {
        match self {
            TaskCleanup::Always => true,
            TaskCleanup::OnSuccess => succeeded,
            TaskCleanup::Never => false,
        }
    }
}

/// A command run on this machine, in the app's directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LocalCommand {
    /// `run:` a line for the shell (`sh -c`).
    Shell(String),
    /// `command:` an argument vector, no shell.
    Argv(Vec<String>),
}

/// A task run in the target from the image being deployed (a Kubernetes Job; on Lambda,
/// an invoke of the newly published version).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TargetTask {
    /// The command (Kubernetes: the container's command).
    pub command: Vec<String>,
    /// The event a Lambda invoke sends, as JSON text.
    pub event: Option<String>,
    /// How long it may run, in seconds.
    pub timeout_seconds: u32,
    /// What happens to it afterwards.
    pub cleanup: TaskCleanup,
}

impl TargetTask {
    /// A task running `command`, with the default timeout
    /// ([`DEFAULT_HOOK_TIMEOUT_SECONDS`]), cleaned up on success.
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            event: None,
            timeout_seconds: DEFAULT_HOOK_TIMEOUT_SECONDS,
            cleanup: TaskCleanup::default(),
        }
    }
}

/// One step of a hook.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookStep {
    /// A local command.
    Local {
        /// What to run.
        command: LocalCommand,
        /// How long it may run, in seconds; then its process group is killed and the step
        /// fails.
        timeout_seconds: u32,
    },
    /// A task in the target.
    Task(TargetTask),
}

impl HookStep {
    /// A local step running `command`, with the default timeout.
    pub fn local(command: LocalCommand) -> Self {
        HookStep::Local {
            command,
            timeout_seconds: DEFAULT_HOOK_TIMEOUT_SECONDS,
        }
    }

    /// How the step runs on a target whose tasks run as `tasks` (`None`: the target runs
    /// no tasks): the one description plans and the hook stage's first line use.
    pub fn planned(&self, phase: HookPhase, tasks: Option<TaskRunner>) -> PlannedHook {
        match self {
            HookStep::Local {
                command,
                timeout_seconds,
            } => PlannedHook {
                phase,
                runs: LOCAL_COMMAND.to_owned(),
                command: Some(command.shown()),
                event: None,
                timeout_seconds: *timeout_seconds,
            },
            HookStep::Task(t) => {
                let (runs, input) = match tasks {
                    Some(r) => (r.name.to_owned(), Some(r.input)),
                    None => ("a task (this target runs none)".to_owned(), None),
                };
                PlannedHook {
                    phase,
                    runs,
                    command: (input != Some(TaskInput::Event)).then(|| t.command.join(" ")),
                    event: (input == Some(TaskInput::Event))
                        .then(|| t.event.clone().unwrap_or_else(|| "{}".to_owned())),
                    timeout_seconds: t.timeout_seconds,
                }
            }
        }
    }
}

impl LocalCommand {
    /// The command as written: the shell line, or the argument vector joined by spaces.
    pub fn shown(&self) -> String {
        match self {
            LocalCommand::Shell(line) => line.clone(),
            LocalCommand::Argv(argv) => argv.join(" "),
        }
    }
}

/// What `runs` says of a local step.
pub const LOCAL_COMMAND: &str = "local command";

/// What a target's task takes from a `task:` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskInput {
    /// Its `command` (a container from the new image, as a Kubernetes Job).
    Command,
    /// Its `event` (an invoke of the new version, as on Lambda).
    Event,
}

/// How a target runs a hook's `task`, for plans: its adapter states it once
/// ([`Target::task_runner`](crate::Target::task_runner)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskRunner {
    /// What runs it, for people: `Kubernetes Job`, `Lambda invoke`.
    pub name: &'static str,
    /// What of the step it uses.
    pub input: TaskInput,
}

impl TaskRunner {
    /// A runner called `name` that takes the step's `input`.
    pub const fn new(name: &'static str, input: TaskInput) -> Self {
        Self { name, input }
    }
}

/// One hook step as a plan lists it: when, where, what and for how long at most.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PlannedHook {
    /// When it runs.
    pub phase: HookPhase,
    /// Where it runs: `local command`, or the target's task runner (`Kubernetes Job`,
    /// `Lambda invoke`).
    pub runs: String,
    /// The command: a local step's, a Job's container command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The event an invoke sends, as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// How long it may run, in seconds.
    pub timeout_seconds: u32,
}

impl PlannedHook {
    /// The step without its phase: `local command \`make check\` (timeout 600s)`.
    pub fn describe(&self) -> String {
        let what = match (&self.command, &self.event) {
            (Some(c), _) => format!(" `{c}`"),
            (None, Some(e)) => format!(" with event {e}"),
            (None, None) => String::new(),
        };
        format!("{}{what} (timeout {}s)", self.runs, self.timeout_seconds)
    }
}

impl std::fmt::Display for PlannedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.phase, self.describe())
    }
}

/// The hooks of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Hooks {
    /// Before apply.
    pub pre_deploy: Vec<HookStep>,
    /// After apply and verification.
    pub post_deploy: Vec<HookStep>,
    /// Before destroy.
    pub pre_destroy: Vec<HookStep>,
}

impl Hooks {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// The steps of `phase`.
    pub fn steps(&self, phase: HookPhase) -> &[HookStep] {
        match phase {
            HookPhase::PreDeploy => &self.pre_deploy,
            HookPhase::PostDeploy => &self.post_deploy,
            HookPhase::PreDestroy => &self.pre_destroy,
        }
    }

    /// Whether there is no step at all.
    pub fn is_empty(&self) -> bool {
        self.pre_deploy.is_empty() && self.post_deploy.is_empty() && self.pre_destroy.is_empty()
    }

    /// What a plan lists for a target whose tasks run as `tasks`: the steps of `phases`, in
    /// order (a deploy's: `pre_deploy` then `post_deploy`).
    pub fn planned(&self, phases: &[HookPhase], tasks: Option<TaskRunner>) -> Vec<PlannedHook> {
        phases
            .iter()
            .flat_map(|p| self.steps(*p).iter().map(move |s| s.planned(*p, tasks)))
            .collect()
    }
}

/// What a local step knows of the deploy it belongs to: the values of its `DEPLOYCTL_*`
/// environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookContext {
    /// `app.name`.
    pub app: String,
    /// `app.version`.
    pub version: String,
    /// The environment overlay (`--env`), empty when none.
    pub env: String,
    /// The target (`lambda`, `k8s`, `local`).
    pub target: String,
    /// The image being deployed, by digest (`repository@sha256:…`); empty when unknown.
    pub image: String,
}

impl HookContext {
    /// A context for `app` at `version` in environment `env` (empty: none).
    pub fn new(app: impl Into<String>, version: impl Into<String>, env: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            version: version.into(),
            env: env.into(),
            target: String::new(),
            image: String::new(),
        }
    }

    /// The same context for `target` deploying `image`.
    #[must_use]
    pub fn for_target(&self, target: &str, image: Option<&PushedImage>) -> Self {
        Self {
            target: target.to_owned(),
            image: image.map(|i| i.reference.to_string()).unwrap_or_default(),
            ..self.clone()
        }
    }

    /// The variables a local step gets, by name (the one list of these names).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DEPLOYCTL_APP", self.app.clone()),
            ("DEPLOYCTL_VERSION", self.version.clone()),
            ("DEPLOYCTL_TARGET", self.target.clone()),
            ("DEPLOYCTL_IMAGE", self.image.clone()),
            ("DEPLOYCTL_ENV", self.env.clone()),
        ]
    }
}

/// Receives a hook's output, line by line (already scrubbed of secrets by the runner).
pub trait HookOutput: Send + Sync {
    /// One line.
    fn line(&self, text: &str);
}

/// Runs local hook commands (implemented over processes by the binary).
#[async_trait]
pub trait HookRunner: Send + Sync {
    /// Runs `command` with the variables of `context`, passing each output line to `output`;
    /// fails (naming the exit status and the last lines) when it does not exit 0, stops it
    /// (with everything it started) when `cancel` fires, and stops it and fails naming the
    /// step when it runs longer than `timeout`.
    async fn run(
        &self,
        command: &LocalCommand,
        timeout: Duration,
        context: &HookContext,
        output: &dyn HookOutput,
        cancel: &Cancellation,
    ) -> Result<(), StageError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_policy() {
        assert!(TaskCleanup::Always.deletes(false));
        assert!(TaskCleanup::OnSuccess.deletes(true));
        assert!(!TaskCleanup::OnSuccess.deletes(false));
        assert!(!TaskCleanup::Never.deletes(true));
    }

    #[test]
    fn plan_lists_phases_in_order() {
        let hooks = Hooks {
            pre_deploy: vec![
                HookStep::local(LocalCommand::Shell("make check".into())),
                HookStep::Task(TargetTask {
                    event: Some("{\"action\":\"migrate\"}".into()),
                    timeout_seconds: 300,
                    ..TargetTask::new(vec!["migrate".into(), "up".into()])
                }),
            ],
            post_deploy: vec![HookStep::Local {
                command: LocalCommand::Argv(vec!["./notify".into(), "done".into()]),
                timeout_seconds: 30,
            }],
            pre_destroy: vec![HookStep::local(LocalCommand::Shell("backup".into()))],
        };
        let lines = |tasks| {
            hooks
                .planned(&[HookPhase::PreDeploy, HookPhase::PostDeploy], tasks)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(Some(TaskRunner::new("Kubernetes Job", TaskInput::Command))),
            [
                "pre_deploy: local command `make check` (timeout 600s)",
                "pre_deploy: Kubernetes Job `migrate up` (timeout 300s)",
                "post_deploy: local command `./notify done` (timeout 30s)",
            ]
        );
        assert_eq!(
            lines(Some(TaskRunner::new("Lambda invoke", TaskInput::Event)))[1],
            "pre_deploy: Lambda invoke with event {\"action\":\"migrate\"} (timeout 300s)"
        );
        assert_eq!(
            lines(None)[1],
            "pre_deploy: a task (this target runs none) `migrate up` (timeout 300s)"
        );
        let json = serde_json::to_value(hooks.planned(
            &[HookPhase::PreDeploy],
            Some(TaskRunner::new("Lambda invoke", TaskInput::Event)),
        ))
        .unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"phase": "pre_deploy", "runs": "Lambda invoke",
                "event": "{\"action\":\"migrate\"}", "timeout_seconds": 300})
        );
        assert_eq!(hooks.planned(&[HookPhase::PreDestroy], None).len(), 1);
    }

    #[test]
    fn context_names_every_variable() {
        let c = HookContext::new("shop", "1.2.0", "prod").for_target("k8s", None);
        let names: Vec<_> = c.vars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "DEPLOYCTL_APP",
                "DEPLOYCTL_VERSION",
                "DEPLOYCTL_TARGET",
                "DEPLOYCTL_IMAGE",
                "DEPLOYCTL_ENV"
            ]
        );
        assert_eq!(c.vars()[2].1, "k8s");
    }
}
