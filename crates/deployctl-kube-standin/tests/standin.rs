//! The stand-in through the real `kube` client, as deployctl uses it.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::time::Duration;

use deployctl_kube_standin::{Behavior, StandIn};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

fn deployment(name: &str, image: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": name}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

async fn wait_for<T, F: FnMut(&T) -> bool>(api: &Api<T>, name: &str, mut ok: F) -> T
where
    T: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..200 {
        let v = api.get(name).await.unwrap();
        if ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "condition never held for {name}: {:?}",
        api.get(name).await.unwrap()
    );
}

#[tokio::test]
async fn server_side_apply_tracks_generation_ownership_and_conflicts() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), true);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let pp = PatchParams::apply("deployctl");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"a": "1", "b": "2"}});
    let first = cms.patch("cfg", &pp, &Patch::Apply(&cm)).await.unwrap();
    let again = cms.patch("cfg", &pp, &Patch::Apply(&cm)).await.unwrap();
    assert_eq!(
        first.metadata.resource_version, again.metadata.resource_version,
        "a no-op apply changes nothing"
    );
    let mf = again.metadata.managed_fields.unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("deployctl"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // The owner stops sending `b`: it goes.
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"a": "1"}});
    let got = cms.patch("cfg", &pp, &Patch::Apply(&fewer)).await.unwrap();
    assert_eq!(got.data.unwrap().len(), 1);

    // Another manager changing an owned field conflicts, naming the owner; force takes over.
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "9"}});
    let err = cms
        .patch(
            "cfg",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("conflict with \"deployctl\""),
                "{}",
                s.message
            );
            assert!(s.message.contains(".data.a"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    let forced = cms
        .patch(
            "cfg",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["a"], "9");

    // Dry run stores nothing.
    let dry =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost"}, "data": {}});
    let mut dp = PatchParams::apply("deployctl");
    dp.dry_run = true;
    cms.patch("ghost", &dp, &Patch::Apply(&dry)).await.unwrap();
    assert!(cms.get_opt("ghost").await.unwrap().is_none());

    // Selectors: equality and set-based.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other", "labels": {"app": "api"}}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["cfg"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app in (api,x)"))
                .await
                .unwrap()
        ),
        ["other"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app notin (api)"))
                .await
                .unwrap()
        ),
        ["cfg"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=other"))
                .await
                .unwrap()
        ),
        ["other"]
    );
}

#[tokio::test]
async fn deployments_roll_out_with_generations_and_cascade_on_delete() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), true);
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pp = PatchParams::apply("deployctl");

    // Watch first, so the rollout's events are seen.
    let mut stream = deps
        .watch(&WatchParams::default().fields("metadata.name=web"), "0")
        .await
        .unwrap()
        .boxed();
    deps.patch("web", &pp, &Patch::Apply(deployment("web", "app:v1", 2)))
        .await
        .unwrap();
    let mut saw_added = false;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match ev {
            WatchEvent::Added(_) => saw_added = true,
            WatchEvent::Modified(d) => {
                let s = d.status.unwrap_or_default();
                if s.ready_replicas == Some(2) && s.observed_generation == d.metadata.generation {
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(saw_added);
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );

    // New image: generation 2, a new ReplicaSet, old pods replaced.
    deps.patch("web", &pp, &Patch::Apply(deployment("web", "app:v2", 2)))
        .await
        .unwrap();
    let d = wait_for(&deps, "web", |d| {
        let s = d.status.clone().unwrap_or_default();
        s.observed_generation == Some(2)
            && s.updated_replicas == Some(2)
            && s.ready_replicas == Some(2)
            && s.replicas == Some(2)
    })
    .await;
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let images: Vec<String> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=web"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.spec.clone().unwrap().containers[0].image.clone().unwrap())
        .collect();
    assert_eq!(images, ["app:v2", "app:v2"]);

    // Cascade.
    deps.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        pods.list(&ListParams::default().labels("app.kubernetes.io/instance=web"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn failing_pods_show_their_reason_events_and_the_deadline() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), true);
    standin.set_behavior("app:bad", Behavior::CrashLoopBackOff);
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    let pp = PatchParams::apply("deployctl");
    deps.patch(
        "pull",
        &pp,
        &Patch::Apply(deployment("pull", "registry/fail-pull:1", 1)),
    )
    .await
    .unwrap();
    deps.patch(
        "crash",
        &pp,
        &Patch::Apply(deployment("crash", "app:bad", 1)),
    )
    .await
    .unwrap();
    let reason = |name: &'static str| {
        let pods = pods.clone();
        async move {
            for _ in 0..100 {
                let l = pods
                    .list(
                        &ListParams::default()
                            .labels(&format!("app.kubernetes.io/instance={name}")),
                    )
                    .await
                    .unwrap();
                if let Some(r) = l.items.first().and_then(|p| {
                    p.status.clone()?.container_statuses?[0]
                        .state
                        .clone()?
                        .waiting?
                        .reason
                }) && r != "ContainerCreating"
                    && r != "ErrImagePull"
                {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("no waiting reason for {name}");
        }
    };
    assert_eq!(reason("pull").await, "ImagePullBackOff");
    assert_eq!(reason("crash").await, "CrashLoopBackOff");
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Failed"))
    );
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("BackOff"))
    );
    let d = wait_for(&deps, "pull", |d| {
        d.status
            .clone()
            .unwrap_or_default()
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    })
    .await;
    assert_ne!(d.status.unwrap().ready_replicas, Some(1));
}

#[tokio::test]
async fn pod_logs_follow_new_lines() {
    let standin = StandIn::start().await.unwrap();
    let c = common::kube_client(&standin.url(), true);
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    deps.patch(
        "logs",
        &PatchParams::apply("deployctl"),
        &Patch::Apply(deployment("logs", "app:v1", 1)),
    )
    .await
    .unwrap();
    let pod = loop {
        let l = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=logs"))
            .await
            .unwrap();
        if let Some(p) = l.items.first() {
            break p.metadata.name.clone().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = pods.logs(&pod, &Default::default()).await.unwrap();
    assert!(text.contains("pulling app:v1"), "{text}");
    let lp = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = pods.log_stream(&pod, &lp).await.unwrap().lines();
    standin.append_log("default", &pod, "GET /health 200");
    let mut seen = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(3), lines.try_next())
        .await
        .map(|r| r.unwrap())
    {
        seen.push(line.clone());
        if line == "GET /health 200" {
            break;
        }
    }
    assert!(seen.contains(&"GET /health 200".to_owned()), "{seen:?}");
}
