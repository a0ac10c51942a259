//! The build context: which files go to the engine, streamed as a tar.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::dockerignore::DockerIgnore;
use crate::error::ImageError;

/// The files of a build context after `.dockerignore`, in a stable order.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Context directory.
    pub root: PathBuf,
    /// Relative, `/`-separated paths of files, directories and symlinks to send.
    pub entries: Vec<String>,
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
        walk(root, "", &ignore, &mut entries)?;
        let mut excluded_build_files = Vec::new();
        for always in [dockerfile, ".dockerignore"] {
            if root.join(always).is_file() && !entries.iter().any(|e| e == always) {
                entries.push(always.to_owned());
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
        let (tx, rx) = mpsc::channel(depth.max(1));
        tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            if let Err(e) = self.write_tar(writer) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    fn write_tar(&self, writer: impl Write) -> io::Result<()> {
        let mut tar = tar::Builder::new(writer);
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Deterministic);
        for rel in &self.entries {
            let path = self.root.join(rel);
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                tar.append_dir(rel, &path)?;
            } else {
                tar.append_path_with_name(&path, rel)?;
            }
        }
        tar.into_inner()?.flush()
    }
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    out: &mut Vec<String>,
) -> Result<(), ImageError> {
    let dir = if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    };
    let read = fs::read_dir(&dir).map_err(|source| ImageError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in read {
        let entry = entry.map_err(|source| ImageError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().map_err(|source| ImageError::Io {
            path: entry.path(),
            source,
        })?;
        if ft.is_dir() {
            if ignore.skips_dir(&child) {
                continue;
            }
            if !ignore.excludes(&child) {
                out.push(child.clone());
            }
            walk(root, &child, ignore, out)?;
        } else if !ignore.excludes(&child) {
            out.push(child);
        }
    }
    Ok(())
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
