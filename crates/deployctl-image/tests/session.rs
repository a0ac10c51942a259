//! The build context through deployctl's own BuildKit session (file sync), against the real
//! dockerd started by `cargo xtask services up`: the engine asks only for what changed.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use deployctl_core::{BuildSpec, Cancellation, ImageBuilder, VecSink};
use deployctl_image::{DockerBuilder, SessionTransfer};

mod common;
use common::{docker, image_files, session_builder, write};

async fn build(builder: &DockerBuilder, spec: &BuildSpec) -> (String, SessionTransfer) {
    let built = builder
        .build(spec, &VecSink::new(), &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let sent = builder
        .last_transfer()
        .expect("the build went through the session");
    (built.id.as_str().to_owned(), sent)
}

#[tokio::test]
async fn a_one_file_change_transfers_only_that_file() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let body = "x".repeat(10_000);
    for i in 0..120 {
        write(
            root,
            &[(&format!("src/d{}/f{i}.txt", i % 7), body.as_str())],
        );
    }
    write(
        root,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
            (".dockerignore", "ignored\n"),
            ("ignored/big.bin", &"i".repeat(300_000)),
            ("src/changing.txt", "first version"),
        ],
    );
    let builder = session_builder(&docker);
    let spec = BuildSpec::new(root, "Dockerfile");

    // A directory the engine has not seen: every file goes, the ignored one never.
    let (_, first) = build(&builder, &spec).await;
    assert!(first.files >= 122, "{first:?}");
    assert!(first.file_bytes >= 120 * 10_000, "{first:?}");
    assert!(first.file_bytes < 300_000 + 120 * 10_000, "{first:?}");

    // Nothing changed: only metadata crosses.
    let (_, unchanged) = build(&builder, &spec).await;
    assert_eq!(
        (unchanged.files, unchanged.file_bytes),
        (0, 0),
        "{unchanged:?}"
    );
    assert!(
        unchanged.wire_bytes < first.wire_bytes / 20,
        "{unchanged:?} vs {first:?}"
    );

    // One file changed: that file, and nothing else.
    let new = "second version, longer";
    write(root, &[("src/changing.txt", new)]);
    let (id, changed) = build(&builder, &spec).await;
    assert_eq!(changed.files, 1, "{changed:?}");
    assert_eq!(changed.file_bytes, new.len() as u64, "{changed:?}");
    let files = image_files(&docker, &id).await;
    assert_eq!(files[b"app/src/changing.txt".as_slice()], new.as_bytes());
    assert_eq!(files[b"app/src/d0/f0.txt".as_slice()], body.as_bytes());
    assert!(!files.contains_key(b"app/ignored/big.bin".as_slice()));
}

#[tokio::test]
async fn a_dockerfile_in_a_subdirectory_is_served_apart_from_the_context() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("build/Containerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
            ("a.txt", "a"),
            (".dockerignore", "build\n"),
        ],
    );
    let builder = session_builder(&docker);
    let (id, _) = build(&builder, &BuildSpec::new(tmp.path(), "build/Containerfile")).await;
    let files = image_files(&docker, &id).await;
    assert_eq!(files[b"a.txt".as_slice()], b"a");
}
