//! The local target against the real dockerd from `cargo xtask services up`, running the
//! static fixture app (host network: that dockerd has no bridge).

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use deployctl_core::{
    Action, BuildSpec, Cancellation, ImageBuilder, ImageRef, LogLine, LogQuery, LogSink, NullSink,
    PushedImage, Target, Verification,
};
use deployctl_local::{LocalSpec, LocalTarget};

struct Env(BTreeMap<String, String>);
impl deployctl_config::VarLookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

async fn hello_image(docker: &Docker, marker: &str) -> PushedImage {
    let app = deployctl_testsupport::hello_app();
    let mut spec = BuildSpec::new(&app, "Dockerfile");
    spec.tags = vec![ImageRef::parse(&format!("deployctl-test/local-hello:{marker}")).unwrap()];
    spec.labels.insert("marker".into(), marker.into());
    let built = deployctl_image::DockerBuilder::new(docker.clone())
        .build(&spec, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    PushedImage::new(spec.tags[0].clone(), built.id.clone(), None)
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);
impl LogSink for Lines {
    fn line(&self, line: LogLine) {
        self.0.lock().unwrap().push(line.text);
    }
}

#[tokio::test]
async fn deploy_redeploy_status_logs_rollback_destroy() {
    let Some(d) = deployctl_testsupport::docker() else {
        return;
    };
    let docker = Docker::connect_with_unix(
        d.host.trim_start_matches("unix://"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let port = deployctl_testsupport::free_port();
    let name = format!("local-{port}");
    let yaml = format!(
        "version: '1'\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nenv:\n  APP_NAME: {name}\nsecrets:\n  TOKEN: ${{TOKEN}}\nlocal:\n  port: {port}\n  restart: 'no'\n"
    );
    let vars = Env(BTreeMap::from([(
        "TOKEN".to_owned(),
        "local-secret-1".to_owned(),
    )]));
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&vars),
    )
    .unwrap();
    let target = LocalTarget::new(docker.clone(), LocalSpec::from_config(&config));

    let v1 = hello_image(&docker, &format!("{port}-a")).await;
    let plan = target.plan(Some(&v1)).await.unwrap();
    assert_eq!(plan.changes[0].action, Action::Create);
    let out = target
        .apply(&v1, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    assert_eq!(out.endpoints[0].url, format!("http://127.0.0.1:{port}"));
    let checks = target.verify(&out, &Cancellation::new()).await.unwrap();
    assert!(
        matches!(&checks[0], Verification::Healthy { status: 200, .. }),
        "{checks:?}"
    );

    // Unchanged: same container, untouched.
    let before = docker
        .inspect_container(&format!("deployctl-{name}"), None)
        .await
        .unwrap()
        .id;
    let plan = target.plan(Some(&v1)).await.unwrap();
    assert!(plan.is_noop(), "{plan:#?}");
    target
        .apply(&v1, &NullSink, &Cancellation::new())
        .await
        .unwrap();
    let after = docker
        .inspect_container(&format!("deployctl-{name}"), None)
        .await
        .unwrap();
    assert_eq!(before, after.id);
    let env = after.config.unwrap().env.unwrap();
    assert!(env.contains(&"TOKEN=local-secret-1".to_owned()));
    assert!(env.contains(&format!("PORT={port}")));

    // A new image replaces the container and records the previous one.
    let v2 = hello_image(&docker, &format!("{port}-b")).await;
    let plan = target.plan(Some(&v2)).await.unwrap();
    assert!(matches!(plan.changes[0].action, Action::Update { .. }));
    target
        .apply(&v2, &NullSink, &Cancellation::new())
        .await
        .unwrap();
    let status = target.status().await.unwrap();
    assert!(status.deployed);
    assert_eq!(status.image.as_deref(), Some(v2.digest().as_str()));

    let lines = Lines::default();
    let mut q = LogQuery::default();
    q.filter = Some("listening".into());
    target.logs(&q, &lines, &Cancellation::new()).await.unwrap();
    assert_eq!(
        lines.0.lock().unwrap().clone(),
        [format!("hello: listening on 0.0.0.0:{port}")]
    );

    let back = target
        .rollback(None, &NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(back.to, v1.digest().as_str());
    assert_eq!(
        target.status().await.unwrap().image.as_deref(),
        Some(v1.digest().as_str())
    );

    let plan = target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert_eq!(plan.changes[0].action, Action::Delete);
    assert!(!target.status().await.unwrap().deployed);
    let again = target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
    assert!(again.changes.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn engine(d: &deployctl_testsupport::Docker) -> Docker {
    Docker::connect_with_unix(
        d.host.trim_start_matches("unix://"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
}

fn target_on(docker: &Docker, name: &str, port: u16) -> LocalTarget {
    let yaml = format!(
        "version: '1'\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlocal:\n  port: {port}\n  restart: 'no'\n"
    );
    let vars = Env(BTreeMap::new());
    let config = deployctl_config::load_str(
        &yaml,
        Path::new("deploy.yaml"),
        &deployctl_config::LoadOptions::new(&vars),
    )
    .unwrap();
    let mut spec = LocalSpec::from_config(&config);
    spec.health_timeout = Duration::from_secs(10);
    LocalTarget::new(docker.clone(), spec)
}

/// Regression: a taken host port was found only by a 30 s health check that timed out.
#[tokio::test]
async fn a_taken_port_is_refused_at_once_naming_who_holds_it() {
    let Some(d) = deployctl_testsupport::docker() else {
        return;
    };
    let docker = engine(&d);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let target = target_on(&docker, &format!("taken-{port}"), port);
    let image = hello_image(&docker, &format!("{port}-taken")).await;
    let start = std::time::Instant::now();
    let err = target
        .apply(&image, &NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.kind, deployctl_core::ErrorKind::Environment);
    assert!(
        err.message.contains(&format!("port {port}")),
        "{}",
        err.message
    );
    assert!(
        err.message.contains(&format!("pid {}", std::process::id())),
        "the holder is named: {}",
        err.message
    );
    assert!(
        !target.status().await.unwrap().deployed,
        "nothing was started"
    );
}

/// Regression: a failed `deploy local` left the new container running. It is removed and the
/// previous one serves again.
#[tokio::test]
async fn a_failing_new_container_is_removed_and_the_previous_one_serves_again() {
    let Some(d) = deployctl_testsupport::docker() else {
        return;
    };
    let docker = engine(&d);
    let port = deployctl_testsupport::free_port();
    let target = target_on(&docker, &format!("undo-{port}"), port);
    let good = hello_image(&docker, &format!("{port}-good")).await;
    target
        .apply(&good, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));

    // An image whose process exits at once (the fixture's `--fail`).
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        deployctl_testsupport::hello_app().join("hello"),
        tmp.path().join("hello"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\", \"--fail\"]\n",
    )
    .unwrap();
    let mut spec = BuildSpec::new(tmp.path(), "Dockerfile");
    spec.tags = vec![ImageRef::parse(&format!("deployctl-test/local-bad:{port}")).unwrap()];
    let built = deployctl_image::DockerBuilder::new(docker.clone())
        .build(&spec, &NullSink, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let bad = PushedImage::new(spec.tags[0].clone(), built.id.clone(), None);

    let start = std::time::Instant::now();
    let err = target
        .apply(&bad, &NullSink, &Cancellation::new())
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "an exited container is seen before the health deadline: {:?}",
        start.elapsed()
    );
    assert_eq!(err.kind, deployctl_core::ErrorKind::Failed);
    assert!(err.message.contains("serves again"), "{}", err.message);
    let status = target.status().await.unwrap();
    assert_eq!(
        status.image.as_deref(),
        Some(good.digest().as_str()),
        "{status:?}"
    );
    let check = target
        .verify(
            &deployctl_core::ApplyOutcome::new(
                deployctl_core::Plan::new("local"),
                None,
                Vec::new(),
            ),
            &Cancellation::new(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&check[0], Verification::Healthy { status: 200, .. }),
        "{check:?}"
    );
    target
        .destroy(&NullSink, &Cancellation::new())
        .await
        .unwrap();
}
