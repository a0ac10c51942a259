//! The async runtime, Ctrl-C, the Docker client and the HTTP(S) client: built once here and
//! passed in.

use std::future::Future;

use bollard::Docker;
use deployctl_core::Cancellation;

use crate::output::Failure;

/// Runs `work` on a tokio runtime. Ctrl-C (SIGINT) or SIGTERM — what CI systems send to
/// cancel a job — cancels the [`Cancellation`] it is given, so the pipeline stops after the
/// current call and reports an interruption (exit 130); a second signal exits at once.
pub fn block_on<F, Fut, T>(work: F) -> Result<T, Failure>
where
    F: FnOnce(Cancellation) -> Fut,
    Fut: Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::environment("cannot start the async runtime").caused_by(&e))?;
    let cancel = Cancellation::new();
    let on_signal = cancel.clone();
    Ok(rt.block_on(async move {
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let mut seen = 0;
            loop {
                let name = tokio::select! {
                    Some(()) = int.recv() => "SIGINT",
                    Some(()) = term.recv() => "SIGTERM",
                    else => return,
                };
                seen += 1;
                if seen > 1 {
                    crate::output::err_line(format_args!("{name} again: exiting now"));
                    std::process::exit(130);
                }
                crate::output::err_line(format_args!(
                    "interrupted ({name}): stopping after the current call; send it again to exit now"
                ));
                on_signal.cancel();
            }
        });
        work(cancel).await
    }))
}

/// tokio's sleep, for the core's lock waits and lease renewals.
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer;

impl deployctl_core::Timer for TokioTimer {
    fn sleep(&self, duration: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// How this run takes deploy locks: as `user@host (pid N)` with an id no other run has,
/// waiting up to `--lock-timeout`.
pub fn lock_policy(wait: std::time::Duration) -> deployctl_core::LockPolicy {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned());
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown-user".to_owned());
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    deployctl_core::LockPolicy::new(
        deployctl_core::LockOwner::new(
            format!("{host}-{pid}-{nanos:x}"),
            format!("{user}@{host} (pid {pid})"),
        ),
        wait,
    )
}

/// A Docker engine client from `DOCKER_HOST`, or the default socket.
pub fn docker() -> Result<Docker, Failure> {
    Docker::connect_with_defaults().map_err(|e| {
        Failure::environment("cannot connect to the Docker engine")
            .caused_by(&e)
            .hint("start Docker, or point DOCKER_HOST at its socket (unix:///var/run/docker.sock)")
    })
}

/// The HTTP(S) client for Kong's Admin API and a `deployctl serve` (`--server`): the
/// process's rustls provider and the system's trust roots (none needed for `http://`).
pub fn https_client() -> Result<deployctl_server::client::HttpClient, Failure> {
    deployctl_server::client::https_client()
        .map_err(|e| Failure::environment("cannot set up HTTPS").caused_by(&e))
}
