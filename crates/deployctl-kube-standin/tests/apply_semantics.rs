//! Server-side apply as a real API server does it, through the real `kube` client:
//! associative lists owned per item (containers by `name`, env by `name`, ports by
//! `containerPort`), defaulted fields owned by nobody, canonical quantities, and
//! `metadata.generation` moving only when the spec really changes after defaulting.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use deployctl_kube_standin::StandIn;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
        },
    })
}

/// Only what a second manager (a sidecar injector, say) sets: one container of its own.
fn sidecar(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "log", "image": image}]}}},
    })
}

async fn apply(api: &Api<Deployment>, manager: &str, v: &Value) -> Result<Value, kube::Error> {
    api.patch("web", &PatchParams::apply(manager), &Patch::Apply(v))
        .await
        .map(|d| serde_json::to_value(d).unwrap())
}

fn containers(d: &Value) -> Vec<(String, String)> {
    d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["image"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn associative_lists_defaults_and_generation() {
    let standin = StandIn::start().await.unwrap();
    let api: Api<Deployment> =
        Api::namespaced(common::kube_client(&standin.url(), true), "default");
    let mine = deployment(json!([{
        "name": "web", "image": "r/web:1",
        "ports": [{"containerPort": 8080}],
        "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
        "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}},
    }]));
    let first = apply(&api, "deployctl", &mine).await.unwrap();
    let generation = first["metadata"]["generation"].as_i64().unwrap();
    let web = &first["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        web["resources"]["limits"],
        json!({"cpu": "1", "memory": "1Gi"})
    );
    assert_eq!(web["terminationMessagePolicy"], "File");
    // The applied order of the env items is kept.
    assert_eq!(web["env"][0]["name"], "B");
    // managedFields name the items by their keys, and not the defaulted fields.
    let fields = first["metadata"]["managedFields"][0]["fieldsV1"].to_string();
    assert!(fields.contains(r#"k:{\"name\":\"web\"}"#), "{fields}");
    assert!(
        fields.contains(r#"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"#),
        "{fields}"
    );
    assert!(!fields.contains("terminationMessagePolicy"), "{fields}");

    // Re-applied unchanged, or with the quantities as the server wrote them: nothing moves.
    let again = apply(&api, "deployctl", &mine).await.unwrap();
    assert_eq!(
        again["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let mut canonical = mine.clone();
    canonical["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] =
        json!({"cpu": "1", "memory": "1Gi"});
    let same = apply(&api, "deployctl", &canonical).await.unwrap();
    assert_eq!(same["metadata"]["generation"].as_i64(), Some(generation));

    // Another manager adds its own container: no conflict, both stay.
    let with_sidecar = apply(&api, "injector", &sidecar("r/log:1")).await.unwrap();
    assert_eq!(
        containers(&with_sidecar),
        [
            ("web".to_owned(), "r/web:1".to_owned()),
            ("log".to_owned(), "r/log:1".to_owned())
        ]
    );
    assert_eq!(
        with_sidecar["metadata"]["generation"].as_i64(),
        Some(generation + 1)
    );
    // It may not change deployctl's container: the conflict names the item.
    let mut takeover = sidecar("r/log:1");
    takeover["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "web", "image": "evil:1"}]);
    match apply(&api, "injector", &takeover).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert!(
                e.message.contains(
                    r#"conflict with "deployctl": .spec.template.spec.containers[name="web"].image"#
                ),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }

    // deployctl re-applies its manifest: the sidecar's container is not its to remove.
    let kept = apply(&api, "deployctl", &mine).await.unwrap();
    assert_eq!(containers(&kept).len(), 2, "{kept}");
    assert_eq!(
        kept["metadata"]["generation"].as_i64(),
        Some(generation + 1)
    );
    // deployctl drops env A: that item goes, B stays; defaulted fields stay.
    let mut fewer = mine.clone();
    fewer["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "B", "value": "2"}]);
    let d = apply(&api, "deployctl", &fewer).await.unwrap();
    let web = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(web["env"], json!([{"name": "B", "value": "2"}]));
    assert_eq!(web["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(d["metadata"]["generation"].as_i64(), Some(generation + 2));
    // The injector stops sending its container: it goes.
    let mut nothing = sidecar("x");
    nothing["spec"] = json!({});
    let d = apply(&api, "injector", &nothing).await.unwrap();
    assert_eq!(containers(&d), [("web".to_owned(), "r/web:1".to_owned())]);
    // A field deployctl set and stops sending goes back to its default.
    let mut always = fewer.clone();
    always["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    let d = apply(&api, "deployctl", &always).await.unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let d = apply(&api, "deployctl", &fewer).await.unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

/// A strategic merge patch (what `kubectl set image`/`patch`/`edit` send) merges list items
/// by key: changing one container's image keeps the rest of it and the other containers,
/// and its sender owns only what it sent (deployctl's next apply conflicts on the image,
/// nothing else).
#[tokio::test]
async fn strategic_merge_patch_merges_items_by_key() {
    let standin = StandIn::start().await.unwrap();
    let api: Api<Deployment> =
        Api::namespaced(common::kube_client(&standin.url(), true), "default");
    let mine = deployment(json!([
        {"name": "web", "image": "r/web:1", "ports": [{"containerPort": 8080}],
         "env": [{"name": "A", "value": "1"}]},
        {"name": "log", "image": "r/log:1"},
    ]));
    apply(&api, "deployctl", &mine).await.unwrap();
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
        "containers": [{"name": "web", "image": "r/web:2"}]}}}});
    let d = api
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("kubectl-set".into()),
                ..PatchParams::default()
            },
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    let d = serde_json::to_value(d).unwrap();
    assert_eq!(
        containers(&d),
        [
            ("web".to_owned(), "r/web:2".to_owned()),
            ("log".to_owned(), "r/log:1".to_owned())
        ]
    );
    let web = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(web["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(web["ports"][0]["containerPort"], 8080);
    // deployctl re-applies its manifest with a changed env value: the only conflict is the
    // image the patch took over.
    let mut changed = mine.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("2");
    match apply(&api, "deployctl", &changed).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert!(
                e.message.starts_with("Apply failed with 1 conflict:")
                    && e.message.contains(r#"containers[name="web"].image"#),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
}
