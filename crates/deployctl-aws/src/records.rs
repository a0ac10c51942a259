//! The deploy records of a Lambda deployment (issue 18 §4): one SSM parameter next to the
//! deploy lock's, `/deployctl/deploys/<function>/lambda`, holding the newest records that
//! fit a standard parameter (4 KB) as compact JSON.
//!
//! The pipeline writes it while holding the deploy lock, so two deploys never interleave
//! their read and write. Like the lock's writes it is bookkeeping, not a change to the app:
//! [`crate::Call::is_mutating`] does not count it (see `clients.rs`).

use deployctl_core::{DeployRecord, append_record, parse_records};

use crate::error::AwsError;

/// Where every deployctl deploy-records parameter lives.
pub const RECORDS_ROOT: &str = "/deployctl/deploys";

/// A standard parameter's largest value.
const MAX_BYTES: usize = 4096;

/// The records parameter of Lambda function `function`.
pub(crate) fn name(function: &str) -> String {
    format!("{RECORDS_ROOT}/{function}/lambda")
}

/// The records, oldest first (none when the parameter does not exist).
pub(crate) async fn read(
    ssm: &aws_sdk_ssm::Client,
    function: &str,
) -> Result<Vec<DeployRecord>, AwsError> {
    let name = name(function);
    let text = match ssm.get_parameter().name(&name).send().await {
        Ok(out) => out
            .parameter()
            .and_then(|p| p.value())
            .unwrap_or_default()
            .to_owned(),
        Err(e) => {
            let e = AwsError::sdk("ssm", "GetParameter", &name, e);
            if e.code() == Some("ParameterNotFound") {
                return Ok(Vec::new());
            }
            return Err(e);
        }
    };
    parse_records(&text).map_err(|e| AwsError::Invalid {
        field: format!("SSM parameter {name}"),
        message: format!(
            "the deploy records do not parse ({e}); delete the parameter and the next \
             deploy starts them again"
        ),
    })
}

/// Appends `record`, dropping the oldest records that no longer fit.
pub(crate) async fn append(
    ssm: &aws_sdk_ssm::Client,
    function: &str,
    record: &DeployRecord,
) -> Result<(), AwsError> {
    let existing = match read(ssm, function).await {
        Ok(records) => records,
        // Records that do not parse are started again; any other failure stops the write.
        Err(AwsError::Invalid { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let name = name(function);
    ssm.put_parameter()
        .name(&name)
        .value(append_record(existing, record, Some(MAX_BYTES)))
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| AwsError::sdk("ssm", "PutParameter", name, e))?;
    Ok(())
}

/// Deletes the records (destroy); none is fine.
pub(crate) async fn delete(ssm: &aws_sdk_ssm::Client, function: &str) -> Result<(), AwsError> {
    let name = name(function);
    match ssm.delete_parameter().name(&name).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = AwsError::sdk("ssm", "DeleteParameter", name, e);
            if e.code() == Some("ParameterNotFound") {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}
