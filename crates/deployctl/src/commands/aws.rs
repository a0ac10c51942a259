//! AWS wiring: one `aws_config` load, the account, the ECR repository and the Lambda target.

use aws_config::BehaviorVersion;
use aws_config::Region;
use deployctl_aws::{AwsClients, CallLog, LambdaSpec, LambdaTarget};
use deployctl_config::Config;

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

impl AwsContext {
    /// An ECR client whose calls go into the run's call log, like every other AWS call.
    pub fn ecr_client(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::from_conf(
            aws_sdk_ecr::config::Builder::from(&self.sdk)
                .interceptor(self.calls.clone())
                .build(),
        )
    }

    /// The account's Amazon ECR, for pushes.
    pub fn ecr_account(&self) -> deployctl_registry::EcrAccount {
        deployctl_registry::EcrAccount {
            client: self.ecr_client(),
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

/// Loads the AWS config (default credential chain, profiles, `AWS_REGION` or
/// `lambda.region`, `AWS_ENDPOINT_URL`) and checks the credentials with
/// `sts:GetCallerIdentity`, a read-only call. Every call is bounded in time
/// ([`super::call_timeout`]): an endpoint that stops answering fails the call, naming it.
pub async fn context(config: &Config) -> Result<AwsContext, Failure> {
    let sdk = sdk_config(config).await?;
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

/// The run's AWS configuration (default credential chain, profiles, `AWS_REGION` or
/// `lambda.region`, `AWS_ENDPOINT_URL`), every call bounded in time; no call is made.
/// [`context`] builds on it; a run that needs AWS only to read secret values (a
/// Kubernetes-only deploy) uses it alone.
pub async fn sdk_config(config: &Config) -> Result<aws_types::SdkConfig, Failure> {
    let attempt = super::call_timeout::per_attempt()?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(super::call_timeout::aws(attempt));
    if let Some(region) = &config.lambda.region {
        loader = loader.region(Region::new(region.clone()));
    }
    Ok(loader.load().await)
}

/// The ECR repository URI (no tag) the Lambda function's image lives in.
pub fn lambda_repository(config: &Config, aws: &AwsContext) -> Result<String, Failure> {
    deployctl_registry::lambda_repository(config, &aws.account, &aws.region)
        .map_err(|e| Failure::from_stage(&e.into()))
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
