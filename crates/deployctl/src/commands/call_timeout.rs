//! How long one call to AWS or to the Kubernetes API may wait for its answer, so that a
//! server or network that stops answering fails the command instead of hanging it.

use std::time::Duration;

use crate::cli::Seconds;
use crate::output::Failure;

/// Environment variable that overrides [`DEFAULT`] (`30s`, `2m`; whole seconds).
pub const ENV: &str = "DEPLOYCTL_CALL_TIMEOUT";

/// One attempt of one call. Generous for AWS control-plane calls and the Kubernetes API
/// (which answer in well under a second when healthy); `lambda:Invoke` used by verification
/// returns when the function's health path answers.
pub const DEFAULT: Duration = Duration::from_secs(60);

/// The timeout for one attempt of one call: `DEPLOYCTL_CALL_TIMEOUT`, else [`DEFAULT`].
pub fn per_attempt() -> Result<Duration, Failure> {
    let Some(v) = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT);
    };
    match <Seconds as argh::FromArgValue>::from_arg_value(&v) {
        Ok(Seconds(s)) if s > 0 => Ok(Duration::from_secs(s)),
        Ok(_) => Err(Failure::invalid(format!("{ENV}=0 would fail every call"))
            .hint("give a duration such as 30s or 2m, or unset it for the default (60s)")),
        Err(e) => Err(Failure::invalid(format!("{ENV}: {e}"))),
    }
}

/// The AWS SDK's timeouts: each attempt is bounded by `attempt`; the whole call, retries
/// and their back-off included (the SDK makes up to 3 attempts), by three attempts plus
/// 20 s; connecting by 5 s.
pub fn aws(attempt: Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3 + Duration::from_secs(20))
        .build()
}
