//! Against a server that defaults as a real one does (the stand-in fills in what
//! `pkg/apis/*/defaults.go` fills and stores quantities in canonical form): what deployctl
//! renders and what the server keeps differ, and an unchanged redeploy must still change
//! nothing — the diff compares only the fields deployctl manages, quantities by value.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use deployctl_core::{Action, Target};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use serde_json::json;

use common::{client, deploy, image, target};

/// Quantities spelled as people write them, not as the server stores them.
const RESOURCES: &str = "    resources:\n      requests: { cpu: \"0.5\", memory: 1024Mi }\n      limits: { cpu: 1000m, memory: 2048Mi }\n";

#[tokio::test]
async fn defaulted_fields_and_canonical_quantities_are_no_change_on_redeploy() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, RESOURCES);
    deploy(&t, &image("web", 1)).await.unwrap();
    standin.take_mutations();

    // The server filled in and canonicalised.
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let live = serde_json::to_value(deployments.get("web").await.unwrap()).unwrap();
    let generation = live["metadata"]["generation"].clone();
    let pod = &live["spec"]["template"]["spec"];
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["schedulerName"], "default-scheduler");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let container = &pod["containers"][0];
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTP");
    assert_eq!(container["readinessProbe"]["successThreshold"], 1);
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
    );
    let services: Api<Service> = Api::namespaced(c.clone(), "shop");
    let svc = serde_json::to_value(services.get("web").await.unwrap()).unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].clone();
    assert!(
        cluster_ip
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{svc}"
    );
    assert_eq!(svc["spec"]["sessionAffinity"], "None");

    // The plan (what `deploy --dry-run` prints) shows nothing to do.
    let plan = t.plan(Some(&image("web", 1))).await.unwrap();
    let changed: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| !matches!(c.action, Action::Unchanged))
        .map(|c| format!("{} {} {:?}", c.kind, c.name, c.action))
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
    // An unchanged redeploy: no mutating request, the same generation and cluster IP.
    deploy(&t, &image("web", 1)).await.unwrap();
    assert_eq!(standin.take_mutations(), Vec::<String>::new());
    let again = serde_json::to_value(deployments.get("web").await.unwrap()).unwrap();
    assert_eq!(again["metadata"]["generation"], generation);
    let svc = serde_json::to_value(services.get("web").await.unwrap()).unwrap();
    assert_eq!(svc["spec"]["clusterIP"], cluster_ip);

    // A real change of a quantity is one: only that field, and the generation moves once.
    let bigger = target(&c, &RESOURCES.replace("cpu: 1000m", "cpu: 1500m"));
    let plan = bigger.plan(Some(&image("web", 1))).await.unwrap();
    let fields: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::Update { fields } => Some(fields.iter().map(|f| f.field.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        fields,
        [".spec.template.spec.containers[0].resources.limits.cpu"],
        "{plan:#?}"
    );
    deploy(&bigger, &image("web", 1)).await.unwrap();
    let after = serde_json::to_value(deployments.get("web").await.unwrap()).unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1500m"
    );
    assert_eq!(
        after["metadata"]["generation"].as_i64(),
        generation.as_i64().map(|g| g + 1)
    );
    assert_eq!(
        after["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
}
