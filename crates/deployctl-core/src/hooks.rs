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

use async_trait::async_trait;

use crate::cancel::Cancellation;
use crate::error::StageError;
use crate::image::PushedImage;

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
    /// A task running `command`, with a 600 s timeout, cleaned up on success.
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            event: None,
            timeout_seconds: 600,
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
    },
    /// A task in the target.
    Task(TargetTask),
}

impl HookStep {
    /// One line saying what the step does, for plans and events.
    pub fn describe(&self) -> String {
        match self {
            HookStep::Local {
                command: LocalCommand::Shell(line),
            } => format!("run `{line}` here"),
            HookStep::Local {
                command: LocalCommand::Argv(argv),
            } => format!("run `{}` here", argv.join(" ")),
            HookStep::Task(t) if t.command.is_empty() => {
                "invoke the new version in the target".into()
            }
            HookStep::Task(t) => format!(
                "run `{}` in the target from the new image",
                t.command.join(" ")
            ),
        }
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

    /// What a deploy's plan lists: `pre_deploy: <step>` … then `post_deploy: <step>` ….
    pub fn planned(&self, phases: &[HookPhase]) -> Vec<String> {
        phases
            .iter()
            .flat_map(|p| {
                self.steps(*p)
                    .iter()
                    .map(move |s| format!("{p}: {}", s.describe()))
            })
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
    /// fails (naming the exit status and the last lines) when it does not exit 0, and stops
    /// it when `cancel` fires.
    async fn run(
        &self,
        command: &LocalCommand,
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
                HookStep::Local {
                    command: LocalCommand::Shell("make check".into()),
                },
                HookStep::Task(TargetTask::new(vec!["migrate".into(), "up".into()])),
            ],
            post_deploy: vec![HookStep::Local {
                command: LocalCommand::Argv(vec!["./notify".into(), "done".into()]),
            }],
            pre_destroy: vec![],
        };
        assert_eq!(
            hooks.planned(&[HookPhase::PreDeploy, HookPhase::PostDeploy]),
            [
                "pre_deploy: run `make check` here",
                "pre_deploy: run `migrate up` in the target from the new image",
                "post_deploy: run `./notify done` here",
            ]
        );
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
