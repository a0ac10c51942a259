//! After a deploy: does the function answer its health path?
//!
//! Two ways, in this order (see [`VerifyMethod`]):
//! 1. **HTTP**: `GET <health path>` on the HTTP API endpoint and the function URL, each when
//!    its host resolves, retried to the deadline. A host that resolves but does not answer
//!    within 15 s falls through to the invoke; one that answers with an error status until the
//!    deadline fails the verification. An emulator's endpoints (made-up AWS host names) are
//!    not tried.
//! 2. **Invoke**: `lambda:Invoke` of the `live` alias with an API Gateway HTTP API (payload
//!    2.0) event for `GET <health path>` — exactly what API Gateway sends — checking the
//!    `statusCode` the function returns, retried to the deadline.
//!
//! Nothing is called "not verifiable" unless it is: only an emulator whose invoke does not run
//! the image (moto stores container functions but cannot execute them) gets that answer, with
//! what the emulator returned quoted.

use std::time::{Duration, Instant, SystemTime};

use deployctl_core::{Cancellation, Endpoint, Verification};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

use crate::error::AwsError;

/// How `verify` checks a Lambda deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyMethod {
    /// HTTP on the endpoints that resolve and answer, else an invoke of the alias.
    #[default]
    Auto,
    /// Always an invoke of the alias (`--verify=invoke`), whatever the endpoints.
    Invoke,
}

/// What a verification needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Check<'a> {
    pub lambda: &'a aws_sdk_lambda::Client,
    /// `function:alias` to invoke.
    pub qualified_name: String,
    pub health_path: &'a str,
    pub deadline: Duration,
    pub retry_every: Duration,
    /// The AWS endpoint is an emulator.
    pub emulated: bool,
    pub method: VerifyMethod,
}

/// How long an endpoint that resolves but never answers is retried before the invoke.
const NO_ANSWER_BUDGET: Duration = Duration::from_secs(15);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn healthy(url: String, method: &str, status: u16, latency: Duration) -> Verification {
    Verification::Healthy {
        url,
        method: method.to_owned(),
        status,
        latency_ms: millis(latency),
    }
}

/// The first `n` characters of `s`, on one line.
fn excerpt(s: &str, n: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > n {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    } else {
        one_line
    }
}

/// One HTTP answer, or why there was none.
enum Reply {
    Status(u16, Duration),
    /// No DNS answer for the host.
    Unresolved(String),
    /// Resolved, but no HTTP answer (refused, reset, timed out).
    Silent(String),
}

async fn get(url: &str) -> Reply {
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return Reply::Unresolved(format!("`{url}` is not a URL: {e}")),
    };
    let Some(host) = uri.host().map(str::to_owned) else {
        return Reply::Unresolved(format!("`{url}` has no host"));
    };
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(addrs)) => {
            if addrs.count() == 0 {
                return Reply::Unresolved(format!("{host} has no address"));
            }
        }
        Ok(Err(e)) => return Reply::Unresolved(format!("{host} does not resolve: {e}")),
        Err(_) => return Reply::Unresolved(format!("{host} did not resolve within 5 s")),
    }
    let https = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
    {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => return Reply::Silent(format!("no TLS trust roots on this machine: {e}")),
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(https);
    let request = match hyper::Request::get(uri)
        .header(
            "user-agent",
            concat!("deployctl/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(e) => return Reply::Unresolved(format!("cannot make a request for `{url}`: {e}")),
    };
    let start = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            // Read the body so the connection ends cleanly; its content does not matter.
            let _ = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
            Reply::Status(status, start.elapsed())
        }
        Ok(Err(e)) => Reply::Silent(e.to_string()),
        Err(_) => Reply::Silent("no answer within 10 s".into()),
    }
}

/// An API Gateway HTTP API (payload format 2.0) event for `GET path`.
pub fn http_api_event(path: &str) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {
            "accept": "*/*",
            "host": "deployctl.verify",
            "user-agent": concat!("deployctl/", env!("CARGO_PKG_VERSION")),
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "deployctl",
            "domainName": "deployctl.verify",
            "domainPrefix": "deployctl",
            "http": {
                "method": "GET",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": concat!("deployctl/", env!("CARGO_PKG_VERSION")),
            },
            "requestId": format!("deployctl-verify-{}", now.as_millis()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": u64::try_from(now.as_millis()).unwrap_or(0),
        },
        "isBase64Encoded": false,
    })
}

/// What one invoke said.
enum Invoked {
    Status(u16, Duration),
    /// The function ran but its answer is not an HTTP response (or it raised an error).
    NotHttp(String),
    /// The call itself failed.
    CallFailed(AwsError),
}

async fn invoke(check: &Check<'_>) -> Invoked {
    let payload = http_api_event(check.health_path).to_string();
    let start = Instant::now();
    let result = check
        .lambda
        .invoke()
        .function_name(&check.qualified_name)
        .payload(aws_smithy_types::Blob::new(payload))
        // One attempt per check: the check's own loop retries (every `retry_every`, up to
        // its deadline), so the SDK's backoff would only add pauses — on an emulator that
        // cannot run the image, seconds spent learning nothing.
        .customize()
        .config_override(
            aws_sdk_lambda::config::Builder::default()
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled()),
        )
        .send()
        .await;
    let out = match result {
        Ok(o) => o,
        Err(e) => {
            return Invoked::CallFailed(AwsError::sdk(
                "lambda",
                "Invoke",
                &check.qualified_name,
                e,
            ));
        }
    };
    let elapsed = start.elapsed();
    let body = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(err) = out.function_error() {
        return Invoked::NotHttp(format!("function error ({err}): {}", excerpt(&body, 200)));
    }
    let status = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("statusCode").and_then(serde_json::Value::as_u64))
        .and_then(|s| u16::try_from(s).ok());
    match status {
        Some(s) => Invoked::Status(s, elapsed),
        None => Invoked::NotHttp(format!(
            "an answer without a statusCode: `{}`",
            excerpt(&body, 120)
        )),
    }
}

/// What an emulator that cannot run container images said, honestly: not a pass.
fn emulator_cannot_run(what: &str, said: &str, fallbacks: &[String]) -> Verification {
    Verification::NotVerifiable {
        reason: format!(
            "{what} {said} — the AWS emulator stores container functions but does not run them{}",
            if fallbacks.is_empty() {
                String::new()
            } else {
                format!("; HTTP not tried: {}", fallbacks.join("; "))
            }
        ),
    }
}

fn ok(status: u16) -> bool {
    (200..400).contains(&status)
}

/// Checks `endpoints` (HTTP) and, when none answered or when asked, the alias (invoke).
pub(crate) async fn verify(
    check: &Check<'_>,
    endpoints: &[Endpoint],
    cancel: &Cancellation,
) -> Result<Vec<Verification>, AwsError> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut fallbacks: Vec<String> = Vec::new();
    if check.method == VerifyMethod::Auto {
        for e in endpoints {
            if !e.verifiable {
                fallbacks.push(format!(
                    "{} {} is an address the AWS emulator made up",
                    e.kind, e.url
                ));
                continue;
            }
            let url = format!("{}{}", e.url.trim_end_matches('/'), check.health_path);
            let started = Instant::now();
            loop {
                if cancel.is_cancelled() {
                    return Err(AwsError::Cancelled("the health check".into()));
                }
                let reply = get(&url).await;
                match &reply {
                    Reply::Status(s, latency) if ok(*s) => {
                        out.push(healthy(url.clone(), "http", *s, *latency));
                        break;
                    }
                    Reply::Unresolved(why) => {
                        fallbacks.push(format!("{} {}: {why}", e.kind, e.url));
                        break;
                    }
                    // Resolves but does not answer: not for long, the invoke can tell.
                    Reply::Silent(why) if started.elapsed() >= NO_ANSWER_BUDGET => {
                        fallbacks.push(format!("{} {}: {why}", e.kind, e.url));
                        break;
                    }
                    _ => {}
                }
                if start.elapsed() >= check.deadline {
                    match reply {
                        // It answers, with an error: the deployment is not healthy.
                        Reply::Status(s, _) => {
                            return Err(AwsError::Unhealthy {
                                what: url,
                                method: "http",
                                seconds: check.deadline.as_secs(),
                                last: format!("HTTP {s}"),
                            });
                        }
                        Reply::Silent(why) => {
                            fallbacks.push(format!("{} {}: {why}", e.kind, e.url))
                        }
                        Reply::Unresolved(_) => {}
                    }
                    break;
                }
                tokio::time::sleep(check.retry_every).await;
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    let what = format!("lambda:Invoke {}", check.qualified_name);
    let mut last;
    loop {
        if cancel.is_cancelled() {
            return Err(AwsError::Cancelled("the health check".into()));
        }
        match invoke(check).await {
            Invoked::Status(s, latency) if ok(s) => {
                out.push(healthy(what, "invoke", s, latency));
                return Ok(out);
            }
            Invoked::Status(s, _) => last = format!("statusCode {s}"),
            Invoked::NotHttp(said) if check.emulated => {
                out.push(emulator_cannot_run(
                    &what,
                    &format!("answered with {said}"),
                    &fallbacks,
                ));
                return Ok(out);
            }
            Invoked::NotHttp(said) => last = said,
            Invoked::CallFailed(e) if check.emulated => {
                out.push(emulator_cannot_run(
                    &what,
                    &format!("failed: {e}"),
                    &fallbacks,
                ));
                return Ok(out);
            }
            Invoked::CallFailed(e) => last = e.to_string(),
        }
        if start.elapsed() >= check.deadline {
            return Err(AwsError::Unhealthy {
                what,
                method: "invoke",
                seconds: check.deadline.as_secs(),
                last,
            });
        }
        tokio::time::sleep(check.retry_every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{excerpt, http_api_event};

    #[test]
    fn the_event_is_an_http_api_v2_get_of_the_path() {
        let e = http_api_event("/health?deep=1");
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawPath"], "/health");
        assert_eq!(e["rawQueryString"], "deep=1");
        assert_eq!(e["requestContext"]["http"]["method"], "GET");
        assert_eq!(e["requestContext"]["http"]["path"], "/health");
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt("a\n  b", 10), "a b");
        assert_eq!(excerpt(&"x".repeat(50), 10), format!("{}…", "x".repeat(10)));
    }
}
