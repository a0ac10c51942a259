//! Admission of new pods, as a real API server's LimitRanger and ResourceQuota plugins do it,
//! through the real `kube` client: LimitRange defaults and bounds, quota refusals for pods,
//! cpu and memory with the server's messages, the `FailedCreate` Event a Deployment's refused
//! pod leaves on its ReplicaSet, and `status.used` kept current.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::time::Duration;

use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, ResourceQuota};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn apply(c: &kube::Client, object: Value) {
    let kind = object["kind"].as_str().unwrap().to_owned();
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let pp = PatchParams::apply("test");
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
    let ar = kube::api::ApiResource::from_gvk(&gvk);
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    api.patch(&name, &pp, &Patch::Apply(&object)).await.unwrap();
}

fn pod(name: &str, resources: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "web", "image": "app:1", "resources": resources}]},
    }))
    .unwrap()
}

async fn refusal(pods: &Api<Pod>, p: &Pod) -> String {
    match pods.create(&PostParams::default(), p).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"), "{e:?}");
            e.message
        }
        other => panic!("the pod was admitted: {other:?}"),
    }
}

#[tokio::test]
async fn a_limit_range_fills_missing_requests_and_limits_and_refuses_what_is_out_of_bounds() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), true);
    apply(
        &c,
        json!({
            "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
            "spec": {"limits": [{"type": "Container",
                "default": {"cpu": "500m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "100m"},
                "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]},
        }),
    )
    .await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());

    // Nothing written: limits from `default`, the cpu request from `defaultRequest`, the
    // memory request from the default limit.
    let made = pods
        .create(&PostParams::default(), &pod("bare", json!({})))
        .await
        .unwrap();
    let r = made.spec.unwrap().containers[0].resources.clone().unwrap();
    let q = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
             k: &str| { m.as_ref().unwrap()[k].0.clone() };
    assert_eq!(q(&r.limits, "cpu"), "500m");
    assert_eq!(q(&r.limits, "memory"), "256Mi");
    assert_eq!(q(&r.requests, "cpu"), "100m");
    assert_eq!(q(&r.requests, "memory"), "256Mi");
    assert_eq!(
        made.metadata.annotations.unwrap()["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web"
    );

    // What the pod writes is kept; only the missing memory limit is filled.
    let made = pods
        .create(
            &PostParams::default(),
            &pod(
                "own",
                json!({"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "1"}}),
            ),
        )
        .await
        .unwrap();
    let r = made.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(q(&r.limits, "cpu"), "1");
    assert_eq!(q(&r.limits, "memory"), "256Mi");
    assert_eq!(q(&r.requests, "memory"), "128Mi");

    // Bounds, both in one refusal as the server aggregates them.
    let message = refusal(
        &pods,
        &pod(
            "big",
            json!({"requests": {"memory": "32Mi"}, "limits": {"cpu": "4", "memory": "32Mi"}}),
        ),
    )
    .await;
    assert_eq!(
        message,
        "pods \"big\" is forbidden: [maximum cpu usage per Container is 2, but limit is 4, minimum memory usage per Container is 64Mi, but request is 32Mi]"
    );
    assert!(pods.get_opt("big").await.unwrap().is_none());
}

#[tokio::test]
async fn quotas_refuse_pods_beyond_hard_and_keep_status_used() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), true);
    apply(
        &c,
        json!({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"pods": "5", "requests.cpu": "1", "limits.memory": "512Mi"}},
        }),
    )
    .await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());

    // A pod without the constrained values is refused, naming what it must specify.
    let message = refusal(&pods, &pod("bare", json!({}))).await;
    assert_eq!(
        message,
        "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: web; requests.cpu for: web"
    );

    // A Deployment of 3 pods of 400m / 128Mi: two fit the cpu, the third is refused with a
    // FailedCreate Event on the ReplicaSet carrying the quota message.
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "app:1",
                    "resources": {"requests": {"cpu": "400m"}, "limits": {"memory": "128Mi"}}}]}}},
    });
    apply(&c, d.clone()).await;
    let events: Api<Event> = Api::default_namespaced(c.clone());
    let mut refused = None;
    for _ in 0..200 {
        refused = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedCreate"));
        if refused.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let refused = refused.expect("no FailedCreate Event");
    assert_eq!(refused.involved_object.kind.as_deref(), Some("ReplicaSet"));
    let message = refused.message.unwrap();
    assert!(
        message.starts_with("pods \"web-")
            && message.ends_with(
                "\" is forbidden: exceeded quota: compute, requested: requests.cpu=400m, used: requests.cpu=800m, limited: requests.cpu=1"
            ),
        "{message}"
    );
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    // status.used follows the pods, in the server's canonical forms.
    let quotas: Api<ResourceQuota> = Api::default_namespaced(c.clone());
    let used = |q: &ResourceQuota| {
        let u = q
            .status
            .as_ref()
            .and_then(|s| s.used.clone())
            .unwrap_or_default();
        u.into_iter().map(|(k, v)| (k, v.0)).collect::<Vec<_>>()
    };
    let want = vec![
        ("limits.memory".to_owned(), "256Mi".to_owned()),
        ("pods".to_owned(), "2".to_owned()),
        ("requests.cpu".to_owned(), "800m".to_owned()),
    ];
    let mut q = quotas.get("compute").await.unwrap();
    for _ in 0..100 {
        if used(&q) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        q = quotas.get("compute").await.unwrap();
    }
    assert_eq!(used(&q), want);

    // Scaled down to 1, the usage falls and a new pod of 500m fits beside it.
    d["spec"]["replicas"] = json!(1);
    apply(&c, d).await;
    for _ in 0..200 {
        q = quotas.get("compute").await.unwrap();
        if used(&q).iter().any(|(k, v)| k == "pods" && v == "1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        used(&q).contains(&("requests.cpu".to_owned(), "400m".to_owned())),
        "{:?}",
        used(&q)
    );
    pods.create(
        &PostParams::default(),
        &pod(
            "extra",
            json!({"requests": {"cpu": "500m"}, "limits": {"memory": "64Mi"}}),
        ),
    )
    .await
    .unwrap();
    let message = refusal(
        &pods,
        &pod(
            "more",
            json!({"requests": {"cpu": "200m"}, "limits": {"memory": "400Mi"}}),
        ),
    )
    .await;
    assert_eq!(
        message,
        "pods \"more\" is forbidden: exceeded quota: compute, requested: limits.memory=400Mi,requests.cpu=200m, used: limits.memory=192Mi,requests.cpu=900m, limited: limits.memory=512Mi,requests.cpu=1"
    );
    let deployments: Api<Deployment> = Api::default_namespaced(c);
    assert!(deployments.get_opt("web").await.unwrap().is_some());
}
