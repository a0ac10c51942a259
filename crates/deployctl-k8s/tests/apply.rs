//! The Kubernetes target against the stand-in API server, through the real `kube` client.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::sync::Mutex;
use std::time::Duration;

use deployctl_core::{Action, Cancellation, LogLine, LogQuery, LogSink, NullSink, Target};
use deployctl_k8s::{K8sOptions, K8sTarget};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use common::{client, config, deploy, image, target};

#[tokio::test]
async fn deploy_redeploy_update_fail_with_rollback_prune_destroy() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let t = target(
        &c,
        "  ingress:\n    enabled: true\n    hosts:\n      - host: shop.example.com\n",
    );

    // First deploy: everything created, rollout waited for, revision 1.
    let plan = t.plan(Some(&image("web", 1))).await.unwrap();
    assert!(
        plan.changes.iter().all(|c| c.action == Action::Create),
        "{plan:#?}"
    );
    assert!(plan.changes.iter().any(|c| c.kind == "Namespace"));
    let out = deploy(&t, &image("web", 1))
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    assert_eq!(out.version.as_deref(), Some("1"));
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(2));
    let generation = d.metadata.generation;

    // Unchanged: every resource unchanged, no new generation.
    let plan = t.plan(Some(&image("web", 1))).await.unwrap();
    assert!(plan.is_noop(), "{plan:#?}");
    deploy(&t, &image("web", 1)).await.unwrap();
    assert_eq!(
        deps.get("web").await.unwrap().metadata.generation,
        generation
    );

    // New image: update with the image field, a waited rollout, revision 2.
    let plan = t.plan(Some(&image("web", 2))).await.unwrap();
    let dep = plan
        .changes
        .iter()
        .find(|c| c.kind == "Deployment")
        .unwrap();
    match &dep.action {
        Action::Update { fields } => assert!(
            fields.iter().any(|f| f.field.ends_with(".image")),
            "{fields:?}"
        ),
        other => panic!("{other:?}"),
    }
    let out = deploy(&t, &image("web", 2)).await.unwrap();
    assert_eq!(out.version.as_deref(), Some("2"));

    // A failing image: fast failure naming the pod reason, automatic rollback to revision 2.
    let started = std::time::Instant::now();
    let err = deploy(&t, &image("web-fail-pull", 3)).await.unwrap_err();
    let text = err.chain().join(" | ");
    assert!(
        text.contains("ImagePullBackOff") || text.contains("ErrImagePull"),
        "{text}"
    );
    assert!(text.contains("rolled back to revision 2"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not a fast failure"
    );
    let live = deps.get("web").await.unwrap();
    let live_image = live.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(
        live_image.ends_with(image("web", 2).digest().as_str()),
        "{live_image}"
    );

    // Prune: the Ingress goes when it is no longer rendered.
    let t2 = target(&c, "");
    let plan = t2.plan(Some(&image("web", 2))).await.unwrap();
    assert!(
        plan.changes
            .iter()
            .any(|c| c.kind == "Ingress" && c.action == Action::Delete),
        "{plan:#?}"
    );
    deploy(&t2, &image("web", 2)).await.unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(c.clone(), "shop");
    assert!(ingresses.get_opt("web").await.unwrap().is_none());

    let history = t2.history().await.unwrap();
    let versions: Vec<(&str, bool, Option<&str>)> = history
        .iter()
        .map(|r| (r.version.as_str(), r.live, r.state.as_deref()))
        .collect();
    // The failed rollout is on record as failed; the live revision is still 2.
    assert_eq!(
        versions,
        [
            ("1", false, Some("good")),
            ("2", true, Some("good")),
            ("3", false, Some("failed"))
        ],
        "{history:?}"
    );

    // Rollback to revision 1, then status.
    let back = t2
        .rollback(Some("1"), &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(back.to, "1");
    let status = t2.status().await.unwrap();
    assert!(status.deployed);
    assert_eq!(status.version.as_deref(), Some("1"));
    assert!(
        status
            .image
            .unwrap()
            .ends_with(image("web", 1).digest().as_str())
    );

    // Destroy: nothing with the label is left; a second destroy deletes nothing.
    let plan = t2.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(plan.changes.iter().any(|c| c.kind == "Deployment"));
    assert!(deps.get_opt("web").await.unwrap().is_none());
    let again = t2.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(again.changes.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn a_field_owned_by_another_manager_is_a_conflict_until_forced() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "");
    deploy(&t, &image("web", 1)).await.unwrap();
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    deps.patch(
        "web",
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    // A server-side dry run finds the same conflict in the plan and stores nothing.
    let checked = K8sTarget::new(
        c.clone(),
        config(""),
        K8sOptions::from_config(&config("")).server_dry_run(true),
    );
    let err = checked.plan(Some(&image("web", 2))).await.unwrap_err();
    assert!(err.to_string().contains("kubectl"), "{err}");
    let err = deploy(&t, &image("web", 2)).await.unwrap_err();
    let text = err.chain().join(" | ");
    assert!(
        text.contains("kubectl") && text.contains("replicas"),
        "{text}"
    );
    assert!(err.hint.unwrap().contains("--force-conflicts"));
    let forced = K8sTarget::new(
        c.clone(),
        config(""),
        K8sOptions::from_config(&config("")).force_conflicts(true),
    );
    deploy(&forced, &image("web", 2)).await.unwrap();
    assert_eq!(
        deps.get("web").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
}

#[derive(Default)]
struct Lines(Mutex<Vec<LogLine>>);
impl LogSink for Lines {
    fn line(&self, line: LogLine) {
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test]
async fn logs_are_prefixed_by_pod_and_secrets_stay_in_the_secret() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "");
    deploy(&t, &image("web", 1)).await.unwrap();
    let lines = Lines::default();
    t.logs(&LogQuery::default(), &lines, &Cancellation::new())
        .await
        .unwrap();
    let got = lines.0.lock().unwrap().clone();
    assert!(got.len() >= 2, "{got:?}");
    assert!(got.iter().all(|l| l.source.starts_with("web-")));
    let dump: Vec<String> = {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.clone(), "shop");
        let deps: Api<Deployment> = Api::namespaced(c.clone(), "shop");
        vec![
            serde_json::to_string(&cms.list(&Default::default()).await.unwrap()).unwrap(),
            serde_json::to_string(&deps.list(&Default::default()).await.unwrap()).unwrap(),
        ]
    };
    for d in dump {
        assert!(
            !d.contains("k8s-secret-value"),
            "a secret value outside the Secret"
        );
    }
}
