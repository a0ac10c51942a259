//! What the server's tests share: both stores, a scripted runner, a loopback server and a
//! small HTTP/1.1 client (the tests read raw SSE, so no client library hides the framing).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deployctl_core::{Cancellation, Event, EventKind, EventSink as _, Stage};
use deployctl_server::{
    AppConfig, AppState, Job, JobEvents, LogLine, LogLines, LogsQuery, Outcome, ReadError, Role,
    Runner, ServerConfig, SqlStore, Store, tokens,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// A store of each kind: SQLite in a temp dir, and PostgreSQL in a fresh database (when the
/// services' PostgreSQL runs; skipped with a printed reason otherwise, failing under CI).
pub struct Stores {
    pub sqlite: (SqlStore, tempfile::TempDir),
    pub postgres: Option<(SqlStore, String)>,
}

pub async fn sqlite() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqlStore::sqlite(dir.path()).await.unwrap(), dir)
}

/// A fresh database on the services' PostgreSQL, and its URL.
pub async fn postgres() -> Option<(SqlStore, String)> {
    let pg = deployctl_testsupport::postgres()?;
    let name = format!(
        "t_{}",
        tokens::hash(&format!("{:?}", std::time::SystemTime::now()))[..16].to_owned()
    );
    let admin = sqlx::PgPool::connect(&pg.url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let base = pg.url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{name}");
    Some((SqlStore::postgres(&url).await.unwrap(), url))
}

/// What the scripted runner was asked to do, in the order jobs started.
#[derive(Debug, Default)]
pub struct Script {
    pub started: Mutex<Vec<(String, String)>>,
    pub active_per_app: Mutex<HashMap<String, usize>>,
    pub max_active_per_app: Mutex<usize>,
    /// Every job, as the runner got it.
    pub jobs: Mutex<Vec<Job>>,
    /// The configs `status` was asked with.
    pub status_configs: Mutex<Vec<String>>,
    /// Follow reads of logs that ended because the client went away.
    pub logs_closed: std::sync::atomic::AtomicUsize,
}

/// A runner written for the tests: it emits build events like the pipeline does, then waits
/// for a permit from `gate` (so a test decides when jobs end), and stops when cancelled. It
/// proves the server's own logic (queue, events, auth), not deploys.
#[derive(Debug, Clone)]
pub struct ScriptedRunner {
    pub gate: Arc<Semaphore>,
    pub script: Arc<Script>,
    /// Events to emit before waiting.
    pub events: usize,
}

impl ScriptedRunner {
    pub fn new(events: usize) -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            script: Arc::new(Script::default()),
            events,
        }
    }

    /// Lets `n` jobs finish.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    pub fn started(&self) -> Vec<(String, String)> {
        self.script.started.lock().unwrap().clone()
    }
}

#[async_trait]
impl Runner for ScriptedRunner {
    async fn run(&self, job: Job, sink: JobEvents, cancel: Cancellation) -> Outcome {
        self.script
            .started
            .lock()
            .unwrap()
            .push((job.app.clone(), job.id.clone()));
        self.script.jobs.lock().unwrap().push(job.clone());
        {
            let mut active = self.script.active_per_app.lock().unwrap();
            let n = active.entry(job.app.clone()).or_default();
            *n += 1;
            let mut max = self.script.max_active_per_app.lock().unwrap();
            *max = (*max).max(*n);
        }
        sink.emit(Event::now(Stage::Build, EventKind::Started));
        for i in 0..self.events {
            sink.emit(Event::now(
                Stage::Build,
                EventKind::Message {
                    text: format!("step {i}"),
                },
            ));
        }
        let outcome = tokio::select! {
            p = self.gate.acquire() => {
                if let Ok(p) = p { p.forget(); }
                sink.emit(Event::now(Stage::Build, EventKind::Finished { duration_ms: 1, summary: "built".into() }));
                Outcome::succeeded(json!({ "targets": [] }))
            }
            () = cancel.cancelled() => Outcome::cancelled(json!({ "targets": [] })),
        };
        *self
            .script
            .active_per_app
            .lock()
            .unwrap()
            .get_mut(&job.app)
            .unwrap() -= 1;
        outcome
    }

    /// The config it was asked with, in an otherwise empty status result.
    async fn status(&self, app: &AppConfig) -> Result<Value, ReadError> {
        self.script
            .status_configs
            .lock()
            .unwrap()
            .push(app.request.config.clone());
        if app.request.config.contains("status-fails") {
            return Err(ReadError::failed("the target did not answer"));
        }
        Ok(
            json!({ "schema_version": 1, "type": "result", "command": "status", "ok": true, "targets": [] }),
        )
    }

    /// `line 0` … `line 2` of the target; with follow, then waits until the client is gone.
    async fn logs(
        &self,
        _app: &AppConfig,
        target: &str,
        query: &LogsQuery,
        lines: LogLines,
    ) -> Result<(), ReadError> {
        if target == "lambda" {
            return Err(ReadError::failed("lambda logs cannot be read here"));
        }
        for i in 0..3 {
            lines
                .send(LogLine::new(target, "pod-1", &format!("line {i}"), Some(i)))
                .await;
        }
        if query.follow {
            lines.closed().await;
            self.script
                .logs_closed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A server on a loopback port over `store`, running `runner`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(
    store: Arc<dyn Store>,
    runner: Arc<dyn Runner>,
    config: ServerConfig,
) -> TestServer {
    let state = AppState::start(store, runner, config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = state.clone();
    let task = tokio::spawn(async move {
        deployctl_server::serve(listener, s, std::future::pending())
            .await
            .unwrap();
    });
    TestServer { addr, state, task }
}

/// What most tests start from: a server on a fresh SQLite store whose jobs are run by a
/// scripted runner (`events` events each, released by the test).
pub struct Setup {
    pub store: Arc<dyn Store>,
    pub runner: ScriptedRunner,
    pub srv: TestServer,
    /// The store's directory, removed when the test ends.
    pub _dir: tempfile::TempDir,
}

pub async fn setup(events: usize, config: ServerConfig) -> Setup {
    let (store, dir) = sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let runner = ScriptedRunner::new(events);
    let srv = start(store.clone(), Arc::new(runner.clone()), config).await;
    Setup {
        store,
        runner,
        srv,
        _dir: dir,
    }
}

pub async fn token(store: &dyn Store, project: &str, role: Role) -> String {
    tokens::create(store, project, role, Duration::from_secs(3600))
        .await
        .unwrap()
        .secret
}

/// An HTTP answer: status, headers (lowercase names), body (de-chunked).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request with `Connection: close`, read to the end (on a blocking thread).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((ctype, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        parse(&String::from_utf8_lossy(&raw))
    })
    .await
    .unwrap()
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The SSE frames of a body: (id, event name, data).
pub fn frames(body: &str) -> Vec<(Option<String>, Option<String>, String)> {
    body.split("\n\n")
        .filter(|f| f.lines().any(|l| l.starts_with("data:")))
        .map(|f| {
            let field = |name: &str| {
                f.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()))
            };
            (
                field("id:"),
                field("event:"),
                field("data:").unwrap_or_default(),
            )
        })
        .collect()
}

/// A valid deploy.yaml for `app` (the local target only).
pub fn config(app: &str) -> String {
    format!("version: \"1.0\"\napp:\n  name: {app}\n  version: \"1\"\nlocal:\n  enabled: true\n")
}

pub fn deploy_body(app: &str) -> String {
    json!({ "config": config(app) }).to_string()
}

/// Waits until `check` holds (polling every 20 ms), for at most 20 s.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
