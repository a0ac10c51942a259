//! Hook tasks on Lambda: an invoke of a qualified function (`name:version`) with the task's
//! event. A `pre_deploy` task invokes the version just published, before the `live` alias
//! moves (from [`crate::apply`]); a function error stops the deploy there, so the alias
//! stays on the version live before. A `post_deploy` task invokes the alias.
//!
//! The invoke asks for the log tail (`LogType: Tail`, the last 4 KB the invocation wrote to
//! CloudWatch Logs, as `x-amz-log-result`): its lines go to the hook's output before the
//! answer or the error, with known secret values scrubbed, so a failing migration says why.

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
        .log_type(aws_sdk_lambda::types::LogType::Tail)
        .send()
        .await
        .map_err(|e| AwsError::sdk("lambda", "Invoke", qualified, e))?;
    let body = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    let body = deployctl_core::redact_known(&body);
    if let Some(tail) = out.log_result() {
        for line in log_tail(tail) {
            output.line(&line);
        }
    }
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

/// The lines of an invoke's log tail (base64, as Lambda sends it), each marked as the
/// function's log and scrubbed of known secret values; one line saying so when it cannot
/// be read.
fn log_tail(encoded: &str) -> Vec<String> {
    let Ok(bytes) = aws_smithy_types::base64::decode(encoded.trim()) else {
        return vec!["log: the invoke's log tail is not base64; not shown".to_owned()];
    };
    let text = deployctl_core::redact_known(&String::from_utf8_lossy(&bytes));
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(|l| format!("log: {l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn the_log_tail_is_decoded_line_by_line_and_scrubbed() {
        let _known = deployctl_core::Secret::new("s3cr3t-tail-value");
        let raw = "START RequestId: 1 Version: 2\nmigrating with s3cr3t-tail-value\n\nEND RequestId: 1\r\n";
        let lines = log_tail(&aws_smithy_types::base64::encode(raw));
        assert_eq!(
            lines,
            [
                "log: START RequestId: 1 Version: 2",
                "log: migrating with ***",
                "log: END RequestId: 1",
            ]
        );
        assert_eq!(
            log_tail("%%% not base64"),
            ["log: the invoke's log tail is not base64; not shown"]
        );
        assert!(log_tail("").is_empty());
    }
}
