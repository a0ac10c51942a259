//! The async runtime, Ctrl-C and the Docker client: built once here and passed in.

use std::future::Future;

use bollard::Docker;
use deployctl_core::Cancellation;

use crate::output::Failure;

/// Runs `work` on a tokio runtime; Ctrl-C cancels the [`Cancellation`] it is given, so the
/// pipeline stops between calls.
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
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping after the current call");
                on_signal.cancel();
            }
        });
        work(cancel).await
    }))
}

/// A Docker engine client from `DOCKER_HOST`, or the default socket.
pub fn docker() -> Result<Docker, Failure> {
    Docker::connect_with_defaults().map_err(|e| {
        Failure::environment("cannot connect to the Docker engine")
            .caused_by(&e)
            .hint("start Docker, or point DOCKER_HOST at its socket (unix:///var/run/docker.sock)")
    })
}
