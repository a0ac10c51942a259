//! The AWS Lambda target of deployctl.
//!
//! Deploys one container image, by digest, as a Lambda function: the execution role (IAM),
//! the function (created or updated, code and configuration as separate, awaited calls), a
//! published version per deploy behind the `live` alias, an API Gateway HTTP API in front of
//! the alias, an optional function URL, and the function's CloudWatch log group. It also reads
//! status and logs, rolls the alias back and destroys what it created.
//!
//! How it works: every operation first *observes* the account with read-only calls
//! (`observe`), compares that with the desired [`LambdaSpec`] (`diff`), and only then makes
//! the mutating calls the difference needs (`apply`, `destroy`). An unchanged redeploy
//! therefore makes no mutating call at all; [`CallLog`] proves it by recording every call.
//!
//! Two deploys of one function never interleave: [`LambdaTarget`] offers a deploy lock
//! ([`SsmLock`], SSM Parameter Store parameters) that the pipeline holds around apply and
//! verify, and every Lambda update passes the `RevisionId` it read, so a change made by
//! anybody else in between fails the deploy instead of being overwritten.
//!
//! Secret values kept in AWS Secrets Manager or SSM Parameter Store are read by
//! [`AwsSecretResolver`] (the core's `SecretResolver`), before anything changes.
//!
//! Boundary: this crate talks to Lambda, IAM, API Gateway v2, CloudWatch Logs, SSM
//! Parameter Store (locks, and secret values read) and Secrets Manager (read only) through
//! clients it is given ([`AwsClients`], [`AwsSecretResolver`], built from the caller's
//! `SdkConfig`). It never builds
//! or pushes images (that is `deployctl-image` / `deployctl-registry`) and never loads AWS
//! configuration itself. Everything it creates carries the tags `deployctl:app` and
//! `deployctl:managed-by`; it never changes or deletes a resource without them.

mod apply;
mod clients;
mod destroy;
mod diff;
mod error;
mod lock;
mod observe;
mod records;
mod secrets;
mod spec;
mod target;
mod task;
mod verify;

pub use clients::{AwsClients, Call, CallLog};
pub use error::AwsError;
pub use lock::{LOCK_ROOT, SsmLock};
pub use records::RECORDS_ROOT;
pub use secrets::AwsSecretResolver;
pub use spec::{
    ALIAS, ApiSpec, CorsSpec, EnvValue, LAMBDA_TRUST_POLICY, LambdaScope, LambdaSpec, MANAGED_BY,
    RoleSpec, TAG_APP, TAG_MANAGED_BY, role_name,
};
pub use target::{LambdaTarget, first_deploy_plan};
pub use task::TASK_RUNNER;
pub use verify::{VerifyMethod, http_api_event};
