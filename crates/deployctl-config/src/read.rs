//! Reading the config file safely: only a regular file, at most [`MAX_CONFIG_BYTES`].
//!
//! `-c /dev/zero` must not grow without end and `-c some-fifo` must not block forever, so
//! the path is checked with `metadata` (which follows symlinks) *before* it is opened, the
//! open itself is non-blocking where the platform allows it (a FIFO swapped in between the
//! check and the open still cannot block), the opened handle is checked again, and at most
//! one byte more than the cap is ever read (files in `/proc` report size 0).
//!
//! Refusals are ordinary diagnostics (file, message, hint) in [`ConfigError::Invalid`];
//! a file that cannot be opened or read at all is [`ConfigError::Read`].

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

use crate::error::{ConfigError, Diagnostic};

/// The largest config file accepted: 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
))]
const O_NONBLOCK: i32 = 0o4000;
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
))]
const O_NONBLOCK: i32 = 0x0004;
#[cfg(not(any(
    all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm",
            target_arch = "riscv64"
        )
    ),
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
const O_NONBLOCK: i32 = 0;

/// Reads the file at `path` as bytes, refusing anything but a regular file of at most
/// [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config_bytes(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    // Follows symlinks; never opens, so a FIFO or device cannot block or stream here.
    let meta = std::fs::metadata(path).map_err(read_err)?;
    check_metadata(path, &meta)?;
    let file = open_nonblocking(path).map_err(read_err)?;
    // The path may have changed between the check and the open: check what was opened.
    let meta = file.metadata().map_err(read_err)?;
    check_metadata(path, &meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 20));
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refuse(
            path,
            format!(
                "the file is larger than the {} limit (it grew while being read)",
                human(MAX_CONFIG_BYTES)
            ),
            "a deploy.yaml is a few kilobytes; check that --config names the right file",
        ));
    }
    Ok(bytes)
}

fn check_metadata(path: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    if !meta.is_file() {
        return Err(refuse(
            path,
            format!("not a regular file ({})", file_kind(meta)),
            "pass --config the path of a deploy.yaml file",
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(refuse(
            path,
            format!(
                "the file is {} ({} bytes), above the {} limit for a config file",
                human(meta.len()),
                meta.len(),
                human(MAX_CONFIG_BYTES)
            ),
            "a deploy.yaml is a few kilobytes; check that --config names the right file",
        ));
    }
    Ok(())
}

fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(O_NONBLOCK);
    }
    #[cfg(not(unix))]
    let _ = O_NONBLOCK;
    opts.open(path)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a named pipe";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    "not a file"
}

fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        let tenths = bytes * 10 / MIB;
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

fn refuse(path: &Path, message: String, hint: &str) -> ConfigError {
    ConfigError::Invalid {
        file: path.to_owned(),
        diagnostics: vec![Diagnostic {
            file: path.to_owned(),
            line: None,
            column: None,
            path: String::new(),
            message,
            hint: Some(hint.to_owned()),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(1024 * 1024), "1.0 MiB");
        assert_eq!(human(5 * 1024 * 1024 * 1024), "5120.0 MiB");
        assert_eq!(human(1536 * 1024), "1.5 MiB");
        assert_eq!(human(1000), "1 KiB");
    }
}
