//! The Job a hook task renders (golden: `fixtures/k8s/migration`), what is applied before
//! it, and the properties any task Job has: the Deployment's pod spec without ports and
//! probes, the task's own labels (never the Service's selector), no secret values.

#![allow(clippy::unwrap_used)] // test data: a failure here is a test failure

use std::collections::BTreeMap;
use std::path::Path;

use deployctl_config::{LoadOptions, load};
use deployctl_core::{Digest, HookPhase, HookStep, ImageRef, PushedImage, TargetTask};
use deployctl_k8s::{TASK_LABEL, job_name, task_job};

const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn case() -> (deployctl_config::Config, PushedImage) {
    let vars: BTreeMap<String, String> = [
        ("DB_PASSWORD", "db-pw-migration-s3cr3t"),
        ("REGISTRY_PASSWORD", "reg-pw-migration"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/k8s/migration/deploy.yaml");
    let config = load(&path, &LoadOptions::new(&vars)).unwrap_or_else(|e| panic!("{e:#?}"));
    let image = PushedImage::new(
        ImageRef::parse("registry.example.com:5000/team/billing:4.1.0").unwrap(),
        Digest::parse(DIGEST).unwrap(),
        None,
    );
    (config, image)
}

fn task(config: &deployctl_config::Config, i: usize) -> TargetTask {
    let hooks = config.hooks.to_core();
    let steps = [hooks.pre_deploy, hooks.post_deploy].concat();
    match &steps[i] {
        HookStep::Task(t) => t.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_migration_job_matches_its_golden() {
    let (config, image) = case();
    let (job, before) = task_job(&config, &image, HookPhase::PreDeploy, &task(&config, 0)).unwrap();
    insta::assert_snapshot!("migration_job", serde_yaml::to_string(&job).unwrap());
    let applied_first: Vec<String> = before
        .iter()
        .map(|m| format!("{}/{}", m.kind, m.name))
        .collect();
    assert_eq!(
        applied_first,
        [
            "ServiceAccount/billing",
            "Secret/billing-registry",
            "ConfigMap/billing-config",
            "Secret/billing-secrets",
        ]
    );
}

#[test]
fn a_task_job_runs_the_new_image_with_the_apps_configuration_and_its_own_labels() {
    let (config, image) = case();
    for (i, phase) in [(0, HookPhase::PreDeploy), (1, HookPhase::PostDeploy)] {
        let t = task(&config, i);
        let (job, _) = task_job(&config, &image, phase, &t).unwrap();
        let name = job["metadata"]["name"].as_str().unwrap();
        assert_eq!(name, job_name("billing", phase, &image, &t));
        assert!(name.len() <= 63);
        let pod = &job["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"][TASK_LABEL], name);
        assert!(
            pod["metadata"]["labels"]
                .get("app.kubernetes.io/instance")
                .is_none(),
            "a task pod must not match the Service's selector: {pod}"
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["image"],
            format!("registry.example.com:5000/team/billing@{DIGEST}"),
            "the same digest as the Deployment"
        );
        assert_eq!(c["command"], serde_json::json!(t.command));
        assert!(c.get("ports").is_none() && c.get("readinessProbe").is_none());
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["serviceAccountName"], "billing");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        let text = serde_json::to_string(&job).unwrap();
        assert!(!text.contains("db-pw-migration-s3cr3t"), "{text}");
        assert!(!text.contains("reg-pw-migration"), "{text}");
    }
}

#[test]
fn job_names_are_short_stable_and_differ_per_image_and_command() {
    let (_, image) = case();
    let t = TargetTask::new(vec!["./migrate".into()]);
    let long = "a".repeat(63);
    let n = job_name(&long, HookPhase::PreDeploy, &image, &t);
    assert!(n.len() <= 63, "{n}");
    assert_eq!(n, job_name(&long, HookPhase::PreDeploy, &image, &t));
    let other = TargetTask::new(vec!["./seed".into()]);
    assert_ne!(
        job_name("x", HookPhase::PreDeploy, &image, &t),
        job_name("x", HookPhase::PreDeploy, &image, &other)
    );
}
