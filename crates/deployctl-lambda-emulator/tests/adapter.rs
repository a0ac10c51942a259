//! The real AWS Lambda Web Adapter (the crate `lambda_web_adapter`, built statically by
//! `cargo xtask fixtures` into `target/fixtures/adapter/`) in front of the fixture app, in
//! the image `deployctl init` would write for it — the fixture's Dockerfile plus the
//! adapter in `/opt/extensions` — run by the emulator on the real dockerd of
//! `cargo xtask services up`.
//!
//! Skipped (with the reason printed) when the engine, the adapter or the fixture binary is
//! missing; with `CI=true` that is a failure.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use deployctl_core::{BuildSpec, Cancellation, ImageBuilder, ImageRef, NullSink};
use deployctl_lambda_emulator::{EmulatorError, FunctionSpec, Outcome, Sandbox};

fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {why}; run `cargo xtask fixtures`");
    }
    eprintln!("skipped: {why}; run `cargo xtask fixtures`");
}

/// The statically linked adapter and fixture app, or `None` (printed).
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let root = deployctl_testsupport::workspace_root();
    let adapter = root.join("target/fixtures/adapter/bin/lambda-adapter");
    let hello = deployctl_testsupport::hello_app().join("hello");
    for (path, what) in [
        (&adapter, "the Lambda Web Adapter"),
        (&hello, "the fixture app"),
    ] {
        if !path.is_file() {
            skip(&format!(
                "{what} is not built ({} is missing)",
                path.display()
            ));
            return None;
        }
    }
    Some((adapter, hello))
}

fn docker() -> Option<Docker> {
    let d = deployctl_testsupport::docker()?;
    Some(
        Docker::connect_with_unix(
            d.host.trim_start_matches("unix://"),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap(),
    )
}

/// The fixture app's image with the adapter layer `deployctl init` adds (its Dockerfile
/// template copies the adapter to /opt/extensions and sets the readiness path); its ID.
async fn lambda_image(docker: &Docker, adapter: &Path, hello: &Path) -> String {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(hello, ctx.path().join("hello")).unwrap();
    std::fs::copy(adapter, ctx.path().join("lambda-adapter")).unwrap();
    let fixture =
        std::fs::read_to_string(deployctl_testsupport::hello_app().join("Dockerfile")).unwrap();
    let dockerfile = format!(
        "{fixture}\n# The adapter layer of deployctl init's Dockerfile (inert outside Lambda).\nCOPY lambda-adapter /opt/extensions/lambda-adapter\nENV AWS_LWA_PORT=8080 \\\n    AWS_LWA_READINESS_CHECK_PATH=/health\n"
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let mut spec = BuildSpec::new(ctx.path(), "Dockerfile");
    spec.tags = vec![ImageRef::parse("deployctl-test/lambda-hello:latest").unwrap()];
    let built = deployctl_image::DockerBuilder::new(docker.clone())
        .build(&spec, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    built.id.to_string()
}

/// Host networking: the app listens on a port of this machine, so each sandbox gets a free
/// one (`PORT` for the app, `AWS_LWA_PORT` for the adapter).
fn function(image: &str, port: u16) -> FunctionSpec {
    let mut spec = FunctionSpec::new(image, format!("hello-{port}"));
    spec.env.insert("PORT".into(), port.to_string());
    spec.env.insert("AWS_LWA_PORT".into(), port.to_string());
    spec.timeout = Duration::from_secs(10);
    spec
}

fn api_response(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Response(b) => serde_json::from_slice(b)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b))),
        other => panic!("the function failed: {other:?}"),
    }
}

#[tokio::test]
async fn the_real_adapter_answers_api_gateway_events_through_the_emulator() {
    let Some((adapter, hello)) = binaries() else {
        return;
    };
    let Some(docker) = docker() else { return };
    let image = lambda_image(&docker, &adapter, &hello).await;
    let port = deployctl_testsupport::free_port();
    let sandbox = Sandbox::start(&docker, &function(&image, port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The adapter ran as an external extension: Lambda (here, the emulator) started it from
    // /opt/extensions and it registered under its own name.
    assert_eq!(sandbox.extensions(), ["lambda-adapter"]);
    assert!(sandbox.init_duration() < Duration::from_secs(10));

    // Three warm invocations of one environment: the adapter turns each API Gateway v2.0
    // event into an HTTP request to the app and the app's answer into the v2.0 response.
    let mut answers = Vec::new();
    for path in ["/health", "/", "/missing?x=1"] {
        let event = deployctl_aws::http_api_event(path).to_string();
        let invoked = sandbox
            .invoke(event.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        answers.push(api_response(&invoked.outcome));
    }
    let output = sandbox.shutdown().await.join("\n");
    assert_eq!(answers[0]["statusCode"], 200, "{answers:?}\n{output}");
    assert_eq!(answers[0]["body"], "ok\n", "{output}");
    assert_eq!(answers[1]["statusCode"], 200, "{output}");
    assert!(
        answers[1]["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("hello from")),
        "{answers:?}"
    );
    assert_eq!(answers[2]["statusCode"], 404, "{answers:?}");
    // The app's own output reached the log, tagged with the process that printed it.
    assert!(
        output.contains(&format!("[hello] hello: listening on 0.0.0.0:{port}")),
        "{output}"
    );

    // The same image, run as the local target runs it (plain `docker run`, no Lambda):
    // the adapter in /opt/extensions is inert and the app answers directly.
    let plain = deployctl_testsupport::free_port();
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(image.clone()),
                env: Some(vec![format!("PORT={plain}")]),
                labels: Some(
                    [(deployctl_lambda_emulator::LABEL.to_owned(), "plain".into())].into(),
                ),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("host".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    docker
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    let status = get_health(plain, Duration::from_secs(10));
    docker
        .remove_container(
            &id,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
}

/// The status line of `GET /health` on 127.0.0.1:port, retried until `within`.
fn get_health(port: u16, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            if let Some(line) = text.lines().next() {
                return Some(line.to_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Runs the image with `env` added and expects Lambda's init timeout, caused by the
/// adapter's readiness check never passing.
async fn expect_init_timeout(env: &[(&str, String)]) {
    let Some((adapter, hello)) = binaries() else {
        return;
    };
    let Some(docker) = docker() else { return };
    let image = lambda_image(&docker, &adapter, &hello).await;
    let mut spec = function(&image, deployctl_testsupport::free_port());
    for (k, v) in env {
        spec.env.insert((*k).into(), v.clone());
    }
    spec.init_timeout = Duration::from_secs(4);
    let started = Instant::now();
    let err = Sandbox::start(&docker, &spec).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("as expected: {err}");
    let EmulatorError::InitTimeout {
        after,
        waiting_for,
        output,
    } = &err
    else {
        panic!("expected an init timeout, got: {err}");
    };
    assert_eq!(*after, Duration::from_secs(4));
    assert!(took < Duration::from_secs(12), "took {took:?}");
    // The extension registered; the runtime's first /next never came, because the adapter
    // was still waiting for the app — and said so.
    assert_eq!(
        waiting_for, "the runtime's first /runtime/invocation/next",
        "{err}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("[lambda-adapter]") && l.contains("app is not ready")),
        "{err}"
    );
    // The failed sandbox was removed.
    let left = docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .filters(
                    &[(
                        "label",
                        vec![format!(
                            "{}={}",
                            deployctl_lambda_emulator::LABEL,
                            spec.name
                        )],
                    )]
                    .into(),
                )
                .build(),
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_readiness_port_nothing_listens_on_fails_init_with_the_timeout() {
    let nothing = deployctl_testsupport::free_port();
    expect_init_timeout(&[("AWS_LWA_READINESS_CHECK_PORT", nothing.to_string())]).await;
}

#[tokio::test]
async fn a_readiness_path_that_404s_fails_init_when_only_200_is_healthy() {
    // The adapter's default healthy range is 100-499, where a 404 counts as ready.
    expect_init_timeout(&[
        ("AWS_LWA_READINESS_CHECK_PATH", "/missing".into()),
        ("AWS_LWA_READINESS_CHECK_HEALTHY_STATUS", "200".into()),
    ])
    .await;
}

#[tokio::test]
async fn a_runtime_that_exits_during_init_is_reported_with_its_status_and_output() {
    // No /opt/extensions: the entrypoint is the runtime, and this one exits 3 at once.
    let Some((_, hello)) = binaries() else {
        return;
    };
    let Some(docker) = docker() else { return };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(&hello, ctx.path().join("hello")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\nCMD [\"--fail\"]\n",
    )
    .unwrap();
    let mut build = BuildSpec::new(ctx.path(), "Dockerfile");
    build.tags = vec![ImageRef::parse("deployctl-test/lambda-crash:latest").unwrap()];
    let image = deployctl_image::DockerBuilder::new(docker.clone())
        .build(&build, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()))
        .id
        .to_string();
    let spec = function(&image, deployctl_testsupport::free_port());
    let started = Instant::now();
    let err = Sandbox::start(&docker, &spec).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    let EmulatorError::Exited {
        process,
        code,
        phase,
        output,
    } = &err
    else {
        panic!("expected the runtime's exit, got: {err}");
    };
    assert_eq!(
        (process.as_str(), *code, *phase),
        ("/hello", 3, "during init")
    );
    assert!(
        output.contains(&"[hello] fixture output line 12".to_owned()),
        "{err}"
    );
}
