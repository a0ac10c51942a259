//! Local hook steps as processes: the core's `HookRunner` over `tokio::process`, run in the
//! app's directory with the deploy's `DEPLOYCTL_*` variables, stdout and stderr streamed
//! line by line (scrubbed of known secrets) as the hook stage's messages.
//!
//! Each step is the leader of its own process group: when it runs past its timeout, or the
//! deploy is interrupted, the whole group is killed — what a `sh -c` line started too, which
//! would otherwise keep running (and keep its output pipe open) after the shell is gone.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use deployctl_core::{
    Cancellation, ErrorKind, HookContext, HookOutput, HookRunner, LocalCommand, StageError,
    redact_known,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// How many of a failed step's last output lines its error repeats.
const LAST_LINES: usize = 10;

/// Runs local steps in `dir` (the directory of the app's `deploy.yaml`).
#[derive(Debug, Clone)]
pub struct ProcessHookRunner {
    dir: PathBuf,
}

impl ProcessHookRunner {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The runner for `config`: its file's directory.
    pub fn for_config(config: &deployctl_config::Config) -> Self {
        let dir = config
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        Self::new(dir)
    }
}

/// A started step's process group, killed when dropped unless it ended by itself: a step
/// that timed out or was interrupted leaves nothing running behind it.
struct Group(Option<rustix::process::Pid>);

impl Group {
    /// The step ended by itself: what it left running in the background is its business.
    fn ended(mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The leader is not reaped yet (its wait did not finish), so the id is still its.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads `from` line by line into `output`, keeping the last lines in `tail`.
async fn pump(
    from: impl AsyncRead + Unpin,
    output: &dyn HookOutput,
    tail: &std::sync::Mutex<VecDeque<String>>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = redact_known(&line);
        output.line(&line);
        let mut t = tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if t.len() == LAST_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// How a step's wait ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    Cancelled,
    TimedOut,
}

#[async_trait]
impl HookRunner for ProcessHookRunner {
    async fn run(
        &self,
        command: &LocalCommand,
        timeout: Duration,
        context: &HookContext,
        output: &dyn HookOutput,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let what = command.shown();
        let mut cmd = match command {
            LocalCommand::Shell(line) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(line);
                c
            }
            LocalCommand::Argv(argv) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            _ => {
                return Err(StageError::new(
                    ErrorKind::InvalidInput,
                    format!("hook step `{what}`: this deployctl cannot run it"),
                ));
            }
        };
        cmd.current_dir(&self.dir)
            .envs(context.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            StageError::new(
                ErrorKind::InvalidInput,
                format!(
                    "hook step `{what}` could not start in {}",
                    self.dir.display()
                ),
            )
            .with_hint(
                "check the program exists and is executable (paths are relative to deploy.yaml)",
            )
            .with_source(e)
        })?;
        let group = Group(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        );
        let tail = std::sync::Mutex::new(VecDeque::new());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let streams = async {
            let out = async {
                if let Some(s) = stdout {
                    pump(s, output, &tail).await;
                }
            };
            let err = async {
                if let Some(s) = stderr {
                    pump(s, output, &tail).await;
                }
            };
            futures::join!(out, err);
            child.wait().await
        };
        let last_lines = |tail: std::sync::Mutex<VecDeque<String>>| -> Vec<String> {
            tail.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .into()
        };
        let ended = tokio::select! {
            status = streams => Ended::Exited(status),
            () = cancel.cancelled() => Ended::Cancelled,
            () = tokio::time::sleep(timeout) => Ended::TimedOut,
        };
        let status = match ended {
            Ended::Exited(status) => status,
            Ended::Cancelled => {
                // Dropping the group kills the step and what it started.
                return Err(StageError::cancelled(&format!(
                    "hook step `{what}` finished"
                )));
            }
            Ended::TimedOut => {
                drop(group);
                let mut message = format!(
                    "hook step `{what}` ran longer than its timeout of {}s and was stopped \
                     (its process group killed)",
                    timeout.as_secs()
                );
                let last = last_lines(tail);
                if !last.is_empty() {
                    message.push_str(&format!("; last lines:\n  {}", last.join("\n  ")));
                }
                return Err(StageError::new(ErrorKind::Failed, message).with_hint(
                    "raise the step's `timeout:` (seconds, up to 86400), or make it finish sooner",
                ));
            }
        }
        .map_err(|e| {
            StageError::new(
                ErrorKind::Failed,
                format!("hook step `{what}`: waiting for it failed"),
            )
            .with_source(e)
        })?;
        group.ended();
        if status.success() {
            return Ok(());
        }
        let code = status.code().map_or_else(
            || "was killed by a signal".to_owned(),
            |c| format!("exited with {c}"),
        );
        let last = last_lines(tail);
        let mut message = format!("hook step `{what}` {code}");
        if !last.is_empty() {
            message.push_str(&format!("; last lines:\n  {}", last.join("\n  ")));
        }
        Err(StageError::new(ErrorKind::Failed, message)
            .with_hint("fix the step, or deploy with --skip-hooks to leave hooks out"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl HookOutput for Lines {
        fn line(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_owned());
        }
    }

    fn run(command: LocalCommand, dir: &std::path::Path) -> (Result<(), StageError>, Vec<String>) {
        run_for(command, dir, Duration::from_secs(600))
    }

    fn run_for(
        command: LocalCommand,
        dir: &std::path::Path,
        timeout: Duration,
    ) -> (Result<(), StageError>, Vec<String>) {
        let lines = Lines::default();
        let context = HookContext::new("shop", "1.2.0", "prod").for_target("k8s", None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(ProcessHookRunner::new(dir).run(
            &command,
            timeout,
            &context,
            &lines,
            &Cancellation::new(),
        ));
        (result, lines.0.into_inner().unwrap())
    }

    #[test]
    fn a_step_runs_in_the_app_dir_with_the_deploy_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), "here\n").unwrap();
        let (result, lines) = run(
            LocalCommand::Shell(
                "cat marker; echo \"$DEPLOYCTL_APP $DEPLOYCTL_VERSION $DEPLOYCTL_TARGET $DEPLOYCTL_ENV [$DEPLOYCTL_IMAGE]\"; echo oops >&2"
                    .into(),
            ),
            dir.path(),
        );
        result.unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.contains(&"here".to_owned()), "{lines:?}");
        assert!(
            lines.contains(&"shop 1.2.0 k8s prod []".to_owned()),
            "{lines:?}"
        );
        assert!(lines.contains(&"oops".to_owned()), "{lines:?}");
    }

    #[test]
    fn a_failing_step_names_its_exit_code_and_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (result, _) = run(
            LocalCommand::Argv(vec![
                "sh".into(),
                "-c".into(),
                "echo migrating; echo 'table locked' >&2; exit 3".into(),
            ]),
            dir.path(),
        );
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed);
        assert!(err.message.contains("exited with 3"), "{}", err.message);
        assert!(err.message.contains("table locked"), "{}", err.message);
    }

    #[test]
    fn a_missing_program_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let (result, _) = run(
            LocalCommand::Argv(vec!["./no-such-script".into()]),
            dir.path(),
        );
        assert_eq!(result.unwrap_err().kind, ErrorKind::InvalidInput);
    }

    /// Whether process `pid` is gone (or a zombie, killed and waiting to be reaped).
    fn gone(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn a_step_past_its_timeout_is_stopped_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        // The shell starts a background sleep (same process group), says so, then waits:
        // killing only the shell would leave the sleep running and the output pipe open.
        let (result, lines) = run_for(
            LocalCommand::Shell("sleep 300 & echo $! > bg.pid; echo waiting; wait".into()),
            dir.path(),
            Duration::from_secs(1),
        );
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed);
        assert!(
            err.message.contains("hook step `sleep 300 & echo $! > bg.pid; echo waiting; wait` ran longer than its timeout of 1s"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("waiting"),
            "the last lines: {}",
            err.message
        );
        assert!(
            err.hint.as_deref().unwrap_or_default().contains("timeout:"),
            "{err:?}"
        );
        assert_eq!(lines, ["waiting"]);
        let bg = std::fs::read_to_string(dir.path().join("bg.pid")).unwrap();
        let bg = bg.trim();
        // The kill is sent before the error returns; the kernel may take a moment to finish it.
        let mut waited = 0;
        while !gone(bg) && waited < 50 {
            std::thread::sleep(Duration::from_millis(100));
            waited += 1;
        }
        assert!(gone(bg), "the step's background process {bg} still runs");
    }

    #[test]
    fn a_step_within_its_timeout_leaves_its_background_processes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (result, _) = run_for(
            LocalCommand::Shell("sleep 5 >/dev/null 2>&1 & echo $! > bg.pid".into()),
            dir.path(),
            Duration::from_secs(60),
        );
        result.unwrap();
        let bg = std::fs::read_to_string(dir.path().join("bg.pid")).unwrap();
        assert!(
            !gone(bg.trim()),
            "a step that ended by itself had its group killed"
        );
        let _ = std::process::Command::new("kill").arg(bg.trim()).status();
    }
}
