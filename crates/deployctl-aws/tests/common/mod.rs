//! Shared by the Lambda adapter's tests: an SDK configuration for moto_server (from
//! `cargo xtask services up`) and unique names, so tests run in parallel against one moto.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_sdk_lambda::config::{Credentials, Region};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The SDK configuration every client of a test uses: moto, test credentials, `REGION`.
/// `None` (printed; a failure when CI=true) when moto is not running.
pub async fn sdk() -> Option<aws_types::SdkConfig> {
    let aws = deployctl_testsupport::aws()?;
    Some(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(aws.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await,
    )
}

/// `<prefix>-<n>`, unique across the tests of a run.
pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}", n % 1_000_000_000_000)
}
