//! Pushes against the real dockerd and docker-registry (htpasswd) from `cargo xtask services up`.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::io::{Read, Write};
use std::net::TcpStream;

use bollard::Docker;
use deployctl_core::{
    BuiltImage, Cancellation, CredentialSource, Digest, ErrorKind, ImagePusher, ImageRef,
    RegistryCredentials, Secret, VecSink,
};
use deployctl_registry::{DockerConfigCredentials, DockerPusher};
use futures::StreamExt;

fn services() -> Option<(Docker, deployctl_testsupport::Registry)> {
    let d = deployctl_testsupport::docker()?;
    let r = deployctl_testsupport::registry()?;
    Some((
        Docker::connect_with_unix(&d.host, 120, bollard::API_DEFAULT_VERSION).unwrap(),
        r,
    ))
}

/// A tiny FROM scratch image with a unique file, built with the engine directly.
async fn tiny_image(docker: &Docker, marker: &str) -> BuiltImage {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        (
            "Dockerfile",
            "FROM scratch\nCOPY marker /marker\n".to_owned(),
        ),
        ("marker", marker.to_owned()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let body = bollard::body_full(tar.into_inner().unwrap().into());
    let mut stream = docker.build_image(
        bollard::query_parameters::BuildImageOptionsBuilder::new()
            .rm(true)
            .build(),
        None,
        Some(body),
    );
    let mut id = None;
    while let Some(info) = stream.next().await {
        let info = info.unwrap();
        if let Some(bollard::models::BuildInfoAux::Default(image)) = info.aux {
            id = image.id.or(id);
        }
    }
    BuiltImage::new(Digest::parse(&id.unwrap()).unwrap(), Vec::new(), None)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// `HEAD /v2/<repo>/manifests/<digest>` straight against the registry: status and
/// Docker-Content-Digest.
fn head_manifest(
    reg: &deployctl_testsupport::Registry,
    repo: &str,
    digest: &str,
) -> (u16, Option<String>) {
    let mut s = TcpStream::connect(&reg.addr).unwrap();
    write!(
        s,
        "HEAD /v2/{repo}/manifests/{digest} HTTP/1.0\r\nHost: {}\r\nAuthorization: Basic {}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n",
        reg.addr,
        basic(&reg.user, &reg.password)
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let header = out.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("docker-content-digest:")
            .map(|_| l.split_once(':').unwrap().1.trim().to_owned())
    });
    (status, header)
}

fn unique(name: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{n}")
}

#[tokio::test]
async fn push_reports_the_digest_the_registry_serves() {
    let Some((docker, reg)) = services() else {
        return;
    };
    let marker = unique("ok");
    let image = tiny_image(&docker, &marker).await;
    let dest = ImageRef::parse(&format!("{}/deployctl-test/push:1.0", reg.addr)).unwrap();
    let creds = RegistryCredentials::new(&reg.addr, &reg.user, Secret::new(&reg.password), "test");
    let events = VecSink::new();
    let pushed = DockerPusher::new(docker)
        .push(&image, &dest, Some(&creds), &events, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let (status, header) = head_manifest(&reg, "deployctl-test/push", pushed.digest().as_str());
    assert_eq!(status, 200, "the registry does not have the manifest");
    assert_eq!(header.as_deref(), Some(pushed.digest().as_str()));
    assert!(
        pushed
            .media_type
            .as_deref()
            .is_some_and(|m| m.contains("manifest")),
        "{:?}",
        pushed.media_type
    );
    assert!(!pushed.is_index());
    let text = format!("{:?}", events.events());
    assert!(
        !text.contains(&reg.password),
        "the password reached an event"
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_auth_error() {
    let Some((docker, reg)) = services() else {
        return;
    };
    let image = tiny_image(&docker, &unique("wrong")).await;
    let dest = ImageRef::parse(&format!("{}/deployctl-test/denied:1.0", reg.addr)).unwrap();
    let creds = RegistryCredentials::new(
        &reg.addr,
        &reg.user,
        Secret::new("definitely-wrong-pw"),
        "test",
    );
    let err = DockerPusher::new(docker)
        .push(
            &image,
            &dest,
            Some(&creds),
            &VecSink::new(),
            &Cancellation::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{:?}", err.chain());
    assert!(err.message.contains("refused the push"), "{}", err.message);
    assert!(!format!("{:?}", err.chain()).contains("definitely-wrong-pw"));
}

#[tokio::test]
async fn no_credentials_for_a_private_registry_is_an_error() {
    let Some((docker, reg)) = services() else {
        return;
    };
    let image = tiny_image(&docker, &unique("anon")).await;
    let dest = ImageRef::parse(&format!("{}/deployctl-test/anon:1.0", reg.addr)).unwrap();
    let err = DockerPusher::new(docker)
        .push(&image, &dest, None, &VecSink::new(), &Cancellation::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{:?}", err.chain());
    assert!(
        err.hint
            .as_deref()
            .unwrap_or_default()
            .contains("docker login"),
        "{:?}",
        err.hint
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_an_error_not_success() {
    let Some((docker, _reg)) = services() else {
        return;
    };
    let image = tiny_image(&docker, &unique("down")).await;
    // Nothing listens on port 1.
    let dest = ImageRef::parse("127.0.0.1:1/deployctl-test/down:1.0").unwrap();
    let err = DockerPusher::new(docker)
        .push(&image, &dest, None, &VecSink::new(), &Cancellation::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Environment, "{:?}", err.chain());
    assert!(err.message.contains("unreachable"), "{}", err.message);
}

/// Pushes through the credential-source chain the way the CLI does, with credentials
/// found in a Docker config file.
async fn push_with_docker_config(
    docker: Docker,
    reg: &deployctl_testsupport::Registry,
    source: DockerConfigCredentials,
    repo: &str,
) -> Result<deployctl_core::PushedImage, deployctl_core::StageError> {
    let image = tiny_image(&docker, &unique("cfg")).await;
    let dest = ImageRef::parse(&format!("{}/{repo}:1.0", reg.addr)).unwrap();
    let creds = source.credentials(&reg.addr).await?;
    assert!(creds.is_some(), "the config file gave no credentials");
    DockerPusher::new(docker)
        .push(
            &image,
            &dest,
            creds.as_ref(),
            &VecSink::new(),
            &Cancellation::new(),
        )
        .await
}

#[tokio::test]
async fn push_with_credentials_from_config_json_auths() {
    let Some((docker, reg)) = services() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr,
            basic(&reg.user, &reg.password)
        ),
    )
    .unwrap();
    let pushed = push_with_docker_config(
        docker,
        &reg,
        DockerConfigCredentials::from_path(&config),
        "deployctl-test/auths",
    )
    .await
    .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let (status, _) = head_manifest(&reg, "deployctl-test/auths", pushed.digest().as_str());
    assert_eq!(status, 200);
}

#[tokio::test]
async fn push_with_credentials_from_a_cred_helper() {
    use std::os::unix::fs::PermissionsExt;
    let Some((docker, reg)) = services() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-testhelper");
    // Docker's helper protocol: `get` reads the server URL on stdin, prints JSON.
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{addr}\" ] || {{ echo \"credentials not found in native keychain\"; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            addr = reg.addr,
            user = reg.user,
            password = reg.password
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"credHelpers":{{"{}":"testhelper"}}}}"#, reg.addr),
    )
    .unwrap();
    let source = DockerConfigCredentials::from_path(&config).with_helper_dir(dir.path());
    let pushed = push_with_docker_config(docker, &reg, source, "deployctl-test/helper")
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let (status, _) = head_manifest(&reg, "deployctl-test/helper", pushed.digest().as_str());
    assert_eq!(status, 200);
}

/// Regression (issue 15): a registry that stops answering hung the push for ever (the engine
/// waits without a timeout). A push silent for the stall timeout fails, naming the push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_registry_fails_the_push_after_the_stall_timeout() {
    use deployctl_testsupport::faults::{Effect, Match, Proxy, Rule, When};
    let Some((docker, reg)) = services() else {
        return;
    };
    let proxy = Proxy::start(&reg.addr).unwrap();
    proxy.push(Rule::new(
        Match::op("registry:manifest-put"),
        When::Nth(1),
        Effect::StallResponse,
    ));
    let image = tiny_image(&docker, &unique("stall")).await;
    let dest = ImageRef::parse(&format!("{}/deployctl-test/stall:1.0", proxy.addr())).unwrap();
    let creds = RegistryCredentials::new(
        proxy.addr().to_string(),
        &reg.user,
        Secret::new(&reg.password),
        "test",
    );
    let started = std::time::Instant::now();
    let err = DockerPusher::new(docker)
        .with_stall_timeout(std::time::Duration::from_secs(10))
        .push(
            &image,
            &dest,
            Some(&creds),
            &VecSink::new(),
            &Cancellation::new(),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(err.kind, ErrorKind::Failed, "{:?}", err.chain());
    assert!(err.message.contains("stalled"), "{}", err.message);
    assert_eq!(
        proxy.count("registry:manifest-put"),
        1,
        "{:?}",
        proxy.counts()
    );
}
