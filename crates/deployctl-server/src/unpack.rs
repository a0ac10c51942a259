//! Unpacking an uploaded app directory (`.tar.gz`) into a job's directory, safely.
//!
//! Nothing is written outside `dest`, whatever the archive holds:
//! - every entry's path must be relative and free of `..` (the entry is named in the error);
//! - entries are written by this module, never by the tar library's own unpack: files are
//!   created with `O_EXCL` (an existing symlink at the path is removed first, never followed),
//!   and no entry is written below a path that is a symlink or a file — a symlink in the
//!   archive cannot redirect a later entry;
//! - a symlink's target must be relative and, resolved through the links of the upload
//!   itself, stay inside it (checked lexically as it comes, and once more when every entry is
//!   in place, so a chain of links cannot climb out);
//! - a hard link must name a regular file the archive wrote earlier;
//! - device files and fifos are refused; modes keep only the executable bits, owners are not
//!   applied;
//! - the archive's uncompressed size (the tar stream), the bytes written and the number of
//!   entries are bounded ([`UploadLimits`]), so a small bomb stops at the limit.
//!
//! Architecture invariant: this file uses nothing of its crate — only `std`, `tar` and
//! `flate2` — because the fuzz crate compiles it on its own (`crates/deployctl-fuzz`).

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// The config file an upload must hold: at its root, or in its one top-level directory.
pub const CONFIG_FILE: &str = "deploy.yaml";

/// Most symlinks followed when resolving one path (as Linux's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Bounds on one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// The request body, compressed (the HTTP body limit).
    pub compressed_bytes: u64,
    /// The archive once gunzipped (the tar stream), and the bytes written from it.
    pub unpacked_bytes: u64,
    /// Entries of the archive (files, directories, links).
    pub files: u64,
}

impl Default for UploadLimits {
    /// 100 MiB compressed, 1 GiB unpacked, 20 000 entries.
    fn default() -> Self {
        Self {
            compressed_bytes: 100 << 20,
            unpacked_bytes: 1 << 30,
            files: 20_000,
        }
    }
}

/// What an upload held, once unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Why an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// Not gzip, not tar, or cut short.
    Malformed,
    /// An entry that would reach outside the upload, or of a refused type.
    Unsafe,
    /// Past one of the [`UploadLimits`].
    TooLarge,
    /// The server could not write it (its own disk).
    Io,
}

/// An upload refused, with the entry named in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Which kind of refusal (decides the HTTP status).
    pub kind: RejectKind,
    /// What is wrong, naming the entry.
    pub message: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejected {}

fn reject(kind: RejectKind, message: impl Into<String>) -> Rejected {
    Rejected {
        kind,
        message: message.into(),
    }
}

fn unsafe_entry(entry: &Path, why: impl std::fmt::Display) -> Rejected {
    reject(
        RejectKind::Unsafe,
        format!("archive entry `{}` {why}", entry.display()),
    )
}

fn io_failed(path: &Path, e: &io::Error) -> Rejected {
    reject(
        RejectKind::Io,
        format!("cannot write {}: {e}", path.display()),
    )
}

/// Unpacks the gzipped tar `gz` into the existing, empty directory `dest`.
pub fn unpack_gz(gz: &[u8], dest: &Path, limits: &UploadLimits) -> Result<Unpacked, Rejected> {
    if gz.len() as u64 > limits.compressed_bytes {
        return Err(reject(
            RejectKind::TooLarge,
            format!(
                "the upload is {} bytes; the limit is {} bytes compressed",
                gz.len(),
                limits.compressed_bytes
            ),
        ));
    }
    if !gz.starts_with(&[0x1f, 0x8b]) {
        return Err(reject(
            RejectKind::Malformed,
            "the body is not gzip data (a .tar.gz of the app directory was expected)",
        ));
    }
    unpack_tar(flate2::read::GzDecoder::new(gz), dest, limits)
}

/// A reader that fails once more than `left` bytes were read, and says so in `hit`.
struct Bounded<R> {
    inner: R,
    left: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more than allowed means the stream is over the limit.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.hit.set(true);
            return Err(io::Error::other("over the unpacked size limit"));
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Unpacks the (uncompressed) tar stream `tar` into the existing, empty directory `dest`.
pub fn unpack_tar(
    tar: impl Read,
    dest: &Path,
    limits: &UploadLimits,
) -> Result<Unpacked, Rejected> {
    let hit = Rc::new(Cell::new(false));
    let too_large = || {
        reject(
            RejectKind::TooLarge,
            format!(
                "the archive is larger than {} bytes uncompressed",
                limits.unpacked_bytes
            ),
        )
    };
    let malformed = |e: io::Error, hit: &Cell<bool>| {
        if hit.get() {
            too_large()
        } else {
            reject(
                RejectKind::Malformed,
                format!("the upload is not a readable .tar.gz: {e}"),
            )
        }
    };
    let mut archive = tar::Archive::new(Bounded {
        inner: tar,
        left: limits.unpacked_bytes,
        hit: Rc::clone(&hit),
    });
    let mut w = Writer {
        dest,
        files: HashSet::new(),
        links: Vec::new(),
        written: 0,
        limit: limits.unpacked_bytes,
    };
    let mut count = 0u64;
    let entries = archive.entries().map_err(|e| malformed(e, &hit))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| malformed(e, &hit))?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        count += 1;
        if count > limits.files {
            return Err(reject(
                RejectKind::TooLarge,
                format!("the archive has more than {} entries", limits.files),
            ));
        }
        let name = entry.path().map_err(|e| malformed(e, &hit))?.into_owned();
        let rel = clean(&name)?;
        if rel.as_os_str().is_empty() {
            // `./`, the root itself.
            if kind.is_dir() {
                continue;
            }
            return Err(unsafe_entry(&name, "names the upload's root as a file"));
        }
        let exec = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                w.file(&name, &rel, &mut entry, exec).map_err(|e| match e {
                    Fail::Rejected(r) => r,
                    Fail::Read(e) => malformed(e, &hit),
                })?;
            }
            tar::EntryType::Directory => w.dir(&name, &rel)?,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| malformed(e, &hit))?
                    .ok_or_else(|| unsafe_entry(&name, "is a symlink without a target"))?
                    .into_owned();
                w.symlink(&name, &rel, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| malformed(e, &hit))?
                    .ok_or_else(|| unsafe_entry(&name, "is a hard link without a target"))?
                    .into_owned();
                w.hard_link(&name, &rel, &target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(unsafe_entry(
                    &name,
                    "is a device file; uploads hold files, directories and links only",
                ));
            }
            tar::EntryType::Fifo => {
                return Err(unsafe_entry(
                    &name,
                    "is a fifo; uploads hold files, directories and links only",
                ));
            }
            other => {
                return Err(unsafe_entry(
                    &name,
                    format!(
                        "has the unsupported tar entry type {:?}",
                        other.as_byte() as char
                    ),
                ));
            }
        }
    }
    // Every link is in place: resolve each through the upload's own links.
    for (name, rel) in &w.links {
        resolve_inside(dest, rel).map_err(|why| unsafe_entry(name, why))?;
    }
    Ok(Unpacked {
        files: count,
        bytes: w.written,
    })
}

/// Where the config is: `deploy.yaml` at the root of `dest`, else in its one top-level
/// directory. Returns the app's directory relative to `dest` (empty for the root); only a
/// regular file counts (not a symlink).
pub fn app_root(dest: &Path) -> Option<PathBuf> {
    let is_file = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file());
    if is_file(&dest.join(CONFIG_FILE)) {
        return Some(PathBuf::new());
    }
    let mut top = fs::read_dir(dest).ok()?.filter_map(Result::ok);
    let only = top.next()?;
    if top.next().is_some() || !only.file_type().is_ok_and(|t| t.is_dir()) {
        return None;
    }
    let dir = PathBuf::from(only.file_name());
    is_file(&dest.join(&dir).join(CONFIG_FILE)).then_some(dir)
}

/// An entry's path, relative and without `.`: `..`, a root or a prefix is refused.
fn clean(name: &Path) -> Result<PathBuf, Rejected> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(name, "climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(name, "is an absolute path"));
            }
        }
    }
    Ok(out)
}

enum Fail {
    Rejected(Rejected),
    Read(io::Error),
}

impl From<Rejected> for Fail {
    fn from(r: Rejected) -> Self {
        Fail::Rejected(r)
    }
}

struct Writer<'a> {
    dest: &'a Path,
    /// Regular files written (hard links may name them).
    files: HashSet<PathBuf>,
    /// Symlinks written, with their entry names, to resolve at the end.
    links: Vec<(PathBuf, PathBuf)>,
    written: u64,
    limit: u64,
}

impl Writer<'_> {
    /// Creates the directories above `rel`; refuses a parent that is a symlink or a file.
    fn parents(&self, name: &Path, rel: &Path) -> Result<(), Rejected> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut at = self.dest.to_path_buf();
        for c in parent.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry(
                        name,
                        "lies below a symlink of the archive; entries are never written through links",
                    ));
                }
                Ok(_) => return Err(unsafe_entry(name, "lies below a file of the archive")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&at).map_err(|e| io_failed(&at, &e))?;
                }
                Err(e) => return Err(io_failed(&at, &e)),
            }
        }
        Ok(())
    }

    /// Makes room at `rel` for a non-directory: removes a file or link there (never following
    /// it); a directory there is refused.
    fn vacate(&mut self, name: &Path, rel: &Path) -> Result<PathBuf, Rejected> {
        self.parents(name, rel)?;
        let at = self.dest.join(rel);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => Err(unsafe_entry(
                name,
                "would replace a directory of the archive",
            )),
            Ok(_) => {
                fs::remove_file(&at).map_err(|e| io_failed(&at, &e))?;
                self.files.remove(rel);
                self.links.retain(|(_, l)| l != rel);
                Ok(at)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(at),
            Err(e) => Err(io_failed(&at, &e)),
        }
    }

    fn file(
        &mut self,
        name: &Path,
        rel: &Path,
        data: &mut impl Read,
        exec: bool,
    ) -> Result<(), Fail> {
        let at = self.vacate(name, rel)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if exec { 0o755 } else { 0o644 })
            .open(&at)
            .map_err(|e| io_failed(&at, &e))?;
        let left = self.limit.saturating_sub(self.written);
        let mut limited = data.take(left.saturating_add(1));
        let n = copy(&mut limited, &mut f, &at)?;
        if n > left {
            return Err(Fail::Rejected(reject(
                RejectKind::TooLarge,
                format!(
                    "archive entry `{}` takes the upload past {} bytes unpacked",
                    name.display(),
                    self.limit
                ),
            )));
        }
        self.written += n;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    fn dir(&mut self, name: &Path, rel: &Path) -> Result<(), Rejected> {
        self.parents(name, rel)?;
        let at = self.dest.join(rel);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => Ok(()),
            Ok(_) => Err(unsafe_entry(
                name,
                "is a directory where the archive put a file or link",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| io_failed(&at, &e))
            }
            Err(e) => Err(io_failed(&at, &e)),
        }
    }

    fn symlink(&mut self, name: &Path, rel: &Path, target: &Path) -> Result<(), Rejected> {
        let outside = || {
            unsafe_entry(
                name,
                format!("is a symlink to `{}`, outside the upload", target.display()),
            )
        };
        if target.has_root() || target.as_os_str().is_empty() {
            return Err(outside());
        }
        // Lexically first, relative to the link's directory.
        let mut depth = rel.components().count().saturating_sub(1);
        for c in target.components() {
            match c {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(outside)?,
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        let at = self.vacate(name, rel)?;
        std::os::unix::fs::symlink(target, &at).map_err(|e| io_failed(&at, &e))?;
        self.links.push((name.to_path_buf(), rel.to_path_buf()));
        Ok(())
    }

    fn hard_link(&mut self, name: &Path, rel: &Path, target: &Path) -> Result<(), Rejected> {
        let target_rel = clean(target).map_err(|_| {
            unsafe_entry(
                name,
                format!(
                    "is a hard link to `{}`, outside the upload",
                    target.display()
                ),
            )
        })?;
        if !self.files.contains(&target_rel) {
            return Err(unsafe_entry(
                name,
                format!(
                    "is a hard link to `{}`, which is not a file the archive wrote before it",
                    target.display()
                ),
            ));
        }
        if target_rel == rel {
            return Err(unsafe_entry(name, "is a hard link to itself"));
        }
        let from = self.dest.join(&target_rel);
        let at = self.vacate(name, rel)?;
        fs::hard_link(&from, &at).map_err(|e| io_failed(&at, &e))?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }
}

fn copy(from: &mut impl Read, to: &mut fs::File, at: &Path) -> Result<u64, Fail> {
    use std::io::Write;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = from.read(&mut buf).map_err(Fail::Read)?;
        if got == 0 {
            return Ok(n);
        }
        to.write_all(&buf[..got])
            .map_err(|e| Fail::Rejected(io_failed(at, &e)))?;
        n += got as u64;
    }
}

/// Resolves `rel` below `root` following the links found there (relative ones only) as the
/// kernel would; fails when it climbs above `root`, meets an absolute link or loops.
pub fn resolve_inside(root: &Path, rel: &Path) -> Result<(), String> {
    let mut stack: Vec<OsString> = Vec::new();
    let mut queue: VecDeque<OsString> =
        rel.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            if stack.pop().is_none() {
                return Err("resolves, through the archive's links, outside the upload".into());
            }
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        if c == "/" {
            return Err("resolves to an absolute path".into());
        }
        stack.push(c);
        let at: PathBuf = std::iter::once(root.as_os_str().to_owned())
            .chain(stack.iter().cloned())
            .collect();
        if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            hops += 1;
            if hops > MAX_HOPS {
                return Err("is a loop of symlinks".into());
            }
            let target = fs::read_link(&at).map_err(|e| format!("cannot be read back: {e}"))?;
            if target.has_root() {
                return Err(format!(
                    "resolves to the absolute path {}",
                    target.display()
                ));
            }
            stack.pop();
            for t in target.components().rev() {
                queue.push_front(t.as_os_str().to_owned());
            }
        }
    }
    Ok(())
}
