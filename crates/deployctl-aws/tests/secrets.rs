//! Secret values from Secrets Manager and SSM Parameter Store, against moto_server from
//! `cargo xtask services up`. Each test uses its own names, so they run in parallel.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use aws_config::BehaviorVersion;
use aws_sdk_lambda::config::{Credentials, Region};
use common::{REGION, sdk, unique};
use deployctl_aws::AwsSecretResolver;
use deployctl_core::{ErrorKind, SecretResolver, SecretSource};

async fn put_secret(sdk: &aws_types::SdkConfig, name: &str, value: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let out = sm
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    out.arn().unwrap().to_owned()
}

async fn put_parameter(sdk: &aws_types::SdkConfig, name: &str, value: &str, secure: bool) {
    use aws_sdk_ssm::types::ParameterType;
    aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(if secure {
            ParameterType::SecureString
        } else {
            ParameterType::String
        })
        .send()
        .await
        .unwrap();
}

fn aws_secret(id: &str, key: Option<&str>) -> SecretSource {
    SecretSource::AwsSecret {
        id: id.to_owned(),
        key: key.map(str::to_owned),
    }
}

#[tokio::test]
async fn secrets_manager_values_whole_by_arn_and_by_json_key() {
    let Some(sdk) = sdk().await else { return };
    let resolver = AwsSecretResolver::new(&sdk);
    let plain = unique("app/plain");
    let arn = put_secret(&sdk, &plain, "plain-value-7f3a").await;
    let db = unique("app/db");
    put_secret(
        &sdk,
        &db,
        r#"{"username":"app","password":"pw-91c2e","port":5432}"#,
    )
    .await;

    let by_name = resolver.resolve(&aws_secret(&plain, None)).await.unwrap();
    assert_eq!(by_name.expose(), "plain-value-7f3a");
    let by_arn = resolver.resolve(&aws_secret(&arn, None)).await.unwrap();
    assert_eq!(by_arn.expose(), "plain-value-7f3a");
    let password = resolver
        .resolve(&aws_secret(&db, Some("password")))
        .await
        .unwrap();
    assert_eq!(password.expose(), "pw-91c2e");
    assert_eq!(format!("{password}"), "***");
    let port = resolver
        .resolve(&aws_secret(&db, Some("port")))
        .await
        .unwrap();
    assert_eq!(port.expose(), "5432", "a number is its JSON text");
}

#[tokio::test]
async fn ssm_secure_string_is_decrypted_and_plain_string_read() {
    let Some(sdk) = sdk().await else { return };
    let resolver = AwsSecretResolver::new(&sdk);
    let secure = format!("/{}/token", unique("app"));
    put_parameter(&sdk, &secure, "tok-secure-55d1", true).await;
    let plain = format!("/{}/setting", unique("app"));
    put_parameter(&sdk, &plain, "plain-setting-1", false).await;

    let v = resolver
        .resolve(&SecretSource::Ssm {
            name: secure.clone(),
        })
        .await
        .unwrap();
    assert_eq!(v.expose(), "tok-secure-55d1", "SecureString decrypted");
    let v = resolver
        .resolve(&SecretSource::Ssm { name: plain })
        .await
        .unwrap();
    assert_eq!(v.expose(), "plain-setting-1");
}

#[tokio::test]
async fn missing_secret_parameter_or_key_is_bad_input_naming_the_reference_not_the_value() {
    let Some(sdk) = sdk().await else { return };
    let resolver = AwsSecretResolver::new(&sdk);

    let absent = unique("app/absent");
    let err = resolver
        .resolve(&aws_secret(&absent, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{}", err.message);
    assert!(err.message.contains(&absent), "{}", err.message);
    assert!(err.message.contains("not found"), "{}", err.message);

    let param = format!("/{}/absent", unique("app"));
    let err = resolver
        .resolve(&SecretSource::Ssm {
            name: param.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{}", err.message);
    assert!(err.message.contains(&param), "{}", err.message);

    let db = unique("app/db");
    put_secret(&sdk, &db, r#"{"username":"app","password":"pw-0a77b"}"#).await;
    let err = resolver
        .resolve(&aws_secret(&db, Some("passwd")))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{}", err.message);
    let text = err.chain().join(" | ") + err.hint.as_deref().unwrap_or("");
    assert!(text.contains("no key `passwd`"), "{text}");
    assert!(text.contains("`password`"), "the keys are listed: {text}");
    assert!(!text.contains("pw-0a77b"), "the value never shows: {text}");

    let not_json = unique("app/text");
    put_secret(&sdk, &not_json, "just-text-e19").await;
    let err = resolver
        .resolve(&aws_secret(&not_json, Some("password")))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    let text = err.chain().join(" | ");
    assert!(text.contains("not JSON"), "{text}");
    assert!(!text.contains("just-text-e19"), "{text}");
}

#[test]
fn lambda_gets_values_or_with_reference_mode_only_the_references() {
    use deployctl_aws::{EnvValue, LambdaSpec};
    let vars: std::collections::BTreeMap<String, String> = Default::default();
    let load = |mode: &str| {
        let yaml = format!(
            "version: '1'\napp: {{ name: shop }}\nlambda: {{ enabled: true, region: us-east-1{mode} }}\nsecrets:\n  DB: {{ aws_secret: prod/db, key: password }}\n  TOKEN: {{ ssm: /shop/token }}\n"
        );
        let mut c = deployctl_config::load_str(
            &yaml,
            std::path::Path::new("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&vars),
        )
        .unwrap();
        c.set_resolved_secrets(
            [
                ("DB".to_owned(), deployctl_core::Secret::new("db-val-1")),
                ("TOKEN".to_owned(), deployctl_core::Secret::new("tok-val-1")),
            ]
            .into(),
        )
        .unwrap();
        LambdaSpec::from_config(&c, "123456789012", REGION, "repo")
    };
    let by_value = load("");
    match &by_value.environment["DB"] {
        EnvValue::Secret(s) => assert_eq!(s.expose(), "db-val-1"),
        other => panic!("{other:?}"),
    }
    assert!(!by_value.environment.contains_key("DB_SECRET_ARN"));

    let by_reference = load(", secrets: reference");
    assert!(!by_reference.environment.contains_key("DB"));
    assert!(!by_reference.environment.contains_key("TOKEN"));
    match (
        &by_reference.environment["DB_SECRET_ARN"],
        &by_reference.environment["TOKEN_SSM_PARAMETER"],
    ) {
        (EnvValue::Plain(a), EnvValue::Plain(b)) => {
            assert_eq!((a.as_str(), b.as_str()), ("prod/db", "/shop/token"));
        }
        other => panic!("{other:?}"),
    }
}

/// Refused access (the answer an identity without `secretsmanager:GetSecretValue` gets,
/// injected by the fault proxy in front of moto) is an environment problem naming the secret
/// and pointing at the credentials; the same for SSM's `GetParameter`.
#[tokio::test]
async fn denied_access_is_an_environment_error_naming_the_reference() {
    use deployctl_testsupport::faults::{Canned, Effect, Match, Proxy, Rule, When};
    let Some(aws) = deployctl_testsupport::aws() else {
        return;
    };
    let proxy = Proxy::start(&aws.endpoint).unwrap();
    let denied = |code: &str| {
        Effect::Respond(Canned {
            status: 400,
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amzn-errortype".into(), code.into()),
            ],
            body: format!(
                r#"{{"__type":"{code}","message":"User is not authorized to perform this action"}}"#
            ),
        })
    };
    proxy.push(Rule::new(
        Match::op("GetSecretValue"),
        When::Every,
        denied("AccessDeniedException"),
    ));
    proxy.push(Rule::new(
        Match::op("GetParameter"),
        When::Every,
        denied("AccessDeniedException"),
    ));
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(proxy.url())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let resolver = AwsSecretResolver::new(&sdk);
    for source in [
        aws_secret("prod/db", Some("password")),
        SecretSource::Ssm {
            name: "/prod/token".into(),
        },
    ] {
        let err = resolver.resolve(&source).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Environment, "{}", err.message);
        assert!(err.message.contains(source.id()), "{}", err.message);
        assert!(err.message.contains("not authorized"), "{}", err.message);
        let hint = err.hint.unwrap_or_default();
        assert!(hint.contains("credentials"), "{hint}");
    }
    assert_eq!(proxy.count("GetSecretValue"), 1);
    assert_eq!(proxy.count("GetParameter"), 1);
}
