//! The BuildKit build session, opened by us over the engine's socket.
//!
//! bollard 0.21 opens a session for `Docker::build_image`, but registers only its own
//! services (auth, file send) and gives no way to add more. So deployctl opens the session
//! itself, the way the docker CLI does: a `POST /session` on a connection of its own, upgraded
//! to h2c (`Upgrade: h2c`), with `X-Docker-Expose-Session-*` headers naming the session, its
//! shared key and every gRPC method served; the engine then calls those methods over the
//! upgraded stream, where a tonic server answers. Served here: file sync of the build context
//! and the Dockerfile (`filesync.rs`), the build's secrets (`moby.buildkit.secrets.v1`),
//! registry logins for `cache_from` pulls (`moby.filesync.v1.Auth`), and health.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bollard::health::health_server::{Health, HealthServer};
use bollard::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    health_check_response::ServingStatus,
};
use bollard::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard::moby::filesync::v1::file_sync_server::FileSyncServer;
use bollard::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bytes::Bytes;
use deployctl_core::{RegistryCredentials, Secret};
use futures::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use crate::error::ImageError;
use crate::filesync::{FileSync, SyncedDirs, Transfer};

/// Where the engine listens, for the session's own connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineSocket {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A plain TCP address (`host:port`).
    Tcp(String),
}

impl EngineSocket {
    /// The engine named by a `DOCKER_HOST`-style value (`unix:///path`, `tcp://host:port`,
    /// `http://host:port`, or a bare socket path); `None` for a transport the session cannot
    /// use (TLS, SSH, named pipes).
    pub fn from_host(host: &str) -> Option<Self> {
        let host = host.trim();
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            return Some(Self::Tcp(addr.trim_end_matches('/').to_owned()));
        }
        host.starts_with('/')
            .then(|| Self::Unix(PathBuf::from(host)))
    }

    /// `DOCKER_HOST`, or the default socket, as bollard's `connect_with_defaults` reads them.
    /// With `DOCKER_TLS_VERIFY` set the engine speaks TLS, which the session does not.
    pub fn from_env() -> Option<Self> {
        if std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()) {
            return None;
        }
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => Self::from_host(&host),
            _ => Some(Self::Unix(PathBuf::from("/var/run/docker.sock"))),
        }
    }
}

/// What a session serves.
pub(crate) struct SessionContent {
    /// The `context` and `dockerfile` directories.
    pub(crate) dirs: SyncedDirs,
    /// Secret build args by ID.
    pub(crate) secrets: HashMap<String, Secret>,
    /// Registry logins the engine may ask for (pulling `cache_from` images).
    pub(crate) registries: Vec<RegistryCredentials>,
}

/// A session being served; ended when dropped.
pub(crate) struct Session {
    /// The ID the build request names.
    pub(crate) id: String,
    serve: JoinHandle<()>,
    /// Closes the session's connection.
    close: Closer,
    /// Bytes sent through the file sync so far.
    pub(crate) transfer: Transfer,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The server's accept loop, and the connection it spawned as a task of its own (which
        // outlives the loop): its stream now reads as ended, so h2 and the task finish.
        self.serve.abort();
        self.close.close();
    }
}

/// Session connections of this process still open.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many BuildKit session connections this process still holds open. Each one ends with
/// its build (when the session is dropped); a number that only grows is a leak.
pub fn open_sessions() -> usize {
    LIVE.load(Ordering::SeqCst)
}

/// Ends a session's connection from outside the task that drives it.
#[derive(Clone, Default)]
struct Closer(Arc<CloserState>);

#[derive(Default)]
struct CloserState {
    closed: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Closer {
    fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.reader.wake();
        self.0.writer.wake();
    }

    fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }
}

/// Every gRPC method the session serves, as the engine must be told in the upgrade headers.
const METHODS: [&str; 10] = [
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.FileSync/TarStream",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/List",
    "/grpc.health.v1.Health/Watch",
];

/// Opens a session on the engine at `socket` serving `content`. `shared_key` lets the engine
/// keep its copy of the context between builds of the same directory.
pub(crate) async fn open(
    socket: &EngineSocket,
    id: String,
    shared_key: &str,
    content: SessionContent,
) -> Result<Session, ImageError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| ImageError::Engine {
        message: format!("cannot open the BuildKit session ({what}): {e}"),
        source: None,
    };
    let io = match socket {
        EngineSocket::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| failed(&format!("connect {}", path.display()), &e))?,
        ) as Box<dyn Io>,
        EngineSocket::Tcp(addr) => Box::new(
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| failed(&format!("connect {addr}"), &e))?,
        ) as Box<dyn Io>,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| failed("handshake", &e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/session")
        .header(http::header::HOST, "docker")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &id)
        .header("X-Docker-Expose-Session-Name", "deployctl")
        .header("X-Docker-Expose-Session-Sharedkey", shared_key);
    for method in METHODS {
        request = request.header("X-Docker-Expose-Session-Grpc-Method", method);
    }
    let request = request
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| failed("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed("POST /session", &e))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(failed(
            "POST /session",
            &format!("the engine answered {}", response.status()),
        ));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| failed("upgrade", &e))?;
    let close = Closer::default();
    let stream = Upgraded::new(TokioIo::new(upgraded), close.clone());

    let file_sync = FileSync::new(content.dirs);
    let transfer = file_sync.transfer();
    let router = tonic::transport::Server::builder()
        .add_service(HealthServer::new(Healthy))
        .add_service(FileSyncServer::new(file_sync))
        .add_service(SecretsServer::new(SessionSecrets(content.secrets)))
        .add_service(AuthServer::new(SessionAuth(content.registries)));
    let serve = tokio::spawn(async move {
        let incoming = futures::stream::iter([Ok::<_, io::Error>(stream)]);
        // The engine closes the stream when the build ends; nothing to report then.
        let _ = router.serve_with_incoming(incoming).await;
    });
    Ok(Session {
        id,
        serve,
        close,
        transfer,
    })
}

/// The key under which the engine keeps a directory's synced files between builds: the
/// directory's absolute path, hashed (as the docker CLI does), so builds of the same
/// directory share it and different directories never do.
pub(crate) fn shared_key(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The upgraded connection, as tonic's server takes it: counted in [`LIVE`] while it exists,
/// and read as ended (writes failing) once its [`Closer`] is closed.
struct Upgraded {
    io: TokioIo<hyper::upgrade::Upgraded>,
    close: Closer,
}

impl Upgraded {
    fn new(io: TokioIo<hyper::upgrade::Upgraded>, close: Closer) -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Self { io, close }
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn session_closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the build session ended")
}

impl tonic::transport::server::Connected for Upgraded {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.close.0.reader.register(cx.waker());
        if self.close.is_closed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.close.0.writer.register(cx.waker());
        if self.close.is_closed() {
            return Poll::Ready(Err(session_closed()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.close.is_closed() {
            return Poll::Ready(Err(session_closed()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The session's health: serving while it exists.
struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: tonic::Request<HealthListRequest>,
    ) -> Result<tonic::Response<HealthListResponse>, tonic::Status> {
        let mut statuses = HashMap::new();
        statuses.insert(
            String::new(),
            HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            },
        );
        Ok(tonic::Response::new(HealthListResponse { statuses }))
    }

    type WatchStream =
        futures::stream::BoxStream<'static, Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        use futures::StreamExt;
        let serving = futures::stream::once(async {
            Ok(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            })
        })
        .chain(futures::stream::pending());
        Ok(tonic::Response::new(serving.boxed()))
    }
}

/// Secret build args, served to `RUN --mount=type=secret,id=<ARG>` by their arg name. The
/// values leave this process only in the answer to the engine; they are never logged.
struct SessionSecrets(HashMap<String, Secret>);

#[tonic::async_trait]
impl Secrets for SessionSecrets {
    async fn get_secret(
        &self,
        request: tonic::Request<GetSecretRequest>,
    ) -> Result<tonic::Response<GetSecretResponse>, tonic::Status> {
        let id = &request.get_ref().id;
        match self.0.get(id) {
            Some(secret) => Ok(tonic::Response::new(GetSecretResponse {
                data: secret.expose().as_bytes().to_vec(),
            })),
            None => Err(tonic::Status::not_found(format!(
                "no secret build arg {id}: declare it in build.args as {{ secret: … }}"
            ))),
        }
    }
}

/// Registry logins, answered by host (`Credentials`); the token methods are left to the
/// engine (`Unimplemented` makes it fall back to the credentials). Unknown hosts get empty
/// credentials: anonymous, as the docker CLI answers.
struct SessionAuth(Vec<RegistryCredentials>);

#[tonic::async_trait]
impl Auth for SessionAuth {
    async fn credentials(
        &self,
        request: tonic::Request<CredentialsRequest>,
    ) -> Result<tonic::Response<CredentialsResponse>, tonic::Status> {
        let host = &request.get_ref().host;
        let found = self.0.iter().find(|c| {
            c.registry == *host
                || (host == "registry-1.docker.io" && c.registry == "docker.io")
                || c.registry.strip_prefix("https://") == Some(host.as_str())
        });
        Ok(tonic::Response::new(match found {
            Some(c) => CredentialsResponse {
                username: c.username.clone(),
                secret: c.password.expose().to_owned(),
            },
            None => CredentialsResponse::default(),
        }))
    }

    async fn fetch_token(
        &self,
        _request: tonic::Request<FetchTokenRequest>,
    ) -> Result<tonic::Response<FetchTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no token service"))
    }

    async fn get_token_authority(
        &self,
        _request: tonic::Request<GetTokenAuthorityRequest>,
    ) -> Result<tonic::Response<GetTokenAuthorityResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _request: tonic::Request<VerifyTokenAuthorityRequest>,
    ) -> Result<tonic::Response<VerifyTokenAuthorityResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no token authority"))
    }
}

#[cfg(test)]
mod tests {
    use super::{EngineSocket, shared_key};
    use std::path::{Path, PathBuf};

    #[test]
    fn engine_hosts() {
        assert_eq!(
            EngineSocket::from_host("unix:///run/docker.sock"),
            Some(EngineSocket::Unix(PathBuf::from("/run/docker.sock")))
        );
        assert_eq!(
            EngineSocket::from_host("tcp://127.0.0.1:2375"),
            Some(EngineSocket::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            EngineSocket::from_host("/tmp/d.sock"),
            Some(EngineSocket::Unix(PathBuf::from("/tmp/d.sock")))
        );
        assert_eq!(EngineSocket::from_host("ssh://me@host"), None);
        assert_eq!(EngineSocket::from_host("npipe:////./pipe/docker"), None);
    }

    #[test]
    fn shared_keys_follow_the_directory() {
        let a = shared_key(Path::new("/nonexistent/a"));
        assert_eq!(a, shared_key(Path::new("/nonexistent/a")));
        assert_ne!(a, shared_key(Path::new("/nonexistent/b")));
        assert_eq!(a.len(), 32);
    }
}
