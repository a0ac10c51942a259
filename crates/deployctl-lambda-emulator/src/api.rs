//! The two HTTP APIs a Lambda sandbox's processes call, served on loopback: the Runtime API
//! (`/2018-06-01/runtime/…`: next invocation, response, error, init error) and the Extensions
//! API (`/2020-01-01/extension/…`: register, next event, init and exit errors).
//!
//! The sandbox ([`crate::Sandbox`]) reads the state through [`Api::snapshot`] and waits for
//! it to change through [`Api::changes`]; it hands in invocations and SHUTDOWN.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Lambda's limit for a synchronous payload (request and response), 6 MB.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

const RUNTIME: &str = "/2018-06-01/runtime";
const EXTENSION: &str = "/2020-01-01/extension";

/// What the register call answers and the invocation headers name.
#[derive(Debug, Clone)]
pub(crate) struct FunctionInfo {
    pub name: String,
    pub version: String,
    pub handler: String,
    pub arn: String,
}

/// How an invocation ended, as the runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`: the function's result payload.
    Response(Vec<u8>),
    /// `POST /runtime/invocation/{id}/error`: a function error.
    Error {
        /// The `Lambda-Runtime-Function-Error-Type` header (`Unhandled` when absent).
        error_type: String,
        /// The error document (`{"errorMessage": …, "errorType": …}`).
        body: String,
    },
}

/// An init error reported through either API.
#[derive(Debug, Clone)]
pub(crate) struct InitFailure {
    pub reporter: String,
    pub error_type: String,
    pub body: String,
}

/// One registered external extension.
#[derive(Debug, Clone)]
pub(crate) struct ExtensionState {
    pub name: String,
    /// Subscribed event types (`INVOKE`, `SHUTDOWN`).
    pub events: Vec<String>,
    /// How many times it asked for its next event (the first ask ends its init).
    pub nexts: u64,
}

/// The state the sandbox waits on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// The runtime asked for an invocation at least once: its init is over.
    pub runtime_ready: bool,
    pub init_error: Option<InitFailure>,
    pub extensions: Vec<ExtensionState>,
}

struct Pending {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
}

struct Extension {
    id: String,
    state: ExtensionState,
    tx: mpsc::UnboundedSender<Value>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>>,
}

#[derive(Default)]
struct Inner {
    runtime_ready: bool,
    init_error: Option<InitFailure>,
    extensions: Vec<Extension>,
    results: HashMap<String, oneshot::Sender<Outcome>>,
}

struct Shared {
    function: FunctionInfo,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    invoke_tx: mpsc::UnboundedSender<Pending>,
    invoke_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    ids: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
    fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{prefix}{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (nanos >> 32) & 0xffff_ffff,
            (nanos >> 16) & 0xffff,
            n & 0xfff,
            (nanos >> 4) & 0xfff,
            nanos & 0xffff_ffff_ffff
        )
    }
}

/// The running server; dropping it stops it and every open connection.
pub(crate) struct Api {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Api {
    /// Listens on `127.0.0.1:0`.
    pub async fn start(function: FunctionInfo) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (invoke_tx, invoke_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function,
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            invoke_tx,
            invoke_rx: tokio::sync::Mutex::new(invoke_rx),
            ids: AtomicU64::new(1),
        });
        let serving = shared.clone();
        let server = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(route(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// `127.0.0.1:<port>`: the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.shared.lock();
        Snapshot {
            runtime_ready: inner.runtime_ready,
            init_error: inner.init_error.clone(),
            extensions: inner.extensions.iter().map(|e| e.state.clone()).collect(),
        }
    }

    /// Changes whenever the snapshot may have changed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Queues an invocation for the runtime's next `/next` and sends INVOKE to the extensions
    /// that subscribed to it. Returns the request ID and where its outcome arrives.
    pub fn invoke(&self, payload: Bytes, deadline_ms: u64) -> (String, oneshot::Receiver<Outcome>) {
        let request_id = self.shared.next_id("");
        let (tx, rx) = oneshot::channel();
        let mut inner = self.shared.lock();
        inner.results.insert(request_id.clone(), tx);
        let event = json!({
            "eventType": "INVOKE",
            "deadlineMs": deadline_ms,
            "requestId": request_id,
            "invokedFunctionArn": self.shared.function.arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": trace_id(&request_id)},
        });
        for ext in &inner.extensions {
            if ext.state.events.iter().any(|e| e == "INVOKE") {
                let _ = ext.tx.send(event.clone());
            }
        }
        drop(inner);
        let _ = self.shared.invoke_tx.send(Pending {
            request_id: request_id.clone(),
            payload,
            deadline_ms,
        });
        (request_id, rx)
    }

    /// Sends SHUTDOWN to the extensions that subscribed to it; returns how many did.
    pub fn shutdown(&self, deadline_ms: u64) -> usize {
        let event = json!({
            "eventType": "SHUTDOWN",
            "shutdownReason": "spindown",
            "deadlineMs": deadline_ms,
        });
        let inner = self.shared.lock();
        inner
            .extensions
            .iter()
            .filter(|e| e.state.events.iter().any(|e| e == "SHUTDOWN"))
            .filter(|e| e.tx.send(event.clone()).is_ok())
            .count()
    }
}

fn trace_id(request_id: &str) -> String {
    let hex: String = request_id.chars().filter(char::is_ascii_hexdigit).collect();
    let tail = hex.get(hex.len().saturating_sub(24)..).unwrap_or_default();
    format!("Root=1-00000000-{tail:0>24};Sampled=0")
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn refuse(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"errorType": error_type, "errorMessage": message}),
    )
}

fn accepted() -> Response<Full<Bytes>> {
    reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), MAX_PAYLOAD).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            &format!("the body could not be read within Lambda's 6 MB limit: {e}"),
        )),
    }
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if let Some(rest) = path.strip_prefix(RUNTIME) {
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        return match (method, parts.as_slice()) {
            (Method::GET, ["invocation", "next"]) => next_invocation(shared).await,
            (Method::POST, ["invocation", id, "response"]) => {
                let id = (*id).to_owned();
                match body(req).await {
                    Ok(b) => finish(shared, &id, Outcome::Response(b.to_vec())),
                    Err(resp) => resp,
                }
            }
            (Method::POST, ["invocation", id, "error"]) => {
                let id = (*id).to_owned();
                let error_type = header(&req, "lambda-runtime-function-error-type")
                    .unwrap_or_else(|| "Unhandled".into());
                match body(req).await {
                    Ok(b) => finish(
                        shared,
                        &id,
                        Outcome::Error {
                            error_type,
                            body: String::from_utf8_lossy(&b).into_owned(),
                        },
                    ),
                    Err(resp) => resp,
                }
            }
            (Method::POST, ["init", "error"]) => {
                let error_type = header(&req, "lambda-runtime-function-error-type")
                    .unwrap_or_else(|| "Runtime.Unknown".into());
                let b = body(req).await.unwrap_or_default();
                init_failed(shared, "the runtime", error_type, &b)
            }
            _ => refuse(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{path} is not a Runtime API resource"),
            ),
        };
    }
    if let Some(rest) = path.strip_prefix(EXTENSION) {
        return match (method, rest) {
            (Method::POST, "/register") => register(shared, req).await,
            (Method::GET, "/event/next") => next_event(shared, &req).await,
            (Method::POST, "/init/error" | "/exit/error") => {
                let Some(name) = known_extension(shared, &req) else {
                    return unknown_extension();
                };
                let error_type = header(&req, "lambda-extension-function-error-type")
                    .unwrap_or_else(|| "Extension.Unknown".into());
                let b = body(req).await.unwrap_or_default();
                init_failed(shared, &format!("extension {name}"), error_type, &b)
            }
            _ => refuse(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{path} is not an Extensions API resource"),
            ),
        };
    }
    refuse(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{path} is neither a Runtime nor an Extensions API resource"),
    )
}

/// Long poll: the first call ends the runtime's init; each returns one invocation.
async fn next_invocation(shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    {
        let mut inner = shared.lock();
        if !inner.runtime_ready {
            inner.runtime_ready = true;
            drop(inner);
            shared.bump();
        }
    }
    let mut queue = shared.invoke_rx.lock().await;
    let Some(p) = queue.recv().await else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the sandbox is shutting down",
        );
    };
    drop(queue);
    let mut resp = Response::new(Full::new(p.payload));
    let headers = resp.headers_mut();
    let f = &shared.function;
    for (name, value) in [
        ("lambda-runtime-aws-request-id", p.request_id.clone()),
        ("lambda-runtime-deadline-ms", p.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", f.arn.clone()),
        ("lambda-runtime-trace-id", trace_id(&p.request_id)),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

fn finish(shared: &Arc<Shared>, request_id: &str, outcome: Outcome) -> Response<Full<Bytes>> {
    let waiting = shared.lock().results.remove(request_id);
    match waiting {
        Some(tx) => {
            let _ = tx.send(outcome);
            shared.bump();
            accepted()
        }
        None => refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            &format!("{request_id} is not an open invocation (answered already, or never sent)"),
        ),
    }
}

fn init_failed(
    shared: &Arc<Shared>,
    reporter: &str,
    error_type: String,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let mut inner = shared.lock();
    if inner.init_error.is_none() {
        inner.init_error = Some(InitFailure {
            reporter: reporter.to_owned(),
            error_type,
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }
    drop(inner);
    shared.bump();
    accepted()
}

async fn register(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(name) = header(&req, "lambda-extension-name").filter(|n| !n.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "the Lambda-Extension-Name header is missing",
        );
    };
    let b = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let events: Vec<String> = match serde_json::from_slice::<Value>(&b) {
        Ok(v) => v
            .get("events")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                &format!("the register body is not JSON: {e}"),
            );
        }
    };
    if let Some(bad) = events.iter().find(|e| *e != "INVOKE" && *e != "SHUTDOWN") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidEventType",
            &format!("{bad} is not an event an external extension can subscribe to"),
        );
    }
    let mut inner = shared.lock();
    if inner.runtime_ready {
        return refuse(
            StatusCode::FORBIDDEN,
            "Extension.InvalidPhase",
            "extensions register during init only",
        );
    }
    if inner.extensions.iter().any(|e| e.state.name == name) {
        return refuse(
            StatusCode::CONFLICT,
            "Extension.AlreadyRegistered",
            &format!("an extension named {name} registered already"),
        );
    }
    let id = shared.next_id("");
    let (tx, rx) = mpsc::unbounded_channel();
    inner.extensions.push(Extension {
        id: id.clone(),
        state: ExtensionState {
            name,
            events,
            nexts: 0,
        },
        tx,
        rx: Arc::new(tokio::sync::Mutex::new(rx)),
    });
    drop(inner);
    shared.bump();
    let f = &shared.function;
    let mut resp = reply(
        StatusCode::OK,
        json!({"functionName": f.name, "functionVersion": f.version, "handler": f.handler}),
    );
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("lambda-extension-identifier", v);
    }
    resp
}

fn known_extension(shared: &Arc<Shared>, req: &Request<Incoming>) -> Option<String> {
    let id = header(req, "lambda-extension-identifier")?;
    shared
        .lock()
        .extensions
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.state.name.clone())
}

fn unknown_extension() -> Response<Full<Bytes>> {
    refuse(
        StatusCode::FORBIDDEN,
        "Extension.UnknownExtensionIdentifier",
        "the Lambda-Extension-Identifier header names no registered extension",
    )
}

/// Long poll: the first call ends the extension's init; each returns one event.
async fn next_event(shared: &Arc<Shared>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(id) = header(req, "lambda-extension-identifier") else {
        return unknown_extension();
    };
    let queue = {
        let mut inner = shared.lock();
        let Some(ext) = inner.extensions.iter_mut().find(|e| e.id == id) else {
            return unknown_extension();
        };
        ext.state.nexts += 1;
        ext.rx.clone()
    };
    shared.bump();
    let mut queue = queue.lock().await;
    let Some(event) = queue.recv().await else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the sandbox is shutting down",
        );
    };
    drop(queue);
    let mut resp = reply(StatusCode::OK, event);
    if let Ok(v) = http::HeaderValue::from_str(&shared.next_id("")) {
        resp.headers_mut()
            .insert("lambda-extension-event-identifier", v);
    }
    resp
}
