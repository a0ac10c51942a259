//! Hook tasks on Lambda: an invoke of a qualified function (`name:version`) with the task's
//! event. A `pre_deploy` task invokes the version just published, before the `live` alias
//! moves (from [`crate::apply`]); a function error stops the deploy there, so the alias
//! stays on the version live before. A `post_deploy` task invokes the alias.

use deployctl_core::{HookOutput, TargetTask};

use crate::error::AwsError;

/// How this target runs a hook's `task`, as plans say it: an invoke with the step's event.
pub const TASK_RUNNER: deployctl_core::TaskRunner =
    deployctl_core::TaskRunner::new("Lambda invoke", deployctl_core::TaskInput::Event);

/// How much of a response payload an error or output line repeats.
const EXCERPT: usize = 400;

fn excerpt(s: &str) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= EXCERPT {
        return one_line;
    }
    let cut: String = one_line.chars().take(EXCERPT).collect();
    format!("{cut}…")
}

/// Invokes `qualified` with `task`'s event (`{}` when none); the response payload goes to
/// `output`; a function error is [`AwsError::Task`].
pub(crate) async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    qualified: &str,
    task: &TargetTask,
    output: &dyn HookOutput,
) -> Result<(), AwsError> {
    let event = task.event.clone().unwrap_or_else(|| "{}".to_owned());
    output.line(&format!("invoking {qualified} with the task's event"));
    let out = lambda
        .invoke()
        .function_name(qualified)
        .payload(aws_smithy_types::Blob::new(event))
        .send()
        .await
        .map_err(|e| AwsError::sdk("lambda", "Invoke", qualified, e))?;
    let body = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    let body = deployctl_core::redact_known(&body);
    if let Some(err) = out.function_error() {
        return Err(AwsError::Task {
            function: qualified.to_owned(),
            error: err.to_owned(),
            payload: excerpt(&body),
        });
    }
    output.line(&format!("{qualified} answered: {}", excerpt(&body)));
    Ok(())
}
