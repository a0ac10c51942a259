//! `secrets:` values kept in AWS Secrets Manager and SSM Parameter Store: the reference's
//! shape is checked at load (with line:column), the values are filled in later and the
//! Lambda environment is checked again with them.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use std::collections::BTreeMap;
use std::path::Path;

use deployctl_config::{ConfigError, LoadOptions, load_str};
use deployctl_core::{Secret, SecretSource};

fn load(yaml: &str) -> Result<deployctl_config::Config, ConfigError> {
    let vars: BTreeMap<String, String> = [("DB_SECRET".to_owned(), "prod/db".to_owned())].into();
    load_str(yaml, Path::new("deploy.yaml"), &LoadOptions::new(&vars))
}

fn rendered(err: &ConfigError) -> String {
    match err {
        ConfigError::Invalid { diagnostics, .. } => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

const HEAD: &str =
    "version: '1'\napp: { name: shop }\nlambda: { enabled: true, region: us-east-1 }\n";

#[test]
fn references_load_as_sources_with_empty_placeholders() {
    let c = load(&format!(
        "{HEAD}secrets:\n  DB_PASSWORD: {{ aws_secret: \"${{DB_SECRET}}\", key: password }}\n  API_TOKEN: {{ ssm: /shop/api/token }}\n  WHOLE: {{ aws_secret: \"arn:aws:secretsmanager:us-east-1:123456789012:secret:whole-AbCdEf\" }}\n  PLAIN: from-env-value\n"
    ))
    .unwrap();
    let s = c.secret_sources();
    assert_eq!(s.len(), 3);
    assert_eq!(
        s["DB_PASSWORD"],
        SecretSource::AwsSecret {
            id: "prod/db".into(),
            key: Some("password".into())
        },
        "`${{VAR}}` works inside a reference"
    );
    assert_eq!(
        s["API_TOKEN"],
        SecretSource::Ssm {
            name: "/shop/api/token".into()
        }
    );
    assert!(c.secrets["DB_PASSWORD"].is_empty());
    assert_eq!(c.secrets["PLAIN"].expose(), "from-env-value");
    assert!(!c.secret_sources_resolved());
    let printed = c.to_redacted_yaml();
    assert!(printed.contains("PLAIN: '***'"), "{printed}");
    assert!(
        printed.contains("DB_PASSWORD:\n    aws_secret: prod/db\n    key: password"),
        "the reference is shown, it is no secret: {printed}"
    );
    assert!(
        printed.contains("API_TOKEN:\n    ssm: /shop/api/token"),
        "{printed}"
    );
}

#[test]
fn bad_references_are_config_errors_with_positions_and_hints() {
    let err = load(&format!(
        "{HEAD}secrets:\n  A: {{ aws_secret: prod/db, kee: password }}\n  B: {{ aws_secret: '' }}\n  C: {{ ssm: shop/token }}\n  D: {{ ssm: /x, aws_secret: y }}\n  E: {{ ssm: /shop/x, key: k }}\n  F: {{ ssm: '/shop/a b' }}\n"
    ))
    .unwrap_err();
    let text = rendered(&err);
    for line in [
        "deploy.yaml:5:29: secrets.A.kee: unknown field\n  hint: did you mean `key`?",
        "deploy.yaml:6:20: secrets.B.aws_secret: must not be empty",
        "deploy.yaml:7:13: secrets.C.ssm: `shop/token` has a path but does not start with `/`",
        "deploy.yaml:8:3: secrets.D: a secret reference names either `aws_secret` or `ssm`, not both",
        "deploy.yaml:9:27: secrets.E.key: `key` selects a JSON field of an `aws_secret`",
        "deploy.yaml:10:13: secrets.F.ssm: ` ` cannot appear in an SSM parameter name",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn resolved_values_fill_secrets_and_are_checked_against_lambdas_4_kb() {
    let yaml =
        format!("{HEAD}secrets:\n  BIG: {{ ssm: /shop/big }}\n  DB: {{ aws_secret: prod/db }}\n");
    let mut c = load(&yaml).unwrap();
    let values: BTreeMap<String, Secret> = [
        ("BIG".to_owned(), Secret::new("v".repeat(10))),
        ("DB".to_owned(), Secret::new("db-value-42")),
    ]
    .into();
    c.set_resolved_secrets(values).unwrap();
    assert!(c.secret_sources_resolved());
    assert_eq!(c.secrets["DB"].expose(), "db-value-42");

    let mut c = load(&yaml).unwrap();
    let big = format!("huge-{}", "x".repeat(5000));
    let values: BTreeMap<String, Secret> = [
        ("BIG".to_owned(), Secret::new(big.clone())),
        ("DB".to_owned(), Secret::new("db-value-42")),
    ]
    .into();
    let err = c.set_resolved_secrets(values).unwrap_err();
    let text = rendered(&err);
    assert!(
        text.starts_with("deploy.yaml:5:3: secrets.BIG: the Lambda environment is"),
        "{text}"
    );
    assert!(text.contains("BIG=*** ("), "{text}");
    assert!(!text.contains("huge-"), "the value never shows: {text}");

    let mut c = load(&yaml).unwrap();
    let err = c
        .set_resolved_secrets([("BIG".to_owned(), Secret::new("b"))].into())
        .unwrap_err();
    assert!(
        rendered(&err).contains("secrets.DB: aws_secret `prod/db` was not resolved"),
        "{}",
        rendered(&err)
    );
}

#[test]
fn lambda_reference_mode_counts_the_reference_and_refuses_plain_secrets() {
    let c = load(
        "version: '1'\napp: { name: shop }\nlambda: { enabled: true, region: us-east-1, secrets: reference }\nsecrets:\n  DB: { aws_secret: prod/db, key: password }\n",
    )
    .unwrap();
    assert_eq!(c.lambda.secrets, deployctl_config::LambdaSecrets::Reference);
    // A value above 4 KB does not matter: only the reference goes to Lambda.
    let mut c2 = c.clone();
    c2.set_resolved_secrets([("DB".to_owned(), Secret::new("x".repeat(5000)))].into())
        .unwrap();

    let err = load(
        "version: '1'\napp: { name: shop }\nlambda: { enabled: true, region: us-east-1, secrets: reference }\nsecrets:\n  DB: { aws_secret: prod/db }\n  PLAIN: written-here\n",
    )
    .unwrap_err();
    let text = rendered(&err);
    assert!(
        text.contains("deploy.yaml:6:10: secrets.PLAIN: lambda.secrets is `reference`"),
        "{text}"
    );
    assert!(!text.contains("written-here"), "{text}");
}

#[test]
fn an_overlay_reference_replaces_the_base_one_and_deferred_loads_skip_unset_ones() {
    let yaml = "version: '1'\napp: { name: shop }\nlocal: { enabled: true }\nsecrets:\n  DB: { aws_secret: dev/db, key: password }\n  TOKEN: { ssm: \"${TOKEN_PARAM}\" }\nenvironments:\n  prod:\n    secrets:\n      DB: { ssm: /prod/db }\n";
    let vars: BTreeMap<String, String> =
        [("TOKEN_PARAM".to_owned(), "/shop/token".to_owned())].into();
    let c = load_str(
        yaml,
        Path::new("deploy.yaml"),
        &LoadOptions::new(&vars).with_environment(Some("prod")),
    )
    .unwrap();
    assert_eq!(
        c.secret_sources()["DB"],
        SecretSource::Ssm {
            name: "/prod/db".into()
        }
    );

    let none: BTreeMap<String, String> = BTreeMap::new();
    let c = load_str(
        yaml,
        Path::new("deploy.yaml"),
        &LoadOptions::new(&none).with_deferred_secrets(),
    )
    .unwrap();
    assert!(!c.secret_sources().contains_key("TOKEN"));
    assert!(c.secret_sources().contains_key("DB"));
    let err = c.require_secrets().unwrap_err();
    assert!(
        rendered(&err).contains("secrets.TOKEN.ssm"),
        "{}",
        rendered(&err)
    );
    let err = load_str(yaml, Path::new("deploy.yaml"), &LoadOptions::new(&none)).unwrap_err();
    assert!(
        rendered(&err).contains("secrets.TOKEN.ssm"),
        "{}",
        rendered(&err)
    );
}
