//! Hook tasks as Jobs against the stand-in (its Job controller), through the core pipeline:
//! a migration that reads its ConfigMap and Secret runs after they are applied and before
//! the Deployment changes; a failing one leaves the old Deployment untouched and reports
//! the exit code and the last lines.
//!
//! What the stand-in proves and what it does not: it runs no container. Its kubelet
//! resolves the pod's `envFrom` ConfigMap and Secret as they are when the pod starts (a
//! missing one is `CreateContainerConfigError`, as on a real node) and prints the lines the
//! test set with `${NAME}` from that environment, then exits with the code the test chose.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::sync::Mutex;

use async_trait::async_trait;
use deployctl_core::{
    Cancellation, Event, EventKind, EventSink, HookContext, HookOutput, HookRunner, LocalCommand,
    Pipeline, RunMode, RunRequest, Stage, StageError, StageOutcome,
};
use deployctl_kube_standin::{Behavior, StandIn};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;

use common::{client, deploy, image, target};

const HOOKED: &str = "  configmap:\n    DATABASE_HOST: db.shop\nhooks:\n  pre_deploy:\n    - task: { command: [./migrate, up], timeout: 60 }\n";

#[derive(Default)]
struct Lines(Mutex<Vec<(Stage, String)>>);
impl EventSink for Lines {
    fn emit(&self, event: Event) {
        if let EventKind::Message { text } = event.kind {
            self.0.lock().unwrap().push((event.stage, text));
        }
    }
}
impl Lines {
    fn of(&self, stage: &Stage) -> Vec<String> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(s, _)| s == stage)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// This test has no local steps.
struct NoLocal;
#[async_trait]
impl HookRunner for NoLocal {
    async fn run(
        &self,
        _c: &LocalCommand,
        _t: std::time::Duration,
        _x: &HookContext,
        _o: &dyn HookOutput,
        _k: &Cancellation,
    ) -> Result<(), StageError> {
        unreachable!("no local steps here")
    }
}

fn position(mutations: &[String], needle: &str) -> usize {
    mutations
        .iter()
        .position(|m| m.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in {mutations:?}"))
}

#[tokio::test]
async fn a_migration_reads_its_configmap_and_secret_and_runs_before_the_deployment() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    standin.set_job_output(
        "sha256:0202",
        &[
            "migrating on ${DATABASE_HOST}",
            "password: ${DB_PASSWORD}",
            "3 migrations applied",
        ],
    );
    let t = target(&c, HOOKED);
    let hooks = common::config(HOOKED).hooks.to_core();
    let events = Lines::default();
    let pipeline = Pipeline::new(&events).with_target(&t).with_hooks(
        &hooks,
        &NoLocal,
        HookContext::new("web", "1", ""),
    );
    let mut request = RunRequest::deploy_image(RunMode::Apply, image("web", 2));
    request.verify = false;
    let report = pipeline.run(request).await;
    assert!(report.is_success(), "{:?}", report.errors());

    // The task saw the ConfigMap's value and the Secret's (scrubbed from the output).
    let out = events.of(&Stage::PreDeploy("k8s".into()));
    assert!(out.contains(&"migrating on db.shop".to_owned()), "{out:?}");
    assert!(out.contains(&"password: ***".to_owned()), "{out:?}");
    assert!(
        !out.iter().any(|l| l.contains("k8s-secret-value")),
        "{out:?}"
    );

    // ConfigMap and Secret, then the Job, then the Deployment.
    let m = standin.take_mutations();
    let job = position(&m, "PATCH /apis/batch/v1/namespaces/shop/jobs/");
    assert!(position(&m, "/configmaps/web-config") < job, "{m:?}");
    assert!(position(&m, "/secrets/web-secrets") < job, "{m:?}");
    assert!(job < position(&m, "/deployments/web"), "{m:?}");
    // Cleaned up on success.
    let jobs: Api<Job> = Api::namespaced(c.clone(), "shop");
    assert!(
        jobs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_the_old_deployment_and_reports_exit_code_and_logs() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    // Version 1 is live.
    deploy(
        &target(&c, "  configmap:\n    DATABASE_HOST: db.shop\n"),
        &image("web", 1),
    )
    .await
    .unwrap();
    standin.take_mutations();

    standin.set_behavior("sha256:0202", Behavior::Exit(3));
    standin.set_job_output(
        "sha256:0202",
        &[
            "applying 0042_add_index",
            "ERROR: relation \"invoices\" does not exist",
        ],
    );
    let t = target(&c, HOOKED);
    let hooks = common::config(HOOKED).hooks.to_core();
    let events = Lines::default();
    let pipeline = Pipeline::new(&events).with_target(&t).with_hooks(
        &hooks,
        &NoLocal,
        HookContext::new("web", "2", ""),
    );
    let report = pipeline
        .run(RunRequest::deploy_image(RunMode::Apply, image("web", 2)))
        .await;
    assert_eq!(report.exit_code(), 1);
    let target_report = &report.targets[0];
    assert!(matches!(target_report.apply, StageOutcome::NotReached));
    let err = target_report.pre_deploy.error().unwrap();
    assert!(err.message.contains("exit code 3"), "{}", err.message);
    assert!(
        err.message
            .contains("ERROR: relation \"invoices\" does not exist"),
        "{}",
        err.message
    );
    assert!(
        err.hint
            .as_deref()
            .unwrap_or_default()
            .contains("kubectl logs job/")
    );

    // The Deployment was not touched and still runs version 1.
    let m = standin.take_mutations();
    assert!(!m.iter().any(|x| x.contains("/deployments/")), "{m:?}");
    let d: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let live = d.get("web").await.unwrap();
    let image_now = live.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(image_now.contains("sha256:0101"), "{image_now}");
    // The failed Job is kept to inspect (cleanup: on_success), with its Failed condition.
    let jobs: Api<Job> = Api::namespaced(c.clone(), "shop");
    let kept = jobs.list(&Default::default()).await.unwrap().items;
    assert_eq!(kept.len(), 1);
    let failed = kept[0].status.as_ref().unwrap();
    assert_eq!(failed.failed, Some(1));
}

/// A local step that fails (exit 3).
struct Failing;
#[async_trait]
impl HookRunner for Failing {
    async fn run(
        &self,
        _c: &LocalCommand,
        _t: std::time::Duration,
        _x: &HookContext,
        o: &dyn HookOutput,
        _k: &Cancellation,
    ) -> Result<(), StageError> {
        o.line("smoke test: GET /orders answered 500");
        Err(StageError::new(
            deployctl_core::ErrorKind::Failed,
            "hook step `./smoke` exited with 3",
        ))
    }
}

#[tokio::test]
async fn a_failing_post_deploy_step_rolls_the_deployment_back() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let plain = target(&c, "");
    deploy(&plain, &image("web", 1)).await.unwrap();

    let extra = "hooks:\n  post_deploy:\n    - run: ./smoke\n";
    let t = target(&c, extra);
    let hooks = common::config(extra).hooks.to_core();
    let events = Lines::default();
    let pipeline = Pipeline::new(&events).with_target(&t).with_hooks(
        &hooks,
        &Failing,
        HookContext::new("web", "2", ""),
    );
    let mut request = RunRequest::deploy_image(RunMode::Apply, image("web", 2));
    request.verify = false;
    let report = pipeline.run(request).await;
    assert_eq!(report.exit_code(), 1);
    let r = &report.targets[0];
    assert!(
        matches!(r.apply, StageOutcome::Done(_)),
        "version 2 was applied first"
    );
    assert!(r.post_deploy.error().is_some());
    assert!(
        matches!(r.rollback, StageOutcome::Done(_)),
        "rolled back: {:?}",
        r.rollback.error().map(StageError::chain)
    );
    let d: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let live = d.get("web").await.unwrap();
    let image_now = live.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(
        image_now.contains("sha256:0101"),
        "back on version 1: {image_now}"
    );
}
