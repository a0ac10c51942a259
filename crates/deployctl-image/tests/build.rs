//! Builds against the real dockerd started by `cargo xtask services up`.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::collections::BTreeMap;
use std::path::Path;

use bollard::Docker;
use deployctl_core::{
    BuildArg, BuildSpec, Cancellation, ErrorKind, EventKind, ImageBuilder, ImageRef, Platform,
    Secret, VecSink,
};
use deployctl_image::{BuilderChoice, DockerBuilder, default_tags, oci_labels};

mod common;
use common::{docker, files_in_image, write};

fn all_text(events: &VecSink) -> String {
    serde_json_lines(events)
}

fn serde_json_lines(events: &VecSink) -> String {
    events
        .events()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds `dir`'s Dockerfile with `builder`, with no options.
async fn build_in(
    builder: &DockerBuilder,
    dir: &Path,
) -> Result<deployctl_core::BuiltImage, deployctl_core::StageError> {
    builder
        .build(
            &BuildSpec::new(dir, "Dockerfile"),
            &VecSink::new(),
            &Cancellation::new(),
        )
        .await
}

#[tokio::test]
async fn builds_the_hello_fixture_with_labels_and_tags() {
    let Some(docker) = docker() else { return };
    let app = deployctl_testsupport::hello_app();
    assert!(
        app.join("hello").is_file(),
        "run `cargo xtask fixtures` first"
    );
    let repo = ImageRef::parse("127.0.0.1:5000/deployctl-test/hello").unwrap();
    let mut spec = BuildSpec::new(&app, "Dockerfile");
    spec.tags = default_tags(&repo, "0.1.0", None);
    spec.labels = oci_labels("0.1.0", None);
    spec.labels.insert("team".into(), "platform".into());
    spec.platform = Some(Platform::linux_amd64());
    let events = VecSink::new();
    let built = DockerBuilder::new(docker.clone())
        .build(&spec, &events, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let inspect = docker.inspect_image(built.id.as_str()).await.unwrap();
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels["team"], "platform");
    assert_eq!(labels["org.opencontainers.image.version"], "0.1.0");
    // No git info: no wall-clock `created`, so a rebuild of the same sources is the same image.
    assert!(!labels.contains_key("org.opencontainers.image.created"));
    assert!(
        inspect
            .repo_tags
            .unwrap()
            .contains(&"127.0.0.1:5000/deployctl-test/hello:0.1.0".to_owned())
    );
    let steps: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Progress(p) if p.unit.as_deref() == Some("step") => {
                Some((p.current, p.total))
            }
            _ => None,
        })
        .collect();
    assert!(
        !steps.is_empty() && steps.iter().all(|(_, t)| *t == steps[0].1),
        "{steps:?}"
    );
    let notice = all_text(&events);
    assert!(
        notice.contains("using BuildKit"),
        "the engine here supports BuildKit and the choice must be announced: {notice}"
    );
    // Only .dockerignore-allowed files reached the image: the binary, not the sources.
    let files = files_in_image(&docker, built.id.as_str(), "").await;
    assert_eq!(files, ["hello"], "{files:?}");
}

#[tokio::test]
async fn build_args_and_target_stage_reach_the_engine_and_secrets_stay_hidden() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("a.txt", "a"),
            ("b.txt", "b"),
            (
                "Dockerfile",
                "FROM scratch AS first\nARG FLAVOUR\nARG TOKEN\nLABEL flavour=$FLAVOUR\nCOPY a.txt /a.txt\n\nFROM scratch AS second\nARG FLAVOUR\nLABEL stage=second flavour=$FLAVOUR\nCOPY b.txt /b.txt\n",
            ),
        ],
    );
    let mut spec = BuildSpec::new(tmp.path(), "Dockerfile");
    spec.build_args = BTreeMap::from([
        ("FLAVOUR".to_owned(), BuildArg::Plain("vanilla".to_owned())),
        (
            "TOKEN".to_owned(),
            BuildArg::Secret(Secret::new("tok-s3cret-4242")),
        ),
    ]);
    spec.target = Some("first".to_owned());
    let events = VecSink::new();
    let built = DockerBuilder::new(docker.clone())
        .build(&spec, &events, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let labels = docker
        .inspect_image(built.id.as_str())
        .await
        .unwrap()
        .config
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(
        labels["flavour"], "vanilla",
        "build arg reached the Dockerfile"
    );
    assert!(
        !labels.contains_key("stage"),
        "target stage `first` must stop before `second`"
    );
    assert_eq!(
        files_in_image(&docker, built.id.as_str(), "").await,
        ["a.txt"]
    );
    assert!(
        !all_text(&events).contains("tok-s3cret-4242"),
        "secret build arg echoed"
    );
}

#[tokio::test]
async fn dockerignore_table_decides_what_reaches_the_engine() {
    let Some(docker) = docker() else { return };
    // Streamed as a tar: the excluded Dockerfile and .dockerignore make it the classic builder.
    let text = dockerignore_table(&DockerBuilder::new(docker.clone()), &docker).await;
    assert!(text.contains("using the classic builder"), "{text}");
}

#[tokio::test]
async fn dockerignore_table_through_the_build_session_with_buildkit() {
    let Some(docker) = docker() else { return };
    // Served through the session: BuildKit, although .dockerignore excludes the Dockerfile
    // and itself (the session serves the Dockerfile apart from the context).
    let text = dockerignore_table(&common::session_builder(&docker), &docker).await;
    assert!(
        text.contains("serving the context through the build session"),
        "{text}"
    );
    assert!(!text.contains("classic"), "{text}");
}

/// Builds the 21-file `.dockerignore` table with `builder` and checks what reached the image;
/// the build's events as text.
async fn dockerignore_table(builder: &DockerBuilder, docker: &Docker) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let files = [
        "app/main.rs",
        "app/lib.rs",
        "app/debug.log",
        "app/important.log",
        "docs/a.md",
        "docs/deep/b.md",
        "docs/keep/c.txt",
        "node_modules/x/index.js",
        "node_modules/keep.js",
        ".env",
        "secret.pem",
        "build/out.bin",
        "build/keep.me",
        "temp1",
        "tempx/file",
        "README.md",
        "nested/dir/cache.tmp",
        "nested/dir/data.json",
        "debug.log",
        "Dockerfile",
        ".dockerignore",
    ];
    let ignore = "# comment\n*.log\n!app/important.log\ndocs/**/*.md\nnode_modules\n!node_modules/keep.js\n.env\n*.pem\nbuild\n!build/*.me\ntemp?\n**/*.tmp\n/README.md\nDockerfile\n.dockerignore\n";
    for f in files {
        let contents = match f {
            "Dockerfile" => "FROM scratch\nCOPY . /ctx/\n",
            ".dockerignore" => ignore,
            _ => "x",
        };
        write(tmp.path(), &[(f, contents)]);
    }
    let spec = BuildSpec::new(tmp.path(), "Dockerfile");
    let events = VecSink::new();
    let built = builder
        .build(&spec, &events, &Cancellation::new())
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let got = files_in_image(docker, built.id.as_str(), "ctx/").await;
    // The Dockerfile and .dockerignore are listed too: they are still sent (the build could
    // read the Dockerfile), and the engine leaves them out of `COPY`, as Docker does.
    // `*.log` matches at the context root only, so app/debug.log stays.
    let want = [
        "app/debug.log",
        "app/important.log",
        "app/lib.rs",
        "app/main.rs",
        "build/keep.me",
        "docs/keep/c.txt",
        "nested/dir/data.json",
        "node_modules/keep.js",
    ];
    assert_eq!(got, want);
    all_text(&events)
}

#[tokio::test]
async fn a_failing_step_is_named_with_its_output() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY present.txt /p\nCOPY missing-file.txt /m\n",
            ),
            ("present.txt", "p"),
        ],
    );
    let err = build_in(&DockerBuilder::new(docker.clone()), tmp.path())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(
        err.message.contains("COPY missing-file.txt /m"),
        "{}",
        err.message
    );
    assert!(err.message.contains("missing-file.txt"), "{}", err.message);

    write(
        tmp.path(),
        &[("Dockerfile", "FROM scratch\nFROBNICATE everything\n")],
    );
    let err = build_in(&DockerBuilder::new(docker), tmp.path())
        .await
        .unwrap_err();
    assert!(
        err.message.to_lowercase().contains("frobnicate"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn the_classic_builder_when_asked_names_its_steps() {
    let Some(docker) = docker() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nLABEL built=classic\nCOPY present.txt /p\n",
            ),
            ("present.txt", "p"),
        ],
    );
    let builder = DockerBuilder::new(docker.clone()).with_builder(BuilderChoice::Classic);
    let events = VecSink::new();
    let built = builder
        .build(
            &BuildSpec::new(tmp.path(), "Dockerfile"),
            &events,
            &Cancellation::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{:?}", e.chain()));
    let text = all_text(&events);
    assert!(text.contains("using the classic builder"), "{text}");
    assert!(!text.contains("using BuildKit"), "{text}");
    let steps: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Progress(p) => Some(p.item),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "Step 1/3 : FROM scratch",
            "Step 2/3 : LABEL built=classic",
            "Step 3/3 : COPY present.txt /p"
        ]
    );
    assert_eq!(files_in_image(&docker, built.id.as_str(), "").await, ["p"]);

    write(
        tmp.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY present.txt /p\nCOPY missing-file.txt /m\n",
        )],
    );
    let err = build_in(&builder, tmp.path()).await.unwrap_err();
    assert!(
        err.message.contains("Step 3/3 : COPY missing-file.txt /m"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_failing_run_step_quotes_its_last_output_lines() {
    let Some(docker) = docker() else { return };
    let app = deployctl_testsupport::hello_app();
    assert!(
        app.join("hello").is_file(),
        "run `cargo xtask fixtures` first"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(app.join("hello"), tmp.path().join("hello")).unwrap();
    write(
        tmp.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY hello /hello\nRUN [\"/hello\", \"--fail\"]\n",
        )],
    );
    let events = VecSink::new();
    // The test engine has no bridge network: RUN steps get none.
    let mut spec = BuildSpec::new(tmp.path(), "Dockerfile");
    spec.network = Some("none".to_owned());
    let err = DockerBuilder::new(docker)
        .build(&spec, &events, &Cancellation::new())
        .await
        .unwrap_err();
    let text = all_text(&events);
    assert!(text.contains("using BuildKit"), "{text}");
    assert!(
        err.message.contains("[2/2] RUN [\"/hello\", \"--fail\"]"),
        "the failing instruction is named: {}",
        err.message
    );
    let hint = err.hint.clone().unwrap_or_default();
    assert!(
        // stdout lines; the final stderr line may reach the engine's log after the error.
        hint.contains("fixture output line 11") && hint.contains("fixture output line 12"),
        "the last output lines are quoted: {hint}\n{}\n{text}",
        err.message
    );
    assert!(
        !hint.contains("fixture output line 1\n"),
        "only the last lines are quoted: {hint}"
    );
}

#[tokio::test]
async fn dockerfile_outside_the_context_is_refused_before_any_call() {
    // No engine needed: a client to a socket that does not exist proves no call is made.
    let docker =
        Docker::connect_with_unix("/nonexistent/docker.sock", 5, bollard::API_DEFAULT_VERSION);
    let Ok(docker) = docker else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("ctx/a", "a"), ("Dockerfile", "FROM scratch\n")],
    );
    let err = DockerBuilder::new(docker)
        .build(
            &BuildSpec::new(tmp.path().join("ctx"), "../Dockerfile"),
            &VecSink::new(),
            &Cancellation::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(
        err.message.contains("outside the build context"),
        "{}",
        err.message
    );
}
