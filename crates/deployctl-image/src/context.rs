//! The build context: which files go to the engine, streamed as a tar.
//!
//! Entries are paths as the filesystem spells them (bytes on Unix, so a name that is not
//! UTF-8 is sent as it is); `.dockerignore` patterns are matched against their UTF-8 (lossy)
//! spelling. Every file is a regular tar entry: sparse files are written out in full, since
//! the engine rejects GNU sparse entries.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::dockerignore::DockerIgnore;
use crate::error::ImageError;

/// The files of a build context after `.dockerignore`, in a stable order.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Context directory.
    pub root: PathBuf,
    /// Relative paths of files, directories and symlinks to send, as the filesystem spells
    /// them (not necessarily UTF-8).
    pub entries: Vec<PathBuf>,
    /// The Dockerfile and `.dockerignore` when `.dockerignore` excludes them: sent anyway,
    /// because the engine needs them, but never to be copied into the image.
    pub excluded_build_files: Vec<String>,
}

/// Checks that `dockerfile` (relative to `root`) stays inside the context and returns its
/// `/`-separated relative path.
pub fn dockerfile_in_context(root: &Path, dockerfile: &Path) -> Result<String, ImageError> {
    let rel = if dockerfile.is_absolute() {
        dockerfile
            .strip_prefix(root)
            .map_err(|_| ImageError::OutsideContext {
                path: dockerfile.to_owned(),
                context: root.to_owned(),
            })?
            .to_owned()
    } else {
        dockerfile.to_owned()
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(ImageError::OutsideContext {
                    path: dockerfile.to_owned(),
                    context: root.to_owned(),
                });
            }
        }
    }
    let rel = parts.join("/");
    if !root.join(&rel).is_file() {
        return Err(ImageError::MissingDockerfile {
            path: root.join(&rel),
        });
    }
    Ok(rel)
}

impl BuildContext {
    /// Walks `root`, applying its `.dockerignore`. The Dockerfile and `.dockerignore` are
    /// always sent, as Docker does.
    pub fn collect(root: &Path, dockerfile: &str) -> Result<Self, ImageError> {
        if !root.is_dir() {
            return Err(ImageError::ContextNotFound {
                path: root.to_owned(),
            });
        }
        let ignore = match fs::read_to_string(root.join(".dockerignore")) {
            Ok(text) => DockerIgnore::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
            Err(source) => {
                return Err(ImageError::Io {
                    path: root.join(".dockerignore"),
                    source,
                });
            }
        };
        let mut entries = Vec::new();
        walk(root, Path::new(""), &ignore, &mut entries)?;
        let mut excluded_build_files = Vec::new();
        for always in [dockerfile, ".dockerignore"] {
            if root.join(always).is_file() && !entries.iter().any(|e| e == Path::new(always)) {
                entries.push(PathBuf::from(always));
                excluded_build_files.push(always.to_owned());
            }
        }
        entries.sort();
        Ok(Self {
            root: root.to_owned(),
            entries,
            excluded_build_files,
        })
    }

    /// Streams the context as a tar through a bounded channel: at most `depth` chunks of
    /// 64 KiB are in memory at once. The tar is written on a blocking thread.
    pub fn stream(self, depth: usize) -> mpsc::Receiver<Result<Bytes, io::Error>> {
        self.stream_reporting(depth).0
    }

    /// [`Self::stream`], with the reason the tar writer stopped early (a file that could not
    /// be read, named) kept for the build to report instead of the engine's view of it.
    pub(crate) fn stream_reporting(
        self,
        depth: usize,
    ) -> (mpsc::Receiver<Result<Bytes, io::Error>>, TarFailure) {
        let (tx, rx) = mpsc::channel(depth.max(1));
        let failure = TarFailure::default();
        let slot = failure.clone();
        tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            if let Err(e) = self.write_tar(writer) {
                let message = e.message();
                let kind = e.kind();
                slot.set(e);
                let _ = tx.blocking_send(Err(io::Error::new(kind, message)));
            }
        });
        (rx, failure)
    }

    /// The whole context as one tar in memory (for a build whose transport needs it whole).
    pub(crate) fn to_tar(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        self.write_tar(&mut out)
            .map_err(|e| e.into_image_error(&self.root))?;
        Ok(out)
    }

    fn write_tar(&self, writer: impl Write) -> Result<(), TarError> {
        let mut tar = tar::Builder::new(writer);
        self.append_to(&mut tar, |_| false)?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(TarError::Sink)
    }

    /// Appends every entry but those `skip` names to `tar`, as the engine needs them:
    /// links kept as links, deterministic headers, no sparse entries.
    pub(crate) fn append_to<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        skip: impl Fn(&Path) -> bool,
    ) -> Result<(), TarError> {
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Deterministic);
        // The engine rejects GNU sparse entries ("unhandled tar header type 83").
        tar.sparse(false);
        for rel in self.entries.iter().filter(|r| !skip(r)) {
            let path = self.root.join(rel);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => return Err(TarError::File(path, e)),
            };
            let appended = if meta.is_dir() {
                tar.append_dir(rel, &path)
            } else {
                tar.append_path_with_name(&path, rel)
            };
            appended.map_err(|e| {
                // The channel closing is the engine's doing, not the file's.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    TarError::Sink(e)
                } else {
                    TarError::File(path.clone(), e)
                }
            })?;
        }
        Ok(())
    }
}

/// Why writing the tar stopped.
pub(crate) enum TarError {
    /// A file of the context could not be read.
    File(PathBuf, io::Error),
    /// The receiving side failed or went away.
    Sink(io::Error),
}

impl TarError {
    /// As the crate's error: a file names itself, a failed sink names `root`.
    pub(crate) fn into_image_error(self, root: &Path) -> ImageError {
        match self {
            TarError::File(path, source) => ImageError::Io { path, source },
            TarError::Sink(source) => ImageError::Io {
                path: root.to_owned(),
                source,
            },
        }
    }

    fn message(&self) -> String {
        match self {
            Self::File(path, e) => format!("cannot read {}: {e}", path.display()),
            Self::Sink(e) => e.to_string(),
        }
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            Self::File(_, e) | Self::Sink(e) => e.kind(),
        }
    }
}

/// The reason a streamed context stopped early, when it was a file of the context.
#[derive(Clone, Default)]
pub(crate) struct TarFailure(Arc<Mutex<Option<(PathBuf, io::Error)>>>);

impl TarFailure {
    fn set(&self, e: TarError) {
        if let TarError::File(path, source) = e
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some((path, source));
        }
    }

    /// The file that stopped the context, as an error naming it.
    pub(crate) fn take(&self) -> Option<ImageError> {
        let (path, source) = self.0.lock().ok()?.take()?;
        Some(ImageError::Io { path, source })
    }
}

/// Adds the entries under `rel` (relative to `root`; empty for the root) to `out`.
fn walk(
    root: &Path,
    rel: &Path,
    ignore: &DockerIgnore,
    out: &mut Vec<PathBuf>,
) -> Result<(), ImageError> {
    let dir = root.join(rel);
    let read = fs::read_dir(&dir).map_err(|source| ImageError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in read {
        let entry = entry.map_err(|source| ImageError::Io {
            path: dir.clone(),
            source,
        })?;
        let child = rel.join(entry.file_name());
        // Patterns are text: a name that is not UTF-8 is matched by its lossy spelling (a
        // pattern cannot spell the invalid bytes anyway) and sent by its real one.
        let pattern_path = slash_path(&child);
        let ft = entry.file_type().map_err(|source| ImageError::Io {
            path: entry.path(),
            source,
        })?;
        if ft.is_dir() {
            if ignore.skips_dir(&pattern_path) {
                continue;
            }
            if !ignore.excludes(&pattern_path) {
                out.push(child.clone());
            }
            walk(root, &child, ignore, out)?;
        } else if !ignore.excludes(&pattern_path) {
            out.push(child);
        }
    }
    Ok(())
}

/// `a/b/c` for a relative path, lossy where a name is not UTF-8.
fn slash_path(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

const CHUNK: usize = 64 * 1024;

struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
