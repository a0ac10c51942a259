//! `deployctl run --lambda`: the fixture app with the real AWS Lambda Web Adapter (built by
//! `cargo xtask fixtures`) in /opt/extensions, built and run as Lambda would on the test
//! dockerd, with the function's settings from deploy.yaml.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::path::Path;

use common::{hello_app_named, json_lines, on_docker_only, stderr, stdout, workspace};

/// The hello app with the adapter layer `deployctl init` writes, and `yaml(name)` as its
/// deploy.yaml; `None` (printed, a failure with CI=true) when something is missing.
fn lambda_app(
    yaml: impl Fn(&str) -> String,
) -> Option<(tempfile::TempDir, std::path::PathBuf, String, String)> {
    let docker = deployctl_testsupport::docker()?;
    let adapter = workspace().join("target/fixtures/adapter/bin/lambda-adapter");
    let hello = workspace().join("fixtures/apps/hello/hello");
    for path in [&adapter, &hello] {
        if !path.is_file() {
            let why = format!("{} is missing; run `cargo xtask fixtures`", path.display());
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
    }
    let (tmp, app, name) = hello_app_named("run-lambda", yaml);
    std::fs::copy(&adapter, app.join("lambda-adapter")).unwrap();
    let mut dockerfile = std::fs::read_to_string(app.join("Dockerfile")).unwrap();
    dockerfile.push_str(
        "COPY lambda-adapter /opt/extensions/lambda-adapter\nENV AWS_LWA_PORT=8080 AWS_LWA_READINESS_CHECK_PATH=/health\n",
    );
    std::fs::write(app.join("Dockerfile"), dockerfile).unwrap();
    Some((tmp, app, name, docker.host))
}

fn run(app: &Path, docker_host: &str, args: &[&str]) -> std::process::Output {
    on_docker_only(app, docker_host)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_lambda_prints_the_functions_response_to_an_api_gateway_event() {
    let Some((_tmp, app, name, host)) = lambda_app(|name| {
        format!(
            "version: '1'\napp:\n  name: {name}\n  health_check_path: /health\nenv:\n  APP_NAME: {name}\nlambda:\n  function:\n    env:\n      APP_VERSION: from-lambda-env\n"
        )
    }) else {
        return;
    };
    let port = deployctl_testsupport::free_port().to_string();
    let o = run(
        &app,
        &host,
        &[
            "-o", "json", "run", "--lambda", "--port", &port, "--path", "/",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    let result = lines.last().unwrap();
    assert_eq!(result["command"], "run");
    // The app saw the function's environment (config env + lambda.function.env), behind the
    // adapter, which answered in API Gateway's v2.0 response format.
    assert_eq!(result["response"]["statusCode"], 200, "{result}");
    assert_eq!(
        result["response"]["body"],
        format!("hello from {name} from-lambda-env\n"),
        "{result}"
    );
    assert!(
        result["output"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == &format!("[hello] hello: listening on 0.0.0.0:{port}")),
        "{result}"
    );

    // Text mode with an event file: the response document on stdout.
    let event = deployctl_aws::http_api_event("/health").to_string();
    std::fs::write(app.join("event.json"), event).unwrap();
    let o = run(
        &app,
        &host,
        &["run", "--lambda", "--port", &port, "--event", "event.json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let response: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(response["statusCode"], 200);
    assert_eq!(response["body"], "ok\n");
    assert!(stderr(&o).contains("init "), "{}", stderr(&o));
}

#[test]
fn run_lambda_fails_with_the_init_timeout_when_the_app_never_becomes_ready() {
    // Only 200 is healthy and the readiness path (app.health_check_path) answers 404.
    let Some((_tmp, app, _name, host)) = lambda_app(|name| {
        format!(
            "version: '1'\napp:\n  name: {name}\n  health_check_path: /not-there\nlambda:\n  function:\n    env:\n      AWS_LWA_READINESS_CHECK_HEALTHY_STATUS: '200'\n"
        )
    }) else {
        return;
    };
    let port = deployctl_testsupport::free_port().to_string();
    let started = std::time::Instant::now();
    let o = run(&app, &host, &["run", "--lambda", "--port", &port]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let err = stderr(&o);
    assert!(err.contains("init did not finish within 10 s"), "{err}");
    assert!(err.contains("app is not ready"), "{err}");
}

/// A secret kept in Parameter Store (a SecureString in moto) reaches the function's
/// environment, as `deploy lambda` would put it there.
#[test]
fn run_lambda_gives_the_function_a_secret_kept_in_parameter_store() {
    let Some(aws) = deployctl_testsupport::aws() else {
        return;
    };
    let Some((_tmp, app, name, host)) = lambda_app(|name| {
        format!(
            "version: '1'\napp:\n  name: {name}\n  health_check_path: /health\nenv:\n  APP_NAME: {name}\nsecrets:\n  APP_VERSION: {{ ssm: /{name}/version }}\n"
        )
    }) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ssm = aws_sdk_ssm::Client::new(&reliability::sdk(&rt, &aws.endpoint));
    rt.block_on(
        ssm.put_parameter()
            .name(format!("/{name}/version"))
            .value("from-parameter-store")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send(),
    )
    .unwrap();
    let port = deployctl_testsupport::free_port().to_string();
    let o = on_docker_only(&app, &host)
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .args([
            "-o", "json", "run", "--lambda", "--port", &port, "--path", "/",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    let result = lines.last().unwrap();
    assert_eq!(
        result["response"]["body"],
        format!("hello from {name} from-parameter-store\n"),
        "{result}"
    );
}
