//! `deployctl serve` and `deployctl serve token create|list|revoke`: wiring only — the API,
//! store, queue and tokens are `deployctl-server`'s; deployments run through
//! [`super::serve_runner::ProcessRunner`], that is `deployctl deploy` itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployctl_server::unpack::UploadLimits;
use deployctl_server::{AppState, Role, ServerConfig, SqlStore, Store, tokens};
use serde_json::json;

use crate::cli_serve::{ServeArgs, ServeCommand, TokenCommand};
use crate::output::{Failure, Output};

/// The variable `--database-url` defaults to (a password stays off the command line).
const DATABASE_URL_VAR: &str = "DEPLOYCTL_DATABASE_URL";

pub fn run(args: &ServeArgs, out: &Output) -> i32 {
    let result = match &args.command {
        None => serve(args, out),
        Some(ServeCommand::Token(t)) => match &t.command {
            TokenCommand::Create(a) => with_store(
                a.database_url.as_deref(),
                a.data_dir.as_deref(),
                |store| async move {
                    let role = Role::parse(&a.role).ok_or_else(|| {
                        Failure::invalid(format!("--role `{}` is not a role", a.role))
                            .hint("use read, deploy or admin")
                    })?;
                    let ttl =
                        tokens::parse_ttl(&a.ttl).map_err(|e| Failure::invalid(e.to_string()))?;
                    let made = tokens::create(store.as_ref(), &a.project, role, ttl)
                        .await
                        .map_err(|e| store_failure("cannot create the token", &e))?;
                    out.text(format!(
                        "token {} for project {} (role {}), valid until {} ms since the epoch",
                        made.record.id,
                        made.record.project,
                        role.as_str(),
                        made.record.expires_ms
                    ));
                    out.text(format!("secret (shown once): {}", made.secret));
                    out.result(
                        "serve token create",
                        json!({ "token": made.record, "secret": made.secret }),
                    );
                    Ok(0)
                },
            ),
            TokenCommand::List(a) => with_store(
                a.database_url.as_deref(),
                a.data_dir.as_deref(),
                |store| async move {
                    let all = store
                        .tokens()
                        .await
                        .map_err(|e| store_failure("cannot list the tokens", &e))?;
                    let now = tokens::now_ms();
                    for t in &all {
                        let state = match (t.revoked_ms, t.expires_ms <= now) {
                            (Some(_), _) => "revoked",
                            (None, true) => "expired",
                            (None, false) => "valid",
                        };
                        out.text(format!(
                            "{}  project={}  role={}  expires_ms={}  {state}",
                            t.id,
                            t.project,
                            t.role.as_str(),
                            t.expires_ms
                        ));
                    }
                    out.result("serve token list", json!({ "tokens": all }));
                    Ok(0)
                },
            ),
            TokenCommand::Revoke(a) => with_store(
                a.database_url.as_deref(),
                a.data_dir.as_deref(),
                |store| async move {
                    let found = tokens::revoke(store.as_ref(), &a.id)
                        .await
                        .map_err(|e| store_failure("cannot revoke the token", &e))?;
                    if !found {
                        return Err(Failure::invalid(format!("no token {}", a.id))
                            .hint("`deployctl serve token list` shows the ids"));
                    }
                    out.text(format!("revoked {}", a.id));
                    out.result("serve token revoke", json!({ "id": a.id }));
                    Ok(0)
                },
            ),
        },
    };
    match result {
        Ok(code) => code,
        Err(f) => out.fail("serve", &f),
    }
}

fn data_dir(given: Option<&Path>) -> PathBuf {
    given.map_or_else(
        || {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".local/share/deployctl/server")
        },
        Path::to_owned,
    )
}

fn database_url(given: Option<&str>) -> Option<String> {
    given.map(str::to_owned).or_else(|| {
        std::env::var(DATABASE_URL_VAR)
            .ok()
            .filter(|v| !v.is_empty())
    })
}

fn store_failure(what: &str, e: &deployctl_server::Error) -> Failure {
    let f = match e {
        deployctl_server::Error::UnsupportedUrl { .. }
        | deployctl_server::Error::Invalid { .. } => Failure::invalid(e.to_string()),
        _ => Failure::new(e.kind(), format!("{what}: {e}")),
    };
    match std::error::Error::source(e) {
        Some(s) => f.caused_by(s),
        None => f,
    }
}

async fn open(url: Option<&str>, dir: &Path) -> Result<SqlStore, Failure> {
    SqlStore::open(url, dir)
        .await
        .map_err(|e| store_failure("cannot open the store", &e))
}

/// Opens the store the options name and runs `work` with it on a runtime.
fn with_store<F, Fut>(url: Option<&str>, dir: Option<&Path>, work: F) -> Result<i32, Failure>
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = Result<i32, Failure>>,
{
    let url = database_url(url);
    let dir = data_dir(dir);
    crate::runtime::block_on(|_cancel| async move {
        let store: Arc<dyn Store> = Arc::new(open(url.as_deref(), &dir).await?);
        work(store).await
    })?
}

fn serve(args: &ServeArgs, out: &Output) -> Result<i32, Failure> {
    let addr: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        Failure::invalid(format!("--listen `{}` is not an address", args.listen))
            .hint("write host:port, e.g. 127.0.0.1:8787")
    })?;
    if args.workers == 0 {
        return Err(Failure::invalid("--workers must be at least 1"));
    }
    let url = database_url(args.database_url.as_deref());
    let dir = data_dir(args.data_dir.as_deref());
    let exe = std::env::current_exe()
        .map_err(|e| Failure::environment("cannot find the deployctl executable").caused_by(&e))?;
    crate::runtime::block_on(|cancel| async move {
        let store = open(url.as_deref(), &dir).await?;
        let config = ServerConfig::new(args.workers, store.is_shared())
            .with_queue_cap(args.queue_cap)
            .with_trusted_config_paths(args.trust_config_paths)
            .with_uploads(
                dir.join("uploads"),
                UploadLimits {
                    compressed_bytes: args.upload_max_mib.saturating_mul(1 << 20),
                    unpacked_bytes: args.upload_max_unpacked_mib.saturating_mul(1 << 20),
                    files: args.upload_max_files,
                },
            );
        let runner = super::serve_runner::ProcessRunner::new(exe, dir.join("jobs"));
        let state = AppState::start(Arc::new(store), Arc::new(runner), config)
            .await
            .map_err(|e| store_failure("cannot start the jobs", &e))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::environment(format!("cannot listen on {addr}")).caused_by(&e))?;
        let bound = listener.local_addr().map_or(addr, |a| a);
        let db = url.as_deref().map_or_else(
            || {
                dir.join(deployctl_server::SQLITE_FILE)
                    .display()
                    .to_string()
            },
            deployctl_server::redact_url,
        );
        out.text(format!(
            "deployctl serve: listening on http://{bound} (store: {db}; workers: {})",
            args.workers
        ));
        out.result(
            "serve",
            json!({ "listen": bound.to_string(), "store": db, "server_id": state.server_id() }),
        );
        deployctl_server::serve(listener, state, async move { cancel.cancelled().await })
            .await
            .map_err(|e| Failure::environment(e.to_string()))?;
        Ok(0)
    })?
}
