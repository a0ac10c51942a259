//! The runner `deployctl serve` gives the server: each job or read is a `deployctl --output
//! json <command>` — this very executable, so the same pipeline, adapters, events and error
//! kinds as a command from a terminal — run as a child process in a directory of its own
//! holding the config. Jobs: `deploy [target] [--image …]` (deploy and redeploy), `scale k8s
//! N`, `rollback <target> [--to N]` per target, `destroy`. Reads: `status`, `logs <target>
//! [-f] [--since Ns]`. Its JSON event lines are the job's events; its result line is the
//! result; cancelling sends it SIGTERM, which the CLI turns into a cancellation between
//! remote calls (exit 130). A child per job also keeps one job's crash from taking the
//! server down.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deployctl_core::{Cancellation, ErrorKind};
use deployctl_server::{
    AppConfig, DeployRequest, Job, JobEvents, LogLine, LogLines, LogsQuery, Operation, Outcome,
    ReadError, Runner,
};
use serde_json::{Value, json};

/// The variable a job gets: the pid of the server that started it (see [`orphaned`]).
const SERVER_PID_VAR: &str = "DEPLOYCTL_SERVE_PID";

/// In a child a server started (its [`SERVER_PID_VAR`] is set): asks the kernel for SIGTERM
/// when the server dies — the CLI's cancellation, so the job stops after its current remote
/// call and kills its hook steps (exit 130) — and answers `true` when the server is gone
/// already. A server killed with `kill -9` must not leave a job deploying while its restart,
/// or another server on the same database, runs the app's next deployment. (The signal
/// follows the server's thread that spawned the child: a tokio worker, which lives as long
/// as the server.)
pub fn orphaned() -> bool {
    let Some(server) = std::env::var(SERVER_PID_VAR)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return false;
    };
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    }
    // Asked after the fork: a server that died before is seen here.
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(server)
}

/// Runs jobs as `deployctl` child processes, in `jobs_dir/<id>/`.
#[derive(Debug)]
pub struct ProcessRunner {
    exe: PathBuf,
    jobs_dir: PathBuf,
    reads: AtomicU64,
}

/// How a child ended.
struct Ended {
    /// Its result line (`null` when it printed none).
    result: Value,
    /// Its exit code (`None`: a signal).
    code: Option<i32>,
    /// The tail of its stderr.
    log: String,
}

impl Ended {
    /// The error the child reported (with its hint), else its exit and stderr's tail.
    fn message(&self, command: &str) -> String {
        let error = &self.result["error"];
        match error["message"].as_str() {
            Some(m) => {
                let mut m = m.to_owned();
                if let Some(h) = error["hint"].as_str() {
                    m.push_str(&format!(" (hint: {h})"));
                }
                m
            }
            None => {
                let tail: Vec<&str> = self.log.lines().rev().take(5).collect();
                format!(
                    "deployctl {command} exited with {}: {}",
                    self.code
                        .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )
            }
        }
    }

    fn read_error(&self, command: &str) -> ReadError {
        if self.code == Some(ErrorKind::InvalidInput.exit_code()) {
            ReadError::invalid(self.message(command))
        } else {
            ReadError::failed(self.message(command))
        }
    }
}

impl ProcessRunner {
    pub fn new(exe: PathBuf, jobs_dir: PathBuf) -> Self {
        Self {
            exe,
            jobs_dir,
            reads: AtomicU64::new(0),
        }
    }

    /// `deployctl --config <dir>/deploy.yaml --output json [--env E] <args>` in `dir`.
    fn command(&self, request: &DeployRequest, dir: &Path, args: &[String]) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--config")
            .arg(dir.join("deploy.yaml"))
            .args(["--output", "json"]);
        if let Some(env) = &request.env {
            c.args(["--env", env]);
        }
        c.args(args)
            .current_dir(dir)
            .env(SERVER_PID_VAR, std::process::id().to_string())
            // A job runs here, never on another server the server's environment names.
            .env_remove(super::remote::SERVER_VAR)
            .env_remove(super::remote::TOKEN_VAR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        c
    }

    /// A directory with the request's deploy.yaml and an empty stderr.log.
    fn prepare(dir: &Path, request: &DeployRequest) -> Result<std::fs::File, String> {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(dir.join("deploy.yaml"), &request.config))
            .and_then(|()| std::fs::File::create(dir.join("stderr.log")))
            .map_err(|e| format!("cannot prepare the job directory {}: {e}", dir.display()))
    }

    /// A fresh directory for a read.
    fn read_dir(&self, what: &str) -> PathBuf {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        self.jobs_dir
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Runs one child in `dir` to its end: each JSON line goes to `line` (the result line is
    /// kept); SIGTERM once `stop` completes.
    async fn child(
        &self,
        request: &DeployRequest,
        dir: &Path,
        args: &[String],
        line: impl FnMut(&Value) -> bool + Send + 'static,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Ended, String> {
        self.child_in(request, dir, dir, args, line, stop).await
    }

    /// [`Self::child`] working in `work` (an upload's app directory: its deploy.yaml, the
    /// build context), the log kept in `dir`, out of the build context.
    async fn child_in(
        &self,
        request: &DeployRequest,
        dir: &Path,
        work: &Path,
        args: &[String],
        mut line: impl FnMut(&Value) -> bool + Send + 'static,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Ended, String> {
        let stderr = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("stderr.log"))
            .map_err(|e| format!("cannot open {}: {e}", dir.join("stderr.log").display()))?;
        let mut cmd = self.command(request, work, args);
        cmd.stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let reading = tokio::task::spawn_blocking(move || {
            let mut result = None;
            let mut wanted = true;
            if let Some(out) = stdout {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Value>(&l) {
                        Ok(v) if v["type"] == "result" => result = Some(v),
                        // Nobody wants more: stop the child, read to its end.
                        Ok(v) if wanted && !line(&v) => {
                            wanted = false;
                            terminate(pid);
                        }
                        _ => {}
                    }
                }
            }
            (result, child.wait())
        });
        tokio::pin!(reading);
        let joined = tokio::select! {
            r = &mut reading => r,
            () = stop => {
                // The CLI stops after its current remote call and exits 130.
                terminate(pid);
                reading.await
            }
        };
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        match joined {
            Ok((result, Ok(status))) => Ok(Ended {
                result: result.unwrap_or(Value::Null),
                code: status.code(),
                log,
            }),
            Ok((_, Err(e))) => Err(format!("cannot wait for the deployctl process: {e}")),
            Err(e) => Err(format!("the deployctl reader failed: {e}")),
        }
    }

    /// One job's child: events to `events`, the end as an outcome.
    async fn job_step(
        &self,
        job: &Job,
        dir: &Path,
        command: &str,
        args: Vec<String>,
        events: &JobEvents,
        cancel: &Cancellation,
    ) -> Outcome {
        let sink = events.clone();
        // An upload builds and deploys from its unpacked directory (the server removes it).
        let work = job.dir.as_deref().unwrap_or(dir);
        let ended = self
            .child_in(
                &job.request,
                dir,
                work,
                &args,
                move |v| {
                    if v["type"] == "event" {
                        sink.json(v.clone());
                    }
                    true
                },
                cancel.cancelled(),
            )
            .await;
        match ended {
            Err(e) => Outcome::failed(Value::Null, e),
            Ok(end) => match end.code {
                Some(0) => Outcome::succeeded(end.result),
                Some(c) if c == ErrorKind::Cancelled.exit_code() => Outcome::cancelled(end.result),
                code => {
                    let message = end.message(command);
                    let result = if end.result.is_null() {
                        json!({ "exit_code": code })
                    } else {
                        end.result
                    };
                    Outcome::failed(result, message)
                }
            },
        }
    }
}

/// A job's or read's directory, removed when dropped (also when a client that went away
/// drops the read's future).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SIGTERM to `pid` (the CLI's cancellation).
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn deploy_args(request: &DeployRequest) -> Vec<String> {
    let mut a = vec!["deploy".to_owned()];
    if let Some(t) = &request.target {
        a.push(t.clone());
    }
    if let Some(image) = &request.image {
        a.extend(["--image".to_owned(), image.clone()]);
    }
    a
}

#[async_trait]
impl Runner for ProcessRunner {
    async fn run(&self, job: Job, events: JobEvents, cancel: Cancellation) -> Outcome {
        let dir = self.jobs_dir.join(&job.id);
        let _scratch = Scratch(dir.clone());
        if let Err(e) = Self::prepare(&dir, &job.request) {
            return Outcome::failed(Value::Null, e);
        }
        match &job.operation {
            Operation::Scale { replicas } => {
                let args = vec!["scale".into(), "k8s".into(), replicas.to_string()];
                self.job_step(&job, &dir, "scale", args, &events, &cancel)
                    .await
            }
            Operation::Rollback { targets, to } => {
                // One target after the other; the first that fails ends the job.
                let mut results = Vec::new();
                let mut last = Outcome::succeeded(json!({ "targets": [] }));
                for t in targets {
                    let mut args = vec!["rollback".into(), t.clone()];
                    if let Some(n) = to {
                        args.extend(["--to".to_owned(), n.to_string()]);
                    }
                    last = self
                        .job_step(&job, &dir, "rollback", args, &events, &cancel)
                        .await;
                    if let Some(rows) = last.result["targets"].as_array() {
                        results.extend(rows.iter().cloned());
                    }
                    if !last.ok {
                        break;
                    }
                }
                last.result = json!({ "command": "rollback", "ok": last.ok, "targets": results });
                last
            }
            Operation::Destroy => {
                self.job_step(
                    &job,
                    &dir,
                    "destroy",
                    vec!["destroy".into()],
                    &events,
                    &cancel,
                )
                .await
            }
            // Deploy, Redeploy and whatever comes: the request's deploy.
            _ => {
                self.job_step(
                    &job,
                    &dir,
                    "deploy",
                    deploy_args(&job.request),
                    &events,
                    &cancel,
                )
                .await
            }
        }
    }

    async fn status(&self, app: &AppConfig) -> Result<Value, ReadError> {
        let dir = self.read_dir("status");
        let _scratch = Scratch(dir.clone());
        Self::prepare(&dir, &app.request).map_err(ReadError::failed)?;
        let ended = self
            .child(
                &app.request,
                &dir,
                &["status".to_owned()],
                |_| true,
                std::future::pending(),
            )
            .await;
        let end = ended.map_err(ReadError::failed)?;
        if end.code == Some(0) && end.result.is_object() {
            Ok(end.result)
        } else {
            Err(end.read_error("status"))
        }
    }

    async fn logs(
        &self,
        app: &AppConfig,
        target: &str,
        query: &LogsQuery,
        lines: LogLines,
    ) -> Result<(), ReadError> {
        let dir = self.read_dir("logs");
        let _scratch = Scratch(dir.clone());
        Self::prepare(&dir, &app.request).map_err(ReadError::failed)?;
        let mut args = vec!["logs".to_owned(), target.to_owned()];
        if query.follow {
            args.push("--follow".to_owned());
        }
        if let Some(s) = query.since_seconds {
            args.extend(["--since".to_owned(), format!("{s}s")]);
        }
        let sink = lines.clone();
        let name = target.to_owned();
        let ended = self
            .child(
                &app.request,
                &dir,
                &args,
                move |v| {
                    if v["type"] != "log" {
                        return true;
                    }
                    sink.send_blocking(LogLine::new(
                        &name,
                        v["source"].as_str().unwrap_or_default(),
                        v["text"].as_str().unwrap_or_default(),
                        v["at_ms"].as_i64(),
                    ))
                },
                // The client went away: stop reading.
                lines.closed(),
            )
            .await;
        let end = ended.map_err(ReadError::failed)?;
        match end.code {
            Some(0) => Ok(()),
            // Stopped because the client went away.
            _ if lines.is_closed() => Ok(()),
            _ => Err(end.read_error("logs")),
        }
    }
}
