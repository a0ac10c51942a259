//! `cargo xtask bench k8s`: `deployctl deploy k8s --apply` versus `helm upgrade --install
//! --wait` of the equivalent chart (`fixtures/helm/hello`, checked here to render the same
//! objects as `deployctl render k8s` of `fixtures/helm/deploy.yaml`) on the same stand-in API
//! server, so both wait for the same simulated rollout. First install (a fresh namespace per
//! run) and unchanged upgrade, alternating runs; medians, ratios and the API requests each
//! tool made (counted from the stand-in's request trace).
//!
//! deployctl runs with `--no-verify`: helm's wait checks readiness only, with no HTTP check
//! through the service proxy. Both deploy the same image, pushed once by digest.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::time;
use crate::bench_lambda::median;
use crate::util::{root, step};

const RUNS: usize = 5;

/// Requests the stand-in served, from its trace (`DEPLOYCTL_STANDIN_TRACE=1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Requests {
    all: usize,
    mutating: usize,
}

fn requests(trace: &Path) -> Result<Requests> {
    let text = fs::read_to_string(trace)?;
    let mut r = Requests::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("standin: ") else {
            continue;
        };
        r.all += 1;
        if ["POST ", "PUT ", "PATCH ", "DELETE "]
            .iter()
            .any(|m| rest.starts_with(m))
        {
            r.mutating += 1;
        }
    }
    Ok(r)
}

/// Runs `cmd` and returns its wall time and the requests the stand-in served meanwhile.
fn measured(cmd: &mut Command, trace: &Path) -> Result<(Duration, Requests)> {
    let before = requests(trace)?;
    let took = time(cmd)?;
    let after = requests(trace)?;
    Ok((
        took,
        Requests {
            all: after.all - before.all,
            mutating: after.mutating - before.mutating,
        },
    ))
}

struct Bench {
    bin: PathBuf,
    helm: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
    env: BTreeMap<String, String>,
}

impl Bench {
    fn deployctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(&self.dir)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("DOCKER_CONFIG", self.dir.join("no-docker-config"))
            .env("API_TOKEN", "token");
        for (k, v) in [
            ("DOCKER_HOST", "DEPLOYCTL_TEST_DOCKER_HOST"),
            ("REGISTRY_USER", "DEPLOYCTL_TEST_REGISTRY_USER"),
            ("REGISTRY_PASSWORD", "DEPLOYCTL_TEST_REGISTRY_PASSWORD"),
        ] {
            c.env(k, self.env.get(v).map_or("", String::as_str));
        }
        c
    }

    fn helm(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.helm);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(&self.dir)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        c
    }

    /// fixtures/helm/deploy.yaml in namespace `ns`, with the test registry.
    fn write_config(&self, ns: &str) -> Result<()> {
        let text = fs::read_to_string(root().join("fixtures/helm/deploy.yaml"))?;
        let registry = self
            .env
            .get("DEPLOYCTL_TEST_REGISTRY")
            .context("services.env has no DEPLOYCTL_TEST_REGISTRY")?;
        let text = text.replacen(
            "kubernetes:\n  enabled: true\n",
            &format!("kubernetes:\n  enabled: true\n  namespace: {ns}\n"),
            1,
        ) + &format!(
            "registry:\n  url: {registry}/bench-k8s\n  username: ${{REGISTRY_USER}}\n  password: ${{REGISTRY_PASSWORD}}\n"
        );
        fs::write(self.dir.join("deploy.yaml"), text)?;
        Ok(())
    }
}

/// The documents of a multi-document YAML stream, keyed `Kind/name`, without what differs
/// by tool only: the managed-by label and the pod template's restart checksum annotation.
fn comparable(yaml: &str) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    for doc in docs {
        let mut v: Value = serde_yaml::from_str(&doc)?;
        if v.is_null() {
            continue;
        }
        for at in ["/metadata/labels", "/spec/template/metadata/labels"] {
            if let Some(m) = v.pointer_mut(at).and_then(Value::as_object_mut) {
                m.remove("app.kubernetes.io/managed-by");
            }
        }
        if let Some(t) = v
            .pointer_mut("/spec/template/metadata")
            .and_then(Value::as_object_mut)
        {
            t.remove("annotations");
        }
        let key = format!(
            "{}/{}",
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        out.insert(key, v);
    }
    Ok(out)
}

/// Fails unless the chart renders what deployctl renders (but for [`comparable`]'s cuts).
/// Returns the image-pull Secret's `.dockerconfigjson` that deployctl renders for the test
/// registry, which the chart is given as a value.
fn check_equivalent(b: &Bench, image: &str) -> Result<String> {
    b.write_config("bench-render")?;
    let ours = comparable(&crate::util::run(
        &mut b.deployctl(&["render", "k8s", "--image", image]),
    )?)?;
    let docker_config = ours
        .get("Secret/hello-registry")
        .and_then(|s| s["data"][".dockerconfigjson"].as_str())
        .context("deployctl rendered no image-pull Secret for the test registry")?
        .to_owned();
    let chart = root().join("fixtures/helm/hello");
    let theirs = comparable(&crate::util::run(&mut b.helm(&[
        "template",
        "hello",
        chart.to_str().context("chart path")?,
        "--namespace",
        "bench-render",
        "--set",
        &format!("image={image}"),
        "--set",
        &format!("registryDockerConfig={docker_config}"),
    ]))?)?;
    let differ: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !differ.is_empty() {
        bail!(
            "fixtures/helm/hello does not render what deployctl renders for fixtures/helm/deploy.yaml: {} differ (compare `deployctl render k8s` with `helm template` by hand)",
            differ.join(", ")
        );
    }
    println!(
        "    the chart renders the same {} objects as deployctl ({})",
        ours.len(),
        ours.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(docker_config)
}

pub fn k8s() -> Result<i32> {
    let env = crate::services::up()?;
    crate::fixtures::build()?;
    let bin = crate::util::release_binary()?;
    let helm = crate::clients::layer_binary("helm/helm")?;
    let dir = root().join("target/bench/k8s");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    crate::bench_lambda::copy_app(&root().join("fixtures/apps/hello"), &dir)?;
    step("starting the stand-in API server with its request trace");
    let kubeconfig = dir.join("kubeconfig");
    let trace = dir.join("standin-trace.log");
    let _standin = crate::demo::start_standin(
        &kubeconfig,
        &[("DEPLOYCTL_STANDIN_TRACE", "1".to_owned())],
        fs::File::create(&trace)?.into(),
    )?;
    let b = Bench {
        bin,
        helm,
        dir,
        kubeconfig,
        env,
    };

    step("pushing the hello image once (both tools deploy this digest)");
    b.write_config("bench-push")?;
    let out = crate::util::run(&mut b.deployctl(&["--output", "json", "push"]))?;
    let result: Value = serde_json::from_str(out.lines().last().unwrap_or_default())?;
    let reference = result["image"]["reference"]
        .as_str()
        .context("push printed no image reference")?;
    let digest = result["image"]["digest"]
        .as_str()
        .context("push printed no digest")?;
    // The repository without its tag or digest, pinned by the digest.
    let named = reference.split('@').next().unwrap_or(reference);
    let repo = match named.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => named,
    };
    let image = format!("{repo}@{digest}");
    println!("    {image}");
    let docker_config = check_equivalent(&b, &image)?;

    let chart = root().join("fixtures/helm/hello");
    let chart = chart.to_str().context("chart path")?;
    let set_image = format!("image={image}");
    let set_registry = format!("registryDockerConfig={docker_config}");
    let (mut ours_first, mut ours_again, mut theirs_first, mut theirs_again) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut counts = [Requests::default(); 4];
    for i in 0..RUNS {
        step(&format!("run {}/{RUNS}", i + 1));
        b.write_config(&format!("deployctl-{i}"))?;
        let deploy = ["deploy", "k8s", "--apply", "--no-verify", "--image", &image];
        let (t1, r1) = measured(&mut b.deployctl(&deploy), &trace)?;
        let (t2, r2) = measured(&mut b.deployctl(&deploy), &trace)?;
        let ns = format!("helm-{i}");
        let upgrade = [
            "upgrade",
            "--install",
            "hello",
            chart,
            "--namespace",
            &ns,
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
            "--set",
            &set_image,
            "--set",
            &set_registry,
        ];
        let (t3, r3) = measured(&mut b.helm(&upgrade), &trace)?;
        let (t4, r4) = measured(&mut b.helm(&upgrade), &trace)?;
        ours_first.push(t1);
        ours_again.push(t2);
        theirs_first.push(t3);
        theirs_again.push(t4);
        counts = [r1, r2, r3, r4];
        println!(
            "    deployctl first {:.3}s ({} requests) again {:.3}s ({})   helm first {:.3}s ({}) again {:.3}s ({})",
            t1.as_secs_f64(),
            r1.all,
            t2.as_secs_f64(),
            r2.all,
            t3.as_secs_f64(),
            r3.all,
            t4.as_secs_f64(),
            r4.all
        );
    }
    let (of, oa, tf, ta) = (
        median(&ours_first),
        median(&ours_again),
        median(&theirs_first),
        median(&theirs_again),
    );
    let [r1, r2, r3, r4] = counts;
    println!(
        "\nbench k8s: fixtures/helm (Deployment, Service, ConfigMap, Secret) on the stand-in API server, same image by digest, same simulated rollout, {RUNS} alternating runs each
  first install       deployctl deploy k8s --apply --no-verify median {of:.3}s ({} requests, {} mutating)   helm upgrade --install --wait median {tf:.3}s ({} requests, {} mutating)
  unchanged upgrade   deployctl median {oa:.3}s ({} requests, {} mutating)   helm median {ta:.3}s ({} requests, {} mutating)
  ratio first install deployctl/helm = {:.3}
  ratio unchanged     deployctl/helm = {:.3}
  (requests: the last run's, counted by the stand-in; helm 4 from the Python package {})",
        r1.all,
        r1.mutating,
        r3.all,
        r3.mutating,
        r2.all,
        r2.mutating,
        r4.all,
        r4.mutating,
        of / tf,
        oa / ta,
        crate::clients::LAYER_PACKAGE,
    );
    Ok(0)
}
