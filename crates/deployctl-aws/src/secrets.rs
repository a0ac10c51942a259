//! Secret values from AWS Secrets Manager (`GetSecretValue`) and SSM Parameter Store
//! (`GetParameter` with decryption): the [`SecretResolver`] the binary asks before a deploy.
//!
//! Reads only. A missing secret, parameter or JSON key is an [`AwsError::SecretMissing`]
//! (bad input); refused access keeps the service's code and is an environment problem.
//! Neither the errors nor the logs carry a value: a value is wrapped in a [`Secret`] (which
//! also registers it for scrubbing) as soon as it is read.

use async_trait::async_trait;
use deployctl_core::{Secret, SecretResolver, SecretSource, StageError};

use crate::error::AwsError;

/// Reads secret values with the clients of one AWS account and region.
#[derive(Debug, Clone)]
pub struct AwsSecretResolver {
    secretsmanager: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

impl AwsSecretResolver {
    /// A resolver whose clients come from `config` (the caller's one `SdkConfig`).
    pub fn new(config: &aws_types::SdkConfig) -> Self {
        Self {
            secretsmanager: aws_sdk_secretsmanager::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }

    /// A resolver over clients made by the caller.
    pub fn from_clients(
        secretsmanager: aws_sdk_secretsmanager::Client,
        ssm: aws_sdk_ssm::Client,
    ) -> Self {
        Self {
            secretsmanager,
            ssm,
        }
    }

    /// The value `source` names.
    pub async fn fetch(&self, source: &SecretSource) -> Result<Secret, AwsError> {
        match source {
            SecretSource::AwsSecret { id, key } => {
                let out = self
                    .secretsmanager
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| {
                        missing_or(
                            AwsError::sdk("secretsmanager", "GetSecretValue", id.clone(), e),
                            source,
                        )
                    })?;
                let Some(text) = out.secret_string() else {
                    return Err(AwsError::SecretMissing {
                        reference: source.to_string(),
                        reason:
                            "the secret has no text value (a binary secret, or no current version)"
                                .into(),
                    });
                };
                match key {
                    None => Ok(Secret::new(text)),
                    Some(k) => json_field(text, k, source),
                }
            }
            SecretSource::Ssm { name } => {
                let out = self
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        missing_or(
                            AwsError::sdk("ssm", "GetParameter", name.clone(), e),
                            source,
                        )
                    })?;
                match out.parameter().and_then(|p| p.value()) {
                    Some(v) => Ok(Secret::new(v)),
                    None => Err(AwsError::SecretMissing {
                        reference: source.to_string(),
                        reason: "the parameter has no value".into(),
                    }),
                }
            }
            _ => Err(AwsError::Invalid {
                field: "secrets".into(),
                message: format!("{source} is not a source this version can read"),
            }),
        }
    }
}

/// A not-found answer as [`AwsError::SecretMissing`]; anything else as it is.
fn missing_or(err: AwsError, source: &SecretSource) -> AwsError {
    match err.code() {
        Some("ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound") => {
            AwsError::SecretMissing {
                reference: source.to_string(),
                reason: "not found in this account and region".into(),
            }
        }
        _ => err,
    }
}

/// The field `key` of the JSON object `text`: a string as is, anything else as compact JSON.
fn json_field(text: &str, key: &str, source: &SecretSource) -> Result<Secret, AwsError> {
    let missing = |reason: &str| AwsError::SecretMissing {
        reference: source.to_string(),
        reason: reason.to_owned(),
    };
    // serde_json's messages name a line and column, never the text; they are not kept.
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| missing("the secret's value is not JSON, so it has no key"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(missing(
            "the secret's value is not a JSON object, so it has no key",
        ));
    };
    match fields.remove(key) {
        Some(serde_json::Value::String(s)) => Ok(Secret::new(s)),
        Some(serde_json::Value::Null) | None => {
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            Err(missing(&format!(
                "the secret's JSON has no key `{key}` (its keys: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )))
        }
        Some(other) => Ok(Secret::new(other.to_string())),
    }
}

#[async_trait]
impl SecretResolver for AwsSecretResolver {
    async fn resolve(&self, source: &SecretSource) -> Result<Secret, StageError> {
        self.fetch(source).await.map_err(StageError::from)
    }
}
