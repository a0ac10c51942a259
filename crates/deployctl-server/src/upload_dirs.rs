//! Where uploads live between their request and the end of their job:
//! `<uploads dir>/<deployment id>/`, under the server's data dir so a queued upload survives a
//! restart. Removed when the job ends, when a queued one is cancelled, and at start for
//! deployments that have ended (or were never queued: a crash between unpack and enqueue).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::jobs::AppState;
use crate::runner::Upload;
use crate::store::Store;

/// An unpacked directory with no deployment is removed at start once it is this old (younger
/// ones may be a request of another process on the same data dir, between unpack and enqueue).
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Where the upload of deployment `id` lives, on a server that takes uploads.
pub(crate) fn dir_of(state: &AppState, id: &str) -> Option<PathBuf> {
    state.inner.config.uploads_dir.as_ref().map(|d| d.join(id))
}

/// The app directory of an upload's job: `<uploads dir>/<id>/<dir of the config>`.
pub(crate) fn app_dir(state: &AppState, id: &str, upload: &Upload) -> Option<PathBuf> {
    let root = dir_of(state, id)?;
    Some(match Path::new(&upload.config).parent() {
        Some(p) => root.join(p),
        None => root,
    })
}

/// Removes the upload of deployment `id`, if there is one.
pub(crate) fn discard(state: &AppState, id: &str) {
    if let Some(dir) = dir_of(state, id) {
        remove(&dir, id);
    }
}

fn remove(dir: &Path, id: &str) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(deployment = %id, "upload removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(deployment = %id, dir = %dir.display(), error = %e, "cannot remove the upload");
        }
    }
}

/// At start: removes the uploads of deployments that have ended, and old ones of none.
pub(crate) async fn sweep(store: &dyn Store, uploads: &Path) {
    let Ok(entries) = std::fs::read_dir(uploads) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let id = entry.file_name().to_string_lossy().into_owned();
        let keep = match store.deployment(&id).await {
            Ok(Some(d)) => !d.status.is_final(),
            Ok(None) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < ORPHAN_AGE),
            // Unknown: keep it, the next start looks again.
            Err(_) => true,
        };
        if !keep {
            remove(&entry.path(), &id);
        }
    }
}
