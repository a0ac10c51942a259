//! A tenant (`kubernetes.tenant`) against the stand-in through the real `kube` client: a
//! deploy creates the tenant objects before the app's; an unchanged redeploy changes
//! nothing; an app's destroy leaves the tenant; `destroy --tenant` refuses while another
//! app lives in the namespace, and removes the tenant (and its namespace) once none does.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::path::Path;
use std::time::Duration;

use common::{client, deploy, image};
use deployctl_core::{Cancellation, NullSink, Target};
use deployctl_k8s::{K8sOptions, K8sTarget, TENANT_LABEL};
use deployctl_kube_standin::StandIn;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::ListParams;

const NS: &str = "acme-shop";

fn tenant_target(c: &kube::Client, app: &str, destroy_tenant: bool) -> K8sTarget {
    tenant_target_with(
        c,
        app,
        destroy_tenant,
        "quota: { cpu: '4', memory: 8Gi, pods: 20 }",
        "",
    )
}

fn tenant_target_with(
    c: &kube::Client,
    app: &str,
    destroy_tenant: bool,
    quota: &str,
    deployment: &str,
) -> K8sTarget {
    let yaml = format!(
        "app: {{ name: {app}, port: 8080 }}\nkubernetes:\n  enabled: true\n  \
         tenant: {{ org: acme, project: shop, {quota} }}\n{deployment}"
    );
    let vars = std::collections::BTreeMap::<String, String>::new();
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&vars),
    )
    .unwrap();
    let options = K8sOptions::from_config(&config)
        .rollout_timeout(Duration::from_secs(20))
        .destroy_tenant(destroy_tenant);
    K8sTarget::new(c.clone(), config, options)
}

async fn tenant_object_names(c: &kube::Client) -> Vec<String> {
    let lp = ListParams::default().labels(TENANT_LABEL);
    let mut out = Vec::new();
    macro_rules! names {
        ($t:ty) => {
            for o in Api::<$t>::namespaced(c.clone(), NS)
                .list(&lp)
                .await
                .unwrap()
            {
                out.push(format!(
                    "{}/{}",
                    <$t as kube::Resource>::kind(&()),
                    o.metadata.name.unwrap()
                ));
            }
        };
    }
    names!(ResourceQuota);
    names!(LimitRange);
    names!(NetworkPolicy);
    names!(ServiceAccount);
    names!(Role);
    names!(RoleBinding);
    out.sort();
    out
}

#[tokio::test]
async fn a_tenant_is_applied_kept_by_app_destroys_and_removed_only_when_empty() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let web = tenant_target(&c, "web", false);
    deploy(&web, &image("web", 1)).await.unwrap();
    let first = standin.take_mutations();
    let quota_at = first
        .iter()
        .position(|m| m.contains("/resourcequotas/tenant-quota"))
        .unwrap_or_else(|| panic!("{first:?}"));
    let deployment_at = first
        .iter()
        .position(|m| m.contains("/deployments/web"))
        .unwrap_or_else(|| panic!("{first:?}"));
    assert!(quota_at < deployment_at, "tenant first: {first:?}");
    let ns = Api::<Namespace>::all(c.clone()).get(NS).await.unwrap();
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(
        labels.get("deployctl/org").map(String::as_str),
        Some("acme")
    );
    assert_eq!(
        labels.get("deployctl/project").map(String::as_str),
        Some("shop")
    );
    let sa = Api::<ServiceAccount>::namespaced(c.clone(), NS)
        .get("web")
        .await
        .unwrap();
    assert_eq!(sa.automount_service_account_token, Some(false));
    let with_web = tenant_object_names(&c).await;
    assert_eq!(
        with_web,
        [
            "LimitRange/tenant-limits",
            "NetworkPolicy/tenant-allow-dns",
            "NetworkPolicy/tenant-allow-ingress",
            "NetworkPolicy/tenant-allow-same-namespace",
            "NetworkPolicy/tenant-default-deny",
            "ResourceQuota/tenant-quota",
            "Role/web",
            "RoleBinding/web",
            "ServiceAccount/web",
        ]
    );

    // An unchanged redeploy (and its plan) changes nothing, tenant objects included.
    web.plan(Some(&image("web", 1))).await.unwrap();
    deploy(&web, &image("web", 1)).await.unwrap();
    assert_eq!(standin.take_mutations(), Vec::<String>::new());

    // A second app in the same tenant.
    let api = tenant_target(&c, "api", true);
    deploy(&api, &image("api", 1)).await.unwrap();
    standin.take_mutations();

    // --tenant while another app lives there: refused, naming it, nothing deleted.
    let web_tenant = tenant_target(&c, "web", true);
    let err = web_tenant
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    let text = &err.message;
    assert!(
        text.contains("acme-shop") && text.contains("(api)"),
        "{text}"
    );
    assert!(
        err.hint.as_deref().is_some_and(|h| h.contains("--tenant")),
        "{:?}",
        err.hint
    );
    assert_eq!(standin.take_mutations(), Vec::<String>::new());

    // An app's destroy leaves the tenant (and the namespace).
    web.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), NS)
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
    );
    let after = tenant_object_names(&c).await;
    for name in &with_web {
        assert!(after.contains(name), "{name} went with the app: {after:?}");
    }
    assert!(
        Api::<Namespace>::all(c.clone())
            .get_opt(NS)
            .await
            .unwrap()
            .is_some()
    );

    // The last app with --tenant: the app, every tenant object and the namespace go.
    api.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert!(
        Api::<Namespace>::all(c.clone())
            .get_opt(NS)
            .await
            .unwrap()
            .is_none()
    );
    let quotas = Api::<ResourceQuota>::namespaced(c.clone(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    assert_eq!(quotas, 0);
}

#[tokio::test]
async fn a_rollout_that_cannot_fit_the_quota_fails_before_anything_is_applied() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    // 3 replicas + 1 surge (25%, rounded up) at 100m each (the Deployment's default
    // request) need 4 pods and 400m; the quota has 3 pods and 300m.
    let t = tenant_target_with(
        &c,
        "web",
        false,
        "quota: { cpu: 300m, pods: 3 }",
        "  deployment: { replicas: 3 }\n",
    );
    let started = std::time::Instant::now();
    let err = deploy(&t, &image("web", 1)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = &err.message;
    assert!(
        text.contains("ResourceQuota tenant-quota: pods needs 4 for 4 pods (3 replicas + 1 surge, 1 each) but has room for 3 (hard 3, used 0)"),
        "{text}"
    );
    assert!(
        text.contains("requests.cpu needs 400m") && text.contains("room for 300m"),
        "{text}"
    );
    assert!(
        err.hint
            .as_deref()
            .is_some_and(|h| h.contains("nothing was applied"))
    );
    assert_eq!(standin.take_mutations(), Vec::<String>::new());

    // Within the quota, the same deploy goes through (`quota.cpu` bounds limits.cpu too:
    // 4 pods at the default 500m limit need 2 cores).
    let fits = tenant_target_with(
        &c,
        "web",
        false,
        "quota: { cpu: '2', pods: 4 }",
        "  deployment: { replicas: 3 }\n",
    );
    deploy(&fits, &image("web", 1)).await.unwrap();
}

#[tokio::test]
async fn destroy_tenant_without_a_tenant_in_the_config_is_invalid_input_and_deletes_nothing() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let plain = common::config("");
    let options = K8sOptions::from_config(&plain).destroy_tenant(true);
    let t = K8sTarget::new(c.clone(), plain, options);
    let err = t
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, deployctl_core::ErrorKind::InvalidInput, "{err:?}");
    assert!(
        err.message.contains("no kubernetes.tenant"),
        "{}",
        err.message
    );
    assert_eq!(standin.take_mutations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_create_for_exceeded_quota_fails_the_rollout_at_once_with_its_message() {
    let standin = StandIn::start().await.unwrap();
    // Pods that take long to become ready: only the quota Event can end the rollout early.
    standin.set_ready_after(Duration::from_secs(30));
    let c = client(&standin).await;
    let t = tenant_target(&c, "web", false);
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), NS);
    let posted = {
        let events = events.clone();
        tokio::spawn(async move {
            // What the ReplicaSet controller records when admission refuses a pod.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let ev: k8s_openapi::api::core::v1::Event = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-6d4cf56db6.failedcreate", "namespace": NS},
                "involvedObject": {"kind": "ReplicaSet", "name": "web-6d4cf56db6", "namespace": NS, "apiVersion": "apps/v1"},
                "reason": "FailedCreate",
                "message": "pods \"web-6d4cf56db6-x7k2p\" is forbidden: exceeded quota: tenant-quota, requested: pods=1, used: pods=20, limited: pods=20",
                "type": "Warning",
            }))
            .unwrap();
            events.create(&Default::default(), &ev).await.unwrap();
        })
    };
    let started = std::time::Instant::now();
    let err = deploy(&t, &image("web", 1)).await.unwrap_err();
    posted.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.message.contains("FailedCreate")
            && err.message.contains("exceeded quota: tenant-quota"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn the_quota_usage_the_stand_in_keeps_stops_a_rollout_that_cannot_fit_before_it_is_applied() {
    let standin = StandIn::start().await.unwrap();
    standin.set_ready_after(Duration::from_millis(50));
    let c = client(&standin).await;
    let t = tenant_target_with(
        &c,
        "web",
        false,
        "quota: { pods: 3 }",
        "  deployment: { replicas: 1 }\n",
    );
    deploy(&t, &image("web", 1)).await.unwrap();
    // Someone else's Deployment takes the rest of the pods.
    let other: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "other", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "other", "image": "127.0.0.1:5000/other@sha256:0000000000000000000000000000000000000000000000000000000000000001"}]}}},
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), NS)
        .create(&Default::default(), &other)
        .await
        .unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.clone(), NS);
    let start = std::time::Instant::now();
    while pods.list(&ListParams::default()).await.unwrap().items.len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the other pods never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The new revision needs a 4th pod at its peak. The stand-in keeps the quota's
    // `status.used` as a real server's quota controller does, so the check before apply sees
    // that it cannot fit and nothing is applied. (The rollout's own fail-fast on a
    // FailedCreate Event is the test above; the stand-in's refusal with that Event is its
    // tests/admission.rs.)
    let start = std::time::Instant::now();
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = Api::namespaced(c.clone(), NS);
    loop {
        let q = quotas.get("tenant-quota").await.unwrap();
        let used = q.status.and_then(|s| s.used).unwrap_or_default();
        if used.get("pods").is_some_and(|v| v.0 == "3") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "status.used never counted the 3 pods"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    standin.take_mutations();
    let started = std::time::Instant::now();
    let err = deploy(&t, &image("web", 2)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.message.contains(
            "ResourceQuota tenant-quota: pods needs 2 for 2 pods (1 replicas + 1 surge, 1 each) but has room for 1 (hard 3, used 3, 1 of it by this app's 1 live pods)"
        ),
        "{}",
        err.message
    );
    let applied: Vec<String> = standin
        .take_mutations()
        .into_iter()
        .filter(|m| !m.contains("/leases/"))
        .collect();
    assert!(applied.is_empty(), "applied despite the quota: {applied:?}");
}
