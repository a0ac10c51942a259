//! The AWS clients the target uses, made from one `SdkConfig`, and a call log.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The service clients of one AWS account and region.
///
/// Build them once from the `SdkConfig` the caller loaded (`aws_config::defaults(…).load()`),
/// so every client shares credentials, region, endpoint and HTTP client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AwsClients {
    /// AWS Lambda.
    pub lambda: aws_sdk_lambda::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// API Gateway v2 (HTTP APIs).
    pub apigateway: aws_sdk_apigatewayv2::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// SSM Parameter Store: the deploy lock ([`crate::SsmLock`]).
    pub ssm: aws_sdk_ssm::Client,
}

impl AwsClients {
    /// Clients from `config`.
    pub fn new(config: &aws_types::SdkConfig) -> Self {
        Self::build(config, None)
    }

    /// Clients from `config` whose every call is recorded in `log`.
    pub fn with_call_log(config: &aws_types::SdkConfig, log: &CallLog) -> Self {
        Self::build(config, Some(log))
    }

    /// Clients made by the caller (e.g. with extra interceptors).
    pub fn from_clients(
        lambda: aws_sdk_lambda::Client,
        iam: aws_sdk_iam::Client,
        apigateway: aws_sdk_apigatewayv2::Client,
        logs: aws_sdk_cloudwatchlogs::Client,
        ssm: aws_sdk_ssm::Client,
    ) -> Self {
        Self {
            lambda,
            iam,
            apigateway,
            logs,
            ssm,
        }
    }

    fn build(config: &aws_types::SdkConfig, log: Option<&CallLog>) -> Self {
        macro_rules! client {
            ($sdk:ident) => {{
                let mut b = $sdk::config::Builder::from(config);
                if let Some(log) = log {
                    b = b.interceptor(log.clone());
                }
                $sdk::Client::from_conf(b.build())
            }};
        }
        Self {
            lambda: client!(aws_sdk_lambda),
            iam: client!(aws_sdk_iam),
            apigateway: client!(aws_sdk_apigatewayv2),
            logs: client!(aws_sdk_cloudwatchlogs),
            ssm: client!(aws_sdk_ssm),
        }
    }
}

/// One AWS API call, as recorded by [`CallLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Service name as the SDK knows it (`Lambda`, `IAM`, `ApiGatewayV2`, `CloudWatchLogs`).
    pub service: String,
    /// Operation name (`GetFunction`, `UpdateFunctionConfiguration`).
    pub operation: String,
    /// A write to the deploy lock's parameters (under [`crate::LOCK_ROOT`]) or to the deploy
    /// records (under [`crate::RECORDS_ROOT`]): bookkeeping, not a change to the app.
    pub lock: bool,
}

impl Call {
    /// Whether the operation changes the deployment (anything but Get/List/Describe/Head).
    ///
    /// Not counted, so an unchanged redeploy still counts 0 mutating calls: `Invoke` runs
    /// the function (the post-deploy health check) and changes no resource; the deploy
    /// lock's `PutParameter`/`DeleteParameter` calls are bookkeeping about who is deploying,
    /// and the deploy records' (`history --stats`) about when and how fast it deployed:
    /// every deploy writes its record, changed or not, so counting it would hide whether
    /// the app itself was touched.
    pub fn is_mutating(&self) -> bool {
        !self.lock
            && !["Get", "List", "Describe", "Head", "Filter", "Invoke"]
                .iter()
                .any(|p| self.operation.starts_with(p))
    }
}

/// Whether `input` is a write to a deploy lock or deploy records parameter.
fn is_lock_write(input: &aws_smithy_runtime_api::client::interceptors::context::Input) -> bool {
    use aws_sdk_ssm::operation::{
        delete_parameter::DeleteParameterInput, put_parameter::PutParameterInput,
    };
    let name = input
        .downcast_ref::<PutParameterInput>()
        .and_then(PutParameterInput::name)
        .or_else(|| {
            input
                .downcast_ref::<DeleteParameterInput>()
                .and_then(DeleteParameterInput::name)
        });
    name.is_some_and(|n| {
        [crate::lock::LOCK_ROOT, crate::records::RECORDS_ROOT]
            .iter()
            .any(|root| n.starts_with(&format!("{root}/")))
    })
}

/// An SDK interceptor that records every operation (once per operation, not per retry).
///
/// Attach it with [`AwsClients::with_call_log`] (or any SDK config builder's `interceptor`)
/// to count the mutating calls a deploy made.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl CallLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The mutating calls so far.
    pub fn mutating(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mutating).collect()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "deployctl-call-log"
    }

    // Serialization runs once per operation (retries re-send the same request), and the
    // operation's metadata is in the config bag by then.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>()
            && let Ok(mut calls) = self.calls.lock()
        {
            tracing::debug!(service = m.service(), operation = m.name(), "aws call");
            calls.push(Call {
                service: m.service().to_owned(),
                operation: m.name().to_owned(),
                lock: is_lock_write(context.input()),
            });
        }
        Ok(())
    }
}
