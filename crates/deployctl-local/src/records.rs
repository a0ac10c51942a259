//! The deploy records of the local target (issue 18 §4): a small JSON file per container,
//! `local-<container>.deploys.json` in the state directory (`$XDG_STATE_HOME/deployctl`,
//! else `~/.local/state/deployctl`, else the temporary directory), holding the newest
//! records. A container's labels cannot change without replacing it, so they are no place
//! for a record every deploy writes.
//!
//! The pipeline writes it while holding the deploy lock; the file is replaced by a rename,
//! so a reader sees the old list or the new one, never half of one.

use std::path::PathBuf;

use deployctl_core::{DeployRecord, append_record, parse_records};

use crate::error::LocalError;

/// The records file of one container.
#[derive(Debug, Clone)]
pub(crate) struct RecordsFile {
    path: PathBuf,
}

impl RecordsFile {
    pub fn for_container(container: &str) -> Self {
        let env_dir = |var: &str| std::env::var_os(var).map(PathBuf::from);
        let base = env_dir("XDG_STATE_HOME")
            .or_else(|| env_dir("HOME").map(|h| h.join(".local").join("state")))
            .unwrap_or_else(std::env::temp_dir);
        Self {
            path: base
                .join("deployctl")
                .join(format!("local-{container}.deploys.json")),
        }
    }

    fn err(&self, problem: impl std::fmt::Display) -> LocalError {
        LocalError::Records {
            path: self.path.display().to_string(),
            problem: problem.to_string(),
        }
    }

    /// The records, oldest first (none when there is no file).
    pub fn read(&self) -> Result<Vec<DeployRecord>, LocalError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                parse_records(&text).map_err(|e| self.err(format_args!("does not parse: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.err(format_args!("cannot be read: {e}"))),
        }
    }

    /// Appends `record` (records that do not parse are started again).
    pub fn append(&self, record: &DeployRecord) -> Result<(), LocalError> {
        let existing = match self.read() {
            Ok(records) => records,
            Err(_) if self.path.is_file() => Vec::new(),
            Err(e) => return Err(e),
        };
        let text = append_record(existing, record, None);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.err(format_args!("cannot be written: {e}")))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| self.err(format_args!("cannot be written: {e}")))
    }

    /// Deletes the file (destroy); none is fine.
    pub fn delete(&self) -> Result<(), LocalError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(format_args!("cannot be deleted: {e}"))),
        }
    }
}
