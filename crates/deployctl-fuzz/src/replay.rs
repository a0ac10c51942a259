//! Replays the inputs saved for one fuzz target under `fixtures/fuzz/<target>/` against
//! its property, each with a time bound, for the regression tests of the crates the
//! targets fuzz (they include this file by `#[path]`: `std` only).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long one saved input may take in an unoptimised test build (libFuzzer's bound is
/// 10 s on an optimised one).
const LIMIT: Duration = Duration::from_secs(30);

/// `fixtures/fuzz/<target>/`.
pub fn fixtures_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fuzz")
        .join(target)
}

/// Runs `check` on every file in `fixtures/fuzz/<target>/`; panics naming each input that
/// panics or takes longer than [`LIMIT`]. Returns how many inputs were replayed.
pub fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = fixtures_dir(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        // No input has failed yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            check(&data);
            let _ = tx.send(());
        });
        match rx.recv_timeout(LIMIT) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                failures.push(format!(
                    "{}: the property fails (panic above)",
                    file.display()
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => failures.push(format!(
                "{}: no result within {} s",
                file.display(),
                LIMIT.as_secs()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} saved `{target}` inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}
