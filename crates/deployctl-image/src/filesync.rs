//! The build context over the session: the sending side of `moby.filesync.v1.FileSync/DiffCopy`
//! (the fsutil packet protocol).
//!
//! The engine names the directory it wants in the `dir-name` header: `context` (the build
//! context after `.dockerignore`) or `dockerfile` (the Dockerfile's directory, of which only
//! the Dockerfile and the files the request names are served). Its `include-patterns`,
//! `exclude-patterns` and `followpaths` headers narrow the set further.
//!
//! The protocol, as fsutil's sender speaks it: one `PACKET_STAT` per entry in walk order
//! (component by component, a directory before its contents), numbered from 0 in the order
//! sent, then an empty `PACKET_STAT`. The engine compares them with what it kept from the
//! last build under the session's shared key and sends `PACKET_REQ` with the number of each
//! regular file whose metadata changed; each is answered with `PACKET_DATA` chunks and an
//! empty `PACKET_DATA`. `PACKET_FIN` from the engine is answered with `PACKET_FIN`. Modes are
//! Go's `os.FileMode` bits; owners are sent as 0:0, as the docker CLI does.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::fsutil::types::packet::PacketType;
use bollard::fsutil::types::{Packet, Stat};
use bollard::moby::filesync::v1::file_sync_server;
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use tokio::sync::mpsc;

use crate::dockerignore::DockerIgnore;

/// The session's name for the build context.
pub(crate) const CONTEXT: &str = "context";
/// The session's name for the Dockerfile's directory.
pub(crate) const DOCKERFILE: &str = "dockerfile";

/// How much of a file one `PACKET_DATA` carries.
const CHUNK: usize = 32 * 1024;

/// Files sent at once (fsutil's sender uses four).
const SENDERS: usize = 4;

/// What the session serves.
#[derive(Debug, Clone)]
pub(crate) struct SyncedDirs {
    /// The context directory.
    pub(crate) context: PathBuf,
    /// Its entries after `.dockerignore` (relative), without the build files it excludes.
    pub(crate) entries: Arc<Vec<PathBuf>>,
    /// The Dockerfile's directory.
    pub(crate) dockerfile_dir: PathBuf,
    /// The Dockerfile's name in it.
    pub(crate) dockerfile_name: String,
}

/// Bytes sent through the file sync, counted as they go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transfer(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    files: AtomicU64,
    file_bytes: AtomicU64,
    wire_bytes: AtomicU64,
}

impl Transfer {
    fn packet(&self, p: &Packet) {
        self.0
            .wire_bytes
            .fetch_add(p.encoded_len() as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> SessionTransfer {
        SessionTransfer {
            files: self.0.files.load(Ordering::Relaxed),
            file_bytes: self.0.file_bytes.load(Ordering::Relaxed),
            wire_bytes: self.0.wire_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What one build sent to the engine through the BuildKit session's file sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionTransfer {
    /// Files whose contents the engine asked for.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
    /// Every packet's encoded size: file data plus the metadata of every entry.
    pub wire_bytes: u64,
}

/// The `FileSync` service of one session.
#[derive(Debug)]
pub(crate) struct FileSync {
    dirs: SyncedDirs,
    transfer: Transfer,
}

impl FileSync {
    pub(crate) fn new(dirs: SyncedDirs) -> Self {
        Self {
            dirs,
            transfer: Transfer::default(),
        }
    }

    pub(crate) fn transfer(&self) -> Transfer {
        self.transfer.clone()
    }
}

/// The request's narrowing of a directory.
#[derive(Debug, Default)]
struct Filter {
    /// `include-patterns` and `followpaths`: when any, only what they match (and the
    /// directories above it).
    include: Vec<String>,
    /// `exclude-patterns`.
    exclude: Vec<String>,
}

fn header_values(md: &tonic::metadata::MetadataMap, key: &str) -> Vec<String> {
    md.get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tonic::async_trait]
impl file_sync_server::FileSync for FileSync {
    type DiffCopyStream = BoxStream<'static, Result<Packet, tonic::Status>>;
    type TarStreamStream = BoxStream<'static, Result<Packet, tonic::Status>>;

    async fn diff_copy(
        &self,
        request: tonic::Request<tonic::Streaming<Packet>>,
    ) -> Result<tonic::Response<Self::DiffCopyStream>, tonic::Status> {
        let md = request.metadata();
        let dir = header_values(md, "dir-name")
            .into_iter()
            .next()
            .ok_or_else(|| tonic::Status::invalid_argument("no dir-name header"))?;
        let mut filter = Filter {
            include: header_values(md, "include-patterns"),
            exclude: header_values(md, "exclude-patterns"),
        };
        filter.include.extend(header_values(md, "followpaths"));
        let dirs = self.dirs.clone();
        let listed = tokio::task::spawn_blocking(move || list(&dirs, &dir, &filter))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))??;

        let (tx, rx) = mpsc::channel::<Result<Packet, tonic::Status>>(256);
        let transfer = self.transfer.clone();
        let mut incoming = request.into_inner();
        tokio::spawn(async move {
            let Listing { root, stats } = listed;
            let mut files: HashMap<u32, PathBuf> = HashMap::new();
            let mut packets = Vec::with_capacity(stats.len() + 1);
            for (id, (stat, rel)) in (0u32..).zip(stats) {
                if let Some(rel) = rel {
                    files.insert(id, root.join(rel));
                }
                packets.push(Packet {
                    r#type: PacketType::PacketStat as i32,
                    stat: Some(stat),
                    id: 0,
                    data: Vec::new(),
                });
            }
            packets.push(Packet {
                r#type: PacketType::PacketStat as i32,
                ..Packet::default()
            });
            let stat_tx = tx.clone();
            let stat_transfer = transfer.clone();
            tokio::spawn(async move {
                for p in packets {
                    stat_transfer.packet(&p);
                    if stat_tx.send(Ok(p)).await.is_err() {
                        return;
                    }
                }
            });
            // Requests are read as soon as they arrive and queued: left unread, thousands of
            // tiny DATA frames would trip h2's flood protection (`too_many_data_frames`).
            // Files are sent by a few concurrent workers, as fsutil's sender does.
            let (req_tx, req_rx) = mpsc::unbounded_channel::<u32>();
            let data_tx = tx.clone();
            let data_transfer = transfer.clone();
            let sender = tokio::spawn(async move {
                let requests = futures::stream::unfold(req_rx, |mut rx| async move {
                    rx.recv().await.map(|id| (id, rx))
                });
                requests
                    .for_each_concurrent(SENDERS, |id| {
                        let path = files.remove(&id);
                        let tx = data_tx.clone();
                        let transfer = data_transfer.clone();
                        async move {
                            match path {
                                Some(path) => {
                                    let _ = send_file(&tx, &transfer, id, path).await;
                                }
                                None => {
                                    let _ = tx
                                        .send(Err(tonic::Status::invalid_argument(format!(
                                            "invalid file id {id}"
                                        ))))
                                        .await;
                                }
                            }
                        }
                    })
                    .await;
            });
            loop {
                let p = match incoming.message().await {
                    Ok(Some(p)) => p,
                    Ok(None) | Err(_) => break,
                };
                match PacketType::try_from(p.r#type) {
                    Ok(PacketType::PacketReq) => {
                        let queued = req_tx.send(p.id);
                        if queued.is_err() {
                            break;
                        }
                    }
                    Ok(PacketType::PacketFin) => {
                        // The engine has every file it asked for: nothing is in flight.
                        let fin = Packet {
                            r#type: PacketType::PacketFin as i32,
                            ..Packet::default()
                        };
                        transfer.packet(&fin);
                        let _ = tx.send(Ok(fin)).await;
                        break;
                    }
                    Ok(PacketType::PacketErr) => break,
                    _ => {}
                }
            }
            drop(req_tx);
            let _ = sender.await;
        });
        let out =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
        Ok(tonic::Response::new(out.boxed()))
    }

    async fn tar_stream(
        &self,
        _request: tonic::Request<tonic::Streaming<Packet>>,
    ) -> Result<tonic::Response<Self::TarStreamStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "deployctl serves the build context with DiffCopy",
        ))
    }
}

type Tx = mpsc::Sender<Result<Packet, tonic::Status>>;

/// Sends one file's contents as `PACKET_DATA` chunks and the empty packet that ends it. A
/// file that can no longer be read ends the stream with an error naming it.
async fn send_file(tx: &Tx, transfer: &Transfer, id: u32, path: PathBuf) -> Result<(), ()> {
    let (chunks_tx, mut chunks) = mpsc::channel::<io::Result<Vec<u8>>>(8);
    tokio::task::spawn_blocking(move || {
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = chunks_tx.blocking_send(Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                )));
                return;
            }
        };
        loop {
            let mut buf = vec![0; CHUNK];
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if chunks_tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = chunks_tx.blocking_send(Err(io::Error::new(
                        e.kind(),
                        format!("cannot read {}: {e}", path.display()),
                    )));
                    return;
                }
            }
        }
    });
    transfer.0.files.fetch_add(1, Ordering::Relaxed);
    while let Some(chunk) = chunks.recv().await {
        let data = match chunk {
            Ok(data) => data,
            Err(e) => {
                let _ = tx.send(Err(tonic::Status::internal(e.to_string()))).await;
                return Err(());
            }
        };
        transfer
            .0
            .file_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let p = Packet {
            r#type: PacketType::PacketData as i32,
            stat: None,
            id,
            data,
        };
        transfer.packet(&p);
        tx.send(Ok(p)).await.map_err(|_| ())?;
    }
    let end = Packet {
        r#type: PacketType::PacketData as i32,
        id,
        ..Packet::default()
    };
    transfer.packet(&end);
    tx.send(Ok(end)).await.map_err(|_| ())
}

/// The entries of one directory as stats, in walk order, each with its relative path when
/// its contents may be requested (regular files).
struct Listing {
    root: PathBuf,
    stats: Vec<(Stat, Option<PathBuf>)>,
}

fn list(dirs: &SyncedDirs, dir: &str, filter: &Filter) -> Result<Listing, tonic::Status> {
    let (root, candidates): (&Path, Vec<PathBuf>) = match dir {
        CONTEXT => (&dirs.context, dirs.entries.as_ref().clone()),
        DOCKERFILE => {
            // Only the Dockerfile and what the request names by plain path (its own
            // `<Dockerfile>.dockerignore`): never the rest of the directory.
            let mut names = vec![PathBuf::from(&dirs.dockerfile_name)];
            names.extend(
                filter
                    .include
                    .iter()
                    .filter(|p| !p.contains(['*', '?', '[', '\\']))
                    .map(PathBuf::from)
                    .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
                    .filter(|p| dirs.dockerfile_dir.join(p).is_file()),
            );
            (&dirs.dockerfile_dir, names)
        }
        other => {
            return Err(tonic::Status::not_found(format!(
                "no synced directory {other}"
            )));
        }
    };
    let include =
        (!filter.include.is_empty()).then(|| DockerIgnore::parse(&filter.include.join("\n")));
    let exclude = DockerIgnore::parse(&filter.exclude.join("\n"));
    let mut chosen: BTreeSet<PathBuf> = BTreeSet::new();
    for rel in candidates {
        let text = slash(&rel)?;
        if exclude.excludes(&text) || include.as_ref().is_some_and(|i| !i.excludes(&text)) {
            continue;
        }
        // The directories above an entry always go first (an excluded directory holding a
        // re-included file, or one only named through its contents).
        let mut parent = rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if !chosen.insert(p.to_owned()) {
                break;
            }
            parent = p.parent();
        }
        chosen.insert(rel);
    }
    let mut stats = Vec::with_capacity(chosen.len());
    for rel in chosen {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| tonic::Status::internal(format!("cannot read {}: {e}", path.display())))?;
        let linkname = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| {
                tonic::Status::internal(format!("cannot read {}: {e}", path.display()))
            })?;
            target.to_str().ok_or_else(|| not_utf8(&path))?.to_owned()
        } else {
            String::new()
        };
        let stat = Stat {
            path: slash(&rel)?,
            mode: go_file_mode(meta.mode()),
            uid: 0,
            gid: 0,
            size: if meta.is_dir() { 0 } else { meta.size() as i64 },
            mod_time: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            linkname,
            devmajor: 0,
            devminor: 0,
            xattrs: HashMap::new(),
        };
        let requestable = meta.file_type().is_file();
        stats.push((stat, requestable.then_some(rel)));
    }
    Ok(Listing {
        root: root.to_owned(),
        stats,
    })
}

fn not_utf8(path: &Path) -> tonic::Status {
    tonic::Status::invalid_argument(format!(
        "{} is not UTF-8, which the build session cannot name",
        path.display()
    ))
}

/// `a/b` for a relative path; an error for a name that is not UTF-8 (the protocol's paths are
/// strings; such contexts take the tar path, see `SyncedDirs` users).
fn slash(rel: &Path) -> Result<String, tonic::Status> {
    let mut out = String::new();
    for c in rel.components() {
        let part = c.as_os_str().to_str().ok_or_else(|| not_utf8(rel))?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part);
    }
    Ok(out)
}

/// Whether every entry can be named in the session (UTF-8 paths).
pub(crate) fn all_utf8(entries: &[PathBuf]) -> bool {
    entries.iter().all(|e| e.to_str().is_some())
}

/// A Unix `st_mode` as Go's `os.FileMode`, which fsutil's stats carry.
fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & 0o170_000 {
        0o040_000 => DIR,
        0o120_000 => SYMLINK,
        0o060_000 => DEVICE,
        0o020_000 => DEVICE | CHAR_DEVICE,
        0o010_000 => NAMED_PIPE,
        0o140_000 => SOCKET,
        _ => 0,
    };
    for (bit, go) in [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)] {
        if st_mode & bit != 0 {
            mode |= go;
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path, entries: &[&str]) -> SyncedDirs {
        SyncedDirs {
            context: root.to_owned(),
            entries: Arc::new(entries.iter().map(PathBuf::from).collect()),
            dockerfile_dir: root.to_owned(),
            dockerfile_name: "Dockerfile".into(),
        }
    }

    #[test]
    fn go_modes() {
        assert_eq!(go_file_mode(0o100_644), 0o644);
        assert_eq!(go_file_mode(0o040_755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o120_777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(0o104_755), (1 << 23) | 0o755);
    }

    #[test]
    fn walk_order_parents_and_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for f in [
            "a/b",
            "a-b",
            "keep/x/y",
            "Dockerfile",
            "Dockerfile.dockerignore",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        // `keep` and `keep/x` were excluded with `keep/x/y` re-included: parents are added.
        let d = dirs(root, &["a", "a-b", "a/b", "keep/x/y", "Dockerfile"]);
        let got = list(&d, CONTEXT, &Filter::default()).unwrap();
        let paths: Vec<&str> = got.stats.iter().map(|(s, _)| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "Dockerfile",
                "a",
                "a/b",
                "a-b",
                "keep",
                "keep/x",
                "keep/x/y"
            ]
        );
        let requestable: Vec<bool> = got.stats.iter().map(|(_, r)| r.is_some()).collect();
        assert_eq!(requestable, [true, false, true, true, false, false, true]);
        assert_eq!(got.stats[3].0.size, 3);

        let only = Filter {
            include: vec!["a".into()],
            exclude: vec!["a/b".into()],
        };
        let got = list(&d, CONTEXT, &only).unwrap();
        let paths: Vec<&str> = got.stats.iter().map(|(s, _)| s.path.as_str()).collect();
        assert_eq!(paths, ["a"]);

        // The Dockerfile's directory serves the Dockerfile and what is named, nothing else.
        let named = Filter {
            include: vec![
                "Dockerfile".into(),
                "Dockerfile.dockerignore".into(),
                "../x".into(),
            ],
            exclude: vec![],
        };
        let got = list(&d, DOCKERFILE, &named).unwrap();
        let paths: Vec<&str> = got.stats.iter().map(|(s, _)| s.path.as_str()).collect();
        assert_eq!(paths, ["Dockerfile", "Dockerfile.dockerignore"]);
        assert!(list(&d, "elsewhere", &Filter::default()).is_err());
    }
}
