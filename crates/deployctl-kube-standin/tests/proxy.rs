//! The `proxy` subresource of Services and Pods through the real `kube` client: 503 "no
//! endpoints" as a real API server answers, then a real HTTP answer forwarded from the
//! registered target, status and body unchanged.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::time::Duration;

use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Answers `status` with a body naming the method and path it was asked for.
async fn echo_server(status: u16) -> String {
    deployctl_testsupport::http_server(status).await.url
}

async fn get(c: &kube::Client, path: &str) -> Result<String, kube::Error> {
    c.request_text(http::Request::get(path).body(Vec::new()).unwrap())
        .await
}

#[tokio::test]
async fn service_and_pod_proxies_forward_to_the_registered_target() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), false);
    let svc_path = "/api/v1/namespaces/default/services/web:80/proxy/health?full=1";

    // No such Service: 404.
    match get(&c, svc_path).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "{s:?}"),
        other => panic!("{other:?}"),
    }
    let services: Api<Service> = Api::namespaced(c.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app.kubernetes.io/instance": "web"}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();

    // A Service without ready pods: 503, no endpoints.
    let no_endpoints = |r: Result<String, kube::Error>| match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 503, "{s:?}");
            assert!(
                s.message
                    .contains("no endpoints available for service \"web\""),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    };
    no_endpoints(get(&c, svc_path).await);

    // Ready pods, but nothing registered: still 503.
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "web"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": "web"}},
                "spec": {"containers": [{"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}]}]},
            },
        },
    });
    deps.patch("web", &PatchParams::apply("test"), &Patch::Apply(&d))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut ready = None;
    for _ in 0..200 {
        ready = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=web"))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
        if ready.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pod = ready.unwrap().metadata.name.unwrap();
    no_endpoints(get(&c, svc_path).await);

    // Registered: the target's answer comes back, for the Service and for its pods.
    standin.set_proxy_target("default", "web", &echo_server(200).await);
    let body = get(&c, svc_path).await.unwrap();
    assert_eq!(body, "echo GET /health?full=1 HTTP/1.1");
    let body = get(
        &c,
        &format!("/api/v1/namespaces/default/pods/{pod}:8080/proxy/ready"),
    )
    .await
    .unwrap();
    assert_eq!(body, "echo GET /ready HTTP/1.1");

    // The target's status passes through: a 500 is a 500.
    standin.set_proxy_target("default", "web", &echo_server(500).await);
    match get(&c, svc_path).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 500, "{s:?}"),
        other => panic!("{other:?}"),
    }

    // A target that is gone: 503, error trying to reach service.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    standin.set_proxy_target("default", "web", &closed);
    match get(&c, svc_path).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 503, "{s:?}");
            assert!(
                s.message.contains("error trying to reach service"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
}
