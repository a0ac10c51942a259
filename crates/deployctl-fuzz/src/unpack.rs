//! The `unpack` target: any bytes as an uploaded app directory (`deployctl serve`'s
//! `.tar.gz` body), unpacked into a fresh directory.
//!
//! The input is the tar stream itself (so the fuzzer reaches the entries, not the gzip
//! checksum); an input that starts with gzip's magic bytes goes through the gzip path too.
//!
//! Properties, for every input:
//! - unpacking returns (within libFuzzer's `-timeout`), accepted or refused;
//! - nothing is written outside the destination: its parent holds only it afterwards;
//! - an accepted upload stays within the limits, and every symlink in it resolves, through
//!   the upload's own links, inside it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{UploadLimits, resolve_inside, unpack_gz, unpack_tar};

/// Small limits, so one input stays cheap.
const LIMITS: UploadLimits = UploadLimits {
    compressed_bytes: 1 << 20,
    unpacked_bytes: 1 << 20,
    files: 64,
};

static RUN: AtomicU64 = AtomicU64::new(0);

/// Checks the properties for `data`.
pub fn check(data: &[u8]) {
    let gz = data.starts_with(&[0x1f, 0x8b]);
    one(data, false);
    if gz {
        one(data, true);
    }
}

fn one(data: &[u8], gz: bool) {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let parent =
        std::env::temp_dir().join(format!("deployctl-fuzz-unpack-{}-{n}", std::process::id()));
    let dest = parent.join("dest");
    std::fs::create_dir_all(&dest).expect("a temp dir");
    let result = if gz {
        unpack_gz(data, &dest, &LIMITS)
    } else {
        unpack_tar(data, &dest, &LIMITS)
    };
    let beside: Vec<_> = std::fs::read_dir(&parent)
        .expect("the temp dir")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(
        beside,
        ["dest"],
        "written outside the destination ({result:?})"
    );
    if let Ok(done) = &result {
        assert!(
            done.files <= LIMITS.files && done.bytes <= LIMITS.unpacked_bytes,
            "{done:?}"
        );
        check_links(&dest, Path::new(""));
    }
    let _ = std::fs::remove_dir_all(&parent);
}

/// Every symlink below `dest/rel` resolves inside `dest`.
fn check_links(dest: &Path, rel: &Path) {
    let Ok(entries) = std::fs::read_dir(dest.join(rel)) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let rel = rel.join(e.file_name());
        let Ok(t) = e.file_type() else { continue };
        if t.is_symlink() {
            if let Err(why) = resolve_inside(dest, &rel) {
                panic!("accepted a link that escapes: {} {why}", rel.display());
            }
        } else if t.is_dir() {
            check_links(dest, &rel);
        }
    }
}
