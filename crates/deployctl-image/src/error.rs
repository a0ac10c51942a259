//! What can go wrong building an image.

use std::path::PathBuf;

use deployctl_core::{ErrorKind, StageError};

/// A build failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The context directory does not exist.
    #[error("build context {path} does not exist or is not a directory")]
    ContextNotFound {
        /// The path.
        path: PathBuf,
    },
    /// The Dockerfile is not in the context.
    #[error("{path} is outside the build context {context}")]
    OutsideContext {
        /// The path given.
        path: PathBuf,
        /// The context.
        context: PathBuf,
    },
    /// No Dockerfile at the given path.
    #[error("no Dockerfile at {path}")]
    MissingDockerfile {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Reading the context failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not be reached or refused the request.
    #[error("the Docker engine failed: {message}")]
    Engine {
        /// What it said.
        message: String,
        /// Why.
        #[source]
        source: Option<bollard::errors::Error>,
    },
    /// A Dockerfile step failed.
    #[error("build failed at {step}: {message}")]
    Step {
        /// The failing instruction (`Step 2/4 : COPY missing /x`), or `the build` if unknown.
        step: String,
        /// The engine's error.
        message: String,
        /// The last lines of output before the failure.
        output: Vec<String>,
    },
    /// The engine reported no image ID.
    #[error("the engine finished the build without reporting an image ID")]
    NoImageId,
    /// The build was stopped by the run's cancellation (Ctrl-C).
    #[error("the build was interrupted")]
    Cancelled,
    /// Secret build args with a builder that has no build session to serve them.
    #[error(
        "build arg {} is secret, and the classic builder ({reason}) can only pass it as a plain build arg, which the image's history keeps",
        args.join(", ")
    )]
    SecretNeedsBuildKit {
        /// The names of the secret args (never their values).
        args: Vec<String>,
        /// Why the classic builder was chosen.
        reason: String,
    },
    /// A secret could not be handed to the build session.
    #[error("cannot hand the build secret {arg} to the build session")]
    SecretFile {
        /// The arg's name.
        arg: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The documented fix for an engine without the default bridge network, when `message`
/// is that failure.
fn network_hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    (m.contains("bridge") && m.contains("not found")).then_some(
        "this Docker engine has no bridge network for RUN steps: set `build.network: none` (or `host`) in deploy.yaml",
    )
}

impl From<ImageError> for StageError {
    fn from(e: ImageError) -> Self {
        let (kind, hint) = match &e {
            ImageError::ContextNotFound { .. } => (
                ErrorKind::InvalidInput,
                "set build.context to the directory with your sources".to_owned(),
            ),
            ImageError::OutsideContext { .. } => (
                ErrorKind::InvalidInput,
                "the Dockerfile must be inside build.context; move it or widen the context"
                    .to_owned(),
            ),
            ImageError::MissingDockerfile { .. } => (
                ErrorKind::InvalidInput,
                "run `deployctl init` to generate one, or set build.dockerfile".to_owned(),
            ),
            ImageError::Io { .. } => (
                ErrorKind::InvalidInput,
                "check the file's permissions, or exclude it in .dockerignore".to_owned(),
            ),
            ImageError::Engine { message, .. } if network_hint(message).is_some() => (
                ErrorKind::InvalidInput,
                network_hint(message).unwrap_or_default().to_owned(),
            ),
            ImageError::Step {
                message, output, ..
            } if network_hint(message).is_some() => (
                ErrorKind::InvalidInput,
                std::iter::once(network_hint(message).unwrap_or_default().to_owned())
                    .chain((!output.is_empty()).then(|| {
                        format!("the step's last output:\n    {}", output.join("\n    "))
                    }))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ImageError::Engine { .. } => (
                ErrorKind::Environment,
                "is the Docker engine running? check DOCKER_HOST and that you may use its socket"
                    .to_owned(),
            ),
            ImageError::Step { output, .. } => (
                ErrorKind::InvalidInput,
                if output.is_empty() {
                    "fix the Dockerfile instruction above".to_owned()
                } else {
                    format!(
                        "fix the Dockerfile instruction above; its last output:\n    {}",
                        output.join("\n    ")
                    )
                },
            ),
            ImageError::NoImageId => (
                ErrorKind::Failed,
                "retry; if it persists, report the engine version".to_owned(),
            ),
            ImageError::Cancelled => (
                ErrorKind::Cancelled,
                "re-run the same command: the engine's build cache keeps the finished steps"
                    .to_owned(),
            ),
            ImageError::SecretNeedsBuildKit { .. } => (
                ErrorKind::InvalidInput,
                "use BuildKit, which serves secrets to `RUN --mount=type=secret,id=<ARG>` without storing them (unset DOCKER_BUILDKIT or set DOCKER_BUILDKIT=1, on a Linux engine with API 1.39 or newer), or make the arg non-secret in build.args".to_owned(),
            ),
            ImageError::SecretFile { .. } => (
                ErrorKind::Environment,
                "check that the temporary directory (TMPDIR) is writable".to_owned(),
            ),
        };
        let message = e.to_string();
        StageError::new(kind, message)
            .with_hint(hint)
            .with_source(e)
    }
}
