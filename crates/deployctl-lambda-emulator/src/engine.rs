//! The engine calls a sandbox needs beyond its own container's life: the error mapping, the
//! image's external extensions (read from a container created and never started), and
//! removal.

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;

use crate::error::EmulatorError;
use crate::sandbox::{EXTENSIONS_DIR, LABEL};

pub(crate) fn engine(
    operation: &'static str,
    resource: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> EmulatorError {
    let resource = resource.into();
    move |source| EmulatorError::Engine {
        operation,
        resource,
        source,
    }
}

/// The regular files directly in `/opt/extensions` of the image, found by copying the
/// directory out of a container that is created and never started.
pub(crate) async fn list_extensions(
    docker: &Docker,
    image: &str,
) -> Result<Vec<String>, EmulatorError> {
    let probe = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.to_owned()),
                labels: Some(std::collections::HashMap::from([(
                    LABEL.to_owned(),
                    "probe".to_owned(),
                )])),
                ..ContainerCreateBody::default()
            },
        )
        .await
        .map_err(engine("create container", image))?;
    let mut archive = Vec::new();
    let mut stream = docker.download_from_container(
        &probe.id,
        Some(
            DownloadFromContainerOptionsBuilder::default()
                .path(EXTENSIONS_DIR)
                .build(),
        ),
    );
    let mut missing = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => archive.extend_from_slice(&b),
            // No /opt/extensions: no external extensions.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                missing = true;
                break;
            }
            Err(e) => {
                remove(docker, &probe.id).await;
                return Err(engine("copy /opt/extensions from", image)(e));
            }
        }
    }
    drop(stream);
    remove(docker, &probe.id).await;
    if missing {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(archive.as_slice());
    if let Ok(entries) = tar.entries() {
        for entry in entries.flatten() {
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_symlink()) {
                continue;
            }
            let Ok(path) = entry.path() else { continue };
            // Paths are relative to the copied directory's parent: `extensions/<name>`.
            let parts: Vec<_> = path.components().collect();
            if let [_, name] = parts.as_slice() {
                names.push(format!(
                    "{EXTENSIONS_DIR}/{}",
                    name.as_os_str().to_string_lossy()
                ));
            }
        }
    }
    names.sort();
    Ok(names)
}

pub(crate) async fn remove(docker: &Docker, container: &str) {
    let _ = docker
        .remove_container(
            container,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}
