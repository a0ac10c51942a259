//! The hook stages of a run: `pre_deploy` / `post_deploy` around a target's apply and
//! `pre_destroy` before its destroy (the rules are in [`crate::hooks`]).

use super::{Pipeline, StageOutcome, to_outcome};
use crate::cancel::Cancellation;
use crate::error::{ErrorKind, StageError};
use crate::event::{Event, EventKind, EventSink, Stage};
use crate::hooks::{HookContext, HookOutput, HookPhase, HookRunner, HookStep, Hooks};
use crate::image::PushedImage;
use crate::plan::Plan;
use crate::target::Target;

/// The hooks a pipeline runs, and how.
pub(super) struct HookSetup<'a> {
    pub(super) hooks: &'a Hooks,
    runner: &'a dyn HookRunner,
    context: HookContext,
}

/// A hook's output lines as `Message` events of its stage.
struct StageOutput<'a> {
    events: &'a dyn EventSink,
    stage: Stage,
}

impl HookOutput for StageOutput<'_> {
    fn line(&self, text: &str) {
        self.events.emit(Event::now(
            self.stage.clone(),
            EventKind::Message {
                text: text.to_owned(),
            },
        ));
    }
}

impl<'a> Pipeline<'a> {
    /// Runs `hooks` around each target's deploy (see the [hook rules](crate::Hooks)):
    /// local steps through `runner` with the variables of `context` (its target and image
    /// filled in per target), tasks through [`Target::run_task`]. Without it (`--skip-hooks`)
    /// no hook runs and plans list none.
    pub fn with_hooks(
        mut self,
        hooks: &'a Hooks,
        runner: &'a dyn HookRunner,
        context: HookContext,
    ) -> Self {
        self.hooks = Some(HookSetup {
            hooks,
            runner,
            context,
        });
        self
    }

    /// Runs the `phase` hooks of `target` (deploying or destroying `image`) as their stage,
    /// output lines as its messages. `Skipped` when there are none (no event then).
    /// [`Pipeline::run`] calls it for `pre_deploy` and `post_deploy`; a destroy calls it
    /// for `pre_destroy` before deleting anything, and deletes nothing when it failed.
    pub async fn run_hooks(
        &self,
        phase: HookPhase,
        target: &dyn Target,
        image: Option<&PushedImage>,
        cancel: &Cancellation,
    ) -> StageOutcome<usize> {
        let Some(setup) = &self.hooks else {
            return StageOutcome::Skipped("hooks are off".into());
        };
        let steps = setup.hooks.steps(phase);
        if steps.is_empty() {
            return StageOutcome::Skipped(format!("no {phase} hooks"));
        }
        let stage = Stage::hook(phase, target.name());
        let output = StageOutput {
            events: self.events,
            stage: stage.clone(),
        };
        let context = setup.context.for_target(target.name(), image);
        let work = async {
            for step in steps {
                output.line(&format!(
                    "> {}",
                    step.planned(phase, target.task_runner()).describe()
                ));
                match step {
                    HookStep::Local {
                        command,
                        timeout_seconds,
                    } => {
                        let timeout = std::time::Duration::from_secs((*timeout_seconds).into());
                        setup
                            .runner
                            .run(command, timeout, &context, &output, cancel)
                            .await?;
                    }
                    HookStep::Task(task) => {
                        let Some(image) = image else {
                            return Err(StageError::new(
                                ErrorKind::InvalidInput,
                                format!(
                                    "{phase}: a task runs from the deployed image, and this run has none"
                                ),
                            ));
                        };
                        target.run_task(phase, task, image, &output, cancel).await?;
                    }
                }
            }
            Ok(steps.len())
        };
        to_outcome(
            self.stage(stage, |n: &usize| format!("{n} hook step(s) ran"), work)
                .await,
        )
    }
}

/// Whether a failed `post_deploy` hook rolls `target` back: only a target that does so,
/// and only when this deploy changed something (else the version live before is the one
/// live now, and a rollback would move to an older one).
pub(super) fn rolls_back_after_hook(target: &dyn Target, applied: &Plan) -> bool {
    target.rolls_back_on_failed_hook() && !applied.is_noop()
}

#[cfg(test)]
#[path = "hook_tests.rs"]
mod tests;
