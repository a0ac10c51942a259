//! Regressions against the real dockerd started by `cargo xtask services up`: secret build
//! args, sparse files, file names that are not UTF-8, cancellation, an engine without a
//! bridge network.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use deployctl_core::{
    BuildArg, BuildSpec, BuiltImage, Cancellation, ErrorKind, ImageBuilder, Secret, StageError,
    VecSink,
};
use deployctl_image::{BuilderChoice, DockerBuilder};

mod common;
use common::{copy_helper, docker, image_files, write};

async fn build(
    builder: &DockerBuilder,
    spec: &BuildSpec,
    events: &VecSink,
) -> Result<BuiltImage, StageError> {
    builder.build(spec, events, &Cancellation::new()).await
}

#[tokio::test]
async fn secret_build_args_are_served_through_the_session_and_never_stored() {
    let Some(docker) = docker() else { return };
    // bollard's gRPC build driver (a builder without a session socket of its own).
    secret_build(&DockerBuilder::new(docker.clone()), &docker).await;
}

#[tokio::test]
async fn secret_build_args_through_our_own_session_with_the_file_sync() {
    let Some(docker) = docker() else { return };
    let builder = common::session_builder(&docker);
    secret_build(&builder, &docker).await;
    assert!(
        builder.last_transfer().is_some_and(|t| t.files >= 2),
        "the context went through the file sync: {:?}",
        builder.last_transfer()
    );
}

/// A build whose RUN steps read a secret mount: the value reaches them and nothing keeps it.
async fn secret_build(builder: &DockerBuilder, docker: &bollard::Docker) {
    let tmp = tempfile::tempdir().unwrap();
    assert!(
        copy_helper(tmp.path()),
        "a static helper could not be built"
    );
    write(
        tmp.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY cp /cp\nARG PLAIN\nLABEL plain=$PLAIN\n\
             RUN --mount=type=secret,id=NPM_TOKEN,required=true [\"/cp\", \"/run/secrets/NPM_TOKEN\", \"/token\"]\n\
             RUN --mount=type=secret,id=NPM_TOKEN,target=/elsewhere [\"/cp\", \"/elsewhere\", \"/token-target\"]\n",
        )],
    );
    let marker = "npm-s3cret-marker-7c1f";
    let mut spec = BuildSpec::new(tmp.path(), "Dockerfile");
    spec.network = Some("none".to_owned()); // the test engine has no bridge
    spec.build_args = BTreeMap::from([
        (
            "NPM_TOKEN".to_owned(),
            BuildArg::Secret(Secret::new(marker)),
        ),
        ("PLAIN".to_owned(), BuildArg::Plain("vanilla".to_owned())),
    ]);
    let events = VecSink::new();
    let built = build(builder, &spec, &events)
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let id = built.id.as_str();

    // Served through the session: both RUN mounts read the value. (`env=` needs a newer
    // Dockerfile frontend than this engine's built-in one, and no image can be pulled here.)
    let files = image_files(docker, id).await;
    assert_eq!(files[b"token".as_slice()], marker.as_bytes());
    assert_eq!(files[b"token-target".as_slice()], marker.as_bytes());

    // Never stored: not in the config, not in `docker history --no-trunc`.
    let inspect = docker.inspect_image(id).await.unwrap();
    assert_eq!(
        inspect.config.as_ref().unwrap().labels.as_ref().unwrap()["plain"],
        "vanilla"
    );
    let config = serde_json::to_string(&inspect).unwrap();
    assert!(
        !config.contains(marker),
        "secret in the image config: {config}"
    );
    let history = docker.image_history(id).await.unwrap();
    assert!(history.iter().any(|h| h.created_by.contains("NPM_TOKEN")));
    for h in &history {
        assert!(
            !h.created_by.contains(marker),
            "secret in history: {}",
            h.created_by
        );
    }
    let text = format!("{:?}", events.events());
    assert!(!text.contains(marker), "secret in events");
    assert!(
        text.contains("NPM_TOKEN"),
        "the session's secrets are announced: {text}"
    );
}

#[tokio::test]
async fn the_classic_builder_refuses_secret_build_args() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("Dockerfile", "FROM scratch\nARG NPM_TOKEN\nLABEL x=y\n")],
    );
    let mut spec = BuildSpec::new(tmp.path(), "Dockerfile");
    let marker = "classic-s3cret-marker";
    spec.build_args = BTreeMap::from([(
        "NPM_TOKEN".to_owned(),
        BuildArg::Secret(Secret::new(marker)),
    )]);
    let builder = DockerBuilder::new(docker).with_builder(BuilderChoice::Classic);
    let err = build(&builder, &spec, &VecSink::new()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    let all = format!("{} {}", err.message, err.hint.clone().unwrap_or_default());
    assert!(err.message.contains("NPM_TOKEN"), "{all}");
    assert!(
        all.contains("DOCKER_BUILDKIT=1") && all.contains("non-secret"),
        "{all}"
    );
    assert!(!format!("{:?}", err.chain()).contains(marker));
}

#[tokio::test]
async fn sparse_files_are_sent_as_regular_files() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("Dockerfile", "FROM scratch\nCOPY sparse.bin /sparse.bin\n")],
    );
    let size = 64 * 1024 * 1024;
    let mut f = std::fs::File::create(tmp.path().join("sparse.bin")).unwrap();
    f.set_len(size).unwrap();
    f.seek(SeekFrom::Start(size / 2)).unwrap();
    f.write_all(b"middle").unwrap();
    f.seek(SeekFrom::Start(size - 3)).unwrap();
    f.write_all(b"end").unwrap();
    drop(f);
    let built = build(
        &DockerBuilder::new(docker.clone()),
        &BuildSpec::new(tmp.path(), "Dockerfile"),
        &VecSink::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let files = image_files(&docker, built.id.as_str()).await;
    let data = &files[b"sparse.bin".as_slice()];
    assert_eq!(data.len() as u64, size);
    let half = usize::try_from(size / 2).unwrap();
    assert_eq!(&data[half..half + 6], b"middle");
    assert!(data.ends_with(b"end"));
}

#[tokio::test]
async fn file_names_that_are_not_utf8_are_sent_as_they_are() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("Dockerfile", "FROM scratch\nCOPY . /ctx/\n")],
    );
    let name = OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::create_dir(tmp.path().join(OsStr::from_bytes(b"d\xff"))).unwrap();
    std::fs::write(tmp.path().join(name), "latin-1").unwrap();
    std::fs::write(
        tmp.path().join(OsStr::from_bytes(b"d\xff/in.txt")),
        "inside",
    )
    .unwrap();
    for choice in [BuilderChoice::Auto, BuilderChoice::Classic] {
        let built = build(
            &DockerBuilder::new(docker.clone()).with_builder(choice),
            &BuildSpec::new(tmp.path(), "Dockerfile"),
            &VecSink::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{choice:?}: {:?}", e.chain()));
        let files = image_files(&docker, built.id.as_str()).await;
        assert_eq!(
            files[b"ctx/caf\xe9.txt".as_slice()],
            b"latin-1",
            "{choice:?}"
        );
        assert_eq!(
            files[b"ctx/d\xff/in.txt".as_slice()],
            b"inside",
            "{choice:?}"
        );
    }
}

/// A Dockerfile whose RUN step never ends: the fixture server listens forever.
fn endless_build(dir: &Path) -> BuildSpec {
    let app = deployctl_testsupport::hello_app();
    assert!(
        app.join("hello").is_file(),
        "run `cargo xtask fixtures` first"
    );
    std::fs::copy(app.join("hello"), dir.join("hello")).unwrap();
    write(
        dir,
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY hello /hello\nARG NPM_TOKEN\nRUN [\"/hello\"]\n",
        )],
    );
    let mut spec = BuildSpec::new(dir, "Dockerfile");
    spec.network = Some("none".to_owned());
    spec.no_cache = true;
    spec
}

async fn cancelled_after_start(spec: &BuildSpec) -> StageError {
    let docker = docker().unwrap();
    let cancel = Cancellation::new();
    let builder = DockerBuilder::new(docker);
    let events = VecSink::new();
    let started = Instant::now();
    let build = builder.build(spec, &events, &cancel);
    let stop = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cancel.cancel();
    };
    let (result, ()) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(build, stop) })
            .await
            .expect("the build stops when cancelled");
    assert!(started.elapsed() < Duration::from_secs(30));
    result.unwrap_err()
}

#[tokio::test]
async fn a_cancelled_build_is_reported_as_cancelled() {
    if docker().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = cancelled_after_start(&endless_build(tmp.path())).await;
    assert_eq!(err.kind, ErrorKind::Cancelled, "{:?}", err.chain());
    assert!(
        !err.message.contains("is the Docker engine running"),
        "{}",
        err.message
    );

    // The same through the build session that serves secrets.
    let mut spec = endless_build(tmp.path());
    spec.build_args = BTreeMap::from([(
        "NPM_TOKEN".to_owned(),
        BuildArg::Secret(Secret::new("cancel-s3cret")),
    )]);
    let err = cancelled_after_start(&spec).await;
    assert_eq!(err.kind, ErrorKind::Cancelled, "{:?}", err.chain());
}

#[tokio::test]
async fn an_engine_without_a_bridge_network_gets_the_documented_hint() {
    let Some(docker) = docker() else { return };
    let app = deployctl_testsupport::hello_app();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(app.join("hello"), tmp.path().join("hello")).unwrap();
    write(
        tmp.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY hello /hello\nRUN [\"/hello\", \"--fail\"]\n",
        )],
    );
    // No `build.network`: RUN steps ask for the default (bridge) network.
    let mut spec = BuildSpec::new(tmp.path(), "Dockerfile");
    spec.no_cache = true;
    let err = build(&DockerBuilder::new(docker), &spec, &VecSink::new())
        .await
        .unwrap_err();
    let hint = err.hint.clone().unwrap_or_default();
    assert!(
        hint.contains("build.network: none"),
        "{}\nhint: {hint}",
        err.message
    );
    assert_ne!(err.kind, ErrorKind::Environment, "{}", err.message);
}

#[tokio::test]
async fn a_context_file_that_cannot_be_sent_is_named() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("Dockerfile", "FROM scratch\nCOPY . /ctx/\n")],
    );
    // A socket cannot go into a tar.
    let _listener = std::os::unix::net::UnixListener::bind(tmp.path().join("app.sock")).unwrap();
    let err = build(
        &DockerBuilder::new(docker),
        &BuildSpec::new(tmp.path(), "Dockerfile"),
        &VecSink::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{:?}", err.chain());
    assert!(err.message.contains("app.sock"), "{:?}", err.chain());
    assert!(
        err.hint
            .clone()
            .unwrap_or_default()
            .contains(".dockerignore"),
        "{:?}",
        err.hint
    );
}
