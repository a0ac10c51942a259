//! The build context through deployctl's own BuildKit session (file sync), against the real
//! dockerd started by `cargo xtask services up`: the engine asks only for what changed.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use deployctl_core::{
    BuildSpec, Cancellation, ImageBuilder, ImageRef, RegistryCredentials, Secret, VecSink,
};
use deployctl_image::{DockerBuilder, SessionTransfer};
use futures::StreamExt;

mod common;
use common::{docker, image_files, session_builder, write};

/// The engine's build cache, which holds the session's context copies: the cache-from test
/// prunes all of it, so it runs alone (write); the others, which count what the engine asks
/// for, hold it while they build (read). The tests of one binary run in parallel.
static ENGINE_CACHE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

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
    let _cache = ENGINE_CACHE.read().await;
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
    let _cache = ENGINE_CACHE.read().await;
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

/// CI: a runner whose engine has no cache reuses the layers of an image pushed with inline
/// cache by an earlier run. A RUN step writes a random stamp: the same stamp after the
/// engine's cache is gone proves the layer came from the registry, not from a rerun.
#[tokio::test]
async fn a_fresh_engine_cache_reuses_layers_via_cache_from() {
    let Some(docker) = docker() else { return };
    let _prunes = ENGINE_CACHE.write().await;
    let Some(registry) = deployctl_testsupport::registry() else {
        return;
    };
    let creds = vec![RegistryCredentials::new(
        &registry.addr,
        &registry.user,
        Secret::new(registry.password.clone()),
        "test",
    )];
    let unique = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let cache =
        ImageRef::parse(&format!("{}/deployctl-test/cache:{unique}", registry.addr)).unwrap();
    // One helper binary for every run (a rebuilt one differs, and so would its layer).
    let helper = tempfile::tempdir().unwrap();
    assert!(
        common::copy_helper(helper.path()),
        "a static helper could not be built"
    );
    let make = |dir: &std::path::Path| {
        std::fs::copy(helper.path().join("cp"), dir.join("cp")).unwrap();
        write(
            dir,
            &[
                (
                    "Dockerfile",
                    "FROM scratch\nCOPY cp /cp\nRUN [\"/cp\", \"/proc/sys/kernel/random/uuid\", \"/stamp\"]\nCOPY app.txt /app.txt\n",
                ),
                ("app.txt", "v1"),
            ],
        );
    };
    let spec_in = |dir: &std::path::Path| {
        let mut spec = BuildSpec::new(dir, "Dockerfile");
        spec.network = Some("none".to_owned()); // the test engine has no bridge
        spec
    };

    // The first run: build with inline cache, push.
    let first_dir = tempfile::tempdir().unwrap();
    make(first_dir.path());
    let mut spec = spec_in(first_dir.path());
    spec.tags = vec![cache.clone()];
    spec.inline_cache = true;
    let builder = session_builder(&docker).with_registry_credentials(creds.clone());
    let (first, _) = build(&builder, &spec).await;
    let stamp = image_files(&docker, &first).await[b"stamp".as_slice()].clone();
    let auth = bollard::auth::DockerCredentials {
        username: Some(registry.user.clone()),
        password: Some(registry.password.clone()),
        serveraddress: Some(registry.addr.clone()),
        ..Default::default()
    };
    let mut push = docker.push_image(
        &cache.name(),
        Some(
            bollard::query_parameters::PushImageOptionsBuilder::new()
                .tag(&unique)
                .build(),
        ),
        Some(auth),
    );
    while let Some(item) = push.next().await {
        let item = item.unwrap();
        assert!(item.error_detail.is_none(), "push failed: {item:?}");
    }

    // A fresh engine: the image and every build cache record gone.
    docker
        .remove_image(
            &first,
            Some(
                bollard::query_parameters::RemoveImageOptionsBuilder::new()
                    .force(true)
                    .build(),
            ),
            None,
        )
        .await
        .unwrap();
    docker
        .prune_build(Some(
            bollard::query_parameters::PruneBuildOptionsBuilder::new()
                .all(true)
                .build(),
        ))
        .await
        .unwrap();

    let second_dir = tempfile::tempdir().unwrap();
    make(second_dir.path());
    let mut spec = spec_in(second_dir.path());
    spec.cache_from = vec![cache.clone()];
    let (second, _) = build(&builder, &spec).await;
    let files = image_files(&docker, &second).await;
    assert_eq!(
        files[b"stamp".as_slice()],
        stamp,
        "the RUN layer came from the registry's inline cache"
    );
    assert_eq!(files[b"app.txt".as_slice()], b"v1");

    // The control: after another prune, the same build without cache_from runs the step.
    docker
        .prune_build(Some(
            bollard::query_parameters::PruneBuildOptionsBuilder::new()
                .all(true)
                .build(),
        ))
        .await
        .unwrap();
    let third_dir = tempfile::tempdir().unwrap();
    make(third_dir.path());
    let (third, _) = build(&builder, &spec_in(third_dir.path())).await;
    assert_ne!(
        image_files(&docker, &third).await[b"stamp".as_slice()],
        stamp,
        "without cache_from the step runs again"
    );
}

/// Thousands of entries: more stats than any buffer on either side holds, thousands of
/// requests arriving while stats and files are still being sent (unread, their tiny frames
/// once tripped h2's flood protection: `too_many_data_frames`, the build "context canceled").
#[tokio::test]
async fn a_context_of_thousands_of_files_goes_through_the_session() {
    let Some(docker) = docker() else { return };
    let _cache = ENGINE_CACHE.read().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let body = "y".repeat(100);
    for i in 0..16_000 {
        let half = if i % 2 == 0 { "keep" } else { "drop" };
        write(
            root,
            &[(
                &format!("{half}/d{:03}/f{i:05}.bin", (i / 2) / 100),
                body.as_str(),
            )],
        );
    }
    write(
        root,
        &[
            ("Dockerfile", "FROM scratch\nCOPY keep /keep\n"),
            (".dockerignore", "drop\n"),
        ],
    );
    let builder = session_builder(&docker);
    let (id, sent) = build(&builder, &BuildSpec::new(root, "Dockerfile")).await;
    assert_eq!(sent.files, 8_000 + 2, "{sent:?}");
    let files = image_files(&docker, &id).await;
    assert_eq!(
        files.keys().filter(|k| k.starts_with(b"keep/")).count(),
        8_000
    );
}

/// Every build's session connection ends with the build: the task that drives it (spawned by
/// the gRPC server, outliving its accept loop) is gone once the build has returned.
#[tokio::test]
async fn the_session_connection_ends_with_each_build() {
    let Some(docker) = docker() else { return };
    let _cache = ENGINE_CACHE.read().await;
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
            ("a.txt", "a"),
        ],
    );
    let builder = session_builder(&docker);
    let spec = BuildSpec::new(tmp.path(), "Dockerfile");
    for _ in 0..3 {
        build(&builder, &spec).await;
    }
    // The other tests of this binary may hold sessions meanwhile: wait for none at all.
    let mut open = deployctl_image::open_sessions();
    for _ in 0..100 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        open = deployctl_image::open_sessions();
    }
    assert_eq!(open, 0, "session connections left open after their builds");
}
