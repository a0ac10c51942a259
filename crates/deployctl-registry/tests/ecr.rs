//! Amazon ECR against moto_server from `cargo xtask services up`.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use aws_sdk_ecr::Client;
use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use deployctl_core::CredentialSource;
use deployctl_registry::{EcrCredentials, ensure_repository};

fn client() -> Option<Client> {
    let aws = deployctl_testsupport::aws()?;
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(aws.endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    Some(Client::from_conf(conf))
}

const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

#[tokio::test]
async fn token_decodes_to_the_ecr_user_and_is_cached() {
    let Some(client) = client() else { return };
    let ecr = EcrCredentials::new(client);
    let first = ecr.credentials(REGISTRY).await.unwrap().unwrap();
    // moto's token decodes to AWS:123456789012-auth-token.
    assert_eq!(first.username, "AWS");
    assert_eq!(first.password.expose(), "123456789012-auth-token");
    assert_eq!(first.source, "amazon ecr");
    let again = ecr.token(REGISTRY).await.unwrap();
    assert_eq!(again, first);
    assert!(
        !format!("{first:?}").contains("auth-token"),
        "the token must not print"
    );
}

#[tokio::test]
async fn non_ecr_hosts_get_no_credentials_and_no_call() {
    // A client to nowhere: a call would fail, so Ok(None) proves no call was made.
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:1")
        .credentials_provider(Credentials::new("x", "y", None, None, "test"))
        .build();
    let ecr = EcrCredentials::new(Client::from_conf(conf));
    assert!(ecr.credentials("127.0.0.1:5000").await.unwrap().is_none());
    assert!(ecr.credentials("ghcr.io").await.unwrap().is_none());
}

#[tokio::test]
async fn repository_is_created_once_with_scanning_tags_and_lifecycle() {
    let Some(client) = client() else { return };
    let name = format!(
        "deployctl-test/ensure-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let first = ensure_repository(&client, &name, "shop", true, 7)
        .await
        .unwrap();
    assert!(first.created);
    assert!(first.uri.ends_with(&name), "{}", first.uri);
    let described = client
        .describe_repositories()
        .repository_names(&name)
        .send()
        .await
        .unwrap();
    let repo = &described.repositories()[0];
    assert_eq!(
        repo.image_scanning_configuration()
            .map(|c| c.scan_on_push()),
        Some(true)
    );
    let tags = client
        .list_tags_for_resource()
        .resource_arn(repo.repository_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert!(
        tags.contains(&("deployctl:managed-by".into(), "deployctl".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("deployctl:app".into(), "shop".into())),
        "{tags:?}"
    );
    let policy = client
        .get_lifecycle_policy()
        .repository_name(&name)
        .send()
        .await
        .unwrap();
    assert!(
        policy
            .lifecycle_policy_text()
            .unwrap()
            .contains("\"countNumber\":7")
    );

    let second = ensure_repository(&client, &name, "shop", true, 7)
        .await
        .unwrap();
    assert!(!second.created, "an existing repository is left as it is");
    assert_eq!(second.uri, first.uri);
}

#[tokio::test]
async fn ecr_failures_name_the_operation() {
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:1")
        .credentials_provider(Credentials::new("x", "y", None, None, "test"))
        .build();
    let err = ensure_repository(&Client::from_conf(conf), "app", "app", true, 10)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("DescribeRepositories") && msg.contains("app"),
        "{msg}"
    );
}

/// Counts GetAuthorizationToken calls that reach the wire.
#[derive(Debug, Clone, Default)]
struct TokenCalls(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for TokenCalls {
    fn name(&self) -> &'static str {
        "token-calls"
    }
    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        if target.ends_with("GetAuthorizationToken") {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_token_is_fetched_once_for_many_pushes() {
    let Some(aws) = deployctl_testsupport::aws() else {
        return;
    };
    let calls = TokenCalls::default();
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(aws.endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .interceptor(calls.clone())
        .build();
    let ecr = EcrCredentials::new(Client::from_conf(conf));
    for _ in 0..5 {
        let c = ecr.credentials(REGISTRY).await.unwrap().unwrap();
        assert_eq!(c.username, "AWS");
    }
    assert_eq!(calls.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn only_a_repository_deployctl_created_is_deleted() {
    let Some(client) = client() else { return };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    let ours = format!("deployctl-test/purge-{stamp}");
    ensure_repository(&client, &ours, "purge", true, 5)
        .await
        .unwrap();
    let theirs = format!("deployctl-test/foreign-{stamp}");
    client
        .create_repository()
        .repository_name(&theirs)
        .send()
        .await
        .unwrap();

    assert!(
        deployctl_registry::delete_repository(&client, &ours)
            .await
            .unwrap()
    );
    assert!(
        !deployctl_registry::delete_repository(&client, &ours)
            .await
            .unwrap(),
        "already gone"
    );
    assert!(
        !deployctl_registry::delete_repository(&client, &theirs)
            .await
            .unwrap()
    );
    let left = client
        .describe_repositories()
        .repository_names(&theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(
        left.repositories().len(),
        1,
        "a repository deployctl did not create was deleted"
    );
}
