//! deploy.yaml loading against the fixtures in `fixtures/config/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deployctl_config::{
    Architecture, BuildArgValue, Config, ConfigError, LoadOptions, ServiceType, TargetKind, load,
    load_str,
};

#[path = "config/regressions.rs"]
mod regressions;

fn fixtures() -> PathBuf {
    // Relative, so diagnostics (and goldens) are the same on every machine.
    PathBuf::from("../../fixtures/config")
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_with(
    path: &Path,
    env: Option<&str>,
    v: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    load(path, &LoadOptions::new(v).with_environment(env))
}

fn render(err: &ConfigError) -> String {
    match err {
        ConfigError::Invalid { diagnostics, .. } => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn seed_example_loads_as_written() {
    let c = load_with(&fixtures().join("valid/seed-000.yaml"), None, &vars(&[])).unwrap();
    assert_eq!(c.version, "1.0");
    assert_eq!(c.app.name, "my-jvagent-app");
    assert_eq!(c.app.version, "1.0.0");
    assert_eq!(c.app.port, 8080);
    assert_eq!(c.app.health_check_path, "/health");
    assert!(c.lambda.enabled);
    assert_eq!(c.lambda.region.as_deref(), Some("us-east-1"));
    assert_eq!(c.function_name(), "my-jvagent-app");
    assert_eq!(c.lambda.function.memory, 1024);
    assert_eq!(c.lambda.function.timeout, 300);
    assert!(c.lambda.api_gateway.enabled);
    assert_eq!(c.lambda.api_gateway.kind, "HTTP");
    assert!(c.lambda.api_gateway.cors.enabled);
    assert!(c.kubernetes.enabled);
    assert_eq!(c.kubernetes.namespace, "default");
    assert_eq!(c.kubernetes.deployment.replicas, 2);
    assert_eq!(c.kubernetes.service.kind, ServiceType::LoadBalancer);
    assert_eq!(c.kubernetes.service.port, 80);
    assert_eq!(
        c.enabled_targets(),
        vec![TargetKind::Lambda, TargetKind::Kubernetes]
    );
}

#[test]
fn full_example_uses_every_option() {
    let v = vars(&[("NPM_TOKEN", "npm-tok-123"), ("DB_PASSWORD", "db-pw-456")]);
    let c = load_with(&fixtures().join("valid/full.yaml"), None, &v).unwrap();
    assert_eq!(c.app.version, "2.3.1");
    assert_eq!(c.function_name(), "shop-api-fn", "{{ }} references resolve");
    assert_eq!(c.lambda.function.architecture, Architecture::Arm64);
    assert_eq!(c.env["PORT"], "3000", "numbers in env become strings");
    assert_eq!(c.secrets["DB_PASSWORD"].expose(), "db-pw-456");
    assert!(
        matches!(&c.build.args["NPM_TOKEN"], BuildArgValue::Secret { secret } if secret.expose() == "npm-tok-123")
    );
    assert!(
        c.build.context.ends_with("fixtures/config/valid"),
        "{}",
        c.build.context.display()
    );
    assert_eq!(c.kubernetes.service.node_port, Some(30080));
    assert_eq!(c.kubernetes.ingress.hosts[0].paths[0].path, "/api");
    assert_eq!(
        c.lambda
            .api_gateway
            .throttling
            .as_ref()
            .unwrap()
            .burst_limit,
        200
    );
    assert_eq!(
        c.enabled_targets(),
        vec![
            TargetKind::Local,
            TargetKind::Lambda,
            TargetKind::Kubernetes
        ]
    );
    // Secrets never print.
    let debug = format!("{c:?}");
    let yaml = c.to_redacted_yaml();
    for leaked in ["npm-tok-123", "db-pw-456"] {
        assert!(!debug.contains(leaked), "Debug leaked {leaked}");
        assert!(!yaml.contains(leaked), "redacted YAML leaked {leaked}");
    }
    assert!(
        yaml.contains("DB_PASSWORD: '***'") || yaml.contains("DB_PASSWORD: \"***\""),
        "{yaml}"
    );
}

#[test]
fn environment_overlays_merge_over_the_base() {
    let v = vars(&[("NPM_TOKEN", "x"), ("DB_PASSWORD", "y")]);
    let path = fixtures().join("valid/full.yaml");
    let staging = load_with(&path, Some("staging"), &v).unwrap();
    assert_eq!(staging.kubernetes.namespace, "shop-staging");
    assert_eq!(staging.kubernetes.deployment.replicas, 1);
    assert_eq!(staging.lambda.function.memory, 512);
    // Untouched keys keep the base value.
    assert_eq!(staging.lambda.function.timeout, 60);
    let prod = load_with(&path, Some("production"), &v).unwrap();
    assert_eq!(prod.kubernetes.namespace, "shop");
    assert_eq!(prod.kubernetes.deployment.replicas, 6);
    let err = load_with(&path, Some("prod"), &v).unwrap_err();
    let text = render(&err);
    assert!(text.contains("unknown environment `prod`"), "{text}");
    assert!(text.contains("did you mean `production`?"), "{text}");
    assert!(
        text.contains("defined environments: staging, production"),
        "{text}"
    );
}

#[test]
fn overlay_errors_point_into_the_overlay() {
    let src = "version: \"1.0\"\napp:\n  name: demo\nlambda:\n  enabled: true\nenvironments:\n  small:\n    lambda:\n      function:\n        memory: 64\n";
    let v = vars(&[]);
    let err = load_str(
        src,
        Path::new("deploy.yaml"),
        &LoadOptions::new(&v).with_environment(Some("small")),
    )
    .unwrap_err();
    assert_eq!(
        render(&err),
        "deploy.yaml:10:17: lambda.function.memory: 64 is below the minimum 128 MB\n  hint: Lambda accepts 128 to 10240 MB"
    );
}

#[test]
fn interpolation_types_whole_values_and_escapes() {
    let src = "version: \"1.0\"\napp:\n  name: ${NAME}\n  version: ${VER}\n  port: ${PORT:-9000}\nlambda:\n  enabled: ${ON}\n  function:\n    memory: ${MEM}\nenv:\n  LITERAL: $${NOT_A_VAR}\n  MIXED: pre-${NAME}-post\n";
    let v = vars(&[
        ("NAME", "svc"),
        ("VER", "1.0"),
        ("ON", "true"),
        ("MEM", "2048"),
    ]);
    let c = load_str(src, Path::new("deploy.yaml"), &LoadOptions::new(&v)).unwrap();
    assert_eq!(c.app.name, "svc");
    assert_eq!(c.app.version, "1.0");
    assert_eq!(c.app.port, 9000);
    assert!(c.lambda.enabled);
    assert_eq!(c.lambda.function.memory, 2048);
    assert_eq!(c.env["LITERAL"], "${NOT_A_VAR}");
    assert_eq!(c.env["MIXED"], "pre-svc-post");
}

#[test]
fn secrets_never_appear_in_diagnostics() {
    // A secret value that ends up in a numeric field would be quoted by serde's message.
    let src = "version: \"1.0\"\napp:\n  name: demo\nsecrets:\n  TOKEN: ${TOKEN}\nlambda:\n  enabled: true\n  function:\n    memory: ${TOKEN}\n";
    let v = vars(&[("TOKEN", "tok-very-secret-789")]);
    let err = load_str(src, Path::new("deploy.yaml"), &LoadOptions::new(&v)).unwrap_err();
    let text = render(&err);
    assert!(text.contains("lambda.function.memory"), "{text}");
    assert!(!text.contains("tok-very-secret-789"), "{text}");
    assert!(!format!("{err:?}").contains("tok-very-secret-789"));
}

#[test]
fn missing_file_is_a_read_error() {
    let err = load_with(Path::new("/nonexistent/deploy.yaml"), None, &vars(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn every_invalid_fixture_matches_its_golden() {
    let dir = fixtures().join("invalid");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 35, "only {} invalid cases", cases.len());
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let err = load_with(&case, None, &vars(&[]))
            .err()
            .unwrap_or_else(|| panic!("{name} loaded but should be invalid"));
        let text = render(&err);
        assert!(!text.is_empty(), "{name}: no diagnostics");
        insta::assert_snapshot!(format!("invalid__{name}"), text);
    }
}

#[test]
fn many_errors_are_all_reported() {
    let err = load_with(
        &fixtures().join("invalid/many-errors-at-once.yaml"),
        None,
        &vars(&[]),
    )
    .unwrap_err();
    let ConfigError::Invalid { diagnostics, .. } = err else {
        panic!()
    };
    let paths: Vec<&str> = diagnostics.iter().map(|d| d.path.as_str()).collect();
    for want in [
        "lambda.region",
        "lambda.function.memory",
        "lambda.function.timeout",
        "kubernetes.servce",
        "kubernetes.service.node_port",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(
        diagnostics.iter().all(|d| d.line.is_some()),
        "{diagnostics:?}"
    );
}

/// Deterministic mutation of the valid fixtures: truncations, byte flips and splices must
/// never panic.
#[test]
fn never_panics_on_mangled_input() {
    let v = vars(&[("NPM_TOKEN", "x"), ("DB_PASSWORD", "y")]);
    let mut seeds = Vec::new();
    for f in ["valid/full.yaml", "valid/seed-000.yaml"] {
        seeds.push(std::fs::read(fixtures().join(f)).unwrap());
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let specials: &[&[u8]] = &[
        b"{{",
        b"${",
        b"\t",
        b": ",
        b"- ",
        b"\n  ",
        b"&a",
        b"*a",
        b"!!binary",
        b"[",
        b"]",
        b"'",
        b"\"",
        b"\xff",
        b"\0",
        b"<<: *a",
    ];
    let mut runs = 0;
    for seed in &seeds {
        for _ in 0..600 {
            let mut bytes = seed.clone();
            let n = 1 + next() % 4;
            for _ in 0..n {
                let len = bytes.len().max(1);
                let at = (next() as usize) % len;
                match next() % 4 {
                    0 => bytes.truncate(at),
                    1 => {
                        if at < bytes.len() {
                            bytes[at] = (next() % 256) as u8;
                        }
                    }
                    2 => {
                        let s = specials[(next() as usize) % specials.len()];
                        let at = at.min(bytes.len());
                        bytes.splice(at..at, s.iter().copied());
                    }
                    _ => {
                        let end = (at + (next() as usize) % 40).min(bytes.len());
                        let at = at.min(end);
                        bytes.drain(at..end);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = load_str(&text, Path::new("deploy.yaml"), &LoadOptions::new(&v));
            runs += 1;
        }
    }
    assert_eq!(runs, 1200);
}
