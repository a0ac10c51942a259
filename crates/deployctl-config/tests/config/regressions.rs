//! Regression tests: duplicate keys, reading files safely, bounded YAML work, messages,
//! offline service limits, and loading without secret values.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use deployctl_config::{
    Config, ConfigError, Diagnostic, LoadOptions, MAX_CONFIG_BYTES, SecretPolicy, load, load_str,
};

use super::{render, vars};

fn diags(err: ConfigError) -> Vec<Diagnostic> {
    match err {
        ConfigError::Invalid { diagnostics, .. } => diagnostics,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn load_text(src: &str) -> Result<Config, ConfigError> {
    let v = vars(&[]);
    load_str(src, Path::new("deploy.yaml"), &LoadOptions::new(&v))
}

/// A directory of its own under the target dir, removed first.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("config-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Runs `f` on another thread and fails the test if it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

// ── 1. duplicate keys ────────────────────────────────────────────────────────────────

#[test]
fn duplicate_key_is_reported_at_the_second_occurrence() {
    let d = diags(load_text("version: \"1.0\"\napp:\n  name: demo\n  name: other\n").unwrap_err());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (Some(4), Some(3)));
    assert_eq!(d[0].path, "app.name");
    assert!(
        d[0].message.contains("line 3, column 3"),
        "{}",
        d[0].message
    );
}

#[test]
fn every_duplicate_key_is_reported_where_it_repeats() {
    let src = "version: \"1.0\"\napp:\n  name: demo\nenv:\n  A: \"1\"\n  'A': \"2\"\nenvironments:\n  prod:\n    lambda: {enabled: true, enabled: false}\n";
    let d = diags(load_text(src).unwrap_err());
    let at: Vec<(Option<u32>, Option<u32>, &str)> = d
        .iter()
        .map(|x| (x.line, x.column, x.path.as_str()))
        .collect();
    assert_eq!(
        at,
        vec![
            (Some(6), Some(3), "env.A"),
            (Some(9), Some(29), "environments.prod.lambda.enabled")
        ]
    );
}

#[test]
fn keys_serde_yaml_tells_apart_are_not_duplicates() {
    // `1` is a number and `"1"` a string: two keys for serde_yaml, so no duplicate.
    let src = "version: \"1.0\"\napp:\n  name: demo\nenv:\n  1: a\n  \"1\": b\n";
    let text = render(&load_text(src).unwrap_err());
    assert!(!text.contains("duplicate"), "{text}");
}

// ── 3. reading files safely, bounded work ───────────────────────────────────────────

#[cfg(unix)]
#[test]
fn dev_zero_is_refused_at_once() {
    let err = within(Duration::from_secs(10), || {
        load(Path::new("/dev/zero"), &LoadOptions::new(&vars(&[])))
    })
    .unwrap_err();
    let d = diags(err);
    assert_eq!(d[0].file, Path::new("/dev/zero"));
    assert!(
        d[0].message
            .contains("not a regular file (a character device)"),
        "{d:?}"
    );
    assert!(d[0].hint.is_some());
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = scratch("fifo");
    let fifo = dir.join("deploy.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    // Through a symlink too: metadata follows it.
    let link = dir.join("link.yaml");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    for path in [fifo, link] {
        let err = within(Duration::from_secs(10), move || {
            load(&path, &LoadOptions::new(&vars(&[])))
        })
        .unwrap_err();
        let text = render(&err);
        assert!(text.contains("not a regular file (a named pipe)"), "{text}");
    }
}

#[test]
fn a_directory_is_refused() {
    let dir = scratch("dir");
    let text = render(&load(&dir, &LoadOptions::new(&vars(&[]))).unwrap_err());
    assert!(text.contains("not a regular file (a directory)"), "{text}");
}

#[cfg(unix)]
#[test]
fn a_symlink_to_a_regular_file_is_read() {
    let dir = scratch("symlink");
    let real = dir.join("real.yaml");
    std::fs::write(&real, "version: \"1.0\"\napp:\n  name: demo\n").unwrap();
    let link = dir.join("deploy.yaml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let c = load(&link, &LoadOptions::new(&vars(&[]))).unwrap();
    assert_eq!(c.app.name, "demo");
}

#[test]
fn a_file_over_one_mib_is_refused_naming_file_and_size() {
    let dir = scratch("big");
    let path = dir.join("deploy.yaml");
    let mut text = "version: \"1.0\"\napp:\n  name: demo\n".to_owned();
    text.push_str(&"# padding\n".repeat(usize::try_from(MAX_CONFIG_BYTES).unwrap() / 10 + 1));
    std::fs::write(&path, &text).unwrap();
    let d = diags(load(&path, &LoadOptions::new(&vars(&[]))).unwrap_err());
    assert_eq!(d[0].file, path);
    assert!(
        d[0].message.contains(&format!("({} bytes)", text.len()))
            && d[0].message.contains("above the 1.0 MiB limit"),
        "{d:?}"
    );
    // Exactly the limit is fine.
    let mut exact = "version: \"1.0\"\napp:\n  name: demo\n".to_owned();
    let pad = usize::try_from(MAX_CONFIG_BYTES).unwrap() - exact.len();
    exact.push_str(&format!("#{}", " ".repeat(pad - 1)));
    std::fs::write(&path, &exact).unwrap();
    assert!(load(&path, &LoadOptions::new(&vars(&[]))).is_ok());
}

/// Shapes that made libyaml work in time quadratic in the file (unclosed, nested flow
/// collections), and other adversarial inputs; each must fail fast with a diagnostic.
#[test]
fn adversarial_yaml_fails_fast() {
    let mib = usize::try_from(MAX_CONFIG_BYTES).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("50k lines of [", "[\n".repeat(50_000)),
        ("50k lines of {", "{\n".repeat(50_000)),
        ("x: [ [a, …", format!("x: [\n{}", "  [a,\n".repeat(mib / 7))),
        ("x: { k: { …", format!("x: {{\n{}", "  k: {\n".repeat(mib / 7))),
        ("one line of [", "[".repeat(mib)),
        ("quoted ] between [", "[ \"]\" ".repeat(mib / 6)),
        (
            "long keys over many children",
            format!(
                "{}{}",
                (0..30)
                    .map(|i| format!("{}{}{i}:\n", " ".repeat(2 * i), "k".repeat(1000)))
                    .collect::<String>(),
                (0..(mib / 2 / 67))
                    .map(|i| format!("{}a{i:05}: 1\n", " ".repeat(60)))
                    .collect::<String>()
            ),
        ),
        (
            "a big valid map, then 200 type errors (one repair pass each)",
            format!(
                "version: \"1.0\"\napp:\n  name: demo\nenv:\n{}lambda:\n  function:\n{}",
                (0..40_000).map(|i| format!("  K{i}: v\n")).collect::<String>(),
                (0..200).map(|i| format!("    x{i}: 1\n")).collect::<String>()
            ),
        ),
        (
            "a 1 MiB mapping of short entries with a few type errors",
            format!(
                "version: \"1.0\"\napp:\n  name: demo\nlambda:\n  function:\n    memory: x\n    timeout: y\nenv:\n{}",
                (0..(mib / 14)).map(|i| format!("  K{i:06}: v\n")).collect::<String>()
            ),
        ),
        (
            "alias bomb",
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n".to_owned(),
        ),
    ];
    for (name, src) in cases {
        assert!(src.len() <= mib + 16, "{name}: {} bytes", src.len());
        let started = Instant::now();
        // Generous for an unoptimised test build on a busy machine; release is far faster.
        let result = within(Duration::from_secs(20), move || load_text(&src).map(|_| ()));
        let d = diags(result.unwrap_err());
        eprintln!(
            "{name}: {:?}: {} (+{} more)",
            started.elapsed(),
            d[0],
            d.len() - 1
        );
        assert!(!d.is_empty(), "{name}");
    }
}

#[test]
fn deep_nesting_names_the_place() {
    let src = format!(
        "version: \"1.0\"\napp:\n  name: demo\nenv:\n  X: {}\n",
        "[".repeat(40)
    );
    let d = diags(load_text(&src).unwrap_err());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].line, Some(5));
    assert!(d[0].message.contains("deeper than 32"), "{}", d[0].message);
}

// ── 4. messages ──────────────────────────────────────────────────────────────────────

#[test]
fn a_byte_order_mark_is_accepted() {
    let c = load_text("\u{feff}version: \"1.0\"\napp:\n  name: demo\n").unwrap();
    assert_eq!(c.app.name, "demo");
    let dir = scratch("bom");
    let path = dir.join("deploy.yaml");
    std::fs::write(&path, b"\xEF\xBB\xBFversion: \"1.0\"\napp:\n  name: demo\n").unwrap();
    assert!(load(&path, &LoadOptions::new(&vars(&[]))).is_ok());
}

#[test]
fn an_out_of_range_port_says_the_range() {
    for port in ["70000", "-1"] {
        let src = format!("version: \"1.0\"\napp:\n  name: demo\n  port: {port}\n");
        let d = diags(load_text(&src).unwrap_err());
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].column), (Some(4), Some(9)));
        assert!(d[0].message.contains("from 1 to 65535"), "{}", d[0].message);
    }
}

#[test]
fn long_values_are_not_echoed_whole() {
    let long = "Q".repeat(200_000);
    for src in [
        format!(
            "version: \"1.0\"\napp:\n  name: demo\nlambda:\n  enabled: true\n  region: {long}\n"
        ),
        format!(
            "version: \"1.0\"\napp:\n  name: demo\nlambda:\n  enabled: true\n  function:\n    memory: {long}\n"
        ),
        format!(
            "version: \"1.0\"\napp:\n  name: demo\nlambda:\n  enabled: true\n  function:\n    name: {long}\n"
        ),
    ] {
        let text = render(&load_text(&src).unwrap_err());
        assert!(text.len() < 1200, "{} chars: {}", text.len(), &text[..300]);
        assert!(text.contains("QQQ…"), "{text}");
    }
}

#[test]
fn a_nul_byte_is_reported_where_it_is() {
    let d = diags(load_text("version: \"1.0\"\napp:\n  name: de\0mo\n").unwrap_err());
    assert_eq!((d[0].line, d[0].column), (Some(3), Some(11)));
    assert!(d[0].message.contains("NUL"), "{}", d[0].message);
}

// ── 5. service limits, offline ───────────────────────────────────────────────────────

fn lambda_env(extra: &str, secret: &str) -> String {
    format!(
        "version: \"1.0\"\napp:\n  name: demo\nsecrets:\n  TOKEN: \"{secret}\"\nlambda:\n  enabled: true\n  function:\n    env:\n{extra}"
    )
}

#[test]
fn lambda_environment_over_4_kb_is_refused_without_showing_secrets() {
    let secret = format!("tok-{}", "s".repeat(1500));
    let src = lambda_env(&format!("      BIG: \"{}\"\n", "b".repeat(2600)), &secret);
    let d = diags(load_text(&src).unwrap_err());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].path, "lambda.function.env.BIG");
    assert_eq!(d[0].line, Some(10));
    assert!(
        d[0].message.contains("above Lambda's 4096-byte limit"),
        "{}",
        d[0].message
    );
    assert!(d[0].message.contains("TOKEN=***"), "{}", d[0].message);
    let text = render(&ConfigError::Invalid {
        file: "x".into(),
        diagnostics: d,
    });
    assert!(!text.contains("tok-s"), "secret leaked: {text}");
    // Just under the limit is fine.
    let src = lambda_env(&format!("      BIG: \"{}\"\n", "b".repeat(2400)), &secret);
    assert!(load_text(&src).is_ok());
}

#[test]
fn lambda_reserved_and_malformed_env_names_are_refused() {
    let src = lambda_env(
        "      AWS_REGION: x\n      _HANDLER: y\n      A: z\n      AWS_LAMBDA_EXEC_WRAPPER: /opt/w\n",
        "t",
    );
    let d = diags(load_text(&src).unwrap_err());
    let got: Vec<(&str, Option<u32>)> = d.iter().map(|x| (x.path.as_str(), x.line)).collect();
    assert_eq!(
        got,
        vec![
            ("lambda.function.env.AWS_REGION", Some(10)),
            ("lambda.function.env._HANDLER", Some(11)),
            ("lambda.function.env.A", Some(12)),
        ],
        "{d:?}"
    );
    assert!(d[0].message.contains("reserved by Lambda"));
    assert!(
        d[2].message
            .contains("not a valid Lambda environment variable name")
    );
}

#[test]
fn lambda_env_rules_apply_only_when_lambda_is_enabled() {
    let src = "version: \"1.0\"\napp:\n  name: demo\nenv:\n  AWS_REGION: x\n";
    assert!(load_text(src).is_ok());
}

#[test]
fn kubernetes_names_labels_and_annotations_are_checked() {
    let big = "v".repeat(300 * 1024);
    let src = format!(
        "version: \"1.0\"\napp:\n  name: demo\nkubernetes:\n  enabled: true\n  service_account:\n    annotations:\n      example.com/big: \"{big}\"\n  network_policy:\n    allow_pod_labels:\n      tier: {}\n",
        "x".repeat(64)
    );
    let d = diags(load_text(&src).unwrap_err());
    let paths: Vec<&str> = d.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "kubernetes.service_account.annotations",
            "kubernetes.network_policy.allow_pod_labels.tier"
        ],
        "{d:?}"
    );
    assert!(d[0].message.contains("262144"), "{}", d[0].message);
    assert!(d.iter().all(|x| x.line.is_some()));
    assert!(d.iter().all(|x| x.message.len() < 400), "{d:?}");
}

// ── 6. loading without secret values ─────────────────────────────────────────────────

const NEEDS_SECRETS: &str = "version: \"1.0\"\napp:\n  name: demo\nregistry:\n  url: registry.example.com\n  username: ci\n  password: ${REGISTRY_PASSWORD}\nsecrets:\n  DB_PASSWORD: ${DB_PASSWORD:?the database password}\n  SET: ${SET_ONE}\nbuild:\n  args:\n    NPM_TOKEN:\n      secret: tok-${NPM_TOKEN}\n";

#[test]
fn deferred_secrets_load_and_are_required_later() {
    let v = vars(&[("SET_ONE", "set-value-123")]);
    let opts = LoadOptions::new(&v).with_deferred_secrets();
    assert_eq!(opts.secrets, SecretPolicy::Deferred);
    let c = load_str(NEEDS_SECRETS, Path::new("deploy.yaml"), &opts).unwrap();
    let unresolved: Vec<(&str, Option<u32>)> = c
        .unresolved_secrets()
        .iter()
        .map(|d| (d.path.as_str(), d.line))
        .collect();
    assert_eq!(
        unresolved,
        vec![
            ("registry.password", Some(7)),
            ("secrets.DB_PASSWORD", Some(9)),
            ("build.args.NPM_TOKEN.secret", Some(14)),
        ]
    );
    assert_eq!(
        c.secrets["SET"].expose(),
        "set-value-123",
        "set secrets resolve"
    );
    assert!(c.secrets["DB_PASSWORD"].is_empty(), "a placeholder");
    let secret_values: Vec<&str> = c.secret_values().iter().map(|s| s.expose()).collect();
    assert_eq!(secret_values, vec!["set-value-123"]);
    // Requiring them later gives the strict load's own diagnostics.
    let later = diags(c.require_secrets().unwrap_err());
    let strict = diags(
        load_str(
            NEEDS_SECRETS,
            Path::new("deploy.yaml"),
            &LoadOptions::new(&v),
        )
        .unwrap_err(),
    );
    assert_eq!(later, strict);
    assert!(later[0].message.contains("REGISTRY_PASSWORD"), "{later:?}");
}

#[test]
fn deferred_secrets_keep_every_other_rule() {
    let v = vars(&[]);
    let opts = LoadOptions::new(&v).with_secret_policy(SecretPolicy::Deferred);
    // An unset variable outside a secret position is still an error, and so is a
    // malformed reference inside one.
    let src = "version: \"1.0\"\napp:\n  name: ${APP_NAME}\nsecrets:\n  A: ${1BAD}\n  B: ${OPEN\n";
    let d = diags(load_str(src, Path::new("deploy.yaml"), &opts).unwrap_err());
    let paths: Vec<&str> = d.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(paths, vec!["app.name", "secrets.A", "secrets.B"], "{d:?}");
    // Fully resolved configs have nothing to require.
    let c = load_str(
        "version: \"1.0\"\napp:\n  name: demo\n",
        Path::new("deploy.yaml"),
        &opts,
    )
    .unwrap();
    assert!(c.unresolved_secrets().is_empty());
    assert!(c.require_secrets().is_ok());
}
