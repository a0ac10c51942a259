//! A client of the API: what `deployctl --server URL …` uses, and what another Rust program
//! can use to drive a `deployctl serve` it did not embed.
//!
//! Requests carry the bearer token; an answer that is not a success becomes
//! [`Error::Api`] with the server's message, hint and config diagnostics. Event streams are
//! read as Server-Sent Events and resumed with `Last-Event-ID` when the connection drops,
//! so a client loses no event and sees none twice.

use std::time::Duration;

use bytes::Bytes;
use deployctl_config::Diagnostic;
use deployctl_core::Secret;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

use crate::error::Error;

/// The HTTP(S) client the API client sends through (built by the caller: TLS roots and
/// crypto provider are the program's choice).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTP(S) client for [`Client::new`] (and for any other API a program calls, such as
/// Kong's Admin API): rustls with aws-lc-rs and the system's trust roots; on a machine without
/// them, `http://` still works and an `https://` server fails naming its certificate.
pub fn https_client() -> Result<HttpClient, Error> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(_) => {
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Tls {
                    message: e.to_string(),
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// How long a plain request may take until its answer's headers arrive (an upload's
/// includes unpacking and validating it on the server).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// A stream with nothing for this long (the server sends a keep-alive every 15 s) is taken
/// as dropped and resumed.
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// Resumptions of an event stream in a row that may fail before following gives up.
const RESUME_ATTEMPTS: u32 = 6;

/// One frame of a deployment's event stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Frame {
    /// An event, as `--output json` prints it.
    Event(Value),
    /// The end: `{"type": "result", "ok", "status", "deployment": {…}}`.
    Result(Value),
}

/// What to ask a logs stream for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LogsRequest {
    /// One target (`lambda`, `k8s`, `local`), or every enabled one.
    pub target: Option<String>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Lines of the last this many seconds.
    pub since_seconds: Option<u64>,
}

impl LogsRequest {
    /// Every target's lines, once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `target`'s lines.
    #[must_use]
    pub fn target(mut self, target: Option<String>) -> Self {
        self.target = target;
        self
    }

    /// Keep streaming.
    #[must_use]
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Only lines of the last `seconds`.
    #[must_use]
    pub fn since_seconds(mut self, seconds: Option<u64>) -> Self {
        self.since_seconds = seconds;
        self
    }
}

/// The API of one server, as one token.
#[derive(Clone)]
pub struct Client {
    http: HttpClient,
    base: String,
    token: Secret,
    stream_idle: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:8787`, with or without a path
    /// prefix the server is mounted under) sending `token`.
    pub fn new(http: HttpClient, base: &str, token: Secret) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_owned();
        let ok = base.parse::<hyper::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
        if !ok {
            return Err(Error::Invalid {
                message: format!(
                    "--server `{base}` is not an http:// or https:// URL (e.g. http://127.0.0.1:8787)"
                ),
            });
        }
        if token.is_empty() {
            return Err(Error::Invalid {
                message: "--server needs a token: --token or DEPLOYCTL_TOKEN (`deployctl serve token create` makes one)".into(),
            });
        }
        Ok(Self {
            http,
            base,
            token,
            stream_idle: STREAM_IDLE,
        })
    }

    /// How long an event or logs stream may say nothing before it is taken as dropped
    /// (default 45 s; the server sends a keep-alive every 15 s).
    #[must_use]
    pub fn with_stream_idle(mut self, idle: Duration) -> Self {
        self.stream_idle = idle;
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Posts `archive` (a `.tar.gz` of the app directory) as a deployment of `app`:
    /// the 202 answer (`id`, `status`, `urls`).
    pub async fn deploy_upload(
        &self,
        project: &str,
        app: &str,
        archive: Vec<u8>,
        target: Option<&str>,
        env: Option<&str>,
    ) -> Result<Value, Error> {
        let mut path = format!(
            "/api/v1/projects/{}/apps/{}/deployments",
            encode(project),
            encode(app)
        );
        let query = query(&[("target", target), ("env", env)]);
        path.push_str(&query);
        self.json(Method::POST, &path, Some(("application/gzip", archive)))
            .await
    }

    /// A deployment: stages, status, result.
    pub async fn deployment(&self, id: &str) -> Result<Value, Error> {
        self.json(
            Method::GET,
            &format!("/api/v1/deployments/{}", encode(id)),
            None,
        )
        .await
    }

    /// Cancels a deployment (queued: at once; running: after its current remote call).
    pub async fn cancel(&self, id: &str) -> Result<Value, Error> {
        self.json(
            Method::DELETE,
            &format!("/api/v1/deployments/{}", encode(id)),
            None,
        )
        .await
    }

    /// The status of every target of `app`, as `deployctl status` reads it.
    pub async fn app_status(&self, project: &str, app: &str) -> Result<Value, Error> {
        self.json(Method::GET, &app_path(project, app, ""), None)
            .await
    }

    /// Queues the destruction of `app` on every target (202).
    pub async fn destroy(&self, project: &str, app: &str) -> Result<Value, Error> {
        self.json(Method::DELETE, &app_path(project, app, ""), None)
            .await
    }

    /// Reads `app`'s log lines (each `{"target", "line", "source", "at_ms"}`, or
    /// `{"target", "error"}` when a target's read failed) until the stream ends.
    pub async fn logs(
        &self,
        project: &str,
        app: &str,
        request: &LogsRequest,
        mut on_line: impl FnMut(Value),
    ) -> Result<(), Error> {
        let since = request.since_seconds.map(|s| format!("{s}s"));
        let q = query(&[
            ("target", request.target.as_deref()),
            ("follow", request.follow.then_some("true")),
            ("since", since.as_deref()),
        ]);
        let path = app_path(project, app, &format!("/logs{q}"));
        let mut body = self.open_stream(&path, None).await?;
        let mut parser = SseParser::default();
        loop {
            // The server sends a keep-alive every 15 s on every logs stream, followed or not:
            // silence means the connection is gone, never that the logs ended (the server
            // ends the stream when they do).
            let Ok(chunk) = tokio::time::timeout(self.stream_idle, body.frame()).await else {
                return Err(Error::Protocol {
                    what: format!(
                        "the logs stream was silent for {:?} (the server sends a keep-alive every 15 s)",
                        self.stream_idle
                    ),
                });
            };
            match chunk {
                None => return Ok(()),
                Some(Err(e)) => {
                    return Err(Error::Protocol {
                        what: format!("the logs stream broke: {e}"),
                    });
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    for message in parser.push(&data) {
                        if let Ok(v) = serde_json::from_str::<Value>(&message.data) {
                            on_line(v);
                        }
                    }
                }
            }
        }
    }

    /// Follows deployment `id`'s events from the start: each to `on_frame`, in order, once,
    /// across reconnections; the result frame ends it and is returned.
    pub async fn follow(&self, id: &str, mut on_frame: impl FnMut(Frame)) -> Result<Value, Error> {
        let path = format!("/api/v1/deployments/{}/events", encode(id));
        let mut last_id: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let broke = match self.open_stream(&path, last_id.as_deref()).await {
                Ok(mut body) => {
                    let mut parser = SseParser::default();
                    loop {
                        let chunk = match tokio::time::timeout(self.stream_idle, body.frame()).await
                        {
                            Ok(c) => c,
                            Err(_) => {
                                break format!(
                                    "the event stream was silent for {:?}",
                                    self.stream_idle
                                );
                            }
                        };
                        let data = match chunk {
                            None => break "the server closed the event stream".to_owned(),
                            Some(Err(e)) => break format!("the event stream broke: {e}"),
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(d) => d,
                                Err(_) => continue,
                            },
                        };
                        failures = 0;
                        for m in parser.push(&data) {
                            let Ok(value) = serde_json::from_str::<Value>(&m.data) else {
                                continue;
                            };
                            if m.event.as_deref() == Some("result") {
                                on_frame(Frame::Result(value.clone()));
                                return Ok(value);
                            }
                            if m.id.is_some() {
                                last_id = m.id;
                            }
                            on_frame(Frame::Event(value));
                        }
                    }
                }
                Err(e @ (Error::Unreachable { .. } | Error::Protocol { .. })) => e.to_string(),
                Err(Error::Api { status, .. }) if status >= 500 => {
                    format!("the server answered {status}")
                }
                Err(e) => return Err(e),
            };
            failures += 1;
            if failures > RESUME_ATTEMPTS {
                return Err(Error::Protocol {
                    what: format!(
                        "lost the event stream of deployment {id} ({broke}); it may still be running"
                    ),
                });
            }
            tracing::debug!(deployment = id, reason = %broke, "resuming the event stream");
            tokio::time::sleep(Duration::from_millis(250 << failures.min(5))).await;
        }
    }

    async fn open_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<hyper::body::Incoming, Error> {
        let mut req = self.request(Method::GET, path, None)?;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(v) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            req.headers_mut().insert("last-event-id", v);
        }
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            Ok(resp.into_body())
        } else {
            Err(self.api_error(resp).await)
        }
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Value, Error> {
        let req = self.request(method, path, body)?;
        let resp = self.send(req).await?;
        if !resp.status().is_success() {
            return Err(self.api_error(resp).await);
        }
        let bytes = read_body(resp.into_body(), path).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            what: format!("{path} answered with JSON this client cannot read: {e}"),
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(
                header::USER_AGENT,
                concat!("deployctl/", env!("CARGO_PKG_VERSION")),
            )
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose()),
            );
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        builder.body(body).map_err(|e| Error::Invalid {
            message: format!("cannot build a request to {url}: {e}"),
        })
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let url = req.uri().to_string();
        match tokio::time::timeout(ANSWER_TIMEOUT, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(source)) => Err(Error::Unreachable {
                url,
                source: Box::new(source),
            }),
            Err(_) => Err(Error::Protocol {
                what: format!("{url} did not answer within {} s", ANSWER_TIMEOUT.as_secs()),
            }),
        }
    }

    async fn api_error(&self, resp: hyper::Response<hyper::body::Incoming>) -> Error {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = read_body(resp.into_body(), "").await.unwrap_or_default();
        api_error(status, &body, retry_after, &self.token)
    }
}

/// The error an answer of `status` with `body` stands for (the server's
/// `{"error": {message, hint, diagnostics: {items}}}`, or the status alone).
fn api_error(status: StatusCode, body: &[u8], retry_after: Option<u64>, token: &Secret) -> Error {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let text = |v: &Value| v.as_str().map(|s| token.redact_in(s));
    let message = text(&error["message"]).unwrap_or_else(|| {
        let body = String::from_utf8_lossy(body);
        let body = body.trim();
        if body.is_empty() || body.len() > 300 {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            token.redact_in(body)
        }
    });
    let diagnostics: Vec<Diagnostic> =
        serde_json::from_value(error["diagnostics"]["items"].clone()).unwrap_or_default();
    Error::Api {
        status: status.as_u16(),
        message,
        hint: text(&error["hint"]),
        diagnostics,
        retry_after,
    }
}

async fn read_body(body: hyper::body::Incoming, what: &str) -> Result<Bytes, Error> {
    match tokio::time::timeout(ANSWER_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(Error::Protocol {
            what: format!("the answer of {what} broke off: {e}"),
        }),
        Err(_) => Err(Error::Protocol {
            what: format!("the answer of {what} did not finish"),
        }),
    }
}

fn app_path(project: &str, app: &str, rest: &str) -> String {
    format!(
        "/api/v1/projects/{}/apps/{}{rest}",
        encode(project),
        encode(app)
    )
}

/// `?a=1&b=2` of the parameters that are set; empty when none is.
fn query(params: &[(&str, Option<&str>)]) -> String {
    let set: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Reads Server-Sent Events from chunks that may split lines anywhere.
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    current: Message,
    has_data: bool,
}

impl SseParser {
    /// The events completed by `chunk`.
    fn push(&mut self, chunk: &[u8]) -> Vec<Message> {
        let mut done = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                let m = std::mem::take(&mut self.current);
                if std::mem::take(&mut self.has_data) {
                    done.push(m);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            if line.starts_with(':') {
                continue; // a comment: the keep-alive
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers a logs request with one line and then says nothing more: the
    /// client fails naming the silence (never a quiet, successful end), after that line.
    #[tokio::test]
    async fn a_silent_logs_stream_is_an_error_not_the_end_of_the_logs() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await.unwrap();
            let line = "data: {\"line\":\"hello\"}\n\n";
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let chunk = format!("{:x}\r\n{line}\r\n", line.len());
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(chunk.as_bytes()).await.unwrap();
            // Silent from here on, with the connection open.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
        });
        let http = https_client().unwrap();
        let client = Client::new(http, &format!("http://{addr}"), Secret::new("t0ken-x"))
            .unwrap()
            .with_stream_idle(Duration::from_millis(300));
        let mut lines = Vec::new();
        let got = client
            .logs("p", "a", &LogsRequest::default(), |v| lines.push(v))
            .await;
        assert_eq!(lines, vec![serde_json::json!({ "line": "hello" })]);
        match got {
            Err(Error::Protocol { what }) => assert!(what.contains("silent"), "{what}"),
            other => panic!("expected the silence to be an error, got {other:?}"),
        }
        server.abort();
    }

    #[test]
    fn events_split_anywhere_are_read_whole() {
        let stream = b": keep-alive\n\nid: 1\ndata: {\"a\":1}\n\nid: 2\r\ndata: x\ndata: y\r\n\r\nevent: result\ndata: {}\n\n";
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&stream[..cut]);
            got.extend(p.push(&stream[cut..]));
            assert_eq!(
                got,
                vec![
                    Message {
                        id: Some("1".into()),
                        event: None,
                        data: "{\"a\":1}".into()
                    },
                    Message {
                        id: Some("2".into()),
                        event: None,
                        data: "x\ny".into()
                    },
                    Message {
                        id: None,
                        event: Some("result".into()),
                        data: "{}".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_api_error_keeps_message_hint_and_diagnostics_without_the_token() {
        let token = Secret::new("tok-abcdefghijklmnop");
        let body = serde_json::json!({"error": {
            "message": "deploy.yaml is invalid (1 problem) tok-abcdefghijklmnop",
            "hint": "fix it",
            "diagnostics": {"items": [{"file": "deploy.yaml", "line": 3, "column": 5,
                "path": "lambda.memory", "message": "64 is below 128", "hint": null}]}
        }});
        let e = api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            body.to_string().as_bytes(),
            None,
            &token,
        );
        let Error::Api {
            status,
            message,
            hint,
            diagnostics,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*status, 422);
        assert!(!message.contains("abcdefghijklmnop"), "{message}");
        assert_eq!(hint.as_deref(), Some("fix it"));
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].line, Some(3));
        assert_eq!(e.kind(), deployctl_core::ErrorKind::InvalidInput);
        let e = api_error(StatusCode::UNAUTHORIZED, b"", None, &token);
        assert_eq!(e.kind(), deployctl_core::ErrorKind::Environment);
        assert!(e.to_string().contains("Unauthorized"), "{e}");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query(&[
                ("target", Some("k8s")),
                ("env", None),
                ("since", Some("a b&c"))
            ]),
            "?target=k8s&since=a%20b%26c"
        );
        assert_eq!(query(&[("env", None)]), "");
    }
}
