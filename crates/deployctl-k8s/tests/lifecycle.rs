//! Regression tests for the plan before a build, rollback of the configuration, and the
//! namespace on destroy — against the stand-in through the real `kube` client.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::sync::Mutex;

use deployctl_core::{Action, Cancellation, Event, EventKind, EventSink, NullSink, Target};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use common::{client, deploy, image, target};

#[derive(Default)]
struct Messages(Mutex<Vec<String>>);
impl EventSink for Messages {
    fn emit(&self, event: Event) {
        if let EventKind::Message { text } = event.kind {
            self.0.lock().unwrap().push(text);
        }
    }
}
impl Messages {
    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

const REGISTRY: &str =
    "registry:\n  url: 127.0.0.1:5000\n  username: deployer\n  password: ${DB_PASSWORD}\n";

#[tokio::test]
async fn reads_before_writes_plans_and_an_unchanged_redeploy_change_nothing() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "  configmap:\n    MODE: one\n");
    deploy(&t, &image("web", 1)).await.unwrap();
    let first = standin.take_mutations();
    assert!(
        first
            .iter()
            .any(|m| m == "PATCH /apis/apps/v1/namespaces/shop/deployments/web"),
        "{first:?}"
    );
    assert!(
        first.iter().any(|m| m == "POST /api/v1/namespaces"),
        "{first:?}"
    );

    // Plans (with and without an image, and the server-side dry run), an unchanged
    // redeploy, status, history and a rollback to the live revision: no change at all.
    t.plan(None).await.unwrap();
    let dry = deployctl_k8s::K8sTarget::new(
        c.clone(),
        common::config("  configmap:\n    MODE: one\n"),
        deployctl_k8s::K8sOptions::from_config(&common::config("")).server_dry_run(true),
    );
    dry.plan(Some(&image("web", 2))).await.unwrap();
    deploy(&t, &image("web", 1)).await.unwrap();
    t.status().await.unwrap();
    t.history().await.unwrap();
    t.destroy_plan().await.unwrap();
    t.rollback(Some("1"), &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(standin.take_mutations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_plan_before_the_build_predicts_an_unchanged_deploy() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, REGISTRY);
    deploy(&t, &image("web", 1)).await.unwrap();
    assert!(
        t.plan(Some(&image("web", 1))).await.unwrap().is_noop(),
        "the deploy itself finds nothing to do"
    );
    // Before the build (no image): the same prediction — no image, no pull Secret update.
    let plan = t.plan(None).await.unwrap();
    assert!(plan.is_noop(), "{plan:#?}");

    // A real change is still shown, without claiming the image changes.
    let more = target(&c, &format!("  service:\n    port: 8080\n{REGISTRY}"));
    let plan = more.plan(None).await.unwrap();
    let changed: Vec<(&str, Vec<&str>)> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::Update { fields } => Some((
                c.kind.as_str(),
                fields.iter().map(|f| f.field.as_str()).collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        changed,
        [("Service", vec![".spec.ports[0].port"])],
        "{plan:#?}"
    );
}

#[tokio::test]
async fn rollback_restores_the_config_map_and_says_when_a_secret_cannot_be() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "shop");
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let mode = |cm: ConfigMap| cm.data.unwrap()["MODE"].clone();
    let one = target(&c, "  configmap:\n    MODE: one\n");
    let two = target(&c, "  configmap:\n    MODE: two\n");
    deploy(&one, &image("web", 1)).await.unwrap();
    deploy(&two, &image("web", 2)).await.unwrap();
    assert_eq!(mode(cms.get("web-config").await.unwrap()), "two");

    let said = Messages::default();
    let back = two
        .rollback(None, &said, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(back.to, "1");
    assert_eq!(mode(cms.get("web-config").await.unwrap()), "one");
    assert!(!said.all().contains("Secret"), "{}", said.all());

    // The Secret changes outside the history: a rollback cannot bring values back, and says so.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "shop");
    secrets
        .patch(
            "web-secrets",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"DB_PASSWORD": "b3RoZXI="}})),
        )
        .await
        .unwrap();
    let said = Messages::default();
    two.rollback(Some("2"), &said, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(mode(cms.get("web-config").await.unwrap()), "two");
    let text = said.all();
    assert!(
        text.contains("Secret/web-secrets has changed since revision 2")
            && text.contains("cannot be restored"),
        "{text}"
    );
    assert!(!text.contains("b3RoZXI=") && !text.contains("k8s-secret-value"));

    // Rolling back to the live revision changes nothing and says it is already there.
    let before = (
        deps.get("web").await.unwrap().metadata.resource_version,
        cms.get("web-config")
            .await
            .unwrap()
            .metadata
            .resource_version,
    );
    let said = Messages::default();
    let same = two
        .rollback(Some("2"), &said, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!((same.from.as_deref(), same.to.as_str()), (Some("2"), "2"));
    assert!(
        said.all().contains("revision 2 is already live"),
        "{}",
        said.all()
    );
    let after = (
        deps.get("web").await.unwrap().metadata.resource_version,
        cms.get("web-config")
            .await
            .unwrap()
            .metadata
            .resource_version,
    );
    assert_eq!(before, after, "nothing was applied");
}

#[tokio::test]
async fn destroy_deletes_the_namespace_deployctl_created_when_it_is_empty() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let namespaces: Api<Namespace> = Api::all(c.clone());
    let t = target(&c, "");
    deploy(&t, &image("web", 1)).await.unwrap();
    let plan = t.destroy_plan().await.unwrap();
    assert!(
        plan.changes
            .iter()
            .any(|ch| ch.kind == "Namespace" && ch.name == "shop" && ch.action == Action::Delete),
        "{plan:#?}"
    );
    t.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(namespaces.get_opt("shop").await.unwrap().is_none());
    let again = t.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(again.changes.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn destroy_keeps_a_namespace_with_other_objects_or_not_created_by_deployctl() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let namespaces: Api<Namespace> = Api::all(c.clone());

    // Created by deployctl, but something else lives there too.
    let t = target(&c, "");
    deploy(&t, &image("web", 1)).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "shop");
    let theirs: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "someone-elses"}, "data": {"a": "1"}}))
            .unwrap();
    cms.create(&PostParams::default(), &theirs).await.unwrap();
    let plan = t.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(
        !plan.changes.iter().any(|ch| ch.kind == "Namespace"),
        "{plan:#?}"
    );
    assert!(namespaces.get_opt("shop").await.unwrap().is_some());
    assert!(cms.get_opt("someone-elses").await.unwrap().is_some());

    // Not created by deployctl (no managed-by label): kept even when empty.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "theirs"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let mut cfg = common::config("");
    cfg.kubernetes.namespace = "theirs".into();
    let options = deployctl_k8s::K8sOptions::from_config(&cfg);
    let elsewhere = deployctl_k8s::K8sTarget::new(c.clone(), cfg, options);
    deploy(&elsewhere, &image("web", 1)).await.unwrap();
    elsewhere
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert!(namespaces.get_opt("theirs").await.unwrap().is_some());
}

/// Regression: `logs k8s` of an app that was never deployed exited 0 with no lines, where
/// `logs local` and `logs lambda` say nothing is deployed (exit 1).
#[tokio::test]
async fn logs_of_an_app_not_deployed_say_so() {
    struct NoLines;
    impl deployctl_core::LogSink for NoLines {
        fn line(&self, line: deployctl_core::LogLine) {
            panic!("a line from nowhere: {line:?}");
        }
    }
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "");
    let err = t
        .logs(
            &deployctl_core::LogQuery::default(),
            &NoLines,
            &Cancellation::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, deployctl_core::ErrorKind::Failed);
    assert!(
        err.message.contains("nothing is deployed"),
        "{}",
        err.message
    );
}
