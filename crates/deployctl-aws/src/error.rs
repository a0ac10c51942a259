//! What can go wrong deploying to Lambda.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use deployctl_core::{ErrorKind, StageError};

/// A Lambda target failure. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// An AWS API call failed.
    #[error("AWS {service} {operation} failed for {resource}: {message}")]
    Call {
        /// Service (`lambda`, `iam`, `apigateway`, `logs`, `ssm`).
        service: &'static str,
        /// API operation.
        operation: &'static str,
        /// The resource it was about.
        resource: String,
        /// The service's error code, when it sent one.
        code: Option<String>,
        /// The service's message (or the transport failure).
        message: String,
        /// Whether it failed before reaching the service (credentials, network).
        transport: bool,
    },
    /// A resource with deployctl's name exists but deployctl did not create it.
    #[error(
        "{kind} `{name}` exists but was not created by deployctl (no deployctl:managed-by tag)"
    )]
    NotManaged {
        /// Resource kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The execution role cannot be used by Lambda.
    #[error("IAM role `{role}` cannot be used by Lambda: {reason}")]
    Role {
        /// Role name.
        role: String,
        /// Why.
        reason: String,
    },
    /// Something deployctl needs is not there (a version to roll back to, a deployment).
    #[error("{0}")]
    Missing(String),
    /// A value from the config or a flag cannot be used.
    #[error("{field}: {message}")]
    Invalid {
        /// Field path or flag.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A wait for the function ended without it becoming ready.
    #[error("Lambda function `{function}` did not become {state}: {reason}")]
    NotReady {
        /// Function name.
        function: String,
        /// The state waited for.
        state: &'static str,
        /// Why.
        reason: String,
    },
    /// The deployment does not answer its health path.
    #[error("{what} did not answer the health path with success within {seconds} s (last: {last})")]
    Unhealthy {
        /// What was checked: a URL, or `lambda:Invoke <function>:live`.
        what: String,
        /// `http` or `invoke`.
        method: &'static str,
        /// The deadline.
        seconds: u64,
        /// The last answer or failure.
        last: String,
    },
    /// A conditional update (`RevisionId`) found the resource changed since it was read.
    #[error(
        "the function changed since it was read (another deploy?) — re-run ({service} {operation} on {resource} refused the RevisionId it was read with)"
    )]
    Changed {
        /// Service (`lambda`).
        service: &'static str,
        /// API operation.
        operation: &'static str,
        /// The function or alias.
        resource: String,
    },
    /// A secret reference names nothing readable: no such secret or parameter, or no such
    /// key in the secret's JSON. Never carries the value.
    #[error("{reference}: {reason}")]
    SecretMissing {
        /// The reference as the config names it (`aws_secret `db` key `password``).
        reference: String,
        /// What is missing.
        reason: String,
    },
    /// A hook task's invoke of the function returned a function error.
    #[error("task invoke of {function} returned a function error ({error}): {payload}")]
    Task {
        /// The qualified function invoked (`name:version`).
        function: String,
        /// Lambda's `FunctionError` (`Unhandled`, `Handled`).
        error: String,
        /// The start of the response payload (the error object).
        payload: String,
    },
    /// Ctrl-C.
    #[error("interrupted before {0}")]
    Cancelled(String),
}

/// A response body in a few words: an HTML page's `<title>`, else its text without markup,
/// on one line, at most 160 characters.
fn body_summary(body: &str) -> String {
    let lower = body.to_ascii_lowercase();
    let text = match (lower.find("<title>"), lower.find("</title>")) {
        (Some(a), Some(b)) if b > a + 7 => body[a + 7..b].to_owned(),
        _ => body
            .split(['<', '>'])
            .step_by(2)
            .collect::<Vec<_>>()
            .join(" "),
    };
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(160)
        .collect()
}

impl AwsError {
    /// Maps an SDK error on `operation` for `resource`.
    pub(crate) fn sdk<E>(
        service: &'static str,
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        // Only a request that never reached the service is an environment problem. A call
        // that timed out or lost its connection mid-answer may have been carried out: the
        // deploy failed there, and running it again converges.
        let transport = match &err {
            SdkError::ConstructionFailure(_) => true,
            SdkError::DispatchFailure(_) => deployctl_core::never_connected(&err),
            _ => false,
        };
        let code = err.code().map(str::to_owned);
        if code.as_deref() == Some("PreconditionFailedException") {
            return AwsError::Changed {
                service,
                operation,
                resource: resource.into(),
            };
        }
        let message = match (err.message(), err.raw_response()) {
            (Some(m), _) if !m.is_empty() => m.to_owned(),
            // No code or message the SDK could read: the status and the start of the body,
            // never the SDK's debug dump.
            (_, Some(raw)) => {
                let body = raw
                    .body()
                    .bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let status = raw.status().as_u16();
                let text = body_summary(&body);
                if text.is_empty() {
                    format!("HTTP {status}")
                } else if text.starts_with(&status.to_string()) {
                    format!("HTTP {text}")
                } else {
                    format!("HTTP {status}: {text}")
                }
            }
            _ => DisplayErrorContext(&err).to_string(),
        };
        AwsError::Call {
            service,
            operation,
            resource: resource.into(),
            code,
            message,
            transport,
        }
    }

    /// The service error code, if this is a failed call.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            AwsError::Changed { .. } => Some("PreconditionFailedException"),
            _ => None,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            AwsError::Call {
                code, transport, ..
            } => {
                let auth = code.as_deref().is_some_and(|c| {
                    matches!(
                        c,
                        "AccessDenied"
                            | "AccessDeniedException"
                            | "UnrecognizedClientException"
                            | "InvalidClientTokenId"
                            | "ExpiredToken"
                            | "ExpiredTokenException"
                            | "SignatureDoesNotMatch"
                            | "InvalidSignatureException"
                    )
                });
                if auth || *transport {
                    ErrorKind::Environment
                } else {
                    ErrorKind::Failed
                }
            }
            AwsError::NotManaged { .. }
            | AwsError::Invalid { .. }
            | AwsError::Role { .. }
            | AwsError::SecretMissing { .. } => ErrorKind::InvalidInput,
            AwsError::Missing(_)
            | AwsError::NotReady { .. }
            | AwsError::Unhealthy { .. }
            | AwsError::Changed { .. }
            | AwsError::Task { .. } => ErrorKind::Failed,
            AwsError::Cancelled(_) => ErrorKind::Cancelled,
        }
    }

    fn hint(&self) -> String {
        match self {
            AwsError::Call {
                transport: true, ..
            } => "check AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID), the region and network access to the AWS endpoint (AWS_ENDPOINT_URL when using an emulator)".into(),
            AwsError::Call { code, .. } if self.kind() == ErrorKind::Environment => format!(
                "the AWS credentials were refused ({}); check they are current and allowed the actions listed in docs/LAMBDA.md",
                code.as_deref().unwrap_or("access denied")
            ),
            AwsError::Call { .. } => "fix the cause above and run the command again; deployctl converges from any partial state".into(),
            AwsError::NotManaged { kind, .. } => format!(
                "choose another name (lambda.function.name / app.name), or delete the existing {kind} if it is unused; deployctl never changes resources it did not create"
            ),
            AwsError::Role { .. } => "give a role whose trust policy allows lambda.amazonaws.com to sts:AssumeRole, or remove lambda.iam.role to let deployctl create one".into(),
            AwsError::Missing(_) => "run `deployctl status lambda` to see what is deployed".into(),
            AwsError::Invalid { .. } => "fix deploy.yaml and run again".into(),
            AwsError::NotReady { .. } => "look at the function's state in `deployctl status lambda` and its logs in `deployctl logs lambda`, then deploy again".into(),
            AwsError::Unhealthy { .. } => "read the function's output with `deployctl logs lambda`; the health path is app.health_check_path, and the image needs the AWS Lambda Web Adapter in /opt/extensions (deployctl init's Dockerfile has it); `--no-verify` skips this check".into(),
            AwsError::Changed { .. } => "another deploy or a person changed the function while this one ran; `deployctl status lambda` shows what is live now, and running the command again converges to this deploy".into(),
            AwsError::SecretMissing { .. } => "create it (or fix the reference under `secrets:` in deploy.yaml); deployctl reads it in the region of the AWS configuration (lambda.region, AWS_REGION) and changed nothing".into(),
            AwsError::Task { .. } => "the alias was not moved: the previous version stays live; read the function's output with `deployctl logs lambda`, fix the task and deploy again".into(),
            AwsError::Cancelled(_) => "run the same command again; it continues from what was done".into(),
        }
    }
}

impl From<AwsError> for StageError {
    fn from(e: AwsError) -> Self {
        if let AwsError::Cancelled(what) = &e {
            return StageError::cancelled(what);
        }
        StageError::new(e.kind(), e.to_string())
            .with_hint(e.hint())
            .with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::body_summary;

    #[test]
    fn response_bodies_are_summarised_in_a_few_words() {
        assert_eq!(
            body_summary(
                "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>"
            ),
            "500 Internal Server Error"
        );
        assert_eq!(body_summary("<p>no  title\nhere</p>"), "no title here");
        assert_eq!(body_summary(""), "");
    }
}
