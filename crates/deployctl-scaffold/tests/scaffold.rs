//! Golden tests for what `deployctl init` generates, one case per `fixtures/projects/<case>`.

use std::path::{Path, PathBuf};

use deployctl_scaffold::{
    InitOptions, LAMBDA_ADAPTER_VERSION, ProjectKind, ScaffoldError, WriteOutcome, detect, render,
    write,
};

fn projects() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/projects")
}

const CASES: &[(&str, ProjectKind, &str)] = &[
    ("python-fastapi", ProjectKind::Python, "orders-api"),
    ("python-flask", ProjectKind::Python, "python-flask"),
    ("node-npm", ProjectKind::Node, "web-shop"),
    ("node-pnpm", ProjectKind::Node, "pnpm-svc"),
    ("go", ProjectKind::Go, "inventory"),
    ("java-maven", ProjectKind::Java, "billing-service"),
    ("java-gradle", ProjectKind::Java, "ledger"),
    ("rust", ProjectKind::Rust, "edge-proxy"),
];

#[test]
fn every_case_renders_its_goldens() {
    for (case, kind, name) in CASES {
        let project = detect(&projects().join(case)).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(project.kind, *kind, "{case}");
        assert_eq!(project.name, *name, "{case}");
        let files = render(&project, &InitOptions::default()).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(paths, ["deploy.yaml", "Dockerfile", ".dockerignore"]);
        for f in &files {
            let file = f
                .path
                .display()
                .to_string()
                .trim_start_matches('.')
                .replace('.', "_");
            insta::assert_snapshot!(format!("{case}__{file}"), f.contents);
        }
    }
}

#[test]
fn every_dockerfile_is_unified() {
    let opts = InitOptions {
        port: 9000,
        health_path: "/ready".to_owned(),
        ..InitOptions::default()
    };
    for (case, ..) in CASES {
        let project = detect(&projects().join(case)).unwrap();
        let files = render(&project, &opts).unwrap();
        let dockerfile = &files[1].contents;
        for needle in [
            format!(
                "COPY --from=public.ecr.aws/awsguru/aws-lambda-adapter:{LAMBDA_ADAPTER_VERSION} /lambda-adapter /opt/extensions/lambda-adapter"
            ),
            "ENV PORT=9000".to_owned(),
            "AWS_LWA_PORT=9000".to_owned(),
            "AWS_LWA_READINESS_CHECK_PATH=/ready".to_owned(),
            "EXPOSE 9000".to_owned(),
        ] {
            assert!(
                dockerfile.contains(&needle),
                "{case}: missing {needle}\n{dockerfile}"
            );
        }
        let user = dockerfile
            .lines()
            .rev()
            .find(|l| l.starts_with("USER "))
            .unwrap_or_else(|| panic!("{case}: no USER"));
        assert!(
            !user.contains("root") && user != "USER 0",
            "{case}: runs as root"
        );
        assert!(
            !dockerfile.contains("{{") && !dockerfile.contains("{%"),
            "{case}: unrendered template"
        );
    }
}

#[test]
fn every_generated_deploy_yaml_loads_with_the_config_crate() {
    for (case, ..) in CASES {
        let project = detect(&projects().join(case)).unwrap();
        let files = render(&project, &InitOptions::default()).unwrap();
        let vars = std::collections::BTreeMap::<String, String>::new();
        let cfg = deployctl_config::load_str(
            &files[0].contents,
            Path::new("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&vars),
        )
        .unwrap_or_else(|e| panic!("{case}: generated deploy.yaml is invalid: {e:?}"));
        assert_eq!(cfg.app.name, project.name);
        assert_eq!(cfg.app.port, 8080);
        assert_eq!(
            cfg.enabled_targets(),
            vec![deployctl_config::TargetKind::Local]
        );
    }
}

#[test]
fn app_name_option_is_sanitised() {
    let project = detect(&projects().join("go")).unwrap();
    let opts = InitOptions {
        app_name: Some("My Great_App".to_owned()),
        ..InitOptions::default()
    };
    let files = render(&project, &opts).unwrap();
    assert!(
        files[0].contents.contains("name: my-great-app "),
        "{}",
        files[0].contents
    );
}

#[test]
fn unrecognised_directory_lists_what_was_looked_for() {
    let err = detect(&projects().join("unrecognised")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ScaffoldError::Unrecognised { .. }));
    for f in deployctl_scaffold::LOOKED_FOR {
        assert!(msg.contains(f), "{f} not in {msg}");
    }
}

#[test]
fn malformed_manifests_name_the_file() {
    for case in ["malformed-package-json", "rust-workspace-root"] {
        let err = detect(&projects().join(case)).unwrap_err();
        let ScaffoldError::Manifest { file, .. } = &err else {
            panic!("{case}: {err:?}")
        };
        assert!(
            file.ends_with("package.json") || file.ends_with("Cargo.toml"),
            "{case}"
        );
        assert!(err.to_string().contains("fix the file"), "{err}");
    }
    let err = detect(&projects().join("rust-workspace-root")).unwrap_err();
    assert!(err.to_string().contains("workspace root"), "{err}");
}

#[test]
fn write_never_overwrites_deploy_yaml_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("go.mod"), "module example.com/svc\n").unwrap();
    let project = detect(tmp.path()).unwrap();
    let files = render(&project, &InitOptions::default()).unwrap();

    let first = write(tmp.path(), &files, false).unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|o| matches!(o, WriteOutcome::Created(_))));

    std::fs::write(tmp.path().join("deploy.yaml"), "mine").unwrap();
    std::fs::write(tmp.path().join("Dockerfile"), "MINE").unwrap();
    let err = write(tmp.path(), &files, false).unwrap_err();
    assert!(matches!(err, ScaffoldError::Exists { .. }));
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("deploy.yaml")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("Dockerfile")).unwrap(),
        "MINE",
        "nothing written"
    );

    let forced = write(tmp.path(), &files, true).unwrap();
    assert!(
        forced
            .iter()
            .all(|o| matches!(o, WriteOutcome::Overwritten(_)))
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("deploy.yaml")).unwrap(),
        files[0].contents
    );
}

#[test]
fn an_existing_dockerfile_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("go.mod"), "module example.com/svc\n").unwrap();
    std::fs::write(tmp.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let project = detect(tmp.path()).unwrap();
    assert!(project.has_dockerfile);
    let files = render(&project, &InitOptions::default()).unwrap();
    let out = write(tmp.path(), &files, false).unwrap();
    assert!(
        out.contains(&WriteOutcome::KeptExisting("Dockerfile".into())),
        "{out:?}"
    );
    assert!(
        out.contains(&WriteOutcome::Created("deploy.yaml".into())),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("Dockerfile")).unwrap(),
        "FROM scratch\n"
    );
}
