//! `deployctl deploy k8s` against a server that defaults and canonicalises as a real one
//! does (the stand-in): quantities written `0.5`, `1000m`, `1024Mi` in deploy.yaml are
//! stored as `500m`, `1`, `1Gi`; `deploy --dry-run` must not show them as a change, and an
//! unchanged redeploy must change nothing but the deploy lock (and write its deploy record).

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::time::Duration;

use common::{json_lines, stderr, stdout};
use deployctl_kube_standin::StandIn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_and_defaults_are_no_perpetual_diff_and_a_redeploy_changes_nothing() {
    let (Some(docker), Some(reg)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
    ) else {
        return;
    };
    let standin = StandIn::start().await.unwrap();
    standin.set_ready_after(Duration::from_millis(50));
    // The app behind the service proxy, for the verification.
    let app_server = deployctl_testsupport::http_server(200).await;
    standin.set_default_proxy_target(Some(&app_server.url));
    let (tmp, app, _name) = common::hello_app_named("quant", |name| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nregistry:\n  url: {}\n  username: {}\n  password: ${{REGISTRY_PASSWORD}}\nkubernetes:\n  enabled: true\n  namespace: {name}\n  deployment:\n    replicas: 1\n    resources:\n      requests: {{ cpu: \"0.5\", memory: 1024Mi }}\n      limits: {{ cpu: 1000m, memory: 2048Mi }}\n",
            reg.addr, reg.user
        )
    });
    let kubeconfig = tmp.path().join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let run = move |args: &'static [&'static str]| {
        let (app, kubeconfig, docker, password) = (
            app.clone(),
            kubeconfig.clone(),
            docker.host.clone(),
            reg.password.clone(),
        );
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_deployctl"))
                .args(args)
                .current_dir(&app)
                .env_remove("RUST_LOG")
                .env("DOCKER_HOST", docker)
                .env("DOCKER_CONFIG", app.join("no-docker-config"))
                .env("REGISTRY_PASSWORD", password)
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .unwrap()
        })
    };

    let o = run(&["--output", "json", "deploy", "k8s"]).await.unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    standin.take_mutations();

    // The plan: every resource unchanged, the quantities included.
    let o = run(&["--output", "json", "deploy", "k8s", "--dry-run"])
        .await
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let result = json_lines(&o).pop().unwrap();
    let changes = result["targets"][0]["plan"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "{result}");
    let changed: Vec<&serde_json::Value> = changes
        .iter()
        .filter(|c| c["action"] != "unchanged")
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
    assert_eq!(standin.take_mutations(), Vec::<String>::new());

    // An unchanged redeploy: only the deploy lock (a Lease) and the deploy's record (one
    // apply of the history ConfigMap's `deploys` key, `history --stats`) are written. A
    // new revision would be two writes of that ConfigMap (pending, then good) and more.
    let o = run(&["--output", "json", "deploy", "k8s"]).await.unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let mutations: Vec<String> = standin
        .take_mutations()
        .into_iter()
        .filter(|m| !m.contains("/leases"))
        .collect();
    assert_eq!(mutations.len(), 1, "{mutations:?}");
    assert!(
        mutations[0].starts_with("PATCH ") && mutations[0].ends_with("-deployctl-history"),
        "{mutations:?}"
    );
}
