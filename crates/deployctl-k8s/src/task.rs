//! Hook tasks as Jobs (`hooks.*[].task`, how migrations run): a `batch/v1` Job from the
//! image being deployed, with the Deployment's own pod spec — the app's env, ConfigMap,
//! Secret, service account, image-pull Secret, security context and volumes — and the
//! task's command; no ports, no probes, `restartPolicy: Never`, no retries.
//!
//! [`K8sTarget::run_task`](crate::K8sTarget) applies the ServiceAccount, ConfigMap and
//! Secrets first, so the task sees the configuration it deploys with, and the Deployment
//! only afterwards (the pipeline's apply): the order Helm hooks get wrong. It then waits for
//! the Job, passes its pod's log lines on, fails with the container's exit code and last
//! lines, and deletes the Job (and its pods) as the task's cleanup policy says.
//!
//! The Job's labels are its own (`deployctl/hook-of`, `deployctl/task`), never the app's
//! instance or selector labels: the Service does not send traffic to a task's pod, and
//! prune never lists it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use deployctl_config::Config;
use deployctl_core::{Cancellation, HookOutput, HookPhase, PushedImage, TargetTask};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::apply::FIELD_MANAGER;
use crate::cluster::Cluster;
use crate::error::{Error, api_err, is_not_found};
use crate::render::{MANAGED_BY, Manifest, RenderInput, render};

/// The kinds applied before a task runs: what its pod references.
const BEFORE_TASK: [&str; 3] = ["ServiceAccount", "ConfigMap", "Secret"];

/// How many of a failed task's last log lines its error repeats.
const LAST_LINES: usize = 10;

/// How often the Job, its pod and its log are read while it runs.
const POLL: Duration = Duration::from_millis(400);

/// How this target runs a hook's `task`, as plans say it: a Job running the step's command.
pub const TASK_RUNNER: deployctl_core::TaskRunner =
    deployctl_core::TaskRunner::new("Kubernetes Job", deployctl_core::TaskInput::Command);

/// The label naming the app a task belongs to.
pub const HOOK_OF_LABEL: &str = "deployctl/hook-of";

/// The label naming a task's Job on the Job and its pods.
pub const TASK_LABEL: &str = "deployctl/task";

/// The Job's name: `<app>-<phase>-<hash>`, the hash over the image digest and command (so
/// a re-run of the same task for the same image reuses the name), at most 63 characters.
pub fn job_name(app: &str, phase: HookPhase, image: &PushedImage, task: &TargetTask) -> String {
    let mut h = sha2::Sha256::new();
    h.update(image.digest().as_str());
    for part in &task.command {
        h.update([0]);
        h.update(part);
    }
    let hash: String = h
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let phase = match phase {
        HookPhase::PreDeploy => "pre",
        HookPhase::PostDeploy => "post",
        _ => "hook",
    };
    let suffix = format!("-{phase}-{hash}");
    let room = 63 - suffix.len();
    let app: String = app.chars().take(room).collect();
    format!("{}{suffix}", app.trim_end_matches('-'))
}

/// The Job for `task`, from the rendered manifests' Deployment (its pod spec), and the
/// manifests the task's pod references (applied before it).
pub fn task_job(
    config: &Config,
    image: &PushedImage,
    phase: HookPhase,
    task: &TargetTask,
) -> Result<(Value, Vec<Manifest>), Error> {
    let manifests = render(RenderInput::new(config, image))?;
    let deployment = manifests
        .iter()
        .find(|m| m.kind == "Deployment")
        .ok_or_else(|| Error::Missing("the manifests render no Deployment".into()))?;
    let job = job_from_deployment(config, image, phase, task, &deployment.value)?;
    let before = manifests
        .into_iter()
        .filter(|m| BEFORE_TASK.contains(&m.kind.as_str()))
        .collect();
    Ok((job, before))
}

fn job_from_deployment(
    config: &Config,
    image: &PushedImage,
    phase: HookPhase,
    task: &TargetTask,
    deployment: &Value,
) -> Result<Value, Error> {
    let name = job_name(&config.app.name, phase, image, task);
    let mut pod = deployment
        .pointer("/spec/template/spec")
        .cloned()
        .ok_or_else(|| Error::Missing("the Deployment has no pod spec".into()))?;
    pod["restartPolicy"] = json!("Never");
    if let Some(containers) = pod["containers"].as_array_mut() {
        containers.truncate(1);
        if let Some(c) = containers.first_mut().and_then(Value::as_object_mut) {
            for field in ["ports", "livenessProbe", "readinessProbe", "startupProbe"] {
                c.remove(field);
            }
            c.insert("command".into(), json!(task.command));
            c.remove("args");
        }
    }
    let labels = json!({
        "app.kubernetes.io/managed-by": MANAGED_BY,
        HOOK_OF_LABEL: config.app.name,
        TASK_LABEL: name,
        "deployctl/hook-phase": phase.name(),
    });
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": config.kubernetes.namespace,
            "labels": labels,
            "annotations": {"deployctl/image": image.reference.to_string()},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": task.timeout_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": pod,
            },
        },
    });
    // Typed check: the document is a Job the API accepts in shape.
    serde_json::from_value::<Job>(job.clone())
        .map_err(|e| Error::Missing(format!("the task's Job does not fit batch/v1 Job: {e}")))?;
    Ok(job)
}

/// How a Job ended.
enum Ended {
    Succeeded,
    Failed(String),
}

fn ended(job: &Job) -> Option<Ended> {
    let status = job.status.as_ref()?;
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if status.succeeded.unwrap_or(0) > 0 || condition("Complete").is_some() {
        return Some(Ended::Succeeded);
    }
    if let Some(c) = condition("Failed") {
        return Some(Ended::Failed(
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "failed".into()),
        ));
    }
    (status.failed.unwrap_or(0) > 0).then(|| Ended::Failed("its pod failed".into()))
}

/// The exit code of the pod's first container, when it terminated.
fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

impl Cluster {
    /// Runs `job` (after applying `before`): waits for it, passes its log lines to
    /// `output`, and cleans it up per `task.cleanup`.
    pub(crate) async fn run_task_job(
        &self,
        job: &Value,
        before: &[Manifest],
        task: &TargetTask,
        output: &dyn HookOutput,
        cancel: &Cancellation,
    ) -> Result<(), Error> {
        let name = job
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.ensure_namespace().await?;
        for m in before {
            self.apply_manifest(m, false, false).await?;
            output.line(&format!("applied {}/{} before the task", m.kind, m.name));
        }
        let jobs: Api<Job> = self.api();
        let pods: Api<Pod> = self.api();
        // A Job of the same name is this task for this image, kept from an earlier run.
        self.delete_task(&jobs, &pods, &name).await?;
        self.wait_gone(&jobs, &name, cancel).await?;
        jobs.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(job),
        )
        .await
        .map_err(|e| api_err("apply", format!("Job/{name}"), e))?;
        output.line(&format!("Job/{name} created; waiting for it to finish"));

        let deadline = Instant::now() + Duration::from_secs(u64::from(task.timeout_seconds) + 30);
        let selector = ListParams::default().labels(&format!("{TASK_LABEL}={name}"));
        let mut printed = 0usize;
        let mut tail: VecDeque<String> = VecDeque::new();
        let result = loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("Job/{name} finished")));
            }
            let current = jobs
                .get_opt(&name)
                .await
                .map_err(|e| api_err("get", format!("Job/{name}"), e))?;
            let pod = pods
                .list(&selector)
                .await
                .map_err(|e| api_err("list", format!("pods of Job/{name}"), e))?
                .items
                .into_iter()
                .next();
            if let Some(pod) = &pod {
                self.pass_log(&pods, pod, &mut printed, &mut tail, output)
                    .await;
            }
            match current.as_ref().and_then(ended) {
                Some(Ended::Succeeded) => break Ok(()),
                Some(Ended::Failed(reason)) => {
                    break Err((reason, pod.as_ref().and_then(exit_code)));
                }
                None if current.is_none() => {
                    break Err(("the Job was deleted while it ran".into(), None));
                }
                None => {}
            }
            if Instant::now() >= deadline {
                break Err((
                    format!("it did not finish within {} s", task.timeout_seconds),
                    None,
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = cancel.cancelled() => {}
            }
        };
        if task.cleanup.deletes(result.is_ok()) {
            self.delete_task(&jobs, &pods, &name).await?;
            output.line(&format!("Job/{name} deleted"));
        }
        result.map_err(|(reason, code)| Error::Task {
            job: name.clone(),
            reason,
            exit_code: code,
            last_lines: tail.into(),
            kept: !task.cleanup.deletes(false),
        })
    }

    /// Passes the pod's log lines after the first `printed` to `output`.
    async fn pass_log(
        &self,
        pods: &Api<Pod>,
        pod: &Pod,
        printed: &mut usize,
        tail: &mut VecDeque<String>,
        output: &dyn HookOutput,
    ) {
        let Some(pod_name) = pod.metadata.name.as_deref() else {
            return;
        };
        // A pod still being created has no log yet: an error here is not the task's.
        let Ok(text) = pods.logs(pod_name, &LogParams::default()).await else {
            return;
        };
        for line in text.lines().skip(*printed) {
            let line = deployctl_core::redact_known(line);
            output.line(&line);
            if tail.len() == LAST_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
            *printed += 1;
        }
    }

    /// Deletes the Job `name` and its pods (foreground for the Job), if there.
    async fn delete_task(&self, jobs: &Api<Job>, pods: &Api<Pod>, name: &str) -> Result<(), Error> {
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_err("delete", format!("Job/{name}"), e)),
        }
        let selector = ListParams::default().labels(&format!("{TASK_LABEL}={name}"));
        let listed = pods
            .list(&selector)
            .await
            .map_err(|e| api_err("list", format!("pods of Job/{name}"), e))?;
        for p in listed.items {
            let pod = p.metadata.name.unwrap_or_default();
            match pods.delete(&pod, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err("delete", format!("Pod/{pod}"), e)),
            }
        }
        Ok(())
    }

    async fn wait_gone(
        &self,
        jobs: &Api<Job>,
        name: &str,
        cancel: &Cancellation,
    ) -> Result<(), Error> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let there = jobs
                .get_opt(name)
                .await
                .map_err(|e| api_err("get", format!("Job/{name}"), e))?;
            if there.is_none() {
                return Ok(());
            }
            if Instant::now() >= until || cancel.is_cancelled() {
                return Err(Error::Missing(format!(
                    "Job/{name} from an earlier run is still being deleted"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
