//! `cargo xtask demo`: the main job end to end on local defaults.
//!
//! On a fresh copy of `fixtures/apps/hello`: `init`, `validate`, `plan`; then, as a user
//! would, enable Lambda and Kubernetes in the generated deploy.yaml and `deploy` to every
//! enabled target at once — the local Docker engine, AWS Lambda (moto, with the image pushed
//! to the local registry through `DEPLOYCTL_ECR_PUSH_ENDPOINT`) and Kubernetes (the stand-in
//! API server) — then `status`, an HTTP GET of the local endpoint, an unchanged redeploy and
//! `destroy`. Every service runs on loopback, started by `services up` and this command.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

pub fn run() -> Result<i32> {
    let bin = crate::util::release_binary()?;
    step(
        "starting the local services (Docker engine, registry, moto) and building the fixture app",
    );
    let env = crate::services::up()?;
    crate::fixtures::build()?;
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();

    let work = root().join("target/demo");
    let app = work.join("hello");
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root().join("fixtures/apps/hello"), &app)?;
    println!("    copied fixtures/apps/hello to {}", app.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();

    step("starting the Kubernetes stand-in API server");
    let kubeconfig = work.join("kubeconfig");
    // The stand-in runs no pods: its API server proxy forwards to the same image running on
    // the local engine, so the Kubernetes verification gets a real answer.
    let mut standin = start_standin(
        &kubeconfig,
        &[(
            "DEPLOYCTL_STANDIN_PROXY_TARGET",
            format!("http://127.0.0.1:{port}"),
        )],
        std::process::Stdio::inherit(),
    )?;

    let deployctl = |args: &[&str]| -> Result<()> {
        step(&format!("deployctl {}", args.join(" ")));
        let status = Command::new(&bin)
            .args(args)
            .current_dir(&app)
            .env("DOCKER_HOST", get("DEPLOYCTL_TEST_DOCKER_HOST"))
            .env("DOCKER_CONFIG", work.join("docker-config"))
            .env("AWS_ENDPOINT_URL", get("DEPLOYCTL_TEST_AWS_ENDPOINT"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env(
                "DEPLOYCTL_ECR_PUSH_ENDPOINT",
                get("DEPLOYCTL_TEST_REGISTRY"),
            )
            .env("KUBECONFIG", &kubeconfig)
            .status()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !status.success() {
            bail!("deployctl {} failed ({status})", args.join(" "));
        }
        Ok(())
    };

    deployctl(&["init"])?;
    deployctl(&["validate"])?;

    step(
        "enabling lambda and kubernetes, and choosing a free local port in deploy.yaml, as a user would",
    );
    let path = app.join("deploy.yaml");
    let text = std::fs::read_to_string(&path)?;
    let edited = text
        .replacen("lambda:\n  enabled: false", "lambda:\n  enabled: true", 1)
        .replacen(
            "kubernetes:\n  enabled: false",
            "kubernetes:\n  enabled: true",
            1,
        )
        .replacen(
            "local:\n  enabled: true",
            &format!("local:\n  enabled: true\n  port: {port}"),
            1,
        );
    if edited == text {
        bail!("the generated deploy.yaml has no `lambda:`/`local:` section to edit");
    }
    std::fs::write(&path, edited)?;

    deployctl(&["plan"])?;
    deployctl(&["deploy", "--dry-run"])?;
    deployctl(&["deploy"])?;
    deployctl(&["status"])?;
    step(&format!(
        "GET http://127.0.0.1:{port}/ (the local deployment)"
    ));
    println!("    {}", http_get(port, "/")?.trim_end());
    deployctl(&["deploy"])?;
    deployctl(&["destroy"])?;
    standin.0.kill().ok();
    step("done");
    println!(
        "    the generated files are in {}; run `cargo xtask services down` to stop the services",
        app.display()
    );
    Ok(0)
}

/// The stand-in binary (release build) serving until dropped, its kubeconfig written to
/// `kubeconfig`, with the environment variables `envs` (`DEPLOYCTL_STANDIN_PROXY_TARGET`,
/// `DEPLOYCTL_STANDIN_TRACE`), its stderr to `stderr`.
pub(crate) fn start_standin(
    kubeconfig: &Path,
    envs: &[(&str, String)],
    stderr: std::process::Stdio,
) -> Result<StandIn> {
    crate::util::run(Command::new(crate::util::cargo()).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "deployctl-kube-standin",
        "--bin",
        "deployctl-kube-standin",
    ]))?;
    let _ = std::fs::remove_file(kubeconfig);
    let mut cmd = Command::new(crate::util::target_dir().join("release/deployctl-kube-standin"));
    cmd.arg(kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .envs(envs.iter().map(|(k, v)| (k, v)));
    let standin = StandIn(cmd.spawn()?);
    if !crate::util::wait_for(Duration::from_secs(10), || kubeconfig.is_file()) {
        bail!("the stand-in wrote no kubeconfig");
    }
    Ok(standin)
}

/// Stops the stand-in however the caller ends.
pub(crate) struct StandIn(pub(crate) std::process::Child);

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map_or(body.clone(), |(_, b)| b.to_owned()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
