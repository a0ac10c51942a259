//! Builds with secret build args: BuildKit serves each one to the Dockerfile through the
//! build session's `moby.buildkit.secrets.v1` service, so it reaches
//! `RUN --mount=type=secret,id=<ARG>` (at `/run/secrets/<ARG>`, or `env=<VAR>`) and never an
//! image layer, the image config or its history.
//!
//! bollard 0.21 serves secrets only on the session of its gRPC build driver
//! (`bollard::grpc::driver::moby::Moby` with `ImageBuildFrontendOptions::set_secret`); the
//! session `Docker::build_image` opens registers auth and file-send providers only. So these
//! builds go through the engine's `/grpc` endpoint (a BuildKit `Solve` with the Dockerfile
//! frontend), which costs two things: the context is sent as one tar held in memory, and
//! step progress is not streamed (the outcome is reported when the build ends).
//!
//! bollard's secret provider reads a file or an environment variable. Each value is written
//! to a file of its own, created `0600` in a fresh `0700` directory under the temporary
//! directory, and removed with the directory when the build ends, fails or is dropped
//! (cancelled). Values never appear in events or errors.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::grpc::build::{
    ImageBuildFrontendOptions, ImageBuildLoadInput, ImageBuildNetworkMode, ImageBuildPlatform,
    SecretSource,
};
use bollard::grpc::driver::Build;
use bollard::grpc::driver::moby::Moby;
use bollard::grpc::error::GrpcError;
use deployctl_core::{BuildArg, BuildSpec, Cancellation};

use crate::context::BuildContext;
use crate::error::ImageError;

/// Builds `context` with BuildKit, serving `spec`'s secret args through the session; the
/// image ID on success. The image is named by every tag of `spec`, or, without tags, by
/// `deployctl-untagged:<build>` (this path has no way to leave an image unnamed and still
/// find its ID).
pub(crate) async fn build(
    docker: &Docker,
    spec: &BuildSpec,
    dockerfile: &str,
    context: BuildContext,
    cancel: &Cancellation,
) -> Result<String, ImageError> {
    let files = SecretFiles::write(spec)?;
    let mut opts = ImageBuildFrontendOptions::builder()
        .dockerfile(Path::new(dockerfile))
        .pull(spec.pull)
        .nocache(spec.no_cache);
    for (name, value) in &spec.build_args {
        if let BuildArg::Plain(v) = value {
            opts = opts.buildarg(name, v);
        }
    }
    for (name, path) in &files.paths {
        opts = opts.set_secret(name, &SecretSource::File(path.clone()));
    }
    for (k, v) in &spec.labels {
        opts = opts.label(k, v);
    }
    if let Some(target) = &spec.target {
        opts = opts.target(target);
    }
    if let Some(platform) = &spec.platform
        && let Some(p) = parse_platform(&platform.0)
    {
        opts = opts.platforms(&p);
    }
    match spec.network.as_deref() {
        Some("none") => opts = opts.force_network_mode(&ImageBuildNetworkMode::None),
        Some("host") => opts = opts.force_network_mode(&ImageBuildNetworkMode::Host),
        _ => {}
    }

    let tar = tokio::task::spawn_blocking(move || context.to_tar())
        .await
        .map_err(|e| ImageError::Engine {
            message: format!("writing the build context stopped: {e}"),
            source: None,
        })??;
    let temporary = spec.tags.is_empty().then(|| {
        format!(
            "deployctl-untagged:{}",
            crate::builder::session_id().replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        )
    });
    let names: Vec<String> = match &temporary {
        Some(t) => vec![t.clone()],
        None => spec.tags.iter().map(ToString::to_string).collect(),
    };
    let name = names.join(",");
    let session_docker = docker.clone();
    let opts = opts.build();
    // bollard's gRPC build future is not `Send` (its driver's tear-down handler is a plain
    // boxed future), so it runs on a thread of its own with a current-thread runtime. The
    // thread owns the secret files, removed when it ends; it stops when the run is cancelled
    // or when this future is dropped (`stop` goes away).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread_cancel = cancel.clone();
    std::thread::Builder::new()
        .name("deployctl-secret-build".to_owned())
        .spawn(move || {
            let outcome = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async move {
                    let solve = Moby::new(&session_docker).docker_build(
                        &name,
                        opts,
                        ImageBuildLoadInput::Upload(tar.into()),
                        None,
                        None,
                    );
                    tokio::select! {
                        r = solve => Some(r.map_err(solve_error)),
                        () = thread_cancel.cancelled() => None,
                        _ = stop_rx => None,
                    }
                }),
                Err(e) => Some(Err(ImageError::Engine {
                    message: format!("cannot start the build session's runtime: {e}"),
                    source: None,
                })),
            };
            drop(files);
            if let Some(outcome) = outcome {
                let _ = done_tx.send(outcome);
            }
        })
        .map_err(|e| ImageError::Engine {
            message: format!("cannot start the build session's thread: {e}"),
            source: None,
        })?;
    let solved = tokio::select! {
        r = done_rx => r,
        () = cancel.cancelled() => return Err(ImageError::Cancelled),
    };
    drop(stop_tx);
    match solved {
        Ok(r) => r?,
        // The thread ended without an outcome: only cancellation does that.
        Err(_) => return Err(ImageError::Cancelled),
    }

    let first = names.first().cloned().unwrap_or_default();
    let inspect = docker
        .inspect_image(&first)
        .await
        .map_err(|e| ImageError::Engine {
            message: format!("cannot inspect the built image {first}: {e}"),
            source: Some(e),
        })?;
    inspect.id.ok_or(ImageError::NoImageId)
}

/// An engine failure from the gRPC build: a BuildKit status (a failing step, a Dockerfile
/// error) is the build's failure; anything else is the engine's.
fn solve_error(e: GrpcError) -> ImageError {
    match e {
        GrpcError::TonicStatus { err } => ImageError::Step {
            step: "the build".to_owned(),
            message: err.message().to_owned(),
            output: Vec::new(),
        },
        other => ImageError::Engine {
            message: other.to_string(),
            source: None,
        },
    }
}

/// `linux/arm64/v8` → the platform bollard's frontend options take.
fn parse_platform(s: &str) -> Option<ImageBuildPlatform> {
    let mut parts = s.split('/');
    let os = parts.next().filter(|p| !p.is_empty())?.to_owned();
    let architecture = parts.next().filter(|p| !p.is_empty())?.to_owned();
    Some(ImageBuildPlatform {
        architecture,
        os,
        variant: parts.next().map(str::to_owned),
    })
}

/// The secret values as private files, removed on drop.
struct SecretFiles {
    dir: PathBuf,
    /// Arg name → its file.
    paths: HashMap<String, PathBuf>,
}

impl SecretFiles {
    fn write(spec: &BuildSpec) -> Result<Self, ImageError> {
        let dir = std::env::temp_dir().join(format!(
            "deployctl-secrets-{}",
            crate::builder::session_id()
        ));
        let mut files = Self {
            dir,
            paths: HashMap::new(),
        };
        let failed = |arg: &str| {
            let arg = arg.to_owned();
            move |source| ImageError::SecretFile { arg, source }
        };
        let first = spec
            .build_args
            .iter()
            .find(|(_, v)| matches!(v, BuildArg::Secret(_)))
            .map(|(k, _)| k.as_str())
            .unwrap_or_default();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&files.dir)
            .map_err(failed(first))?;
        for (i, (name, value)) in spec.build_args.iter().enumerate() {
            let BuildArg::Secret(secret) = value else {
                continue;
            };
            // Files are numbered: an arg name never becomes a path.
            let path = files.dir.join(i.to_string());
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(failed(name))?;
            f.write_all(secret.expose().as_bytes())
                .map_err(failed(name))?;
            files.paths.insert(name.clone(), path);
        }
        Ok(files)
    }
}

impl Drop for SecretFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::{SecretFiles, parse_platform};
    use deployctl_core::{BuildArg, BuildSpec, Secret};

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            parse_platform("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        assert!(parse_platform("linux").is_none());
    }

    #[test]
    fn secret_files_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let mut spec = BuildSpec::new("/nowhere", "Dockerfile");
        spec.build_args
            .insert("NPM_TOKEN".into(), BuildArg::Secret(Secret::new("tok-123")));
        spec.build_args
            .insert("PLAIN".into(), BuildArg::Plain("p".into()));
        let files = SecretFiles::write(&spec).unwrap();
        assert_eq!(files.paths.len(), 1);
        let path = files.paths["NPM_TOKEN"].clone();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tok-123");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let dir = files.dir.clone();
        drop(files);
        assert!(!dir.exists());
    }
}
