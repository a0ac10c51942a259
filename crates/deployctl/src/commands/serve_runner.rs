//! The runner `deployctl serve` gives the server: each job is `deployctl --output json
//! deploy` — this very executable, so the same pipeline, adapters, events and error kinds as
//! a deploy from a terminal — run as a child process in the job's own directory. Its JSON
//! event lines are the job's events; its result line is the job's result; cancelling sends
//! it SIGTERM, which the CLI turns into a cancellation between remote calls (exit 130). A
//! child per job also keeps one job's crash from taking the server down.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use async_trait::async_trait;
use deployctl_core::{Cancellation, ErrorKind};
use deployctl_server::{Job, JobEvents, Outcome, Runner};
use serde_json::{Value, json};

/// Runs jobs as `deployctl deploy` child processes, in `jobs_dir/<id>/`.
#[derive(Debug)]
pub struct ProcessRunner {
    exe: PathBuf,
    jobs_dir: PathBuf,
}

impl ProcessRunner {
    pub fn new(exe: PathBuf, jobs_dir: PathBuf) -> Self {
        Self { exe, jobs_dir }
    }

    fn command(&self, job: &Job, dir: &std::path::Path) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--config")
            .arg(dir.join("deploy.yaml"))
            .args(["--output", "json"]);
        if let Some(env) = &job.request.env {
            c.args(["--env", env]);
        }
        c.arg("deploy");
        if let Some(t) = &job.request.target {
            c.arg(t);
        }
        if let Some(image) = &job.request.image {
            c.args(["--image", image]);
        }
        c.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        c
    }
}

#[async_trait]
impl Runner for ProcessRunner {
    async fn deploy(&self, job: Job, events: JobEvents, cancel: Cancellation) -> Outcome {
        let dir = self.jobs_dir.join(&job.id);
        let prepared = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("deploy.yaml"), &job.request.config))
            .and_then(|()| std::fs::File::create(dir.join("stderr.log")));
        let stderr = match prepared {
            Ok(f) => f,
            Err(e) => {
                return Outcome::failed(
                    Value::Null,
                    format!("cannot prepare the job directory {}: {e}", dir.display()),
                );
            }
        };
        let mut cmd = self.command(&job, &dir);
        cmd.stderr(stderr);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome::failed(
                    Value::Null,
                    format!("cannot start {}: {e}", self.exe.display()),
                );
            }
        };
        let pid = child.id();
        let stdout = child.stdout.take();
        let reading = tokio::task::spawn_blocking(move || {
            let mut result = None;
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v["type"] == "event" => events.json(v),
                        Ok(v) if v["type"] == "result" => result = Some(v),
                        _ => {}
                    }
                }
            }
            (result, child.wait())
        });
        tokio::pin!(reading);
        let joined = tokio::select! {
            r = &mut reading => r,
            () = cancel.cancelled() => {
                // The CLI stops after its current remote call and exits 130.
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                reading.await
            }
        };
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        let (result, status) = match joined {
            Ok((result, Ok(status))) => (result.unwrap_or(Value::Null), status),
            Ok((_, Err(e))) => {
                return Outcome::failed(
                    Value::Null,
                    format!("cannot wait for the deploy process: {e}"),
                );
            }
            Err(e) => {
                return Outcome::failed(Value::Null, format!("the deploy reader failed: {e}"));
            }
        };
        match status.code() {
            Some(0) => Outcome::succeeded(result),
            Some(c) if c == ErrorKind::Cancelled.exit_code() => Outcome::cancelled(result),
            code => {
                let error = &result["error"];
                let message = match error["message"].as_str() {
                    Some(m) => {
                        let mut m = m.to_owned();
                        if let Some(h) = error["hint"].as_str() {
                            m.push_str(&format!(" (hint: {h})"));
                        }
                        m
                    }
                    None => {
                        let tail: Vec<&str> = log.lines().rev().take(5).collect();
                        format!(
                            "deployctl deploy exited with {}: {}",
                            code.map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
                            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                        )
                    }
                };
                let result = if result.is_null() {
                    json!({ "exit_code": code })
                } else {
                    result
                };
                Outcome::failed(result, message)
            }
        }
    }
}
