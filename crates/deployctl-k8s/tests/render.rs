//! Rendering: golden files per `fixtures/k8s/<case>/deploy.yaml`, and the properties every
//! rendering must have (typed round trip, labels, namespaces, secrets only in Secrets,
//! escaping, user templates, files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use deployctl_config::{Config, LoadOptions, load, load_str};
use deployctl_core::{Digest, ImageRef, PushedImage, Secret};
use deployctl_k8s::{
    CONFIG_CHECKSUM_ANNOTATION, Error, Manifest, RenderInput, TEMPLATE_NAMES, TemplateOrigin,
    check_strict, render, to_multi_document, write_dir,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Cases rendered to goldens.
const CASES: &[&str] = &[
    "minimal",
    "full",
    "hpa",
    "private-registry",
    "special-chars",
    "user-templates",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/k8s")
}

fn vars() -> BTreeMap<String, String> {
    [
        ("DB_PASSWORD", "db-pw-s3cr3t-full"),
        ("REGISTRY_PASSWORD", "reg-pw-Zx9!q:%"),
        ("STRIPE_KEY", "sk_test_51HxStripeKey"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn load_case(case: &str) -> Config {
    let path = fixtures().join(case).join("deploy.yaml");
    load(&path, &LoadOptions::new(&vars())).unwrap_or_else(|e| panic!("{case}: {e:#?}"))
}

/// The image deployctl would have pushed for `config`: `<registry.url>/<app.name>:<version>`
/// (or a local registry), pinned to [`DIGEST`].
fn image_for(config: &Config) -> PushedImage {
    let base = config
        .registry
        .as_ref()
        .map_or("127.0.0.1:5000", |r| r.url.as_str());
    let reference = ImageRef::parse(&format!(
        "{base}/{}:{}",
        config.app.name, config.app.version
    ))
    .expect("a valid image reference");
    PushedImage::new(
        reference,
        Digest::parse(DIGEST).expect("a valid digest"),
        None,
    )
}

fn render_config(config: &Config) -> Result<Vec<Manifest>, Error> {
    let image = image_for(config);
    render(RenderInput::new(config, &image))
}

fn render_case(case: &str) -> (Config, Vec<Manifest>) {
    let config = load_case(case);
    let manifests = render_config(&config).unwrap_or_else(|e| panic!("{case}: {e}"));
    (config, manifests)
}

fn find<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(manifests)))
}

fn kinds(manifests: &[Manifest]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| format!("{}/{}", m.kind, m.name))
        .collect()
}

/// The independent strict check: parses `yaml` the way a client reads it, deserializes it
/// into the `k8s-openapi` type its `apiVersion`/`kind` name, serializes the typed value back
/// and demands the identical document. `k8s-openapi` skips unknown fields, so a field the
/// type does not know is dropped on the way and the comparison fails.
fn typed_round_trip(yaml: &str) -> Result<(), String> {
    use k8s_openapi::api::{apps, autoscaling, core, networking, policy};

    fn again<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
        let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(&typed).map_err(|e| e.to_string())
    }

    let value: Value = serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    let back = match (api_version, kind) {
        ("apps/v1", "Deployment") => again::<apps::v1::Deployment>(&value),
        ("v1", "Service") => again::<core::v1::Service>(&value),
        ("v1", "ConfigMap") => again::<core::v1::ConfigMap>(&value),
        ("v1", "Secret") => again::<core::v1::Secret>(&value),
        ("v1", "PersistentVolumeClaim") => again::<core::v1::PersistentVolumeClaim>(&value),
        ("v1", "ServiceAccount") => again::<core::v1::ServiceAccount>(&value),
        ("networking.k8s.io/v1", "Ingress") => again::<networking::v1::Ingress>(&value),
        ("networking.k8s.io/v1", "NetworkPolicy") => again::<networking::v1::NetworkPolicy>(&value),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            again::<autoscaling::v2::HorizontalPodAutoscaler>(&value)
        }
        ("policy/v1", "PodDisruptionBudget") => again::<policy::v1::PodDisruptionBudget>(&value),
        _ => return Err(format!("no k8s-openapi type for {api_version} {kind}")),
    }?;
    if back == value {
        Ok(())
    } else {
        Err(format!(
            "{kind} changed on the typed round trip:\nrendered: {value:#}\ntyped:    {back:#}"
        ))
    }
}

#[test]
fn every_case_renders_its_golden() {
    for case in CASES {
        let (_, manifests) = render_case(case);
        insta::assert_snapshot!(*case, to_multi_document(&manifests));
    }
}

#[test]
fn rendering_is_deterministic() {
    for case in CASES {
        let (config, first) = render_case(case);
        let second = render_config(&config).unwrap();
        assert_eq!(first, second, "{case}");
    }
}

#[test]
fn every_document_round_trips_through_its_typed_resource() {
    for case in CASES {
        let (_, manifests) = render_case(case);
        for m in &manifests {
            let what = format!("{case}: {} {}", m.kind, m.name);
            typed_round_trip(&m.yaml).unwrap_or_else(|e| panic!("{what}: {e}"));
            let reparsed: Value = serde_yaml::from_str(&m.yaml).unwrap();
            assert_eq!(reparsed, m.value, "{what}: value is the parsed yaml");
            check_strict(&m.value).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                m.yaml.ends_with('\n') && !m.yaml.starts_with("---"),
                "{what}"
            );
        }
        let stream = to_multi_document(&manifests);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&stream)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .collect();
        let values: Vec<Value> = manifests.iter().map(|m| m.value.clone()).collect();
        assert_eq!(docs, values, "{case}: the multi-document stream");
    }
}

#[test]
fn the_strict_checks_reject_unknown_fields() {
    let (_, manifests) = render_case("minimal");
    let good = &find(&manifests, "Deployment").yaml;
    typed_round_trip(good).unwrap();

    // A misspelt field deep in the pod template: k8s-openapi (like the API server) would
    // drop it without a word.
    let misspelt = good.replace("containerPort:", "contianerPort:");
    assert_ne!(&misspelt, good);
    let bogus_top = format!("{good}bogus: true\n");
    let null_field = good.replace("  revisionHistoryLimit: 10", "  revisionHistoryLimit: null");
    assert_ne!(&null_field, good);
    for bad in [&misspelt, &bogus_top, &null_field] {
        assert!(typed_round_trip(bad).is_err(), "accepted:\n{bad}");
        let value: Value = serde_yaml::from_str(bad).unwrap();
        assert!(
            check_strict(&value).is_err(),
            "check_strict accepted:\n{bad}"
        );
    }
    let err = check_strict(&serde_yaml::from_str(&misspelt).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "`spec.template.spec.containers[0].ports[0].contianerPort` is not a known field"
        ),
        "{err}"
    );

    // A wrong type fails too, with the path.
    let wrong_type = good.replace("containerPort: 8080", "containerPort: eighty");
    assert!(typed_round_trip(&wrong_type).is_err());
    let err = check_strict(&serde_yaml::from_str(&wrong_type).unwrap()).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        cause.contains("spec.template.spec.containers[0].ports[0].containerPort"),
        "{cause}"
    );
}

#[test]
fn every_resource_is_labelled_and_namespaced() {
    for case in CASES {
        let (config, manifests) = render_case(case);
        let name = &config.app.name;
        let selector = json!({
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": name,
        });
        for m in &manifests {
            let what = format!("{case}: {} {}", m.kind, m.name);
            let labels = &m.value["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], json!(name), "{what}");
            assert_eq!(labels["app.kubernetes.io/instance"], json!(name), "{what}");
            assert_eq!(
                labels["app.kubernetes.io/version"],
                json!(config.app.version),
                "{what}"
            );
            assert_eq!(
                labels["app.kubernetes.io/managed-by"],
                json!("deployctl"),
                "{what}"
            );
            assert_eq!(
                m.value["metadata"]["namespace"],
                json!(config.kubernetes.namespace),
                "{what}"
            );
            assert_eq!(m.namespace, config.kubernetes.namespace);
            let selectors = match m.kind.as_str() {
                "Deployment" => vec![
                    &m.value["spec"]["selector"]["matchLabels"],
                    // The pod template carries every label, so the selector matches it.
                ],
                "Service" => vec![&m.value["spec"]["selector"]],
                "PodDisruptionBudget" => vec![&m.value["spec"]["selector"]["matchLabels"]],
                "NetworkPolicy" => vec![&m.value["spec"]["podSelector"]["matchLabels"]],
                _ => vec![],
            };
            for s in selectors {
                assert_eq!(s, &selector, "{what}: selectors use name and instance only");
            }
            if m.kind == "Deployment" {
                assert_eq!(
                    &m.value["spec"]["template"]["metadata"]["labels"], labels,
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn minimal_renders_a_deployment_and_a_service_with_safe_defaults() {
    let (_, manifests) = render_case("minimal");
    assert_eq!(kinds(&manifests), ["Deployment/hello", "Service/hello"]);
    let d = &find(&manifests, "Deployment").value["spec"];
    assert_eq!(d["replicas"], 1);
    assert_eq!(d["revisionHistoryLimit"], 10);
    assert_eq!(d["progressDeadlineSeconds"], 600);
    assert_eq!(
        d["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}})
    );
    let pod = &d["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], format!("127.0.0.1:5000/hello@{DIGEST}"));
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": "/health", "port": "http"})
        );
    }
    for absent in ["envFrom", "volumeMounts"] {
        assert!(c.get(absent).is_none(), "{absent}");
    }
    // Requests and limits by default, so namespaces with a compute quota accept the pods.
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}})
    );
    for absent in ["serviceAccountName", "imagePullSecrets", "volumes"] {
        assert!(pod.get(absent).is_none(), "{absent}");
    }
    let svc = &find(&manifests, "Service").value["spec"];
    assert_eq!(svc["type"], "ClusterIP");
    assert_eq!(
        svc["ports"],
        json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    );
}

#[test]
fn full_renders_every_option() {
    let (_, manifests) = render_case("full");
    assert_eq!(
        kinds(&manifests),
        [
            "ServiceAccount/shop-api-sa",
            "ConfigMap/shop-api-config",
            "Secret/shop-api-secrets",
            "PersistentVolumeClaim/shop-api-data",
            "Deployment/shop-api",
            "Service/shop-api",
            "Ingress/shop-api",
            "HorizontalPodAutoscaler/shop-api",
            "PodDisruptionBudget/shop-api",
            "NetworkPolicy/shop-api",
        ],
        "an explicit image_pull_secret is referenced, not rendered"
    );
    let d = &find(&manifests, "Deployment").value["spec"];
    assert!(d.get("replicas").is_none(), "the autoscaler owns replicas");
    assert_eq!(d["revisionHistoryLimit"], 5);
    assert_eq!(d["progressDeadlineSeconds"], 300);
    assert_eq!(
        d["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": "25%"})
    );
    let pod = &d["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "shop-api-sa");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "shop-registry"}]));
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"],
        format!("registry.example.com:5000/shop/shop-api@{DIGEST}"),
        "by digest, without the tag"
    );
    assert_eq!(
        c["envFrom"],
        json!([
            {"configMapRef": {"name": "shop-api-config"}},
            {"secretRef": {"name": "shop-api-secrets"}}
        ])
    );
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({
            "httpGet": {"path": "/livez", "port": "http"},
            "initialDelaySeconds": 10, "periodSeconds": 20, "timeoutSeconds": 3, "failureThreshold": 5
        })
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "data", "mountPath": "/var/lib/shop"}, {"name": "tmp", "mountPath": "/tmp"}])
    );
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "data", "persistentVolumeClaim": {"claimName": "shop-api-data"}},
            {"name": "tmp", "emptyDir": {}}
        ])
    );
    assert_eq!(
        find(&manifests, "ConfigMap").value["data"],
        json!({"FEATURE_X": "on", "LOG_LEVEL": "debug", "PORT": "3000"}),
        "kubernetes.configmap is merged over env"
    );
    let svc = &find(&manifests, "Service").value["spec"];
    assert_eq!(svc["type"], "NodePort");
    assert_eq!(svc["ports"][0]["nodePort"], 30080);
    let hpa = &find(&manifests, "HorizontalPodAutoscaler").value["spec"];
    assert_eq!(hpa["minReplicas"], 2);
    assert_eq!(hpa["maxReplicas"], 10);
    assert_eq!(hpa["metrics"].as_array().map(Vec::len), Some(2));
    let np = &find(&manifests, "NetworkPolicy").value["spec"]["ingress"][0];
    assert_eq!(np["ports"], json!([{"port": 3000, "protocol": "TCP"}]));
    assert_eq!(np["from"].as_array().map(Vec::len), Some(3));
    let pvc = &find(&manifests, "PersistentVolumeClaim").value["spec"];
    assert_eq!(pvc["storageClassName"], "standard");
    assert_eq!(pvc["resources"]["requests"]["storage"], "5Gi");
}

#[test]
fn an_autoscaled_deployment_has_no_replicas_and_a_budget() {
    let (_, manifests) = render_case("hpa");
    assert_eq!(
        kinds(&manifests),
        [
            "ConfigMap/worker-config",
            "Deployment/worker",
            "Service/worker",
            "HorizontalPodAutoscaler/worker",
            "PodDisruptionBudget/worker",
        ]
    );
    assert!(
        find(&manifests, "Deployment").value["spec"]
            .get("replicas")
            .is_none()
    );
    let hpa = &find(&manifests, "HorizontalPodAutoscaler").value["spec"];
    assert_eq!(
        hpa["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"})
    );
    assert_eq!(
        hpa["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert_eq!(
        find(&manifests, "PodDisruptionBudget").value["spec"]["maxUnavailable"],
        1
    );
}

#[test]
fn a_disruption_budget_needs_more_than_one_replica() {
    let mut config = load_case("minimal");
    for (replicas, expected) in [(0, false), (1, false), (2, true), (5, true)] {
        config.kubernetes.deployment.replicas = replicas;
        let manifests = render_config(&config).unwrap();
        assert_eq!(
            manifests.iter().any(|m| m.kind == "PodDisruptionBudget"),
            expected,
            "{replicas} replicas"
        );
    }
    config.kubernetes.hpa.enabled = true;
    config.kubernetes.hpa.min_replicas = 1;
    config.kubernetes.deployment.replicas = 5;
    let manifests = render_config(&config).unwrap();
    assert!(
        !manifests.iter().any(|m| m.kind == "PodDisruptionBudget"),
        "an autoscaler that may scale to 1 gets no budget"
    );
}

#[test]
fn private_registry_credentials_become_an_image_pull_secret() {
    let (config, manifests) = render_case("private-registry");
    assert_eq!(
        kinds(&manifests),
        [
            "Secret/billing-registry",
            "Secret/billing-secrets",
            "Deployment/billing",
            "Service/billing",
            "PodDisruptionBudget/billing",
        ]
    );
    let pull = &manifests[0].value;
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
    let raw = BASE64
        .decode(pull["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let docker: Value = serde_json::from_slice(&raw).unwrap();
    let password = config.registry.as_ref().unwrap().password.as_ref().unwrap();
    assert_eq!(
        docker,
        json!({"auths": {"registry.example.com:5000": {
            "username": "ci-bot",
            "password": password.expose(),
            "auth": BASE64.encode(format!("ci-bot:{}", password.expose())),
        }}})
    );
    let pod = &find(&manifests, "Deployment").value["spec"]["template"]["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "billing-registry"}])
    );
}

#[test]
fn docker_hub_credentials_use_docker_hubs_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.yaml");
    let yaml = "app: { name: hub }\n\
                registry: { url: docker.io/myteam, username: me, password: pw-hub-123 }\n\
                kubernetes: { enabled: true }\n";
    let config = load_str(yaml, &file, &LoadOptions::new(&vars())).unwrap();
    let manifests = render_config(&config).unwrap();
    let raw = BASE64
        .decode(
            manifests[0].value["data"][".dockerconfigjson"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let docker: Value = serde_json::from_slice(&raw).unwrap();
    assert!(
        docker["auths"].get("https://index.docker.io/v1/").is_some(),
        "{}",
        docker["auths"]
    );
    assert_eq!(
        find(&manifests, "Deployment").value["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("docker.io/myteam/hub@{DIGEST}")
    );
}

#[test]
fn credentials_from_elsewhere_render_no_pull_secret() {
    let mut config = load_case("private-registry");
    config.registry.as_mut().unwrap().credentials = deployctl_config::CredentialSource::Docker;
    let manifests = render_config(&config).unwrap();
    assert!(manifests.iter().all(|m| m.name != "billing-registry"));
    let pod = &find(&manifests, "Deployment").value["spec"]["template"]["spec"];
    assert!(pod.get("imagePullSecrets").is_none());
}

#[test]
fn a_config_change_changes_the_checksum_and_nothing_else_does() {
    let checksum = |config: &Config| {
        let manifests = render_config(config).unwrap();
        find(&manifests, "Deployment").value["spec"]["template"]["metadata"]["annotations"]
            [CONFIG_CHECKSUM_ANNOTATION]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut config = load_case("private-registry");
    let original = checksum(&config);
    assert_eq!(original.len(), 64);

    config.app.version = "5.2.0".to_owned();
    config.kubernetes.deployment.replicas = 7;
    assert_eq!(
        checksum(&config),
        original,
        "version and replicas are not config"
    );

    config
        .secrets
        .insert("STRIPE_KEY".to_owned(), Secret::new("sk_test_rotated"));
    let rotated = checksum(&config);
    assert_ne!(rotated, original, "a secret value changed");

    config.env.insert("MODE".to_owned(), "fast".to_owned());
    let with_env = checksum(&config);
    assert_ne!(with_env, rotated, "an env value was added");

    config
        .kubernetes
        .configmap
        .insert("MODE".to_owned(), "slow".to_owned());
    assert_ne!(checksum(&config), with_env, "configmap overrides env");
}

#[test]
fn secret_values_appear_only_in_secrets() {
    for case in ["full", "private-registry", "special-chars"] {
        let (config, manifests) = render_case(case);
        let mut needles: Vec<String> = Vec::new();
        for s in config.secret_values() {
            needles.push(s.expose().to_owned());
            needles.push(BASE64.encode(s.expose()));
        }
        if let Some(r) = &config.registry
            && let (Some(u), Some(p)) = (&r.username, &r.password)
        {
            needles.push(BASE64.encode(format!("{u}:{}", p.expose())));
        }
        assert!(!needles.is_empty(), "{case} has secrets");
        for m in &manifests {
            let debug = format!("{m:?}");
            for n in &needles {
                assert!(
                    !debug.contains(n.as_str()),
                    "{case}: Debug of {} {}",
                    m.kind,
                    m.name
                );
                if !m.is_secret() {
                    for text in [&m.yaml, &m.value.to_string()] {
                        assert!(
                            !text.contains(n.as_str()),
                            "{case}: a secret value is in {} {}",
                            m.kind,
                            m.name
                        );
                    }
                }
            }
        }
        // The scan is not vacuous: every secrets: value is in the app's Secret.
        let secret = manifests
            .iter()
            .find(|m| m.template == "secret.yaml.tera")
            .unwrap();
        for (key, value) in &config.secrets {
            let data = secret.value["data"][key].as_str().unwrap();
            assert_eq!(
                BASE64.decode(data).unwrap(),
                value.expose().as_bytes(),
                "{case} {key}"
            );
        }
    }
}

#[test]
fn special_characters_survive_unchanged() {
    let (config, manifests) = render_case("special-chars");
    assert!(
        config.env["TEMPLATE"].contains("{{ not.tera }}"),
        "the fixture escapes work"
    );

    let mut expected = config.env.clone();
    expected.extend(config.kubernetes.configmap.clone());
    let cm = find(&manifests, "ConfigMap");
    assert_eq!(cm.value["data"], json!(expected));
    assert!(
        cm.yaml.contains("BOOL_YES: \"yes\"") && cm.yaml.contains("\"YES\": \"no\""),
        "YAML 1.1 booleans are quoted for every reader:\n{}",
        cm.yaml
    );

    let secret = manifests
        .iter()
        .find(|m| m.template == "secret.yaml.tera")
        .unwrap();
    for (key, value) in &config.secrets {
        let data = secret.value["data"][key].as_str().unwrap();
        assert_eq!(BASE64.decode(data).unwrap(), value.expose().as_bytes());
    }

    let ingress = find(&manifests, "Ingress");
    assert_eq!(
        ingress.value["metadata"]["annotations"],
        json!(config.kubernetes.ingress.annotations)
    );
    let sa = find(&manifests, "ServiceAccount");
    assert_eq!(
        sa.value["metadata"]["annotations"],
        json!(config.kubernetes.service_account.annotations)
    );
    let c = &find(&manifests, "Deployment").value["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"],
        json!(config.app.health_check_path)
    );
    assert_eq!(
        find(&manifests, "NetworkPolicy").value["spec"]["ingress"][0]["from"],
        json!([{"podSelector": {"matchLabels": {"role": "yes"}}}])
    );
}

#[test]
fn user_templates_replace_built_in_ones() {
    let (config, manifests) = render_case("user-templates");
    assert_eq!(
        kinds(&manifests),
        [
            "ConfigMap/custom-config",
            "Deployment/custom",
            "Service/custom",
        ],
        "the empty networkpolicy.yaml.tera drops the NetworkPolicy"
    );
    let svc = find(&manifests, "Service");
    assert_eq!(
        svc.value["metadata"]["annotations"],
        json!({
            "example.com/rendered-by": "user-template",
            "example.com/image": format!("127.0.0.1:5000/custom@{DIGEST}"),
        })
    );
    assert_eq!(svc.value["spec"]["ports"].as_array().map(Vec::len), Some(2));

    // Everything else is exactly what the built-in templates render.
    let mut built_in = config.clone();
    built_in.kubernetes.templates_dir = None;
    let reference = render_config(&built_in).unwrap();
    for kind in ["ConfigMap", "Deployment"] {
        assert_eq!(find(&manifests, kind), find(&reference, kind), "{kind}");
    }
    assert_ne!(find(&manifests, "Service"), find(&reference, "Service"));
}

#[test]
fn an_unknown_user_template_is_an_error_listing_the_valid_names() {
    let config = load_case("unknown-template");
    let err = render_config(&config).unwrap_err();
    match &err {
        Error::UnknownTemplates { dir, files } => {
            assert_eq!(files, &["deploymnet.yaml.tera"]);
            assert!(
                dir.ends_with("unknown-template/templates"),
                "{}",
                dir.display()
            );
        }
        other => panic!("expected UnknownTemplates, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("deploymnet.yaml.tera"), "{msg}");
    for name in TEMPLATE_NAMES {
        assert!(msg.contains(name), "{msg} does not list {name}");
    }
}

#[test]
fn a_missing_templates_dir_is_an_error() {
    let mut config = load_case("minimal");
    config.kubernetes.templates_dir = Some(fixtures().join("minimal/no-such-dir"));
    let err = render_config(&config).unwrap_err();
    assert!(matches!(err, Error::TemplatesDir { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

/// Renders a minimal config whose templates directory holds `file` with `source`.
fn render_with_user_template(file: &str, source: &str) -> Result<Vec<Manifest>, Error> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("t")).expect("create t/");
    std::fs::write(dir.path().join("t").join(file), source).expect("write the template");
    let yaml = "app: { name: demo }\nkubernetes: { enabled: true, templates_dir: t }\n";
    let config = load_str(
        yaml,
        &dir.path().join("deploy.yaml"),
        &LoadOptions::new(&vars()),
    )
    .expect("a valid config");
    render_config(&config)
}

const USER_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ names.service | q }}\n  namespace: {{ namespace | q }}\nspec:\n  selector:\n    {{ selector_labels | yaml(indent=4) }}\n  ports:\n    - port: 80\n";

#[test]
fn a_valid_user_template_renders() {
    let manifests = render_with_user_template("service.yaml.tera", USER_SERVICE).unwrap();
    assert_eq!(find(&manifests, "Service").template, "service.yaml.tera");
    assert!(
        find(&manifests, "Service").value["metadata"]
            .get("labels")
            .is_none()
    );
}

#[test]
fn a_user_template_with_an_unknown_field_is_rejected_with_its_path() {
    let source = USER_SERVICE.replace("    - port: 80", "    - port: 80\n      targtPort: 8080");
    let err = render_with_user_template("service.yaml.tera", &source).unwrap_err();
    match &err {
        Error::Schema {
            kind,
            template: Some(TemplateOrigin::User { name, path }),
            problems,
            ..
        } => {
            assert_eq!(kind, "Service");
            assert_eq!(*name, "service.yaml.tera");
            assert!(path.ends_with("t/service.yaml.tera"));
            assert_eq!(
                problems,
                &["`spec.ports[0].targtPort` is not a known field (misspelt?)"]
            );
        }
        other => panic!("expected Schema, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("t/service.yaml.tera"), "{msg}");
    assert!(
        msg.contains("delete it to use the built-in template"),
        "{msg}"
    );
}

#[test]
fn broken_user_templates_are_reported_against_the_file() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "tera syntax",
            "kind: {{ names.service | q",
            "cannot render the user template",
        ),
        (
            "unknown variable",
            "kind: {{ no_such_variable }}",
            "cannot render the user template",
        ),
        ("not YAML", "a: [unclosed\n", "did not render valid YAML"),
        (
            "two documents",
            &format!("{USER_SERVICE}---\n{USER_SERVICE}"),
            "2 documents",
        ),
        (
            "wrong kind",
            &USER_SERVICE.replace("kind: Service", "kind: ConfigMap"),
            "this template renders `v1` `Service`",
        ),
        (
            "other namespace",
            &USER_SERVICE.replace("{{ namespace | q }}", "elsewhere"),
            "not the configured namespace `default`",
        ),
        (
            "no namespace",
            &USER_SERVICE.replace("  namespace: {{ namespace | q }}\n", ""),
            "metadata.namespace is missing",
        ),
        (
            "no name",
            &USER_SERVICE.replace("  name: {{ names.service | q }}\n", ""),
            "metadata.name is missing",
        ),
    ];
    for (what, source, expected) in cases {
        let err = render_with_user_template("service.yaml.tera", source)
            .map(|m| kinds(&m))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expected), "{what}: {msg}");
        assert!(msg.contains("service.yaml.tera"), "{what}: {msg}");
    }
}

#[test]
fn write_dir_writes_one_file_per_resource() {
    let (_, manifests) = render_case("full");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gitops/shop");
    let paths = write_dir(&manifests, &out).unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "serviceaccount-shop-api-sa.yaml",
            "configmap-shop-api-config.yaml",
            "secret-shop-api-secrets.yaml",
            "persistentvolumeclaim-shop-api-data.yaml",
            "deployment-shop-api.yaml",
            "service-shop-api.yaml",
            "ingress-shop-api.yaml",
            "horizontalpodautoscaler-shop-api.yaml",
            "poddisruptionbudget-shop-api.yaml",
            "networkpolicy-shop-api.yaml",
        ]
    );
    for (path, m) in paths.iter().zip(&manifests) {
        assert_eq!(path.parent(), Some(out.as_path()));
        assert_eq!(std::fs::read_to_string(path).unwrap(), m.yaml);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            if m.is_secret() {
                assert_eq!(mode, 0o600, "{}", path.display());
            }
        }
    }
    let mut listed: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected, "nothing else is written");

    // Writing again gives the same files, and tightens a Secret file someone opened up.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let secret = out.join("secret-shop-api-secrets.yaml");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_dir(&manifests, &out).unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(write_dir(&manifests, &out).unwrap(), paths);
    for (path, m) in paths.iter().zip(&manifests) {
        assert_eq!(std::fs::read_to_string(path).unwrap(), m.yaml);
    }
}

#[test]
fn write_dir_reports_an_unwritable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let (_, manifests) = render_case("minimal");
    let err = write_dir(&manifests, &file.join("sub")).unwrap_err();
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("a-file"), "{err}");
}
