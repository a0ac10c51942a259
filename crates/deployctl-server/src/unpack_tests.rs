//! The unpacker against hostile archives, written byte by byte (the tar library refuses to
//! write most of them).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use tar::EntryType;

use crate::unpack::{RejectKind, UploadLimits, app_root, unpack_gz, unpack_tar};

/// One raw entry: `name` and `link` written into the header as they are.
fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        entry(&mut b, name, *kind, link, data);
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A fresh `<tmp>/dest`; the test checks `<tmp>` holds nothing else afterwards.
fn fresh() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    (tmp, dest)
}

fn nothing_outside(tmp: &tempfile::TempDir) {
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["dest"], "written outside the upload's directory");
}

fn refused(entries: &[(&str, EntryType, &str, &[u8])]) -> (RejectKind, String) {
    let (tmp, dest) = fresh();
    let err = unpack_gz(&gz(&tar_of(entries)), &dest, &UploadLimits::default()).unwrap_err();
    nothing_outside(&tmp);
    (err.kind, err.message)
}

const F: EntryType = EntryType::Regular;

#[test]
fn an_app_directory_unpacks_with_its_links_and_modes() {
    let (tmp, dest) = fresh();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "./", EntryType::Directory, "", b"");
    entry(&mut b, "deploy.yaml", F, "", b"version: \"1.0\"\n");
    entry(&mut b, "src/", EntryType::Directory, "", b"");
    entry(&mut b, "src/main.py", F, "", b"print(1)\n");
    let mut h = tar::Header::new_gnu();
    h.set_path("run.sh").unwrap();
    h.set_mode(0o755);
    h.set_size(3);
    h.set_cksum();
    b.append(&h, &b"ls\n"[..]).unwrap();
    entry(&mut b, "lib/current", EntryType::Symlink, "../src", b"");
    entry(&mut b, "copy.py", EntryType::Link, "src/main.py", b"");
    let done = unpack_gz(
        &gz(&b.into_inner().unwrap()),
        &dest,
        &UploadLimits::default(),
    )
    .unwrap();
    nothing_outside(&tmp);
    assert_eq!(done.files, 7, "with the root `./`");
    assert_eq!(done.bytes, 15 + 9 + 3);
    assert_eq!(
        std::fs::read_to_string(dest.join("lib/current/main.py")).unwrap(),
        "print(1)\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("copy.py")).unwrap(),
        "print(1)\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!((mode("run.sh"), mode("src/main.py")), (0o755, 0o644));
    assert_eq!(app_root(&dest), Some(std::path::PathBuf::new()));
}

#[test]
fn the_config_may_sit_in_one_top_level_directory() {
    let (_tmp, dest) = fresh();
    unpack_tar(
        &tar_of(&[("web/deploy.yaml", F, "", b"x")])[..],
        &dest,
        &UploadLimits::default(),
    )
    .unwrap();
    assert_eq!(app_root(&dest), Some(Path::new("web").to_owned()));
    let (_tmp, dest) = fresh();
    unpack_tar(
        &tar_of(&[("a/deploy.yaml", F, "", b"x"), ("b/x", F, "", b"x")])[..],
        &dest,
        &UploadLimits::default(),
    )
    .unwrap();
    assert_eq!(app_root(&dest), None, "two top-level directories");
    let (_tmp, dest) = fresh();
    unpack_tar(
        &tar_of(&[
            ("real.yaml", F, "", b"x"),
            ("deploy.yaml", EntryType::Symlink, "real.yaml", b""),
        ])[..],
        &dest,
        &UploadLimits::default(),
    )
    .unwrap();
    assert_eq!(
        app_root(&dest),
        None,
        "a symlinked deploy.yaml is not the config"
    );
}

#[test]
fn traversal_and_absolute_paths_are_refused_naming_the_entry() {
    let (kind, msg) = refused(&[("deploy.yaml", F, "", b"x"), ("../evil", F, "", b"x")]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(msg.contains("`../evil`") && msg.contains(".."), "{msg}");
    let (kind, msg) = refused(&[("a/../../evil", F, "", b"x")]);
    assert_eq!(kind, RejectKind::Unsafe, "{msg}");
    let (kind, msg) = refused(&[("/tmp/deployctl-evil", F, "", b"x")]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(
        msg.contains("`/tmp/deployctl-evil` is an absolute path"),
        "{msg}"
    );
    assert!(!Path::new("/tmp/deployctl-evil").exists());
}

#[test]
fn symlinks_out_of_the_upload_are_refused() {
    let (kind, msg) = refused(&[("etc", EntryType::Symlink, "/etc", b"")]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(msg.contains("`etc` is a symlink to `/etc`"), "{msg}");
    let (kind, msg) = refused(&[("a/up", EntryType::Symlink, "../../x", b"")]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(
        msg.contains("`a/up`") && msg.contains("outside the upload"),
        "{msg}"
    );
    // Each lexically inside, together outside: here -> ".", up -> "here/.." (the parent).
    let (kind, msg) = refused(&[
        ("here", EntryType::Symlink, ".", b""),
        ("up", EntryType::Symlink, "here/..", b""),
    ]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(
        msg.contains("`up`") && msg.contains("through the archive's links"),
        "{msg}"
    );
    // A loop.
    let (kind, msg) = refused(&[
        ("a", EntryType::Symlink, "b", b""),
        ("b", EntryType::Symlink, "a", b""),
    ]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(msg.contains("loop"), "{msg}");
}

#[test]
fn nothing_is_written_through_a_symlink() {
    // `d` points inside, but a later entry below it is refused rather than followed.
    let (kind, msg) = refused(&[
        ("sub/", EntryType::Directory, "", b""),
        ("d", EntryType::Symlink, "sub", b""),
        ("d/f", F, "", b"x"),
    ]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(msg.contains("`d/f` lies below a symlink"), "{msg}");
    // A file over an existing symlink replaces the link; the link's target is not written.
    let (tmp, dest) = fresh();
    unpack_gz(
        &gz(&tar_of(&[
            ("a", EntryType::Symlink, "b", b""),
            ("a", F, "", b"mine"),
        ])),
        &dest,
        &UploadLimits::default(),
    )
    .unwrap();
    nothing_outside(&tmp);
    assert!(!dest.join("b").exists());
    assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "mine");
}

#[test]
fn hard_links_must_name_a_file_of_the_archive() {
    let (kind, msg) = refused(&[("passwd", EntryType::Link, "/etc/passwd", b"")]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(
        msg.contains("`passwd` is a hard link to `/etc/passwd`"),
        "{msg}"
    );
    let (kind, msg) = refused(&[("x", EntryType::Link, "../outside", b"")]);
    assert_eq!(kind, RejectKind::Unsafe, "{msg}");
    let (kind, msg) = refused(&[("x", EntryType::Link, "later", b""), ("later", F, "", b"")]);
    assert_eq!(kind, RejectKind::Unsafe);
    assert!(
        msg.contains("not a file the archive wrote before it"),
        "{msg}"
    );
    let (kind, _) = refused(&[
        ("sub/", EntryType::Directory, "", b""),
        ("x", EntryType::Link, "sub", b""),
    ]);
    assert_eq!(kind, RejectKind::Unsafe, "a hard link to a directory");
}

#[test]
fn device_files_and_fifos_are_refused() {
    for (kind_of, what) in [
        (EntryType::Char, "device file"),
        (EntryType::Block, "device file"),
        (EntryType::Fifo, "fifo"),
    ] {
        let (kind, msg) = refused(&[("dev/thing", kind_of, "", b"")]);
        assert_eq!(kind, RejectKind::Unsafe);
        assert!(
            msg.contains("`dev/thing` is a") && msg.contains(what),
            "{msg}"
        );
    }
}

#[test]
fn a_bomb_stops_at_the_unpacked_limit() {
    // 64 MiB of zeros is ~64 KiB gzipped.
    let zeros = vec![0u8; 64 << 20];
    let body = gz(&tar_of(&[("bomb", F, "", &zeros)]));
    assert!(body.len() < 1 << 20, "{}", body.len());
    let (tmp, dest) = fresh();
    let limits = UploadLimits {
        unpacked_bytes: 8 << 20,
        ..UploadLimits::default()
    };
    let err = unpack_gz(&body, &dest, &limits).unwrap_err();
    nothing_outside(&tmp);
    assert_eq!(err.kind, RejectKind::TooLarge, "{}", err.message);
    assert!(err.message.contains("8388608 bytes"), "{}", err.message);
    let written = std::fs::metadata(dest.join("bomb")).map_or(0, |m| m.len());
    assert!(written <= 8 << 20, "wrote {written} bytes");
}

#[test]
fn entry_count_and_compressed_size_are_bounded() {
    let many: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, EntryType, &str, &[u8])> = many
        .iter()
        .map(|n| (n.as_str(), F, "", &b"x"[..]))
        .collect();
    let (_tmp, dest) = fresh();
    let limits = UploadLimits {
        files: 10,
        ..UploadLimits::default()
    };
    let err = unpack_gz(&gz(&tar_of(&entries)), &dest, &limits).unwrap_err();
    assert_eq!(err.kind, RejectKind::TooLarge);
    assert!(
        err.message.contains("more than 10 entries"),
        "{}",
        err.message
    );
    let (_tmp, dest) = fresh();
    let limits = UploadLimits {
        compressed_bytes: 10,
        ..UploadLimits::default()
    };
    let err = unpack_gz(&gz(&tar_of(&entries)), &dest, &limits).unwrap_err();
    assert_eq!(err.kind, RejectKind::TooLarge);
}

#[test]
fn garbage_and_truncated_archives_are_malformed() {
    let (_tmp, dest) = fresh();
    let err = unpack_gz(b"PK\x03\x04 a zip", &dest, &UploadLimits::default()).unwrap_err();
    assert_eq!(err.kind, RejectKind::Malformed);
    let body = gz(&tar_of(&[("big", F, "", &[7u8; 100_000])]));
    let (_tmp, dest) = fresh();
    let err = unpack_gz(&body[..body.len() / 2], &dest, &UploadLimits::default()).unwrap_err();
    assert_eq!(err.kind, RejectKind::Malformed, "{}", err.message);
}
