//! The `.tar.gz` body of `POST …/deployments`: the app directory, unpacked (safely, within
//! the limits: [`crate::unpack`]) into `<uploads dir>/<deployment id>/`, where it stays until
//! its job ends; its `deploy.yaml` validated as `deployctl validate` does, named as in the
//! archive.

use std::path::Path;

use axum::http::StatusCode;

use super::ApiError;
use super::deployments::validate_named;
use crate::jobs::AppState;
use crate::runner::{DeployRequest, Upload};
use crate::unpack::{self, RejectKind};
use crate::upload_dirs::{dir_of, discard};

/// The media types of an upload (`application/gzip` is the registered one).
pub(crate) const MEDIA_TYPES: [&str; 3] = [
    "application/gzip",
    "application/x-tar+gzip",
    "application/x-gzip",
];

/// Whether `content_type` (parameters ignored) is an upload's.
pub(crate) fn is_upload(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    MEDIA_TYPES.iter().any(|m| m.eq_ignore_ascii_case(media))
}

/// Unpacks `body` for deployment `id` of `app` and validates its config: the request to
/// queue. On any error the upload is removed again.
pub(crate) async fn receive(
    state: &AppState,
    id: &str,
    app: &str,
    target: Option<String>,
    env: Option<String>,
    body: axum::body::Bytes,
) -> Result<DeployRequest, ApiError> {
    let Some(dir) = dir_of(state, id) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this server takes no uploads (it has no uploads directory)",
        )
        .hint(r#"send application/json: {"config": "<deploy.yaml text>", "image": "repository@sha256:…"}"#));
    };
    let received = receive_into(state, &dir, app, target, env, body).await;
    if received.is_err() {
        discard(state, id);
    }
    received
}

async fn receive_into(
    state: &AppState,
    dir: &Path,
    app: &str,
    target: Option<String>,
    env: Option<String>,
    body: axum::body::Bytes,
) -> Result<DeployRequest, ApiError> {
    let made = dir
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::create_dir(dir));
    if let Err(e) = made {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the upload's directory");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server cannot store the upload",
        )
        .hint("see the server's log; try again"));
    }
    let limits = state.inner.config.upload_limits;
    let into = dir.to_owned();
    let unpacked = tokio::task::spawn_blocking(move || unpack::unpack_gz(&body, &into, &limits))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the unpacker stopped");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the unpacker stopped")
        })?
        .map_err(|r| rejected(&r))?;
    let root = unpack::app_root(dir).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the archive holds no {} at its root or in its one top-level directory",
                unpack::CONFIG_FILE
            ),
        )
        .hint("pack the app directory, e.g. tar -czf app.tar.gz -C <app dir> .")
    })?;
    let config_path = root.join(unpack::CONFIG_FILE);
    let name = config_path.to_string_lossy().into_owned();
    let text = std::fs::read(dir.join(&config_path)).map_err(|e| {
        tracing::error!(error = %e, "cannot read back the upload's config");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read back the upload",
        )
    })?;
    let config = String::from_utf8(text).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name} is not UTF-8 text"),
        )
    })?;
    let request = DeployRequest {
        config,
        image: None,
        target,
        env,
        upload: Some(Upload {
            config: name.clone(),
            files: unpacked.files,
            bytes: unpacked.bytes,
        }),
    };
    validate_named(&request, app, state.inner.config.trust_config_paths, &name)?;
    Ok(request)
}

fn rejected(r: &unpack::Rejected) -> ApiError {
    match r.kind {
        RejectKind::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, r.message.clone())
            .hint("leave build outputs and dependencies out (.dockerignore), or ask for higher --upload-max-* limits"),
        RejectKind::Io => {
            tracing::error!(error = %r.message, "cannot store an upload");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server cannot store the upload",
            )
            .hint("see the server's log; try again")
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, r.message.clone()).hint(
            "send a .tar.gz of the app directory: relative paths, files, directories and links that stay inside it",
        ),
    }
}
