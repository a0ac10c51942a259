//! AWS wiring: one `aws_config` load, the account, the ECR repository and the Lambda target.

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::Region;
use deployctl_aws::{AwsClients, CallLog, LambdaSpec, LambdaTarget};
use deployctl_config::Config;
use deployctl_core::{CredentialSource, ImageRef, RegistryCredentials, StageError};
use deployctl_registry::EcrCredentials;

use super::image_repository;
use crate::output::Failure;

/// Environment variable that sends ECR image pushes to another registry address (an
/// emulator's registry); every ECR API call still goes to the AWS endpoint.
pub const PUSH_ENDPOINT_ENV: &str = "DEPLOYCTL_ECR_PUSH_ENDPOINT";

/// Everything AWS, loaded once.
#[derive(Debug, Clone)]
pub struct AwsContext {
    pub sdk: aws_types::SdkConfig,
    pub account: String,
    pub region: String,
    /// An endpoint override is set (an emulator such as moto, or LocalStack).
    pub emulated: bool,
    /// Every AWS call the targets make (reported as `aws_calls` in results).
    pub calls: CallLog,
}

/// Loads the AWS config (default credential chain, profiles, `AWS_REGION` or
/// `lambda.region`, `AWS_ENDPOINT_URL`) and checks the credentials with
/// `sts:GetCallerIdentity`, a read-only call.
pub async fn context(config: &Config) -> Result<AwsContext, Failure> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.lambda.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
        Failure::environment("no AWS region is set")
            .hint("set lambda.region in deploy.yaml, or AWS_REGION / a profile's region")
    })?;
    let who = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            let mut f = Failure::environment("cannot use the AWS credentials (sts:GetCallerIdentity failed)")
                .hint("set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`; check network access to AWS (or AWS_ENDPOINT_URL for an emulator)");
            f.causes
                .push(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string());
            f
        })?;
    let account = who.account().unwrap_or_default().to_owned();
    let emulated = sdk.endpoint_url().is_some();
    Ok(AwsContext {
        sdk,
        account,
        region,
        emulated,
        calls: CallLog::new(),
    })
}

/// The ECR repository URI (no tag) the Lambda function's image lives in.
pub fn lambda_repository(config: &Config, aws: &AwsContext) -> Result<String, Failure> {
    match &config.registry {
        None => Ok(format!(
            "{}.dkr.ecr.{}.amazonaws.com/{}",
            aws.account, aws.region, config.app.name
        )),
        Some(r) => {
            let repo = image_repository(config);
            let is_ecr = ImageRef::parse(&repo).is_ok_and(|i| i.is_ecr());
            if is_ecr {
                Ok(repo)
            } else {
                Err(Failure::invalid(format!("Lambda runs images only from Amazon ECR, but registry.url is `{}`", r.url),
                )
                .hint(format!(
                    "remove `registry:` to use {}.dkr.ecr.{}.amazonaws.com/{}, or set registry.url to an ECR registry",
                    aws.account, aws.region, config.app.name
                )))
            }
        }
    }
}

/// Where the push actually goes: the ECR repository, or the same repository path on
/// `DEPLOYCTL_ECR_PUSH_ENDPOINT` / `lambda.ecr.push_endpoint`.
pub fn push_endpoint(config: &Config) -> Option<String> {
    std::env::var(PUSH_ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| config.lambda.ecr.push_endpoint.clone())
        .map(|v| v.trim().trim_end_matches('/').to_owned())
}

/// The Lambda target for `config`.
pub fn lambda_target(config: &Config, aws: &AwsContext) -> Result<LambdaTarget, Failure> {
    let repo = lambda_repository(config, aws)?;
    let spec =
        LambdaSpec::from_config(config, &aws.account, &aws.region, &repo).emulated(aws.emulated);
    Ok(LambdaTarget::new(
        AwsClients::with_call_log(&aws.sdk, &aws.calls),
        spec,
    ))
}

/// ECR credentials handed to a different push address (the push-endpoint setting): the
/// token is fetched for the ECR registry and used for `endpoint`.
#[derive(Debug)]
pub struct EcrViaEndpoint {
    pub ecr: EcrCredentials,
    pub ecr_registry: String,
    pub endpoint: String,
}

#[async_trait]
impl CredentialSource for EcrViaEndpoint {
    fn name(&self) -> &str {
        "ecr (push endpoint)"
    }

    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError> {
        if registry != self.endpoint {
            return Ok(None);
        }
        let token = self
            .ecr
            .token(&self.ecr_registry)
            .await
            .map_err(StageError::from)?;
        Ok(Some(RegistryCredentials::new(
            registry,
            token.username,
            token.password,
            format!("amazon ecr token for {}", self.ecr_registry),
        )))
    }
}

/// `{"total": n, "mutating": m, "mutating_operations": [...]}` for a result object.
pub fn calls_json(calls: &CallLog) -> serde_json::Value {
    let all = calls.calls();
    let mutating: Vec<String> = all
        .iter()
        .filter(|c| c.is_mutating())
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect();
    serde_json::json!({
        "total": all.len(),
        "mutating": mutating.len(),
        "mutating_operations": mutating,
    })
}
