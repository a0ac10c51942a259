//! `managed_resources`: the offline inventory `deployctl plan` shows is what `render`
//! makes, for every rendering case; and the default compute resources.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deployctl_config::{Config, LoadOptions, load};
use deployctl_core::{Digest, ImageRef, PushedImage};
use deployctl_k8s::{RenderInput, managed_resources, render};
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/k8s")
}

fn load_case(case: &str) -> Config {
    let vars: BTreeMap<String, String> = ["DB_PASSWORD", "REGISTRY_PASSWORD", "STRIPE_KEY"]
        .into_iter()
        .map(|k| (k.to_owned(), format!("{k}-value")))
        .collect();
    load(
        &fixtures().join(case).join("deploy.yaml"),
        &LoadOptions::new(&vars),
    )
    .unwrap_or_else(|e| panic!("{case}: {e:#?}"))
}

fn image() -> PushedImage {
    let digest = format!("sha256:{}", "ab".repeat(32));
    PushedImage::new(
        ImageRef::parse(&format!("registry.example.com/app:1@{digest}")).unwrap(),
        Digest::parse(&digest).unwrap(),
        None,
    )
}

/// Every case directory under fixtures/k8s, so a new case is covered without a list.
fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.path()
                .join("deploy.yaml")
                .is_file()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn managed_resources_are_what_render_makes_for_every_case() {
    let cases = cases();
    assert!(cases.len() >= 7, "{cases:?}");
    for case in &cases {
        let config = load_case(case);
        let rendered = render(RenderInput::new(&config, &image()));
        let managed = managed_resources(&config);
        match (rendered, managed) {
            (Ok(rendered), Ok(managed)) => {
                let from_render: Vec<(String, String, String, String)> = rendered
                    .iter()
                    .map(|m| {
                        (
                            m.api_version.clone(),
                            m.kind.clone(),
                            m.name.clone(),
                            m.namespace.clone(),
                        )
                    })
                    .collect();
                let offline: Vec<(String, String, String, String)> = managed
                    .iter()
                    .map(|r| {
                        (
                            r.api_version.clone(),
                            r.kind.clone(),
                            r.name.clone(),
                            r.namespace.clone(),
                        )
                    })
                    .collect();
                assert_eq!(offline, from_render, "{case}");
                assert!(offline.iter().any(|r| r.1 == "Deployment"), "{case}");
            }
            // A case that does not render is an error for both, the same error.
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{case}"),
            (a, b) => panic!("{case}: render {a:?} but managed_resources {b:?}"),
        }
    }
}

#[test]
fn the_config_map_is_named_after_the_app() {
    let config = load_case("full");
    let names: Vec<(String, String)> = managed_resources(&config)
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.name))
        .collect();
    assert!(
        names.contains(&(
            "ConfigMap".to_owned(),
            format!("{}-config", config.app.name)
        )),
        "{names:?}"
    );
}

#[test]
fn a_request_above_the_default_limit_raises_that_limit() {
    let mut config = load_case("minimal");
    let resources: deployctl_config::Resources =
        serde_yaml::from_str("requests: {memory: 1Gi}\nlimits: {cpu: 250m}\n").unwrap();
    config.kubernetes.deployment.resources = resources;
    let manifests = render(RenderInput::new(&config, &image())).unwrap();
    let d = manifests.iter().find(|m| m.kind == "Deployment").unwrap();
    assert_eq!(
        d.value["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({
            "requests": {"cpu": "100m", "memory": "1Gi"},
            "limits": {"cpu": "250m", "memory": "1Gi"},
        })
    );
}
