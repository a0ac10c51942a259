//! # deployctl-kong-standin — a Kong Admin API stand-in for tests
//!
//! No real Kong can run on the machines deployctl is tested on, so this crate serves the
//! Kong 3.x Admin API (DB mode, JSON or form bodies) over plain HTTP on `127.0.0.1`, kept
//! in memory. deployctl's Kong adapter is tested against it, and clients we did not write
//! prove it: Debian's `deck` (`tests/deck.rs`) and the Python package `aio-kong`
//! (`tests/aio_kong.rs`). It is test support: never linked into the shipped binary.
//! docs/KONG.md ("The Kong stand-in") says what is faithful and what is not.
//!
//! - One table ([`schema`]) of entity kinds — services, routes, consumers, plugins,
//!   key-auth / jwt / basic-auth credentials, ACLs — with their fields, defaults, unique
//!   fields and foreign keys, and of the plugins served with their `config` fields
//!   (`rate-limiting`, `cors`, `key-auth`, `jwt`, `basic-auth`, `request-transformer`,
//!   `acl`). Validation, defaults and `/schemas/…` all read it.
//! - `store`: create (201; 409 on a duplicate unique field), PUT upsert by id or endpoint
//!   key, PATCH merge, DELETE (204; plugins and credentials cascade, a service with routes
//!   is refused as Kong refuses it); `checks`: a plugin's `config` against its plugin,
//!   entity-level rules, the `url` shorthand; `validate`: fields, defaults, error shapes.
//! - `http`: routing of `/<collection>[/{id or name}]` and nested
//!   `/<parent>/{key}/<child>[/{key}]`, `size`/`offset` pagination, `tags=a,b` (all) and
//!   `tags=a/b` (any), `/tags/{tag}`, `GET /` and `/status`, the admin token.

mod checks;
mod http;
pub mod schema;
mod store;
mod validate;

use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use http::KONG_VERSION;

/// Starting the stand-in failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding the port failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How the stand-in behaves.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// When set, every request needs the header `Kong-Admin-Token: <token>` (else 401),
    /// as Kong Enterprise's RBAC asks.
    pub admin_token: Option<String>,
    /// The port to listen on (0: any free one).
    pub port: u16,
}

impl Options {
    /// Options with this admin token.
    pub fn with_admin_token(token: impl Into<String>) -> Self {
        Self {
            admin_token: Some(token.into()),
            ..Self::default()
        }
    }
}

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct KongStandin {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<store::State>>,
    stop: watch::Sender<bool>,
}

impl KongStandin {
    /// Starts serving on a free port of 127.0.0.1, without authentication.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts serving with `options`.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let addr = format!("127.0.0.1:{}", options.port);
        let bind = |source| Error::Bind {
            addr: addr.clone(),
            source,
        };
        let listener = TcpListener::bind(&addr).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let state = Arc::new(Mutex::new(store::State::new(options.admin_token)));
        let (stop, mut stopped) = watch::channel(false);
        let serve_state = state.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let st = serve_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| http::handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr: local,
            state,
            stop,
        })
    }

    /// `http://127.0.0.1:<port>`: the Admin API's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The mutating requests (`POST`, `PUT`, `PATCH`, `DELETE`) served successfully since
    /// the last call, as `METHOD path` (`PUT /services/web`), oldest first.
    pub fn take_mutations(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().mutations)
    }

    /// Stops serving (open connections finish their request).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, store::State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Drop for KongStandin {
    fn drop(&mut self) {
        self.shutdown();
    }
}
