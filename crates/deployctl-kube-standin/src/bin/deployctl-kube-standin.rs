//! Runs the stand-in until Ctrl-C: prints its URL and writes a kubeconfig (first argument,
//! default `./standin.kubeconfig`). With `DEPLOYCTL_STANDIN_PROXY_TARGET=http://host:port`,
//! the API server proxy of every Service forwards there (what the app would answer).

use std::path::PathBuf;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let path = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("standin.kubeconfig"), PathBuf::from);
    let standin = match deployctl_kube_standin::StandIn::start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("deployctl-kube-standin: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if let Ok(url) = std::env::var("DEPLOYCTL_STANDIN_PROXY_TARGET") {
        standin.set_default_proxy_target(Some(&url));
    }
    if let Err(e) = standin.write_kubeconfig(&path) {
        eprintln!("deployctl-kube-standin: {e}");
        return std::process::ExitCode::from(1);
    }
    println!("serving {} — kubeconfig {}", standin.url(), path.display());
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
