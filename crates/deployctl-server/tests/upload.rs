//! `.tar.gz` uploads over HTTP: hostile archives (400/413 naming the entry, nothing written
//! outside the uploads directory, nothing left in it), an invalid deploy.yaml (422 naming the
//! file as in the archive), wrong content types (415), the job seeing the unpacked directory
//! and the directory removed when the job ends, and a queued upload surviving a server that
//! stopped dead (its runtime dropped mid-job) and running after the restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{config, sqlite, start, token, until};
use deployctl_core::Cancellation;
use deployctl_server::unpack::UploadLimits;
use deployctl_server::{Job, JobEvents, Outcome, Role, Runner, ServerConfig};
use serde_json::{Value, json};
use tar::EntryType;
use tokio::sync::Semaphore;

/// One job as the runner saw it: id, directory, the files in it.
type Seen = (String, Option<PathBuf>, Vec<String>);

/// One raw tar entry: name, type, link target, content.
type Raw<'a> = (&'a str, EntryType, &'a str, &'a [u8]);

/// A runner that records what each job's directory held, then waits for the test.
#[derive(Debug)]
struct DirRunner {
    seen: Mutex<Vec<Seen>>,
    gate: Arc<Semaphore>,
}

impl Default for DirRunner {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl DirRunner {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(at).unwrap().map(Result::unwrap) {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[async_trait]
impl Runner for DirRunner {
    async fn run(&self, job: Job, _events: JobEvents, cancel: Cancellation) -> Outcome {
        let files = job.dir.as_deref().map(listing).unwrap_or_default();
        self.seen
            .lock()
            .unwrap()
            .push((job.id.clone(), job.dir.clone(), files));
        tokio::select! {
            p = self.gate.acquire() => { if let Ok(p) = p { p.forget(); } Outcome::succeeded(json!({ "targets": [] })) }
            () = cancel.cancelled() => Outcome::cancelled(json!({ "targets": [] })),
        }
    }
}

fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn targz(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        raw_entry(&mut b, name, *kind, link, data);
    }
    let tar = b.into_inner().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&tar).unwrap();
    e.finish().unwrap()
}

const F: EntryType = EntryType::Regular;

/// POST of raw bytes: (status, JSON body).
async fn post(
    addr: SocketAddr,
    path: &str,
    token: &str,
    ctype: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let path = path.to_owned();
    let token = token.to_owned();
    let ctype = ctype.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // A server may answer (413) before reading everything.
        let _ = s.write_all(&body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
    })
    .await
    .unwrap()
}

struct Setup {
    server: common::TestServer,
    runner: Arc<DirRunner>,
    secret: String,
    uploads: PathBuf,
    _data: tempfile::TempDir,
}

async fn setup(limits: UploadLimits) -> Setup {
    let (store, data) = sqlite().await;
    let secret = token(&store, "shop", Role::Deploy).await;
    let uploads = data.path().join("uploads");
    let runner = Arc::new(DirRunner::default());
    let config = ServerConfig::new(2, false).with_uploads(uploads.clone(), limits);
    let server = start(Arc::new(store), runner.clone(), config).await;
    Setup {
        server,
        runner,
        secret,
        uploads,
        _data: data,
    }
}

const PATH: &str = "/api/v1/projects/shop/apps/web/deployments";

fn left_in(uploads: &Path) -> Vec<String> {
    std::fs::read_dir(uploads)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upload_is_unpacked_for_its_job_and_removed_after_it() {
    let s = setup(UploadLimits::default()).await;
    let yaml = config("web");
    // The app directory in one top-level directory, as `tar -czf web.tgz web` packs it.
    let body = targz(&[
        ("web/", EntryType::Directory, "", b""),
        ("web/deploy.yaml", F, "", yaml.as_bytes()),
        ("web/src/app.py", F, "", b"print('hi')\n"),
        ("web/current", EntryType::Symlink, "src", b""),
    ]);
    let (status, v) = post(
        s.server.addr,
        &format!("{PATH}?target=local"),
        &s.secret,
        "application/gzip",
        body,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    until("the job to start", async || !s.runner.seen().is_empty()).await;
    let (seen_id, dir, files) = s.runner.seen()[0].clone();
    assert_eq!(seen_id, id);
    let dir = dir.unwrap();
    assert_eq!(dir, s.uploads.join(&id).join("web"));
    assert_eq!(files, ["current", "deploy.yaml", "src", "src/app.py"]);
    let d = s
        .server
        .state
        .store()
        .deployment(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.request["upload"]["config"], "web/deploy.yaml",
        "{}",
        d.request
    );
    assert_eq!(d.request["target"], "local");
    assert_eq!(d.request["config"], yaml);
    // The other media type; the job after it waits (one per app).
    let body = targz(&[("deploy.yaml", F, "", yaml.as_bytes())]);
    let (status, v) = post(
        s.server.addr,
        PATH,
        &s.secret,
        "application/x-tar+gzip",
        body,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let second = v["id"].as_str().unwrap().to_owned();
    assert!(s.uploads.join(&second).join("deploy.yaml").is_file());
    s.runner.gate.add_permits(2);
    until("both jobs to end", async || {
        let d = s
            .server
            .state
            .store()
            .deployment(&second)
            .await
            .unwrap()
            .unwrap();
        d.status.is_final()
    })
    .await;
    until("the uploads to be removed", async || {
        left_in(&s.uploads).is_empty()
    })
    .await;
    assert_eq!(s.runner.seen()[1].1, Some(s.uploads.join(&second)));
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let s = setup(UploadLimits {
        unpacked_bytes: 4 << 20,
        files: 50,
        ..UploadLimits::default()
    })
    .await;
    let yaml = config("web");
    let ok: Raw = ("deploy.yaml", F, "", yaml.as_bytes());
    let zeros = vec![0u8; 32 << 20];
    let many: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let mut too_many = vec![ok];
    too_many.extend(many.iter().map(|n| (n.as_str(), F, "", &b""[..])));
    let cases: Vec<(&str, Vec<Raw>, u16, &str)> = vec![
        (
            "traversal",
            vec![ok, ("../../escaped", F, "", b"x")],
            400,
            "`../../escaped` climbs out",
        ),
        (
            "absolute",
            vec![ok, ("/tmp/deployctl-upload-abs", F, "", b"x")],
            400,
            "is an absolute path",
        ),
        (
            "symlink escape",
            vec![ok, ("etc", EntryType::Symlink, "../../../etc", b"")],
            400,
            "`etc` is a symlink to `../../../etc`, outside the upload",
        ),
        (
            "symlink then write through it",
            vec![
                ok,
                ("d", EntryType::Symlink, ".", b""),
                ("d/x", F, "", b"x"),
            ],
            400,
            "`d/x` lies below a symlink",
        ),
        (
            "hard link escape",
            vec![ok, ("pw", EntryType::Link, "/etc/passwd", b"")],
            400,
            "`pw` is a hard link to `/etc/passwd`",
        ),
        (
            "device file",
            vec![ok, ("null", EntryType::Char, "", b"")],
            400,
            "`null` is a device file",
        ),
        (
            "fifo",
            vec![ok, ("pipe", EntryType::Fifo, "", b"")],
            400,
            "`pipe` is a fifo",
        ),
        (
            "zip bomb",
            vec![ok, ("bomb", F, "", &zeros)],
            413,
            "4194304 bytes",
        ),
        ("too many files", too_many, 413, "more than 50 entries"),
        (
            "no deploy.yaml",
            vec![("app.py", F, "", b"x")],
            400,
            "holds no deploy.yaml",
        ),
    ];
    for (what, entries, want, says) in cases {
        let body = targz(&entries);
        let (status, v) = post(s.server.addr, PATH, &s.secret, "application/gzip", body).await;
        assert_eq!(status, want, "{what}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{what}: {msg}");
        assert!(
            left_in(&s.uploads).is_empty(),
            "{what}: left {:?}",
            left_in(&s.uploads)
        );
        let parent: Vec<String> = left_in(s.uploads.parent().unwrap());
        assert!(
            parent
                .iter()
                .all(|n| n == "uploads" || n.starts_with("deployctl.db")),
            "{what}: written beside the uploads: {parent:?}"
        );
    }
    assert!(!Path::new("/tmp/deployctl-upload-abs").exists());
    assert!(s.runner.seen().is_empty(), "a refused upload ran");
    // Not gzip at all.
    let (status, v) = post(
        s.server.addr,
        PATH,
        &s.secret,
        "application/gzip",
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // The audit rows name the refusals.
    let rows = s.server.state.store().audit_rows().await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.status == 400 && r.result.contains("`pw` is a hard link")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn an_invalid_config_is_422_named_as_in_the_archive_and_content_types_are_checked() {
    let s = setup(UploadLimits {
        compressed_bytes: 64 << 10,
        ..UploadLimits::default()
    })
    .await;
    let bad = format!("{}local:\n  enabled: yes-please\n", config("web"));
    let body = targz(&[("web/deploy.yaml", F, "", bad.as_bytes())]);
    let (status, v) = post(s.server.addr, PATH, &s.secret, "application/gzip", body).await;
    assert_eq!(status, 422, "{v}");
    let text = v["error"]["diagnostics"]["text"].to_string();
    assert!(text.contains("web/deploy.yaml:"), "{v}");
    assert_eq!(
        v["error"]["diagnostics"]["items"][0]["file"], "web/deploy.yaml",
        "{v}"
    );
    let body = targz(&[("deploy.yaml", F, "", config("api").as_bytes())]);
    let (status, v) = post(s.server.addr, PATH, &s.secret, "application/gzip", body).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("for the app `api`"),
        "{v}"
    );
    // A build context out of the upload.
    let out = format!("{}build:\n  context: ../..\n", config("web"));
    let body = targz(&[("deploy.yaml", F, "", out.as_bytes())]);
    let (status, v) = post(s.server.addr, PATH, &s.secret, "application/gzip", body).await;
    assert_eq!(status, 422, "{v}");
    assert!(left_in(&s.uploads).is_empty());

    let body = targz(&[("deploy.yaml", F, "", config("web").as_bytes())]);
    for ctype in ["application/zip", "text/plain", "application/octet-stream"] {
        let (status, v) = post(s.server.addr, PATH, &s.secret, ctype, body.clone()).await;
        assert_eq!(status, 415, "{ctype}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/gzip"),
            "{v}"
        );
    }
    // A JSON body may not claim to be an upload.
    let forged = json!({ "config": config("web"), "upload": { "config": "deploy.yaml", "files": 1, "bytes": 1 } });
    let (status, v) = post(
        s.server.addr,
        PATH,
        &s.secret,
        "application/json",
        forged.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // Over the compressed limit (the body limit): 413 with the error body.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..(128u32 << 10))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let body = targz(&[
        ("deploy.yaml", F, "", config("web").as_bytes()),
        ("noise", F, "", &noise),
    ]);
    assert!(body.len() > 64 << 10);
    let (status, v) = post(s.server.addr, PATH, &s.secret, "application/gzip", body).await;
    assert_eq!(status, 413, "{v}");
    assert!(
        v["error"]["hint"].as_str().unwrap().contains("65536 bytes"),
        "{v}"
    );
    assert!(s.runner.seen().is_empty());
}

#[test]
fn a_queued_upload_survives_a_dead_server_and_runs_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let uploads = data.path().join("uploads");
    let yaml = config("web");
    let body = || {
        targz(&[
            ("deploy.yaml", F, "", yaml.as_bytes()),
            ("app.py", F, "", b"x"),
        ])
    };
    let limits = UploadLimits::default();

    // First server: the first upload runs (and never ends), the second waits behind it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (first, second, secret) = rt.block_on(async {
        let store = deployctl_server::SqlStore::sqlite(data.path())
            .await
            .unwrap();
        let secret = token(&store, "shop", Role::Deploy).await;
        let runner = Arc::new(DirRunner::default());
        let config = ServerConfig::new(2, false).with_uploads(uploads.clone(), limits);
        let server = start(Arc::new(store), runner.clone(), config).await;
        let (_, v) = post(server.addr, PATH, &secret, "application/gzip", body()).await;
        let first = v["id"].as_str().unwrap().to_owned();
        until("the first job to run", async || !runner.seen().is_empty()).await;
        let (status, v) = post(server.addr, PATH, &secret, "application/gzip", body()).await;
        assert_eq!(status, 202, "{v}");
        (first, v["id"].as_str().unwrap().to_owned(), secret)
    });
    // The server dies: its tasks stop where they are, nothing is cleaned up.
    rt.shutdown_background();
    assert!(uploads.join(&first).is_dir() && uploads.join(&second).is_dir());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = deployctl_server::SqlStore::sqlite(data.path())
            .await
            .unwrap();
        let runner = Arc::new(DirRunner::default());
        runner.gate.add_permits(1);
        let config = ServerConfig::new(2, false).with_uploads(uploads.clone(), limits);
        let server = start(Arc::new(store), runner.clone(), config).await;
        let store = server.state.store().clone();
        let d = store.deployment(&first).await.unwrap().unwrap();
        assert_eq!(d.status.as_str(), "interrupted");
        assert!(
            !uploads.join(&first).exists(),
            "the interrupted job's upload is kept"
        );
        until("the queued upload to run", async || {
            store
                .deployment(&second)
                .await
                .unwrap()
                .unwrap()
                .status
                .as_str()
                == "succeeded"
        })
        .await;
        let seen = runner.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, second);
        assert_eq!(seen[0].2, ["app.py", "deploy.yaml"]);
        until("its upload to be removed", async || {
            left_in(&uploads).is_empty()
        })
        .await;
        let _ = secret;
    });
}
