//! Helpers shared by the image crate's engine tests.

#![allow(dead_code, clippy::unwrap_used)] // not every test binary uses every helper

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use futures::StreamExt;

pub fn docker() -> Option<Docker> {
    let d = deployctl_testsupport::docker()?;
    Some(Docker::connect_with_unix(&d.host, 120, bollard::API_DEFAULT_VERSION).unwrap())
}

pub fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
}

/// The regular files of an image (raw path bytes → contents), from an exported container.
pub async fn image_files(docker: &Docker, image: &str) -> HashMap<Vec<u8>, Vec<u8>> {
    let body = bollard::models::ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["/none".to_owned()]),
        ..Default::default()
    };
    let created = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut stream = docker.export_container(&created.id);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    docker
        .remove_container(
            &created.id,
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await
        .unwrap();
    let mut out = HashMap::new();
    let mut archive = tar::Archive::new(bytes.as_slice());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let path = e.path_bytes().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.insert(path, data);
    }
    out
}

/// The files an image holds under `prefix` (as text paths, sorted), without the files the
/// engine adds to every container.
pub async fn files_in_image(docker: &Docker, image: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = image_files(docker, image)
        .await
        .into_keys()
        .map(|p| String::from_utf8_lossy(&p).trim_end_matches('/').to_owned())
        .filter_map(|p| p.strip_prefix(prefix).map(str::to_owned))
        .filter(|p| {
            !matches!(
                p.as_str(),
                ".dockerenv" | "dev/console" | "etc/hostname" | "etc/hosts" | "etc/resolv.conf"
            )
        })
        .collect();
    out.sort();
    out
}

/// A builder that serves the context through its own BuildKit session on the test engine.
pub fn session_builder(docker: &Docker) -> deployctl_image::DockerBuilder {
    let host = deployctl_testsupport::docker().unwrap().host;
    let socket = deployctl_image::EngineSocket::from_host(&host);
    assert!(
        socket.is_some(),
        "the test engine's host {host} has no session transport"
    );
    deployctl_image::DockerBuilder::new(docker.clone()).with_session_socket(socket)
}

/// Compiles a static helper that copies a file to a path: the only way a `FROM scratch` RUN
/// step can show what it was given.
pub fn copy_helper(dir: &Path) -> bool {
    let src = dir.join("cp.rs");
    std::fs::write(
        &src,
        r#"fn main() {
    let a: Vec<String> = std::env::args().collect();
    std::fs::write(&a[2], std::fs::read(&a[1]).unwrap()).unwrap();
}"#,
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let status = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(dir.join("cp"))
        .arg(&src)
        .status();
    std::fs::remove_file(&src).unwrap();
    status.is_ok_and(|s| s.success())
}
