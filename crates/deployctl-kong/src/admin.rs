//! The Kong Admin API over an HTTP client the caller builds: JSON GET (with `offset`
//! pagination and tag filtering), PUT and DELETE, the token in `Kong-Admin-Token`, every
//! request bounded in time, and a log of the mutating requests (for tests and the summary).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deployctl_core::Secret;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde_json::Value;

use crate::error::KongError;

/// The HTTP(S) client the binary builds (hyper-util's pooled client over hyper-rustls).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// How long one Admin API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The page size asked for when listing.
const PAGE_SIZE: u32 = 1000;

/// A Kong Admin API endpoint.
#[derive(Clone)]
pub struct AdminApi {
    client: HttpClient,
    base: String,
    token: Option<Secret>,
    mutations: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The Admin API at `base_url` (`http://host:8001`, optionally with a path prefix),
    /// reached with `client`, authenticated with `token` when given.
    pub fn new(
        client: HttpClient,
        base_url: &str,
        token: Option<Secret>,
    ) -> Result<Self, KongError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if base.parse::<hyper::Uri>().is_err()
            || !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(KongError::Invalid {
                field: "kong.admin_url".into(),
                message: format!("`{base_url}` is not an http:// or https:// URL"),
            });
        }
        Ok(Self {
            client,
            base,
            token: token.filter(|t| !t.is_empty()),
            mutations: Arc::default(),
        })
    }

    /// The Admin API's address.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The mutating requests made so far (`PUT /routes/<id>`, `DELETE …`), in order.
    pub fn mutations(&self) -> Vec<String> {
        self.mutations.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// `GET path`: the JSON body, or `None` on 404.
    pub async fn get(&self, path: &str) -> Result<Option<Value>, KongError> {
        match self.call(Method::GET, "GET", path, None).await? {
            (404, _) => Ok(None),
            (_, v) => Ok(Some(v)),
        }
    }

    /// `PUT path` with `body` (an upsert by ID).
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, KongError> {
        self.record(format!("PUT {path}"));
        match self.call(Method::PUT, "PUT", path, Some(body)).await? {
            (404, v) => Err(admin_err("PUT", path, Some(404), &v)),
            (_, v) => Ok(v),
        }
    }

    /// `DELETE path`; an entity already gone is fine.
    pub async fn delete(&self, path: &str) -> Result<(), KongError> {
        self.record(format!("DELETE {path}"));
        self.call(Method::DELETE, "DELETE", path, None).await?;
        Ok(())
    }

    /// Every entity of `collection` tagged `tag`, following `offset` pages.
    pub async fn list(&self, collection: &str, tag: &str) -> Result<Vec<Value>, KongError> {
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut path = format!("/{collection}?tags={}&size={PAGE_SIZE}", query_escape(tag));
            if let Some(o) = &offset {
                path.push_str("&offset=");
                path.push_str(&query_escape(o));
            }
            let Some(page) = self.get(&path).await? else {
                return Err(KongError::Admin {
                    method: "GET",
                    path,
                    status: Some(404),
                    message: format!("no `/{collection}` here: is this a Kong Admin API?"),
                });
            };
            match page.get("data") {
                Some(Value::Array(items)) => out.extend(items.iter().cloned()),
                _ => {
                    return Err(KongError::Admin {
                        method: "GET",
                        path,
                        status: None,
                        message: "the answer has no `data` list: is this a Kong Admin API?".into(),
                    });
                }
            }
            match page.get("offset").and_then(Value::as_str) {
                Some(o) if !o.is_empty() && offset.as_deref() != Some(o) => {
                    offset = Some(o.to_owned());
                }
                _ => return Ok(out),
            }
        }
    }

    fn record(&self, line: String) {
        if let Ok(mut m) = self.mutations.lock() {
            m.push(line);
        }
    }

    async fn call(
        &self,
        method: Method,
        name: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), KongError> {
        let fail = |status: Option<u16>, message: String| KongError::Admin {
            method: name,
            path: path.to_owned(),
            status,
            message,
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("deployctl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = &self.token {
            req = req.header("kong-admin-token", t.expose());
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| fail(None, format!("cannot build the request: {e}")))?;
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(fail(None, transport_message(&e))),
            Err(_) => {
                return Err(fail(
                    None,
                    format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
                ));
            }
        };
        let status = resp.status().as_u16();
        let body = match tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => return Err(fail(Some(status), format!("reading the answer: {e}"))),
            Err(_) => return Err(fail(Some(status), "the answer did not finish".into())),
        };
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
            })
        };
        if status == 404 || (200..300).contains(&status) {
            Ok((status, value))
        } else {
            Err(admin_err(name, path, Some(status), &value))
        }
    }
}

fn admin_err(method: &'static str, path: &str, status: Option<u16>, body: &Value) -> KongError {
    let detail = match body {
        Value::Object(m) => {
            let msg = m.get("message").and_then(Value::as_str).unwrap_or("");
            match m.get("fields") {
                Some(f) if !f.is_null() => format!("{msg} {f}"),
                _ => msg.to_owned(),
            }
        }
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    KongError::Admin {
        method,
        path: path.to_owned(),
        status,
        message: format!(
            "HTTP {}{}{}",
            status.map_or_else(|| "?".into(), |s| s.to_string()),
            if detail.is_empty() { "" } else { ": " },
            detail.trim()
        ),
    }
}

fn transport_message(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Percent-encodes everything but unreserved characters and `:`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_escape_keeps_tags_readable() {
        assert_eq!(super::query_escape("deployctl:shop"), "deployctl:shop");
        assert_eq!(super::query_escape("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
