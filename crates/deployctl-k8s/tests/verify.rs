//! Verification through the API server's proxy, against the stand-in forwarding to a real
//! HTTP server: healthy through the Service, the pod fallback, and a failed check that
//! fails the deploy and rolls it back.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::time::Duration;

use deployctl_core::{Cancellation, Target, Verification};
use deployctl_k8s::{K8sOptions, K8sTarget};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

use common::{client, config, deploy, http_server, image};

fn verifying_target(c: &kube::Client, auto_rollback: bool) -> K8sTarget {
    let cfg = config("");
    let options = K8sOptions::from_config(&cfg)
        .rollout_timeout(Duration::from_secs(20))
        .verify_timeout(Duration::from_secs(2))
        .auto_rollback(auto_rollback);
    K8sTarget::new(c.clone(), cfg, options)
}

fn live_image(d: Deployment) -> String {
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test]
async fn a_healthy_app_answers_through_the_service_proxy() {
    let standin = StandIn::start().await.unwrap();
    let (url, seen) = http_server(200).await;
    standin.set_proxy_target("shop", "web", &url);
    let c = client(&standin).await;
    let t = verifying_target(&c, true);
    let out = deploy(&t, &image("web", 1)).await.unwrap();
    let checks = t.verify(&out, &Cancellation::new()).await.unwrap();
    match checks.as_slice() {
        [
            Verification::Healthy {
                url,
                method,
                status,
                ..
            },
        ] => {
            assert_eq!(method, "service proxy");
            assert_eq!(*status, 200);
            assert_eq!(url, "/api/v1/namespaces/shop/services/web:80/proxy/health");
        }
        other => panic!("{other:?}"),
    }
    // The request travelled to the app: the health path, as a GET.
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("GET /health HTTP/1.1")
    );
}

#[tokio::test]
async fn without_service_endpoints_a_ready_pod_is_asked_directly() {
    let standin = StandIn::start().await.unwrap();
    let (url, _) = http_server(204).await;
    let c = client(&standin).await;
    let t = verifying_target(&c, true);
    let out = deploy(&t, &image("web", 1)).await.unwrap();
    // Nothing answers for the Service `web` (503, no endpoints); another Service selecting
    // the same pods stands for what the pods answer.
    let services: Api<Service> = Api::namespaced(c.clone(), "shop");
    let other: Service = serde_json::from_value(json!({
        "metadata": {"name": "web-direct"},
        "spec": {"selector": {"app.kubernetes.io/instance": "web"}, "ports": [{"port": 8080}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    standin.set_proxy_target("shop", "web-direct", &url);
    let checks = t.verify(&out, &Cancellation::new()).await.unwrap();
    match checks.as_slice() {
        [
            Verification::Healthy {
                url,
                method,
                status,
                ..
            },
        ] => {
            assert_eq!((method.as_str(), *status), ("pod proxy", 204));
            assert!(
                url.starts_with("/api/v1/namespaces/shop/pods/web-")
                    && url.ends_with(":8080/proxy/health"),
                "{url}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unhealthy_app_fails_the_deploy_and_is_rolled_back() {
    let standin = StandIn::start().await.unwrap();
    let (ok, _) = http_server(200).await;
    let (broken, _) = http_server(500).await;
    standin.set_proxy_target("shop", "web", &ok);
    let c = client(&standin).await;
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let t = verifying_target(&c, true);
    let out = deploy(&t, &image("web", 1)).await.unwrap();
    t.verify(&out, &Cancellation::new()).await.unwrap();

    // Revision 2 rolls out, but its health path answers 500.
    standin.set_proxy_target("shop", "web", &broken);
    let out = deploy(&t, &image("web", 2)).await.unwrap();
    assert_eq!(out.version.as_deref(), Some("2"));
    let err = t.verify(&out, &Cancellation::new()).await.unwrap_err();
    let text = err.chain().join(" | ");
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(text.contains("rolled back to revision 1"), "{text}");
    assert_eq!(err.kind, deployctl_core::ErrorKind::Failed);
    let live = live_image(deps.get("web").await.unwrap());
    assert!(live.ends_with(image("web", 1).digest().as_str()), "{live}");
    let history = t.history().await.unwrap();
    let versions: Vec<(&str, bool, Option<&str>)> = history
        .iter()
        .map(|r| (r.version.as_str(), r.live, r.state.as_deref()))
        .collect();
    assert_eq!(
        versions,
        [("1", true, Some("good")), ("2", false, Some("failed"))],
        "{history:?}"
    );

    // With rollback switched off, the failure stays: the new image is live.
    let keep = verifying_target(&c, false);
    let out = deploy(&keep, &image("web", 3)).await.unwrap();
    let err = keep.verify(&out, &Cancellation::new()).await.unwrap_err();
    assert!(!err.chain().join(" | ").contains("rolled back"), "{err:?}");
    let live = live_image(deps.get("web").await.unwrap());
    assert!(live.ends_with(image("web", 3).digest().as_str()), "{live}");
}

#[tokio::test]
async fn nothing_behind_the_proxy_is_a_failure_not_a_pass() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = verifying_target(&c, false);
    let out = deploy(&t, &image("web", 1)).await.unwrap();
    let started = std::time::Instant::now();
    let err = t.verify(&out, &Cancellation::new()).await.unwrap_err();
    let text = err.chain().join(" | ");
    // The stand-in answers 503 (no endpoints), which the kube client retries until the
    // attempt's time is up.
    assert!(
        text.contains("service proxy") && (text.contains("503") || text.contains("no answer")),
        "{text}"
    );
    assert_eq!(err.kind, deployctl_core::ErrorKind::Failed);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deadline was not kept"
    );
}
